/**
 * `npm run bench`: every benchmark in one run, each in its own process (the kernels a process
 * registers are global to it), with the ratios of issue 7 printed side by side.
 *   1. compile time per spec and phase (bench/compile.ts);
 *   2. the reference workloads (MLP, conv, LSTM): wasm, wasm + OpenBLAS, webgpu (where its
 *      optional packages find an adapter, labelled with it: software Vulkan says so), and PyTorch;
 *   3. training steps (bench/step.ts): the generated loop against a hand-written one, and each
 *      spec over the baseline, next to the same ratio for PyTorch (bench/torch/methods.py); and
 *      the same on webgpu where it starts;
 *   5. a CREMA-D-shaped workload (bench/cremad.ts: OGM-GE on two ResNet-18-shaped encoders): the
 *      `--target torch` trainer against a hand-written PyTorch loop (bench/torch/cremad.py), and
 *      the tfjs trainer against both.
 * PyTorch runs in the first Python that imports torch and numpy (cli/python.ts: MMB_PYTHON,
 * python3, /usr/bin/python3; Debian: python3-torch); `--install-torch` installs it with apt first.
 * Neither the tests nor the build need it.
 *   npm run bench [-- --install-torch] [--skip-compile] [--skip-cremad]
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { findTorchPython } from "../cli/python.js";
import { loadNativeBlas, openblasCoreType } from "../runtime/native-kernels.js";
import { repositoryRoot } from "./paths.js";

const flag = (name: string) => process.argv.includes(name);
const out = join(repositoryRoot, "runs", "bench-perf");
mkdirSync(out, { recursive: true });
// OpenBLAS is told the core type for both sides: the tfjs runtime would set it for itself.
const env = { ...process.env, OPENBLAS_CORETYPE: process.env.OPENBLAS_CORETYPE ?? openblasCoreType() ?? "" };

function run(command: string, args: string[], extra: Record<string, string> = {}, show = true): string {
  const result = spawnSync(command, args, { cwd: repositoryRoot, env: { ...env, ...extra }, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], maxBuffer: 2 ** 26 });
  if (result.status !== 0) throw new Error(`${command} ${args.join(" ")} failed (exit ${result.status})`);
  if (show) process.stdout.write(result.stdout);
  return result.stdout;
}

const jsonLines = <T>(text: string): T[] => text.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as T);

const findPython = () => findTorchPython().python?.command;

if (flag("--install-torch") && !findPython()) {
  const [command, ...args] = [...(process.getuid?.() === 0 ? [] : ["sudo"]), "apt-get", "install", "-y", "--no-install-recommends", "python3-torch", "libopenblas0"];
  spawnSync(command!, args, { stdio: "inherit" });
}
const python = findPython();
const native = loadNativeBlas() !== undefined;
const fmt = (x: number, digits = 2) => x.toFixed(digits);

if (!flag("--skip-compile")) {
  console.log("## 1. Compile time\n");
  run(process.execPath, [join(repositoryRoot, "dist/bench/compile.js")]);
}

console.log("\n## 2. Reference workloads: ms per SGD step (median of 50 after 10 warm-up steps), samples/s, peak RSS\n");
interface WorkloadResult {
  workload: string;
  backend: string;
  batch: number;
  ms: number;
  samplesPerSecond: number;
  peakMiB: number;
}
const workloadCount = 4;
const eachWorkload = (command: string, args: (i: number) => string[], extra: Record<string, string> = {}) =>
  Array.from({ length: workloadCount }, (_, i) => jsonLines<WorkloadResult>(run(command, args(i), extra, false))[0]!);
const tfjsWorkloads = (extra: Record<string, string>) => eachWorkload(process.execPath, (i) => [join(repositoryRoot, "dist/bench/workloads.js"), "--index", String(i)], extra);
/** The runs of a backend that may not start here (webgpu without its packages or an adapter): none then, and why. */
function ifAvailable<T>(backend: string, measure: () => T): T | undefined {
  try {
    return measure();
  } catch {
    console.log(`(${backend} does not start here: \`mmb doctor\` says why; its columns are left out)\n`);
    return undefined;
  }
}
const webgpuWorkloads = ifAvailable("webgpu", () => eachWorkload(process.execPath, (i) => [join(repositoryRoot, "dist/bench/workloads.js"), "--backend", "webgpu", "--index", String(i)]));
const workloadRuns = [tfjsWorkloads({ MMB_NATIVE: "0" }), ...(native ? [tfjsWorkloads({})] : []), ...(webgpuWorkloads ? [webgpuWorkloads] : [])];
// PyTorch's default uses every core; on small ops one thread is faster (its thread pool costs
// more than it saves), so both are measured and the ratio is taken to the faster one.
const torchRuns = python ? ["2", "1"].map((threads) => eachWorkload(python, (i) => ["bench/torch/workloads.py", threads, String(i)]).map((r) => ({ ...r, backend: `PyTorch ${threads} thread${threads === "1" ? "" : "s"}` }))) : [];
const runs = [...workloadRuns, ...torchRuns];
const columns = runs.map((r) => r[0]!.backend);
console.log(`| workload | ${columns.map((c) => `${c} ms`).join(" | ")} | ${columns.map((c) => `${c} samples/s`).join(" | ")}${python ? " | fastest tfjs / fastest PyTorch (target ≤ 2)" : ""} | peak RSS MiB (same order) |`);
console.log(`|---|${runs.map(() => "---|").join("")}${runs.map(() => "---|").join("")}${python ? "---|" : ""}---|`);
for (const [i, first] of workloadRuns[0]!.entries()) {
  const rows = runs.map((r) => r[i]!);
  const fastest = (of: WorkloadResult[][]) => Math.min(...of.map((r) => r[i]!.ms));
  const ratio = python ? ` | ${fmt(fastest(workloadRuns) / fastest(torchRuns))}` : "";
  console.log(`| ${first.workload} | ${rows.map((r) => fmt(r.ms)).join(" | ")} | ${rows.map((r) => fmt(r.samplesPerSecond, 0)).join(" | ")}${ratio} | ${rows.map((r) => fmt(r.peakMiB, 0)).join(" / ")} |`);
}

console.log(`\n## 3. Training steps (${native ? "wasm + OpenBLAS" : "wasm"})\n`);
const stepJson = join(out, "step.json");
run(process.execPath, [join(repositoryRoot, "dist/bench/step.js"), "--json", stepJson]);
const step = JSON.parse(readFileSync(stepJson, "utf8")) as { baseline: number; specs: Record<string, number> };
if (python) {
  const torch = Object.fromEntries(jsonLines<{ spec: string; ms: number }>(run(python, ["bench/torch/methods.py", "2"], {}, false)).map((r) => [r.spec, r.ms]));
  const torchOne = Object.fromEntries(jsonLines<{ spec: string; ms: number }>(run(python, ["bench/torch/methods.py", "1"], {}, false)).map((r) => [r.spec, r.ms]));
  const tfjs: Record<string, number> = { "baseline.mmb": step.baseline, ...step.specs };
  console.log("\n| spec | mmb ms | × baseline | PyTorch ms (2 threads / 1) | × baseline (2 threads / 1) | mmb / PyTorch (best) |");
  console.log("|---|---|---|---|---|---|");
  for (const spec of Object.keys(torch)) {
    const ms = tfjs[spec]!;
    const best = Math.min(torch[spec]!, torchOne[spec]!);
    console.log(
      `| ${spec} | ${fmt(ms)} | ${fmt(ms / step.baseline)} | ${fmt(torch[spec]!)} / ${fmt(torchOne[spec]!)} | ${fmt(torch[spec]! / torch["baseline.mmb"]!)} / ${fmt(torchOne[spec]! / torchOne["baseline.mmb"]!)} | ${fmt(ms / best)} |`,
    );
  }
} else {
  console.log(`\nPyTorch is not installed: \`npm run bench -- --install-torch\` adds the PyTorch columns${existsSync("/usr/bin/apt-get") ? " (apt-get install python3-torch)" : ""}.`);
}

if (webgpuWorkloads) {
  console.log(`\n## 4. Training steps on ${webgpuWorkloads[0]!.backend}\n`);
  run(process.execPath, [join(repositoryRoot, "dist/bench/step.js"), "--backend", "webgpu", "--json", join(out, "step-webgpu.json")]);
}

if (!flag("--skip-cremad")) {
  console.log("\n## 5. A CREMA-D-shaped workload: OGM-GE on two ResNet-18-shaped encoders\n");
  if (python) run(process.execPath, [join(repositoryRoot, "dist/bench/cremad.js"), "--json", join(out, "cremad.json")]);
  else console.log("No Python with torch and numpy: skipped (`npm run bench -- --install-torch` adds it).");
}
