import * as tf from "@tensorflow/tfjs";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { loadTrainer } from "../cli/load-trainer.js";
import { findTorchPython } from "../cli/python.js";
import { torchRuntimeSource } from "../compiler/3-codegen/torch/runtime-source.js";
import type { Dataset, ModelSpec } from "../runtime/index.js";
import type { ComponentSpec } from "../runtime/spec.js";
import { selectBackend } from "../runtime/backend.js";
import { classificationMetrics, maskDice, regressionMetrics } from "../runtime/metrics.js";
import { initialValues } from "../runtime/model.js";
import { Optimizer } from "../runtime/optimizer.js";
import { Random } from "../runtime/random.js";
import { Gradients } from "../runtime/step.js";
import { train, type StageDefinition, type Summary, type TrainerDefinition } from "../runtime/train.js";
import { compileOrThrow, logRecords, smallSpec } from "./helpers.js";

// The torch trainer's loop (runtime/torch/optimizer.py, metrics.py, train.py) against the tfjs
// runtime it ports: the optimisers' arithmetic and the metrics number for number, and a run's
// folder (log, summary, checkpoints, refusals) record for record. Skipped where no python3
// imports torch, unless MMB_REQUIRE_TORCH=1 (then such a machine fails).

const { python, tried } = findTorchPython();
const torchRequired = process.env.MMB_REQUIRE_TORCH === "1";

/** A Python file: the torch runtime, as a generated trainer holds it, then `code`. */
function withRuntime(code: string, name: string): string {
  const file = join(mkdtempSync(join(tmpdir(), "mmb-torch-")), name);
  writeFileSync(file, `${torchRuntimeSource()}\n\n${code}`);
  return file;
}

let checksFile: string | undefined;

/** A command of test/torch/checks.py: `input` as JSON on its stdin, its JSON answer. */
function check<T = any>(command: string, input: unknown = null): T {
  checksFile ??= withRuntime(readFileSync(join(import.meta.dirname, "torch", "checks.py"), "utf8"), "checks.py");
  const result = spawnSync(python!.command, [checksFile, command], { input: JSON.stringify(input), encoding: "utf8" });
  if (result.status !== 0) throw new Error(`checks.py ${command} failed (${result.status}):\n${result.stderr}`);
  return JSON.parse(result.stdout) as T;
}

/** float32 values from a formula, as plain numbers (exact in JSON). */
const wave = (n: number, salt: number, scale = 1) => Array.from(Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.7 + salt) * scale));

describe.runIf(python || torchRequired)("the torch runtime's optimiser and metrics", () => {
  if (torchRequired) it("finds a python3 with torch", () => expect(python, tried.join("; ")).toBeDefined());

  it("takes the steps of torch.optim's SGD (momentum, weight decay), Adam and AdamW, each parameter counting its own steps", () => {
    const results = check<{ kind: string; difference: number; moved: number; steps: Record<string, number> }[]>("against-torch");
    expect(results.map((r) => r.kind)).toEqual(["sgd", "sgd", "adam", "adamw"]);
    for (const r of results) {
      expect(r.moved, r.kind).toBeGreaterThan(1e-3);
      expect(r.difference, `${r.kind}: largest difference from torch.optim`).toBeLessThan(1e-6);
      // b sat out one of the six steps.
      expect(r.steps).toEqual({ a: 6, b: 5 });
    }
  });

  it("computes what runtime/optimizer.ts computes, bit for bit (float32 on the CPU)", async () => {
    await selectBackend("cpu");
    const shapes: Record<string, number[]> = { w: [3, 4], b: [4] };
    const options = { lr: 0.05, momentum: 0.9, weight_decay: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8 };
    for (const kind of ["sgd", "adam", "adamw"]) {
      const start = Object.fromEntries(Object.entries(shapes).map(([name, shape], i) => [name, { shape, values: wave(shape.reduce((a, b) => a * b), i) }]));
      // Five steps: b sits out step 1; the learning-rate factor is a number or a tensor (a rule's `scale lr`).
      const steps = [0, 1, 2, 3, 4].map((s) => ({
        grads: Object.fromEntries(Object.entries(shapes).filter(([name]) => !(name === "b" && s === 1)).map(([name, shape], i) => [name, { shape, values: wave(shape.reduce((a, b) => a * b), 10 * s + i, 0.5) }])),
        factor: [1, 0.5, 0.3, 1, 2][s]!,
        tensor: s % 2 === 0,
      }));
      const params = new Map(Object.entries(start).map(([name, p]) => [name, tf.variable(tf.tensor(p.values, p.shape))]));
      const optimizer = new Optimizer({ kind, options });
      for (const step of steps) {
        const grads = new Map(Object.entries(step.grads).map(([name, g]) => [name, tf.tensor(g.values, g.shape)]));
        optimizer.apply(params, grads, () => (step.tensor ? tf.scalar(step.factor) : step.factor));
      }
      const expected = Object.fromEntries([...params].map(([name, v]) => [name, Array.from(v.dataSync())]));
      // Updated whole, and 5 elements at a time: w's rows then go in parts, some in a batch with b.
      for (const batch of [undefined, 5]) {
        const ours = check<{ params: Record<string, number[]>; steps: Record<string, number> }>("replay", { params: start, optimizer: { kind, options }, steps, batch });
        expect(ours.params, `${kind}, batch ${batch}`).toEqual(expected);
        expect(ours.steps).toEqual({ w: 5, b: 4 });
      }
      params.forEach((v) => v.dispose());
      optimizer.dispose();
    }
  });

  it("applies a rule's actions as runtime/step.ts does, bit for bit: a later action in the tensor an earlier one made, the raw gradients and a replacement left as they are", async () => {
    await selectBackend("cpu");
    const shapes: Record<string, number[]> = { "encoder.a.dense0.kernel": [3, 4], "encoder.a.dense0.bias": [4], "encoder.b.dense0.kernel": [4, 2], "encoder.b.dense0.bias": [2] };
    const host = (shape: number[], salt: number, scale: number) => ({ shape, values: wave(shape.reduce((a, b) => a * b), salt, scale) });
    const named = (salt: number, scale: number, only?: string) =>
      Object.fromEntries(Object.entries(shapes).filter(([name]) => !only || name.startsWith(only)).map(([name, shape], i) => [name, host(shape, salt + i, scale)]));
    // Two steps through one run's memory: the second draws in what the first left there, and works in the tensors the first gave back.
    const steps = [
      { noise_seed: 1234, k: 0.7, mean: 0.001, std: 0.02, grads: named(1, 0.5), replacement: named(20, 0.1, "encoder.b") },
      { noise_seed: 98765, k: 1.3, mean: 0, std: 0.05, grads: named(40, 2), replacement: named(60, 0.3, "encoder.b") },
    ];
    const ours = check<{ values: Record<string, number[]>; raw_unchanged: boolean; replacement_unchanged: boolean; in_place: boolean; recorded: boolean; reused: boolean }[]>("gradient-actions", { grads: named(0, 1), steps });
    steps.forEach((step, s) => {
      const tensors = (values: Record<string, { shape: number[]; values: number[] }>) => Object.entries(values).map(([name, g]) => [name, tf.tensor(g.values, g.shape)] as const);
      const grads = new Gradients(new Map(tensors(step.grads)), step.noise_seed);
      grads.scale("encoder.a", tf.scalar(step.k));
      grads.addNoise("encoder.a", step.mean, step.std);
      grads.scale("encoder.a", 2);
      grads.replace("encoder.b", tensors(step.replacement).map(([, t]) => t));
      grads.addNoise("encoder.b", 0, step.std);
      const expected = Object.fromEntries([...grads.values].map(([name, t]) => [name, Array.from(t.dataSync())]));
      expect(ours[s]!.values, `step ${s + 1}`).toEqual(expected);
      expect(ours[s], `step ${s + 1}`).toMatchObject({ raw_unchanged: true, replacement_unchanged: true, in_place: true, recorded: false, reused: s > 0 });
    });
  });

  it("lends an action's tensor to one step's gradients at a time: not again until the optimiser has applied them, and no action after that", () => {
    // 1 × 2 in the first gradients, 1 × 3 in the second, 5 × 7 in the third: each must keep its own.
    expect(check("step-memory")).toEqual({
      first_kept: [[2, 2, 2], [2, 2, 2]],
      second_apart: true,
      third: [[35, 35, 35], [35, 35, 35]],
      third_reuses_first: true,
      second_kept: [[3, 3, 3], [3, 3, 3]],
      refused: "an action on gradients the optimiser has already applied",
    });
  });

  it("takes a gradient's std and norm as the equations give them, as a step reads them and through autograd", () => {
    // Tensors far from zero mean (a spread of 1e-3 about 0.05), where a one-pass Σt² − n·mean² would lose the spread;
    // the last one larger than the parts of 65,536 elements a CPU sums it in.
    const shapes = [[64, 3, 3], [64], [7, 5], [3, 170, 300]];
    const tensors = shapes.map((shape, i) => ({ shape, values: wave(shape.reduce((a, b) => a * b), i, 1e-3).map((v) => Math.fround(v + 0.05 * (i + 1))) }));
    const all = tensors.flatMap((t) => t.values);
    const n = all.length;
    const mean = all.reduce((a, b) => a + b, 0) / n;
    const std = Math.sqrt(all.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1));
    const norm = Math.sqrt(all.reduce((a, v) => a + v * v, 0));
    const ours = check<{ std: number; norm: number; std_tracked: number; norm_tracked: number; derivative: number[] }>("gradient-statistics", { tensors });
    const relative = (a: number, b: number) => Math.abs(a - b) / Math.abs(b);
    for (const [name, value, expected] of [["std", ours.std, std], ["std, tracked", ours.std_tracked, std], ["norm", ours.norm, norm], ["norm, tracked", ours.norm_tracked, norm]] as const) {
      expect(relative(value, expected), `${name}: ${value} against ${expected}`).toBeLessThan(1e-6);
    }
    // ∂std/∂t_i = (t_i − mean) / ((n − 1) · std), for the first tensor's elements.
    ours.derivative.forEach((d, i) => expect(d, `element ${i}`).toBeCloseTo((tensors[0]!.values[i]! - mean) / ((n - 1) * std), 6));
  });

  it("draws from torch's generator with --rng torch: each draw's distribution, repeatable, not the shared draws, a pass over some rows drawing the batch's", () => {
    const [n, mean, std, p, rate] = [1 << 20, 0.25, 0.5, 0.3, 0.2];
    const ours = check<{
      noise: { mean: number; std: number };
      noise_repeats: boolean;
      noise_is_not_shared: boolean;
      bernoulli_ones: number;
      dropout_zeros: number;
      layer_zeros: number;
      layer_kept: number[];
      rows_as_in_batch: boolean;
      uniforms: number[];
    }>("torch-draws", { n, seed: 4242, mean, std, p, rate });
    // Five standard errors of each estimate: a correct generator fails one in millions of runs; a wrong mean, scale or rate fails always.
    expect(Math.abs(ours.noise.mean - mean), "the noise's mean").toBeLessThan((5 * std) / Math.sqrt(n));
    expect(Math.abs(ours.noise.std / std - 1), "the noise's std").toBeLessThan(5 / Math.sqrt(2 * n));
    const fraction = (value: number, expected: number, what: string) => expect(Math.abs(value - expected), what).toBeLessThan(5 * Math.sqrt((expected * (1 - expected)) / n));
    fraction(ours.bernoulli_ones, p, "bernoulli(p): the share of ones");
    fraction(ours.dropout_zeros, p, "dropout(x, p): the share of zeros");
    fraction(ours.layer_zeros, rate, "an encoder's dropout: the share of zeros");
    // The kept elements scaled by 1/(1 − rate) in float32, exactly.
    expect(ours.layer_kept).toEqual([Math.fround(1 / (1 - rate))]);
    expect(ours).toMatchObject({ noise_repeats: true, noise_is_not_shared: true, rows_as_in_batch: true });
    // uniform(): one draw per call and key, the same for the same call; another call's is another.
    const [first, again, other] = ours.uniforms;
    expect(first).toBe(again);
    expect(other).not.toBe(first);
    for (const u of ours.uniforms) expect(u >= 0 && u < 1, `uniform ${u}`).toBe(true);
  });

  it("continues exactly from its state in a checkpoint", () => {
    expect(check("resumed-optimizer")).toEqual({ equal: true, steps: { w: 6 } });
  });

  it("gives the learning-rate factors of runtime/optimizer.ts's schedules", () => {
    const cases: { schedule: ComponentSpec; epoch: number; epochs: number }[] = [
      { schedule: { kind: "step", options: { gamma: 0.1, every: 3 } }, epoch: 7, epochs: 10 },
      { schedule: { kind: "cosine", options: { min: 0.05 } }, epoch: 3, epochs: 10 },
      { schedule: { kind: "cosine", options: {} }, epoch: 9, epochs: 10 },
      { schedule: { kind: "constant", options: {} }, epoch: 4, epochs: 10 },
    ];
    expect(check("schedules", cases)).toEqual(cases.map((c) => Optimizer.scheduleFactor(c.schedule, c.epoch, c.epochs)));
  });

  it("computes runtime/metrics.ts's metrics, number for number, and the hand-computed ones", () => {
    const random = new Random(5);
    const classes = 5;
    const n = 300;
    const labels = Array.from({ length: n }, () => Math.floor(random.uniform() * classes));
    // Right 60% of the time; class 4 is never predicted.
    const predicted = labels.map((y) => (random.uniform() < 0.6 ? y : Math.floor(random.uniform() * 4)));
    const realLabels = Array.from(Float32Array.from({ length: n }, () => random.normal() * 1.5));
    const real = Array.from(Float32Array.from(realLabels, (y) => y + random.normal() * 0.7));
    // Halves, which JavaScript's Math.round rounds up (−2.5 → −2), and a sign at zero.
    real.push(-2.5, 2.5, -0.5, 0);
    realLabels.push(-2, 3, 0, -0.25);
    const ours = check("metrics", { predicted, labels, classes, real, realLabels });
    expect(ours).toEqual({
      classification: classificationMetrics(predicted, labels, classes),
      regression: regressionMetrics(Float32Array.from(real), Float32Array.from(realLabels)),
      dice: maskDice(predicted, labels, classes),
    });
    // By hand (test/metrics.test.ts): F1 0.8, 0.5 and 0; labels −3…3 matched 3 of 5; Dice (4/5 + 2/3 + 1) / 3.
    const hand = check("metrics", { predicted: [0, 0, 0, 1, 1], labels: [0, 0, 1, 1, 2], classes: 3, real: [-2.6, -0.2, 0.4, 1.4, 3.9], realLabels: [-3, 0.3, 0, 2, 2.4] });
    expect(hand.classification.acc).toBeCloseTo(3 / 5, 12);
    expect(hand.classification.macro_f1).toBeCloseTo((4 / 5 + 1 / 2) / 3, 12);
    expect(hand.regression.acc2).toBeCloseTo(4 / 5, 12);
    expect(hand.regression.acc7).toBeCloseTo(3 / 5, 12);
    expect(check("metrics", { predicted: [0, 0, 0, 1, 2, 2], labels: [0, 0, 1, 1, 2, 2], classes: 3, real: [0], realLabels: [0] }).dice).toBeCloseTo((4 / 5 + 2 / 3 + 1) / 3, 12);
  });
});

// ---------------------------------------------------------------- a run

/** smallSpec with a history value, a per-sample value, an action that reads a param, Adam and clipping: what the loop logs and checkpoints. */
const balance = `  param alpha = 0.5
  gnorm[m] = norm(grad(encoder[m]))
  avg[m] = (prev(avg[m], 0) * step + gnorm[m]) / (step + 1)
  conf = prob(out, y)
  scale grad(encoder[m]) by alpha / (alpha + avg[m])`;
const specText = smallSpec(balance).replace("optimizer sgd(lr: 0.1)", "optimizer adam(lr: 0.01, weight_decay: 0.001)").replace("seed 2", "seed 2 clip 1");

/** 48 training samples (three steps of 16), 8 to validate and 8 to test, for both targets. */
function sinData(): Dataset {
  const rows = (n: number, width: number, salt: number) => Float32Array.from({ length: n * width }, (_, i) => Math.sin(i * 0.7 + salt));
  const split = (n: number, salt: number) => ({
    inputs: [rows(n, 8, salt), rows(n, 6, salt + 1)],
    labels: Float32Array.from({ length: n }, (_, i) => (i * 3 + salt) % 4),
    size: n,
  });
  return { train: split(48, 0), valid: split(8, 5), test: split(8, 9), description: "sin test data" };
}

/** The dataset as `mmb data export` writes it; `shift` changes its samples (another data file). */
function writeData(data: Dataset, spec: ModelSpec, shift = 0, description = data.description): string {
  const path = join(mkdtempSync(join(tmpdir(), "mmb-torch-data-")), "data.npz");
  const arrays: Record<string, { dtype: string; shape: number[]; values: number[] }> = {};
  for (const name of ["train", "valid", "test"] as const) {
    const split = data[name];
    spec.modalities.forEach((m, i) => (arrays[`${name}/${m.name}`] = { dtype: "float32", shape: [split.size, ...m.shape], values: Array.from(split.inputs[i]!, (v) => v + shift) }));
    arrays[`${name}/y`] = { dtype: "float32", shape: [split.size], values: Array.from(split.labels) };
  }
  const meta = {
    format: "mmb-data",
    version: 1,
    modalities: spec.modalities.map(({ name, shape }) => ({ name, shape })),
    target: { name: "y", kind: "class", classes: 4 },
    splits: { train: data.train.size, valid: data.valid.size, test: data.test.size },
    description,
  };
  check("write-npz", { path, arrays, meta });
  return path;
}

/**
 * The trainer the torch code generator would write for specText: its SPEC (the tfjs trainer's
 * spec, as JSON), and a train_step by hand that calls the runtime as generated code does.
 * `variant`: a value that is −∞ from epoch 1 on, or an update that makes the head's weights
 * infinite at step 2 (the first epoch's last); or `noise` added to the encoders' gradients.
 */
function trainerSource(tfjs: { spec: ModelSpec; valueLines: Record<string, number>; perSampleValues?: string[] }, variant?: "value" | "weights" | "noise"): string {
  const json = (value: unknown) => `json.loads(${JSON.stringify(JSON.stringify(value))})`;
  return `
SPEC = ${json(tfjs.spec)}
PARAMS = {"alpha": 0.5}


def task_loss(f, ctx):
    return cross_entropy(f.out, f.target)


def train_step(ctx, p):
    loss, grads, grad, f = ctx.backward(task_loss)
    gnorm = ctx.per_modality(lambda m: grad_norm(grad(ctx.group.encoder(m))))
    avg = ctx.per_modality(lambda m: div(add(mul(ctx.history.read(0, f"{m}", 0), ctx.step), gnorm[m]), ctx.step + 1))
    conf = true_class_prob(f.out, f.target)
    ${variant === "value" ? "bad = torch.log(torch.tensor(1.0 - ctx.epoch))" : ""}
    for m in ctx.modalities:
        grads.scale(ctx.group.encoder(m), div(p["alpha"], add(p["alpha"], avg[m])))
    ${variant === "weights" ? 'grads.scale(ctx.group.head, float("inf") if ctx.step == 2 else 1.0)' : ""}
    ${variant === "noise" ? "for m in ctx.modalities:\n        grads.add_noise(ctx.group.encoder(m), 0, 0.01)" : ""}
    for m in ctx.modalities:
        ctx.history.write(0, f"{m}", avg[m])
    ctx.update(grads)
    return dict(loss=loss, values={"gnorm": gnorm, "avg": avg, "conf": conf${variant === "value" ? ', "bad": bad' : ""}}, raw=grad)


TRAINER = dict(
    spec=SPEC,
    params=PARAMS,
    train_step=train_step,
    value_lines=${json({ ...tfjs.valueLines, ...(variant === "value" ? { bad: 16 } : {}) })},
    per_sample_values=${json(tfjs.perSampleValues ?? [])},
    trained_separately=[],
    source_hash="sha256:test",
    fuse=None,
    predict=None,
)

if __name__ == "__main__":
    main(TRAINER)
`;
}

describe.runIf(python || torchRequired)("the torch training loop", () => {
  const data = sinData();
  let tfjs: TrainerDefinition & StageDefinition;
  let dataFile: string;
  let trainer: string;
  beforeAll(async () => {
    tfjs = (await loadTrainer(await compileOrThrow(specText), mkdtempSync(join(tmpdir(), "mmb-torch-tfjs-code-")))) as typeof tfjs;
    dataFile = writeData(data, tfjs.spec);
    trainer = withRuntime(trainerSource(tfjs), "trainer.py");
  });

  /** `python3 trainer.py --data ... --out out ...args` (quiet unless `loud`). */
  function torchRun(out: string, args: string[] = [], options: { file?: string; loud?: boolean; data?: string } = {}) {
    const argv = [options.file ?? trainer, "--data", options.data ?? dataFile, "--out", out, ...(options.loud ? [] : ["--quiet"]), ...args];
    const result = spawnSync(python!.command, argv, { encoding: "utf8" });
    return { status: result.status, stdout: result.stdout, stderr: result.stderr };
  }

  function trained(out: string, args: string[] = [], options: { file?: string; loud?: boolean } = {}) {
    const result = torchRun(out, args, options);
    expect(result.stderr, `torch run in ${out}`).toBe("");
    expect(result.status).toBe(0);
    return result;
  }

  const folder = (name: string) => mkdtempSync(join(tmpdir(), `mmb-torch-${name}-`));
  const summaryOf = (out: string) => JSON.parse(readFileSync(join(out, "summary.json"), "utf8")) as Summary;

  /** A run's log records but for the times and the memory the process held. */
  const timeless = (records: Record<string, any>[]) => records.map(({ seconds: _s, step_seconds: _t, tensors: _n, tensor_mb: _b, rss_mb: _r, ...rest }) => rest);

  /** Every object's keys in order, and every list's length: what two runs' records share when their numbers differ. */
  const structure = (value: unknown): unknown =>
    Array.isArray(value) ? value.map(structure) : value && typeof value === "object" ? Object.entries(value).map(([k, v]) => [k, structure(v)]) : typeof value === "string" ? value : "·";

  it("writes the log and summary a tfjs run of the spec writes: the same records and keys, and the same numbers to float32 rounding", async () => {
    const tfjsOut = folder("tfjs-run");
    await train(tfjs, { out: tfjsOut, backend: "cpu", data, log: () => {} });
    const torchOut = folder("run");
    const { stdout } = trained(torchOut, [], { loud: true });
    expect(stdout).toMatch(/^mmb: training small on backend torch \S+ cpu, seed 2, 2 epochs$/m);
    expect(stdout).toMatch(/^epoch 2\/2 {2}loss \d\.\d{4} {2}valid acc \d\.\d{4} {2}test acc \d\.\d{4} {2}a \d\.\d{3} {2}b \d\.\d{3} {2}\d+\.\ds$/m);
    expect(stdout).toMatch(/^mmb: test accuracy \d\.\d{4} on torch \S+ cpu; log, summary and checkpoints in /m);

    const [ours, theirs] = [logRecords(torchOut), logRecords(tfjsOut)];
    expect(ours[0]).toEqual({ type: "run", model: "small", modalities: ["a", "b"] });
    expect(ours.map(structure)).toEqual(theirs.map(structure));
    expect(Object.keys(ours[1]!)).toEqual(["type", "epoch", "step", "loss", "total_loss", "gnorm", "avg", "conf", "grad_norm", "update_grad_norm"]);
    // The same samples, shuffles and initial weights: the steps agree until float32 rounding adds up.
    const steps = (records: Record<string, any>[]) => records.filter((r) => r.type === "step");
    steps(ours).forEach((step, i) => {
      const other = steps(theirs)[i]!;
      expect(step.step).toBe(other.step);
      for (const key of ["loss", "total_loss", "conf"]) expect(step[key], `${key} at step ${i}`).toBeCloseTo(other[key], 4);
      for (const key of ["gnorm", "avg", "grad_norm", "update_grad_norm"]) step[key].forEach((v: number, m: number) => expect(v, `${key}[${m}] at step ${i}`).toBeCloseTo(other[key][m], 4));
    });

    const [summary, tfjsSummary] = [summaryOf(torchOut), summaryOf(tfjsOut)];
    expect(structure(summary)).toEqual(structure({ ...tfjsSummary, backend: "torch", kernels: summary.kernels }));
    expect(summary.backend).toBe("torch");
    expect(summary.kernels).toMatch(/^torch \S+ cpu$/);
    for (const key of ["model", "source", "seed", "epochs", "params", "metric", "modalities", "logged", "unimodalMethod"] as const) expect(summary[key], key).toEqual(tfjsSummary[key]);
    expect(summary.logged).toEqual({ conf: "mean over the batch" });
  });

  it("stopped after one epoch and resumed to two, ends bit for bit where a straight run does", () => {
    const straight = folder("straight");
    const resumed = folder("resumed");
    trained(straight);
    trained(resumed, ["--epochs", "1"]);
    const { stdout } = trained(resumed, ["--epochs", "2", "--resume"], { loud: true });
    expect(stdout).toMatch(/^mmb: resumed from epoch 1$/m);
    expect(check("run-state", { a: straight, b: resumed })).toEqual({ epochs: [1, 1], weights: true, slots: true, steps: true, history: true, best: true });
    // The same log, but for the times and the memory the process held.
    expect(timeless(logRecords(resumed))).toEqual(timeless(logRecords(straight)));
    expect(summaryOf(resumed).metrics).toEqual(summaryOf(straight).metrics);
  });

  it("draws a step's noise from torch's generator with --rng torch: the same in every run and after a resume, named in the summary; a resume with the shared draws is refused", () => {
    const file = withRuntime(trainerSource(tfjs, "noise"), "trainer.py");
    const [first, again, shared, resumed] = ["rng-first", "rng-again", "rng-shared", "rng-resumed"].map(folder);
    const { stdout } = trained(first!, ["--rng", "torch"], { file, loud: true });
    expect(stdout).toMatch(/^mmb: training small on backend torch \S+ cpu, seed 2, 2 epochs, draws from torch$/m);
    trained(again!, ["--rng", "torch"], { file });
    trained(shared!, [], { file });
    expect(timeless(logRecords(again!))).toEqual(timeless(logRecords(first!)));
    // Other noise: other weights after the first step.
    expect(check("run-state", { a: first, b: shared }).weights).toBe(false);
    expect(summaryOf(first!).rng).toBe("torch on cpu");
    expect(summaryOf(shared!)).not.toHaveProperty("rng");

    trained(resumed!, ["--rng", "torch", "--epochs", "1"], { file });
    const refused = torchRun(resumed!, ["--resume"], { file });
    expect([refused.status, refused.stderr.trim()]).toEqual([1, `mmb: cannot resume ${resumed}: the step's draws changed: torch on cpu → shared (--rng); start a new run with another --out, or --overwrite`]);
    trained(resumed!, ["--rng", "torch", "--resume"], { file });
    expect(check("run-state", { a: first, b: resumed })).toEqual({ epochs: [1, 1], weights: true, slots: true, steps: true, history: true, best: true });
    expect(timeless(logRecords(resumed!))).toEqual(timeless(logRecords(first!)));
  });

  it("starts from given weights in tfjs names and layouts (--init): the tfjs trainer's initial weights give the same run", () => {
    /** The tfjs trainer's initial weights for `seed`, as a .npz of tfjs names and layouts. */
    const initFile = (seed: number) => {
      const path = join(folder("init"), "init.npz");
      const arrays = Object.fromEntries([...initialValues(tfjs.spec, seed)].map(([name, { values, shape }]) => [name, { dtype: "float32", shape, values: Array.from(values) }]));
      check("write-npz", { path, arrays });
      return path;
    };
    const plain = folder("plain");
    const given = folder("given");
    const other = folder("other");
    trained(plain, ["--epochs", "1"]);
    trained(given, ["--epochs", "1", "--init", initFile(2)]);
    trained(other, ["--epochs", "1", "--init", initFile(3)]);
    expect(check("run-state", { a: plain, b: given }).weights).toBe(true);
    expect(check("run-state", { a: plain, b: other }).weights).toBe(false);
  });

  it("lowers the learning rate on a plateau and stops early as runtime/train.ts does; a resume after the stop trains no more", async () => {
    const plateau = specText.replace(/^train epochs 2 (.*)$/m, "schedule plateau(patience: 1, gamma: 0.5)\ntrain epochs 8 $1 patience 2");
    const file = withRuntime(trainerSource((await loadTrainer(await compileOrThrow(plateau), folder("plateau-code"))) as typeof tfjs), "trainer.py");
    const out = folder("plateau");
    const { stdout } = trained(out, [], { file, loud: true });
    // What the tfjs loop does with these validation accuracies: the factor halves after each epoch
    // that does not improve on the best, and two such epochs in a row end the run.
    const epochs = logRecords(out).filter((r) => r.type === "epoch");
    let best = -Infinity;
    let stale = 0;
    let factor = 1;
    const expected: number[] = [];
    for (const e of epochs) {
      expected.push(0.01 * factor);
      if (e.valid.acc > best) [best, stale] = [e.valid.acc, 0];
      else [stale, factor] = [stale + 1, factor * 0.5];
    }
    expect(epochs.map((e) => e.lr)).toEqual(expected);
    expect(stale).toBe(2);
    expect(epochs.length).toBeLessThan(8);
    expect(stdout).toMatch(new RegExp(`^mmb: early stop after epoch ${epochs.length} \\(no improvement for 2 epochs\\)$`, "m"));
    expect(stdout).toMatch(/^mmb: no improvement for 1 epochs; learning rate × 0\.5$/m);
    const summary = summaryOf(out);
    expect(summary.bestEpoch).toBe(epochs.length - 3);
    expect(summary.best.valid).toBe(best);
    trained(out, ["--resume"], { file });
    expect(logRecords(out).filter((r) => r.type === "epoch").length).toBe(epochs.length);
    const untimed = (s: Summary) => ({ ...s, wallSeconds: 0, secondsPerEpoch: 0 });
    expect(untimed(summaryOf(out))).toEqual(untimed(summary));
  });

  it("never mixes two runs in one folder: another run, params, seed or data is refused; --overwrite replaces the run", () => {
    const out = folder("refuse");
    trained(out, ["--epochs", "1"]);
    const again = torchRun(out);
    expect(again.status).toBe(1);
    expect(again.stderr.trim()).toBe(`mmb: ${out} holds another run (log.jsonl, summary.json, checkpoints, best); choose another --out, add --resume to continue that run, or --overwrite to replace it`);
    const refusal = (args: string[], options: { data?: string } = {}) => {
      const result = torchRun(out, ["--resume", ...args], options);
      expect(result.status).toBe(1);
      return result.stderr.trim();
    };
    const cannot = `mmb: cannot resume ${out}:`;
    const advice = "; start a new run with another --out, or --overwrite";
    expect(refusal(["--set", "alpha=0.7"])).toBe(`${cannot} params changed: alpha 0.5 → 0.7${advice}`);
    expect(refusal(["--seed", "3"])).toBe(`${cannot} the seed changed: 2 → 3${advice}`);
    expect(refusal([], { data: writeData(data, tfjs.spec, 0.5) })).toMatch(new RegExp(`^${cannot} the data changed: samples sha256:[0-9a-f]{64} → samples sha256:[0-9a-f]{64}${advice}$`));
    // Refused runs leave the run as it was, and no lock behind.
    expect(readdirSync(out).sort()).toEqual(["best", "checkpoints", "log.jsonl", "summary.json"]);
    // The same samples in a file whose meta says other things (another spec exported them) are the same data.
    const relabelled = torchRun(out, ["--resume", "--epochs", "1"], { data: writeData(data, tfjs.spec, 0, "exported by another spec") });
    expect(relabelled.stderr).toBe("");
    expect(relabelled.status).toBe(0);
    trained(out, ["--epochs", "1", "--overwrite"]);
    expect(logRecords(out).filter((r) => r.type === "epoch").map((r) => r.epoch)).toEqual([0]);
  });

  it("refuses a folder another live process trains in, and takes over the lock of one that ended", () => {
    const out = folder("lock");
    writeFileSync(join(out, ".mmb-lock"), String(process.pid));
    const busy = torchRun(out);
    expect(busy.status).toBe(1);
    expect(busy.stderr.trim()).toBe(`mmb: ${out} is in use by another mmb train (process ${process.pid}); wait for it to finish, or choose another --out`);
    const ended = spawnSync(process.execPath, ["-e", ""]).pid!;
    writeFileSync(join(out, ".mmb-lock"), String(ended));
    trained(out, ["--epochs", "1"]);
    expect(readdirSync(out)).not.toContain(".mmb-lock");
  });

  it("stops on a non-finite value, naming it and its line, with the steps before it logged and the last good checkpoint current", () => {
    const out = folder("nan");
    const result = torchRun(out, [], { file: withRuntime(trainerSource(tfjs, "value"), "trainer.py") });
    expect(result.status).toBe(1);
    expect(result.stderr.trim()).toBe(`mmb: non-finite value of \`bad\` (spec line 16) at step 3, epoch 1; the last good checkpoint (epoch 1) stays current in ${join(out, "checkpoints")}`);
    expect(readFileSync(join(out, "checkpoints", "latest"), "utf8")).toBe("checkpoint-0");
    const records = logRecords(out);
    expect(records.map((r) => [r.type, r.step ?? r.epoch])).toEqual([["run", undefined], ["step", 0], ["step", 1], ["step", 2], ["epoch", 0], ["step", 3]]);
    // JSON has no −∞: the log writes null, as the tfjs trainer's does.
    expect(records.at(-1)!.bad).toBeNull();
    // The run continues from that checkpoint (and stops at the same value again).
    expect(torchRun(out, ["--resume"], { file: withRuntime(trainerSource(tfjs, "value"), "trainer.py") }).stderr).toMatch(/non-finite value of `bad`/);
  });

  it("stops when an update makes the weights non-finite, before a checkpoint keeps them", () => {
    const out = folder("inf");
    const result = torchRun(out, [], { file: withRuntime(trainerSource(tfjs, "weights"), "trainer.py") });
    expect(result.status).toBe(1);
    expect(result.stderr.trim()).toMatch(/^mmb: parameter head\.(weight|bias) became non-finite in epoch 0; no checkpoint was written \(the stop came before the first epoch ended\)$/);
    expect(readdirSync(out).sort()).toEqual(["log.jsonl"]);
  });

  it("explains a wrong command line: an unknown param, a malformed --set, --init with --resume, --init of a .pt, a missing GPU", () => {
    const unknown = torchRun(folder("set"), ["--set", "beta=1"]);
    expect([unknown.status, unknown.stderr.trim()]).toEqual([1, "mmb: --set beta: the spec has no `param beta` (params: alpha)"]);
    const malformed = torchRun(folder("set"), ["--set", "alpha"]);
    expect(malformed.status).toBe(2);
    expect(malformed.stderr).toMatch(/--set: takes name=number, got "alpha"/);
    const both = torchRun(folder("init"), ["--init", "x.npz", "--resume"]);
    expect(both.status).toBe(2);
    expect(both.stderr).toMatch(/--init sets a fresh run's weights/);
    // A state_dict is a zip too: np.load would read it and name its pickle's entries as unknown weights.
    const pt = torchRun(folder("init-pt"), ["--init", "weights.pt"]);
    expect(pt.status).toBe(2);
    expect(pt.stderr).toContain('--init takes a .npz of weights by tfjs names and layouts (`mmb export RUN -o FILE.npz` writes one), got "weights.pt"');
    const gpu = spawnSync(python!.command, ["-c", "import torch; print(torch.cuda.is_available())"], { encoding: "utf8" }).stdout.trim();
    if (gpu === "False") {
      const cuda = torchRun(folder("cuda"), ["--device", "cuda"]);
      expect([cuda.status, cuda.stderr.trim()]).toEqual([1, expect.stringMatching(/^mmb: --device cuda: torch \S+ \(.*\) finds no CUDA GPU here; train with --device cpu$/)]);
    }
  });
});
