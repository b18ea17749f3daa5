import { specTrainingSuite } from "./helpers.js";

specTrainingSuite("wasm");
