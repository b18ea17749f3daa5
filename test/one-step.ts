import * as tf from "@tensorflow/tfjs";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect } from "vitest";
import { loadTrainer } from "../cli/load-trainer.js";
import { loadCheckpoint } from "../runtime/checkpoint.js";
import type { Dataset } from "../runtime/index.js";
import { initialParameters } from "../runtime/model.js";
import { Random } from "../runtime/random.js";
import { train } from "../runtime/train.js";
import { compileOrThrow, fixedData as fixedSamples, logRecords, specsDir } from "./helpers.js";

/**
 * One step of a generated trainer against equations written here directly in tfjs, without the
 * compiler or the runtime's step machinery: a small model of mlp(hidden: [10], out: 5, tanh)
 * encoders, one step of SGD on 16 fixed samples, and the helpers the tests compute it with.
 */
export const widths = { a: 8, b: 6, c: 7 };
export type Name = keyof typeof widths;
export const lr = 0.1;
export const batch = 16;

export function spec(modalities: Name[], body: string): string {
  return `model step
${modalities.map((m) => `modality ${m} : float[${widths[m]}]`).join("\n")}
target y : class(4)
encoder[m] = mlp(hidden: [10], out: 5, activation: tanh)
${body}
optimizer sgd(lr: ${lr})
train epochs 1 batch ${batch} seed 2
`;
}

/** `batch` (16) training samples of the given modalities, so that one epoch is exactly one step. */
export const fixedData = (modalities: Name[]): Dataset => fixedSamples(modalities.map((m) => widths[m]));

export type Params = Record<string, tf.Tensor>;

/**
 * Trains `source` on the fixed samples (one step per epoch; `epochs` of them) and returns the
 * initial parameters, those after the last step, every step's log record (`record`: the first).
 */
export async function oneStep(modalities: Name[], source: string, epochs = 1) {
  const out = mkdtempSync(join(tmpdir(), "mmb-method-"));
  const trainer = await loadTrainer(await compileOrThrow(source.replace("train epochs 1 ", `train epochs ${epochs} `)), out);
  await train(trainer, { out, backend: "cpu", data: fixedData(modalities), log: () => {} });
  const checkpoint = (await loadCheckpoint(join(out, "checkpoints")))!;
  const after = new Map(checkpoint.state.manifest.map((m, i) => [m.name, checkpoint.weights[i]!]));
  const lines = logRecords(out);
  const records = lines.filter((r) => r.type === "step") as Record<string, number | number[]>[];
  // The epoch rule's values (`every epoch`), one record per epoch.
  const epochRules = lines.filter((r) => r.type === "epoch").map((r) => r.rule ?? {}) as Record<string, number | number[]>[];
  const variables = initialParameters(trainer.spec, 2);
  const init: Params = Object.fromEntries([...variables].map(([n, v]) => [n, tf.clone(v)]));
  variables.forEach((v) => v.dispose());
  const data = fixedData(modalities).train;
  const x = modalities.map((m, k) => tf.tensor2d(data.inputs[k]!, [batch, widths[m]]));
  const y = tf.tensor1d(data.labels);
  return { init, after, record: records[0]!, records, epochRules, x, y };
}

/** The batch's order in epoch `epoch` of seed 2 (train.ts shuffles each epoch): position i holds sample order[i]. */
export const batchOrder = (epoch = 0): number[] => new Random(2 * 7919 + epoch).permutation(batch);

// ---------------------------------------------------------------- the model, from scratch

export const dense = (p: Params, prefix: string, x: tf.Tensor) => tf.add(tf.matMul(x as tf.Tensor2D, p[`${prefix}.kernel`] as tf.Tensor2D), p[`${prefix}.bias`]!);
export const encode = (p: Params, m: Name, x: tf.Tensor) => dense(p, `encoder.${m}.last`, tf.tanh(dense(p, `encoder.${m}.dense0`, x)));

// ---------------------------------------------------------------- two modalities through the concat head

/** The two modalities of most method tests. */
export const pair: Name[] = ["a", "b"];
/** Each modality's features z_k through its encoder. */
export const features = (p: Params, x: tf.Tensor[]) => pair.map((m, k) => encode(p, m, x[k]!));
/** Modality k's rows of the concat head's kernel W_k (each encoder gives 5 features). */
export const headRows = (p: Params, k: number) => tf.slice(p["head.kernel"]!, [k * 5, 0], [5, -1]);
/** f = [z_a; z_b]·W + b. */
export const fused = (p: Params, z: tf.Tensor[]) => dense(p, "head", tf.concat(z, 1));
/** u_k = z_k·W_k + b/2: modality k's additive share of f (`contrib[m]`). */
export const share = (p: Params, z: tf.Tensor[], k: number) => tf.add(tf.matMul(z[k] as tf.Tensor2D, headRows(p, k) as tf.Tensor2D), tf.div(p["head.bias"]!, 2));
/** softmax(o)[y], per sample. */
export const trueProb = (o: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.softmax(o), tf.oneHot(tf.cast(y, "int32") as tf.Tensor1D, 4)), -1);
/** The number in a one-element tensor. */
export const scalar = (t: tf.Tensor) => t.dataSync()[0]!;

/**
 * The runtime's drop draws of step 0 for modality m (StepContext.drop), by sample: dropped where
 * u < p. One draw per position of the batch, whose samples the epoch's shuffle ordered (train.ts).
 */
export function dropDraws(m: number): number[] {
  const random = new Random((2 * 1000003 + 0 * 7919 + m) % 2147483647);
  const bySample = new Array<number>(batch);
  batchOrder().forEach((sample) => (bySample[sample] = random.uniform()));
  return bySample;
}

export function crossEntropy(logits: tf.Tensor, y: tf.Tensor): tf.Tensor {
  const logProb = tf.sub(logits, tf.logSumExp(logits, -1, true));
  return tf.neg(tf.mean(tf.sum(tf.mul(tf.oneHot(tf.cast(y, "int32") as tf.Tensor1D, 4), logProb), -1)));
}

export const accuracy = (logits: tf.Tensor, y: tf.Tensor) => tf.mean(tf.cast(tf.equal(tf.argMax(logits, -1), tf.cast(y, "int32")), "float32")).dataSync()[0]!;
export const norm = (g: tf.Tensor[]) => tf.sqrt(tf.addN(g.map((t) => tf.sum(tf.square(t)))));
export const dot = (a: tf.Tensor[], b: tf.Tensor[]) => tf.addN(a.map((t, i) => tf.sum(tf.mul(t, b[i]!))));
export const names = (p: Params, prefix: string) => Object.keys(p).filter((n) => n === prefix || n.startsWith(`${prefix}.`));

/** ∂f/∂(params under `prefix`) at p, differentiable again. */
export function gradient(f: (p: Params) => tf.Tensor, p: Params, prefix: string): tf.Tensor[] {
  const members = names(p, prefix);
  return tf.grads((...ts: tf.Tensor[]) => f({ ...p, ...Object.fromEntries(members.map((n, i) => [n, ts[i]!])) }))(members.map((n) => p[n]!));
}

/** ∂f/∂θ for every named parameter (zero where f does not depend on it). */
export function fullGradient(f: (p: Params) => tf.Tensor, p: Params, which: string[]): Map<string, tf.Tensor> {
  const { grads } = tf.engine().gradients(() => f(p) as tf.Scalar, which.map((n) => p[n]!), undefined, true);
  return new Map(which.map((n, i) => [n, grads[i] ?? tf.zerosLike(p[n]!)]));
}

export function expectValues(actual: number | number[] | undefined, expected: number[]): void {
  const list = Array.isArray(actual) ? actual : [actual!];
  expect(list).toHaveLength(expected.length);
  list.forEach((v, i) => expect(Math.abs(v - expected[i]!)).toBeLessThan(1e-5 * Math.max(1, Math.abs(expected[i]!))));
}

export function expectUpdate(init: Params, after: Map<string, Float32Array>, name: string, update: tf.Tensor): void {
  const before = init[name]!.dataSync();
  const step = update.dataSync();
  const now = after.get(name)!;
  before.forEach((v, i) => expect(Math.abs(now[i]! - (v - step[i]!))).toBeLessThan(1e-5));
}

/** θ − lr·∂loss/∂θ for the named parameters (all by default; the others stay), each gradient × `factor(name)`: SGD without momentum, as the test model trains. */
export function sgdStep(p: Params, loss: (q: Params) => tf.Tensor, which = Object.keys(p), factor: (name: string) => number = () => 1): Params {
  const g = fullGradient(loss, p, which);
  return Object.fromEntries(Object.entries(p).map(([n, t]) => [n, g.has(n) ? tf.sub(t, tf.mul(g.get(n)!, lr * factor(n))) : t]));
}

/** A run's final parameters against the ones computed here. */
export function expectParameters(after: Map<string, Float32Array>, p: Params, tolerance = 1e-4): void {
  for (const [name, t] of Object.entries(p)) {
    const expected = t.dataSync();
    after.get(name)!.forEach((v, i) => expect(Math.abs(v - expected[i]!), name).toBeLessThan(tolerance));
  }
}

/** <∇f, v> against (f(θ + εv) − f(θ − εv)) / 2ε along a fixed pseudo-random unit direction. */
export function expectMatchesFiniteDifferences(f: (p: Params) => tf.Tensor, p: Params, which: string[], autodiff: Map<string, tf.Tensor>): void {
  const direction = new Map(which.map((n, k) => [n, tf.tensor(Array.from({ length: p[n]!.size }, (_, i) => Math.sin(i * 2.1 + k * 0.9)), p[n]!.shape)]));
  const length = norm([...direction.values()]).dataSync()[0]!;
  const eps = 1e-2;
  const shifted = (s: number) => f({ ...p, ...Object.fromEntries(which.map((n) => [n, tf.add(p[n]!, tf.mul(direction.get(n)!, s / length))])) }).dataSync()[0]!;
  const numeric = (shifted(eps) - shifted(-eps)) / (2 * eps);
  const analytic = which.reduce((s, n) => s + tf.sum(tf.mul(autodiff.get(n)!, direction.get(n)!)).dataSync()[0]! / length, 0);
  expect(Math.abs(analytic)).toBeGreaterThan(1e-4); // the check is not vacuous
  expect(Math.abs(analytic - numeric)).toBeLessThan(2e-2 * Math.abs(numeric) + 1e-4);
}

/**
 * The shipped spec's fusion line, loss line (`loss` or `loss[m]`), learnables, `predict`, balance
 * block and `every epoch` block, for modalities a, b and 4 classes. Its `turns` settings are not
 * declarations of their own: `turnsOf` reads them.
 */
export function shipped(name: string): string {
  const lines = readFileSync(join(specsDir, `${name}.mmb`), "utf8").split("\n");
  const line = (keyword: string) => {
    const found = lines.filter((l) => l.startsWith(`${keyword} `) || l.startsWith(`${keyword}[`));
    expect(found).toHaveLength(1);
    return found[0]!;
  };
  const optional = lines.filter((l) => /^(learnable|predict) /.test(l));
  const fusion = line("fusion").replace(/-> (linear|cosine)\(6\b/, `-> $1(4`);
  expect(fusion).toMatch(new RegExp(`-> (linear|cosine)\\(4\\b`)); // the 6-class head was found and narrowed
  const blocks = lines.flatMap((l, start) => {
    if (!l.startsWith("balance {") && !l.startsWith("every epoch {")) return [];
    const end = lines.findIndex((closing, i) => i > start && closing === "}");
    expect(end).toBeGreaterThan(start);
    return [lines.slice(start, end + 1).join("\n")];
  });
  expect(blocks.length).toBeGreaterThan(0);
  return [fusion, line("loss"), ...optional, ...blocks].join("\n").replace(/\baudio\b/g, "a").replace(/\bvisual\b/g, "b");
}

/** The shipped spec's `turns` settings of its `train` line (`turns step`, `turns epoch turn_epochs 2`), to append to the test's. */
export function turnsOf(name: string): string {
  const train = readFileSync(join(specsDir, `${name}.mmb`), "utf8").split("\n").find((l) => l.startsWith("train "));
  const turns = /\bturns \w+( turn_epochs \d+)?/.exec(train ?? "");
  expect(turns).not.toBeNull();
  return turns![0];
}

/**
 * A shipped spec with stages, for modalities a, b and 4 classes: its fusion line, auxiliary heads,
 * loss and every `stage` block, each stage's `train epochs` set to `epochs[stage]`.
 */
export function shippedStages(name: string, epochs: Record<string, number>): string {
  const text = readFileSync(join(specsDir, `${name}.mmb`), "utf8");
  const lines = text.split("\n");
  const first = lines.findIndex((l) => l.startsWith("stage "));
  expect(first).toBeGreaterThan(0);
  const keep = lines.filter((l, i) => i >= first || /^(fusion|loss|head\[m\]) /.test(l));
  let body = keep.join("\n").replace(/(linear|cosine)\(6\b/g, "$1(4").replace(/\baudio\b/g, "a").replace(/\bvisual\b/g, "b");
  for (const [stage, n] of Object.entries(epochs)) {
    const start = body.indexOf(`stage ${stage} {`);
    expect(start).toBeGreaterThanOrEqual(0);
    const open = start + `stage ${stage} {`.length;
    const own = /^\s*train epochs \d+/m.exec(body.slice(open, body.indexOf("\n}", open)));
    body = own ? body.slice(0, open) + body.slice(open).replace(/train epochs \d+/, `train epochs ${n}`) : `${body.slice(0, open)}\n  train epochs ${n}${body.slice(open)}`;
  }
  return body;
}

/** A `param NAME = value` of the spliced text. */
export function param(body: string, name: string): number {
  const match = new RegExp(`param ${name}\\s*=\\s*([-0-9.e]+)`).exec(body);
  expect(match).not.toBeNull();
  return Number(match![1]);
}
