/**
 * The CREMA-D-shaped step-time benchmark of issue 15: OGM-GE on two ResNet-18-shaped encoders
 * (bench/cremad_ogm_ge.mmb, whose header says how the workload is sized for a 2-core CPU), trained
 * for a few steps by
 *   1. the trainer `mmb compile --target torch` generates from the spec (on the samples `mmb data
 *      export` writes for it), run by its own loop, its step's draws the tfjs trainer's (the
 *      default) and, as `--rng torch` runs it, torch's own;
 *   2. the same model and rule written by hand in PyTorch (bench/torch/cremad.py), the same
 *      samples, batch and thread count (target: the generated trainer ≤ 1.05× this);
 *   3. the tfjs trainer `mmb compile` generates from the same spec (wasm, with the OpenBLAS kernels
 *      where they are built), on the same samples.
 * Every loop runs in a process of its own; the three PyTorch loops alternate, `--rounds` processes
 * each. Processes of one loop differ by more than the loops do on a shared machine, so each
 * generated loop also runs `--rounds` processes beside the hand-written one (a hand-written step
 * before each generated step, in one process), for a ratio step by step. A step is timed from its
 * start to the next one's: the batch's tensors, forward, backward, the rule, the optimiser update
 * and the loop's own per-step work (the generated loops' step record), the first `--warmup` steps
 * of each process left out. Each figure is the median of every
 * timed step of its loop. Prints a table; `--json FILE` writes the figures; `--phases` adds where
 * each PyTorch loop's step time goes (the timers cost a little: for finding causes, not figures).
 *   node dist/bench/cremad.js [--rounds 2] [--steps 9] [--warmup 2] [--tfjs-steps 3] [--threads 2] [--phases] [--json FILE]
 * From source: npx tsx bench/cremad.ts (the same options).
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadTrainer } from "../cli/load-trainer.js";
import { exportData } from "../cli/data-export.js";
import { findTorchPython, torchInstallHint } from "../cli/python.js";
import { compile } from "../compiler/index.js";
import { describeBackend } from "../runtime/backend.js";
import { loadData, train } from "../runtime/index.js";
import { openblasCoreType } from "../runtime/native-kernels.js";
import { median } from "./median.js";
import { repositoryRoot } from "./paths.js";

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1]! : fallback;
};
const specFile = "bench/cremad_ogm_ge.mmb";
const text = readFileSync(join(repositoryRoot, specFile), "utf8");
const rounds = Number(arg("--rounds", "2"));
const steps = Number(arg("--steps", "9"));
const warmup = Number(arg("--warmup", "2"));
const tfjsSteps = Number(arg("--tfjs-steps", "3"));
const tfjsWarmup = Number(arg("--tfjs-warmup", "1"));
const threads = arg("--threads", "2");
// `--phases`: the PyTorch loops also report where a step's time goes (bench/torch/cremad.py --phases).
const phases = process.argv.includes("--phases");

/** Stops a generated loop after its last timed step, before the epoch's evaluation. */
class Done extends Error {}

/** The tfjs trainer's step times, in this process (`--tfjs-only`): its loop, its `trainStep` wrapped to note when each step starts. */
async function timeTfjsSteps(): Promise<{ ms: number[]; backend: string }> {
  const result = await compile(text, { fileName: specFile });
  if (!result.code) throw new Error(`${specFile} does not compile`);
  const out = mkdtempSync(join(tmpdir(), "mmb-cremad-tfjs-"));
  try {
    const trainer = await loadTrainer(result.code, join(out, "trainer"));
    if ("stages" in trainer) throw new Error(`${specFile} has stages`);
    const starts: number[] = [];
    const step = trainer.trainStep;
    const timed: typeof step = (ctx, p) => {
      starts.push(performance.now());
      if (starts.length > tfjsWarmup + tfjsSteps) throw new Done();
      return step(ctx, p);
    };
    try {
      await train({ ...trainer, trainStep: timed }, { out: join(out, "run"), backend: "wasm", epochs: 1, data: loadData(trainer.spec), log: () => {}, progress: false });
    } catch (e) {
      if (!(e instanceof Done)) throw e;
    }
    if (starts.length <= tfjsWarmup + tfjsSteps) throw new Error(`only ${starts.length} tfjs steps in an epoch: the spec needs more samples`);
    const ms = starts.slice(1).map((t, i) => t - starts[i]!).slice(tfjsWarmup, tfjsWarmup + tfjsSteps);
    return { ms, backend: describeBackend("wasm") };
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

if (process.argv.includes("--tfjs-only")) {
  console.log(JSON.stringify(await timeTfjsSteps()));
  process.exit(0);
}

const { python, tried } = findTorchPython();
if (!python) {
  console.log(`(no Python with torch and numpy: the CREMA-D-shaped benchmark is skipped; tried ${tried.join("; ")}; ${torchInstallHint})`);
  process.exit(0);
}

// The torch trainer and the samples, as `mmb compile --target torch` and `mmb data export` write them.
const work = mkdtempSync(join(tmpdir(), "mmb-cremad-"));
const torchTrainer = await compile(text, { fileName: specFile, target: "torch" });
if (!torchTrainer.code || !torchTrainer.ir) throw new Error(`${specFile} does not compile for torch`);
writeFileSync(join(work, "trainer.py"), torchTrainer.code);
const meta = await exportData(torchTrainer.ir, specFile, join(work, "data.npz"), { text });
const shapes = meta.modalities.map((m) => `${m.name} ${m.shape.join("×")}`).join(", ");

// OpenBLAS is told the core type for PyTorch too, as bench/run.ts does (the tfjs runtime sets it for itself).
const env = { ...process.env, OPENBLAS_CORETYPE: process.env.OPENBLAS_CORETYPE ?? openblasCoreType() ?? "" };
/**
 * CPU seconds the whole machine has been busy, and those this process's waited-for children used
 * (Linux's /proc; undefined elsewhere): their difference over a run is what other processes took.
 */
function cpuSeconds(): { machine: number; children: number } | undefined {
  try {
    const tick = 100; // USER_HZ, 100 on every Linux architecture mmb runs on
    const [, ...all] = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).map(Number);
    const busy = all.reduce((a, b) => a + b, 0) - all[3]! - all[4]!;
    // Fields 16 and 17 of /proc/self/stat (after the command's name in parentheses): cutime, cstime.
    const fields = readFileSync("/proc/self/stat", "utf8").split(") ")[1]!.split(" ");
    return { machine: busy / tick, children: (Number(fields[13]) + Number(fields[14])) / tick };
  } catch {
    return undefined;
  }
}
/** The share of a core other processes used while the benchmark ran, per run: on a shared machine, a figure measured beside them is not one to keep. */
const contention: number[] = [];
function child(command: string, args: string[]): string {
  const before = cpuSeconds();
  const started = performance.now();
  const result = spawnSync(command, args, { cwd: repositoryRoot, env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], maxBuffer: 2 ** 26 });
  const after = cpuSeconds();
  if (result.status !== 0) throw new Error(`${command} ${args.join(" ")} failed (exit ${result.status}): ${result.stderr}`);
  if (before && after) contention.push(Math.max(0, after.machine - before.machine - (after.children - before.children)) / ((performance.now() - started) / 1000));
  return result.stdout.trim().split("\n").pop()!;
}
/** The PyTorch loops: the hand-written one, and the torch target with the shared draws and with torch's (`--rng torch`). */
const loops = {
  hand: ["hand"],
  target: ["target", "--trainer", join(work, "trainer.py")],
  torchDraws: ["target", "--trainer", join(work, "trainer.py"), "--rng", "torch"],
};
type Loop = keyof typeof loops;
/** The generated loops again, each with a hand-written step before each of its own in one process (cremad.py --beside-hand). */
const besideLoops = ["target", "torchDraws"] as const;
type Beside = (typeof besideLoops)[number];
const torchLoop = (loop: Loop, beside = false) => {
  const args = ["bench/torch/cremad.py", ...loops[loop], "--data", join(work, "data.npz"), "--threads", threads, "--warmup", String(warmup), "--steps", String(steps)];
  const extra = [...(phases && !beside ? ["--phases"] : []), ...(beside ? ["--beside-hand"] : [])];
  const line = JSON.parse(child(python.command, [...args, ...extra])) as { ms: number[]; hand_ms?: number[]; phases?: Record<string, number> };
  if (line.phases) phaseRuns[loop].push(line.phases);
  return line;
};

const times: Record<Loop, number[]> = { hand: [], target: [], torchDraws: [] };
// Each process's median step: processes of one loop differ by more than the loops (docs/performance.md §7).
const processMedians: Record<Loop, number[]> = { hand: [], target: [], torchDraws: [] };
const phaseRuns: Record<Loop, Record<string, number>[]> = { hand: [], target: [], torchDraws: [] };
// Beside the hand-written loop: each generated step's time over the hand-written step's just before it, and each process's median of those.
const besideRatios: Record<Beside, number[]> = { target: [], torchDraws: [] };
const besideMedians: Record<Beside, number[]> = { target: [], torchDraws: [] };
try {
  for (let round = 0; round < rounds; round++) {
    for (const loop of Object.keys(loops) as Loop[]) {
      const { ms } = torchLoop(loop);
      times[loop].push(...ms);
      processMedians[loop].push(median(ms));
    }
    for (const loop of besideLoops) {
      const { ms, hand_ms } = torchLoop(loop, true);
      const ratios = ms.map((t, i) => t / hand_ms![i]!);
      besideRatios[loop].push(...ratios);
      besideMedians[loop].push(median(ratios));
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
const tfjsRun = JSON.parse(child(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), "--tfjs-only", "--tfjs-steps", String(tfjsSteps), "--tfjs-warmup", String(tfjsWarmup)])) as { ms: number[]; backend: string };

const hand = median(times.hand);
const target = median(times.target);
const torchDraws = median(times.torchDraws);
const tfjs = median(tfjsRun.ms);
const fmt = (x: number, digits = 2) => x.toFixed(digits);
const ok = (ratio: number) => (ratio <= 1.05 ? "✓" : "✗");
console.log(`CREMA-D-shaped OGM-GE (${specFile}: two ResNet-18-shaped encoders, ${shapes}, batch ${String(torchTrainer.ir.train.batch)}), PyTorch ${python.torch} on ${threads} threads, ${tfjsRun.backend}.`);
console.log(`Median ms per step from one step's start to the next; PyTorch: ${steps} steps after ${warmup} warm-up in each of ${rounds} processes per loop, alternating; tfjs: ${tfjsSteps} after ${tfjsWarmup}.`);
console.log(`"Beside": ${rounds} more processes per generated loop, each running a hand-written step before each of its own; the median of each step's ratio to the hand-written step before it.\n`);
const range = (xs: number[], hand = 1) => `${fmt(Math.min(...xs) / hand)}–${fmt(Math.max(...xs) / hand)}`;
const besideColumn = (loop: Beside) => `**${fmt(median(besideRatios[loop]))}** ${ok(median(besideRatios[loop]))} (${range(besideMedians[loop])})`;
console.log("| trainer | ms per step | steps timed | × hand-written PyTorch | its processes' medians, × | steps beside a hand-written one, × (per process) | × torch target |");
console.log("|---|---|---|---|---|---|---|");
console.log(`| hand-written PyTorch loop | ${fmt(hand, 0)} | ${times.hand.length} | 1.00 | ${range(processMedians.hand, hand)} | 1.00 | ${fmt(hand / target)} |`);
console.log(`| mmb --target torch | ${fmt(target, 0)} | ${times.target.length} | **${fmt(target / hand)}** ${ok(target / hand)} (goal ≤ 1.05) | ${range(processMedians.target, hand)} | ${besideColumn("target")} | 1.00 |`);
console.log(`| mmb --target torch --rng torch | ${fmt(torchDraws, 0)} | ${times.torchDraws.length} | **${fmt(torchDraws / hand)}** ${ok(torchDraws / hand)} | ${range(processMedians.torchDraws, hand)} | ${besideColumn("torchDraws")} | ${fmt(torchDraws / target)} |`);
console.log(`| mmb tfjs (${tfjsRun.backend}) | ${fmt(tfjs, 0)} | ${tfjsRun.ms.length} | ${fmt(tfjs / hand)} | | | ${fmt(tfjs / target)} |`);
const loopNames: Record<Loop, string> = { hand: "hand-written loop", target: "torch target", torchDraws: "torch target, --rng torch" };
for (const loop of Object.keys(loops) as Loop[]) {
  if (!phaseRuns[loop].length) continue;
  const names = Object.keys(phaseRuns[loop][0]!);
  const each = names.map((n) => `${n} ${fmt(median(phaseRuns[loop].map((r) => r[n] ?? 0)) * 1000, 0)}`);
  console.log(`\n${loopNames[loop]}, ms per step in each phase (inclusive; median over its processes): ${each.join(", ")}`);
}
const busiest = Math.max(0, ...contention);
if (busiest > 0.1) console.log(`\nOther processes used up to ${fmt(busiest * 100, 0)}% of a core during these runs (PyTorch's threads wait for each other when one is descheduled): run again on a quiet machine before keeping these figures.`);
const json = arg("--json", "");
if (json) writeFileSync(json, JSON.stringify({ spec: specFile, threads: Number(threads), torch: python.torch, tfjsBackend: tfjsRun.backend, ms: { hand, target, torchDraws, tfjs }, processMedians, beside: { ratios: besideRatios, processMedians: besideMedians }, contention, phases: phaseRuns, steps: { ...times, tfjs: tfjsRun.ms } }, null, 2));
