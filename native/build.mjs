// Builds the optional OpenBLAS kernels (native/mmb_blas.c) when the machine can: Debian's
// libopenblas-dev and npm's node-gyp with Node's headers. Anything missing leaves the runtime on
// its pure wasm kernels, so this never fails the build; MMB_REQUIRE_NATIVE=1 makes it fail instead.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const required = process.env.MMB_REQUIRE_NATIVE === "1";
const headers = ["/usr/include/x86_64-linux-gnu/cblas.h", "/usr/include/aarch64-linux-gnu/cblas.h", "/usr/include/cblas.h", "/usr/include/openblas/cblas.h"];

function skip(reason) {
  console.log(`native kernels: skipped (${reason}); training uses the wasm kernels`);
  process.exit(required ? 1 : 0);
}

if (process.env.MMB_NATIVE === "0") skip("MMB_NATIVE=0");
if (!headers.some((h) => existsSync(h))) skip("no cblas.h: `apt-get install libopenblas-dev` adds OpenBLAS matmul and convolution");
// npm hands its own node-gyp to scripts; outside npm, the one on PATH.
const gyp = process.env.npm_config_node_gyp;
const [command, args] = gyp ? [process.execPath, [gyp, "rebuild"]] : ["node-gyp", ["rebuild"]];
const built = spawnSync(command, args, { cwd: here, stdio: ["ignore", "ignore", "pipe"], encoding: "utf8" });
if (built.status !== 0) skip(`node-gyp failed: ${(built.stderr || built.error?.message || "").split("\n").filter((l) => /error/i.test(l)).slice(0, 3).join(" | ")}`);
console.log("native kernels: built native/build/Release/mmb_blas.node (OpenBLAS)");
