import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { loadTrainer } from "../cli/load-trainer.js";
import { analyze, compile } from "../compiler/index.js";
import type { Dataset } from "../runtime/index.js";
import { concatOf, mul } from "../runtime/ops.js";
import type { ComponentSpec, FusionInputs, ModelSpec } from "../runtime/spec.js";
import { loadCheckpoint } from "../runtime/checkpoint.js";
import { train } from "../runtime/train.js";

export const root = join(import.meta.dirname, "..");
export const specsDir = join(root, "specs");
export const fixturesDir = join(import.meta.dirname, "fixtures");
export const updateGoldens = process.env.UPDATE_GOLDEN === "1";

/** The command line as a user runs it: from the sources (through tsx), in the repository. */
export function mmb(...args: string[]) {
  return mmbWithInput(undefined, ...args);
}

/** `mmb`, with `input` on its standard input. */
export function mmbWithInput(input: string | undefined, ...args: string[]) {
  const result = spawnSync(process.execPath, ["--import", "tsx", join(root, "cli", "main.ts"), ...args], { cwd: root, encoding: "utf8", ...(input === undefined ? {} : { input }) });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** The probe's first value other than undefined, polled every 100 ms. */
export async function waitFor<T>(probe: () => T | undefined, seconds = 60): Promise<T> {
  for (let i = 0; i < seconds * 10; i++) {
    const value = probe();
    if (value !== undefined) return value;
    await new Promise((done) => setTimeout(done, 100));
  }
  throw new Error("timed out");
}

/** Whether a process of this id is running. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function specFiles(): string[] {
  return readdirSync(specsDir).filter((f) => f.endsWith(".mmb")).sort();
}

export function readSpec(name: string): string {
  return readFileSync(join(specsDir, name), "utf8");
}

/** Diagnostics of a source as `CODE line:col-line:col` strings, in report order. */
export function diagnose(source: string): string[] {
  const analysis = analyze(source, { fileName: "test.mmb" });
  return analysis.diagnostics.map((d) => {
    const a = analysis.source.position(d.span.start);
    const b = analysis.source.position(d.span.end);
    return `${d.code} ${a.line}:${a.column}-${b.line}:${b.column}`;
  });
}

/** The exact text under each diagnostic's primary span. */
export function spannedText(source: string): string[] {
  return analyze(source).diagnostics.map((d) => source.slice(d.span.start, d.span.end));
}

export async function compileOrThrow(source: string, fileName = "test.mmb"): Promise<string> {
  const result = await compile(source, { fileName });
  if (!result.code) throw new Error(result.diagnostics.map((d) => `${d.code} ${d.message}`).join("\n"));
  return result.code;
}

/** A run folder's log records (steps and epochs), in order. */
export function logRecords(out: string): Record<string, any>[] {
  return readFileSync(join(out, "log.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
}

/**
 * Trains `source` on cpu (or `backend`) straight through, and again stopped after `stop` epochs (`--epochs`) and
 * resumed to `end` (`beforeResume` may change the stopped run's folder first); expects the two last
 * checkpoints to hold the same parameters, bit for bit, and returns both run folders and checkpoints.
 */
export async function straightAndResumed(source: string, stop: number, end: number, beforeResume?: (dir: string) => void, backend = "cpu") {
  const trainer = await loadTrainer(await compileOrThrow(source), mkdtempSync(join(tmpdir(), "mmb-resume-code-")));
  const quiet = { backend, log: () => {} };
  const straight = mkdtempSync(join(tmpdir(), "mmb-straight-"));
  const resumed = mkdtempSync(join(tmpdir(), "mmb-resumed-"));
  await train(trainer, { out: straight, ...quiet });
  await train(trainer, { out: resumed, epochs: stop, ...quiet });
  const stopped = (await loadCheckpoint(join(resumed, "checkpoints")))!;
  beforeResume?.(resumed);
  await train(trainer, { out: resumed, epochs: end, resume: true, ...quiet });
  const a = (await loadCheckpoint(join(straight, "checkpoints")))!;
  const b = (await loadCheckpoint(join(resumed, "checkpoints")))!;
  expect(b.state.manifest.map((m) => m.name)).toEqual(a.state.manifest.map((m) => m.name));
  a.weights.forEach((w, i) => expect(Buffer.from(b.weights[i]!.buffer).equals(Buffer.from(w.buffer)), a.state.manifest[i]!.name).toBe(true));
  return { straight, resumed, stopped, a, b };
}

/** 16 training samples: one batch of 16 is exactly one step (of smallSpec); `widths`: values per sample of each modality. */
export function fixedData(widths = [8, 6]): Dataset {
  const rows = (n: number, width: number, salt: number) => Float32Array.from({ length: n * width }, (_, i) => Math.sin(i * 0.7 + salt));
  const split = (n: number, salt: number) => ({
    inputs: widths.map((width, m) => rows(n, width, salt + m)),
    labels: Float32Array.from({ length: n }, (_, i) => (i * 3 + salt) % 4),
    size: n,
  });
  return { train: split(16, 0), valid: split(8, 5), test: split(8, 9), description: "fixed test data" };
}

/** A small, fast two-modality spec used by runtime tests; `balance` replaces the rule. */
export function smallSpec(balance = "", extra = ""): string {
  return `model small
data synthetic(classes: 4, samples: 160, dominant: a, seed: 3)
modality a : float[8]
modality b : float[6]
target y : class(4)
encoder[m] = mlp(hidden: [10], out: 5)
fusion concat -> linear(4)
loss cross_entropy(out, y)
optimizer sgd(lr: 0.1)
train epochs 2 batch 16 seed 2
${extra}
balance {
${balance}
}
`;
}

/**
 * smallSpec on files: 48 samples of a.csv and b.csv, labels and 6 actors in meta.csv, dealt into
 * folds by actor (`files(group: "meta.csv:actor", ...)`), in a fresh folder.
 */
export function groupedProject(): { dir: string; spec: string } {
  const dir = mkdtempSync(join(tmpdir(), "mmb-grouped-"));
  const n = 48;
  const row = (i: number, width: number, salt: number) => Array.from({ length: width }, (_, j) => Math.sin(i * 1.3 + j * 0.7 + salt).toFixed(4)).join(",");
  writeFileSync(join(dir, "a.csv"), `${Array.from({ length: 8 }, (_, j) => `a${j}`).join(",")}\n${Array.from({ length: n }, (_, i) => row(i, 8, 0)).join("\n")}\n`);
  writeFileSync(join(dir, "b.csv"), `${Array.from({ length: 6 }, (_, j) => `b${j}`).join(",")}\n${Array.from({ length: n }, (_, i) => row(i, 6, 1)).join("\n")}\n`);
  writeFileSync(join(dir, "meta.csv"), `label,actor\n${Array.from({ length: n }, (_, i) => `${i % 4},actor${i % 6}`).join("\n")}\n`);
  const spec = join(dir, "grouped.mmb");
  writeFileSync(
    spec,
    smallSpec()
      .replace(/data synthetic\([^)]*\)/, 'data files(group: "meta.csv:actor", folds: 3, fold: 0)')
      .replace("modality a : float[8]", 'modality a : float[8] from "a.csv"')
      .replace("modality b : float[6]", 'modality b : float[6] from "b.csv"')
      .replace("target y : class(4)", 'target y : class(4) from "meta.csv:label"'),
  );
  return { dir, spec };
}

/** A small two-modality spec with conv2d encoders (two kernels each), for fixedData([16, 32]); `body` follows it (a balance block). */
export function convSpec(body: string, lr = 0.1): string {
  return `model conv
modality a : float[1, 4, 4]
modality b : float[2, 4, 4]
target y : class(4)
encoder[m] = conv2d(channels: [6, 8], out: 5)
fusion concat -> linear(4)
loss cross_entropy(out, y)
optimizer sgd(lr: ${lr})
train epochs 1 batch 16 seed 2
${body}`;
}

/** CI sets MMB_REQUIRE_WEBGPU=1 (with Mesa's lavapipe and the optional packages installed): there the webgpu tests run, and fail where webgpu cannot start, instead of skipping. */
export const webgpuRequired = process.env.MMB_REQUIRE_WEBGPU === "1";

let webgpuProbe: { available: boolean; reason: string } | undefined;

/**
 * Whether the webgpu backend starts here (the optional packages installed, and Dawn finding an
 * adapter on a Vulkan driver), and why not. Probed once, in a child process: tfjs's backend is
 * process-global, and a process that holds `navigator.gpu` does not exit by itself.
 */
export function webgpuAvailability(): { available: boolean; reason: string } {
  if (webgpuProbe) return webgpuProbe;
  const script = `const { startWebgpu } = await import(${JSON.stringify(pathToFileURL(join(root, "runtime", "webgpu.ts")).href)});
const started = await startWebgpu(true);
console.log(JSON.stringify(started));
process.exit(0);`;
  const child = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { cwd: root, encoding: "utf8", timeout: 120_000 });
  const line = child.stdout?.trim().split("\n").pop() ?? "";
  try {
    const started = JSON.parse(line) as { started: boolean; reason?: string };
    webgpuProbe = { available: started.started, reason: started.reason ?? "" };
  } catch {
    webgpuProbe = { available: false, reason: `the webgpu probe failed (status ${child.status}): ${child.stderr?.trim() || child.error?.message || "no output"}` };
  }
  return webgpuProbe;
}

/** webgpu tests run where webgpu starts, and wherever MMB_REQUIRE_WEBGPU=1 (failing there when it cannot). */
export function runsWebgpu(): boolean {
  return webgpuRequired || webgpuAvailability().available;
}

/**
 * Two epochs of every spec on one backend, each rule value logged at every step. webgpu's suite is
 * skipped where webgpu cannot start, unless MMB_REQUIRE_WEBGPU=1. The pure-JS cpu backend has no
 * suite of its own: test/torch-differential.test.ts trains every spec on it for two epochs and
 * compares every value with the torch trainer's, and wasm and webgpu train each to the end here.
 */
export function specTrainingSuite(backend: "wasm" | "webgpu"): void {
  describe.runIf(backend !== "webgpu" || runsWebgpu())(`every spec trains two epochs on the embedded data (${backend})`, () => {
    if (backend === "webgpu") {
      it("webgpu starts here", () => expect(webgpuAvailability().available, webgpuAvailability().reason).toBe(true));
    }
    for (const file of specFiles()) {
      it(`${file} on ${backend}`, async () => {
        // Every stage one epoch, the last two (`epochs: 2` sets the last stage's): the whole sequence, quickly.
        const code = await compileOrThrow(withOneEpochStages(readSpec(file)), `specs/${file}`);
        const out = mkdtempSync(join(tmpdir(), `mmb-${file}-`));
        const trainer = await loadTrainer(code, out);
        const summary = await train(trainer, { out, backend, epochs: 2, log: () => {} });
        expect(summary.backend).toBe(backend);
        // Better than chance: six classes (0.167); predicting 0 for levels on [-3, 3] (MAE 1.71);
        // or all background for a mask (Dice 0.23). A staged spec's earlier stages train one epoch
        // here, and a probe's fresh head two: a lower bar, still above chance.
        if (summary.metric === "mae") expect(summary.test).toBeLessThan(1.6);
        else expect(summary.test).toBeGreaterThan(trainer.spec.stages ? 0.2 : 0.3);
        const records = logRecords(out);
        const steps = records.filter((l) => l.type === "step");
        const epochs = records.filter((l) => l.type === "epoch");
        // Every value of each stage is logged: a step value at each of its steps, an epoch value at each of its epochs.
        const stages = "stages" in trainer ? trainer.stages : [{ ...trainer, name: undefined }];
        for (const stage of stages) {
          const mine = <T extends { stage?: string }>(list: T[]) => list.filter((r) => r.stage === stage.name);
          for (const name of Object.keys(stage.valueLines)) {
            const inSteps = mine(steps).every((s) => s[name] !== undefined);
            const inEpochs = mine(epochs).every((e) => e.rule?.[name] !== undefined);
            expect(inSteps || inEpochs, `${name} in every step or epoch record`).toBe(true);
          }
        }
        // Two epochs of the last stage, after the earlier stages' own.
        const settings = trainer.spec.stages ?? [trainer.spec];
        const expected = settings.reduce((n, s, i) => n + (i === settings.length - 1 ? 2 : s.train.epochs) * Math.ceil(840 / s.train.batch), 0);
        expect(steps.length).toBe(expected);
      });
    }
  });
}

/** A spec whose every `train epochs N` says 1: each stage of a staged spec trains one epoch (a run's `epochs` option still sets the last's). */
export function withOneEpochStages(text: string): string {
  return text.replace(/^(\s*)train epochs \d+/gm, "$1train epochs 1");
}

/** A spec with `norm: "batch"` added to each `mlp`, `conv1d` and `conv2d` encoder declaration. */
export function withBatchNorm(text: string): string {
  const changed = text.replace(/^(encoder\b[^=]*=\s*(?:mlp|conv1d|conv2d)\()(.*)\)\s*$/gm, (_, call: string, args: string) => `${call}${args}, norm: "batch")`);
  if (changed === text) throw new Error("no encoder to batch-normalise");
  return changed;
}

/** `text` with every mlp encoder's hidden layers dropping out at `rate` (the `dropout` option). */
export function withDropout(text: string, rate: number): string {
  const changed = text.replace(/^(encoder\b[^=]*=\s*mlp\()(.*)\)\s*$/gm, (_, call: string, args: string) => `${call}${args}, dropout: ${rate})`);
  if (changed === text) throw new Error("no mlp encoder to give dropout");
  return changed;
}

/** `text` with its task loss `cross_entropy(out, y)` replaced by one that draws: the mean nll of `dropout(out, rate)`. */
export function withDrawnLoss(text: string, rate: number): string {
  const changed = text.replace(/^loss cross_entropy\(out, y\)\s*$/m, `loss mean(batch, nll(dropout(out, ${rate}), y))`);
  if (changed === text) throw new Error("no `loss cross_entropy(out, y)` to replace");
  return changed;
}

/** Every encoder kind with an input shape and small options: the encoder tests' cases (cpu, wasm, webgpu). */
export const encoderCases: [kind: string, shape: number[], options: Record<string, unknown>][] = [
  ["mlp", [12], { hidden: [16], out: 8, activation: "tanh", dropout: 0 }],
  ["conv1d", [10, 3], { channels: [4, 6], kernel: 3, out: 8, activation: "tanh" }],
  ["conv2d", [2, 8, 8], { channels: [4, 6], kernel: 3, out: 8, activation: "tanh" }],
  ["lstm", [6, 3], { hidden: 8, out: 8 }],
  ["gru", [6, 3], { hidden: 8, out: 8 }],
  ["transformer", [6, 3], { layers: 2, heads: 2, dim: 8, ff: 16, out: 8 }],
  ["resnet", [2, 8, 8], { channels: [4, 8], blocks: 2, out: 8, norm: "batch" }],
  // Batch-normalised layers (a ResNet's default; an option of the others).
  ["mlp", [12], { hidden: [16], out: 8, activation: "tanh", dropout: 0, norm: "batch" }],
  ["conv1d", [10, 3], { channels: [4, 6], kernel: 3, out: 8, activation: "tanh", norm: "batch" }],
  ["conv2d", [2, 8, 8], { channels: [4, 6], kernel: 3, out: 8, activation: "tanh", norm: "batch" }],
];

/** An encoder case's name: its kind, and its normalisation where it has one. */
export const encoderCaseName = (kind: string, options: Record<string, unknown>): string => (options.norm === "batch" ? `${kind} (norm batch)` : kind);

/** Every TypeScript file under `dir`. */
export function typescriptFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? typescriptFiles(path) : path.endsWith(".ts") ? [path] : [];
  });
}

/** A one-encoder model (input `x`, 3 classes) for the encoder tests' cases. */
export function encoderModelSpec(kind: string, shape: number[], options: Record<string, unknown>): ModelSpec {
  return {
    name: kind, source: "test", data: { kind: "synthetic", options: {} },
    modalities: [{ name: "x", shape }], target: { name: "y", kind: "class", classes: 3 },
    encoders: [{ kind, options: options as ComponentSpec["options"] }], fusion: { kind: "concat", options: {} },
    head: { kind: "linear", options: { out: 3 } }, learnables: [], optimizer: { kind: "sgd", options: {} }, schedule: { kind: "constant", options: {} },
    train: { epochs: 1, batch: 8, seed: 1, clip: 0, patience: 0 },
  };
}

/** A two-modality model (`a`: 5 values, `b`: 4; small MLP encoders, 3 classes) with the given fusion, for the fusion tests. */
export function fusionModelSpec(fusion: ComponentSpec, extra: Partial<ModelSpec> = {}): ModelSpec {
  return {
    name: "fusion", source: "test", data: { kind: "synthetic", options: {} },
    modalities: [{ name: "a", shape: [5] }, { name: "b", shape: [4] }], target: { name: "y", kind: "class", classes: 3 },
    encoders: [{ kind: "mlp", options: { hidden: [6], out: 4, activation: "tanh", dropout: 0 } }, { kind: "mlp", options: { hidden: [6], out: 4, activation: "tanh", dropout: 0 } }],
    fusion, head: { kind: "linear", options: { out: 3 } }, learnables: [], optimizer: { kind: "sgd", options: {} }, schedule: { kind: "constant", options: {} },
    train: { epochs: 1, batch: 8, seed: 1, clip: 0, patience: 0 },
    ...extra,
  };
}

/** The fusion expression `concat(j, w[j] * z[j])` as a trainer's `fuse`, with a learnable `w` per modality. */
export const weightedConcat = (inputs: FusionInputs) => concatOf(inputs.modalities.map((j) => mul(inputs.learnable("w", j), inputs.z[j]!)));
