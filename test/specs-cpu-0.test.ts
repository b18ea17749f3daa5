import { specTrainingSuite } from "./helpers.js";

// Half of the specs on the pure-JS cpu backend; the other half is in specs-cpu-1.test.ts.
specTrainingSuite("cpu", [0, 2]);
