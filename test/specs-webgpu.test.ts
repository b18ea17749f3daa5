import { specTrainingSuite } from "./helpers.js";

// Every spec on webgpu (Dawn; in CI on Mesa's lavapipe); skipped where webgpu cannot start, unless MMB_REQUIRE_WEBGPU=1.
specTrainingSuite("webgpu");
