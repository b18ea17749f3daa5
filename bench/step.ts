/**
 * Training-step benchmark, one run, ratios measured side by side:
 * 1. the generated baseline trainer (the whole loop: batches, step, logging, checkpoints) against
 *    a hand-written tfjs loop for the same model, optimiser and data (target ≤ 1.05×);
 * 2. each spec's step time over the baseline's (what a rule costs).
 * It also reports the tensors alive at the end of each epoch (a count that grows is a leak).
 *   node dist/bench/step.js [--backend wasm|cpu|webgpu] [--epochs 6] [--json results.json] [--loop-only] [--loop hand|generated]
 */
import * as tf from "@tensorflow/tfjs";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadTrainer } from "../cli/load-trainer.js";
import { compile } from "../compiler/index.js";
import { describeBackend, selectBackend, type BackendName } from "../runtime/backend.js";
import { gatherRows, loadData, train, type Dataset, type ModelSpec } from "../runtime/index.js";
import { initialParameters } from "../runtime/model.js";
import { Random } from "../runtime/random.js";
import { median } from "./median.js";
import { repositoryRoot } from "./paths.js";

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1]! : fallback;
};
const backend = arg("--backend", "wasm");
const epochs = Number(arg("--epochs", "6"));


/** A spec's trainer; `plain` drops its balance block (nothing but the loop itself). */
async function trainerOf(file: string, plain = false) {
  const text = readFileSync(join(repositoryRoot, "specs", file), "utf8");
  const result = await compile(plain ? text.replace(/balance \{[\s\S]*\}\s*$/, "") : text, { fileName: `specs/${file}` });
  if (!result.code) throw new Error(`${file} does not compile`);
  return loadTrainer(result.code, mkdtempSync(join(tmpdir(), "mmb-step-bench-")));
}

const tensorsPerEpoch: Record<string, number[]> = {};

/** Milliseconds per step of the generated loop: its median epoch training time (after the first, without evaluation) over its steps. */
async function generatedStep(file: string, data: Dataset, plain = false): Promise<number> {
  const trainer = await trainerOf(file, plain);
  const out = mkdtempSync(join(tmpdir(), "mmb-step-run-"));
  await train(trainer, { out, backend, epochs, data, log: () => {} });
  const records = readFileSync(join(out, "log.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((r) => r.type === "epoch");
  if (!plain) tensorsPerEpoch[file] = records.map((r) => r.tensors as number);
  return (median(records.slice(1).map((r) => r.step_seconds as number)) * 1000) / Math.ceil(data.train.size / trainer.spec.train.batch);
}

/** The same model and SGD with momentum and weight decay, written directly in tfjs. */
async function handWrittenStep(spec: ModelSpec, data: Dataset): Promise<number> {
  const variables = initialParameters(spec, 1);
  const p = Object.fromEntries(variables) as Record<string, tf.Variable>;
  const names = Object.keys(p);
  const velocity = new Map(names.map((n) => [n, tf.tidy(() => tf.variable(tf.zerosLike(p[n]!)))]));
  const { lr, momentum, weight_decay: decay } = spec.optimizer.options as Record<string, number>;
  const batch = spec.train.batch;
  const forward = (audio: tf.Tensor, visual: tf.Tensor) => {
    const dense = (x: tf.Tensor, prefix: string) => tf.add(tf.matMul(x as tf.Tensor2D, p[`${prefix}.kernel`] as tf.Tensor2D), p[`${prefix}.bias`]!);
    const za = dense(tf.relu(dense(audio, "encoder.audio.dense0")), "encoder.audio.last");
    let h = tf.transpose(visual, [0, 2, 3, 1]) as tf.Tensor4D;
    for (const i of [0, 1]) h = tf.relu(tf.add(tf.conv2d(h, p[`encoder.visual.conv${i}.kernel`] as tf.Tensor4D, 2, "same"), p[`encoder.visual.conv${i}.bias`]!)) as tf.Tensor4D;
    const zv = dense(tf.mean(h, [1, 2]), "encoder.visual.last");
    return dense(tf.concat([za, zv], 1), "head");
  };
  const times: number[] = [];
  for (let epoch = 0; epoch < epochs; epoch++) {
    const started = performance.now();
    const order = new Random(epoch).permutation(data.train.size);
    for (let start = 0; start < order.length; start += batch) {
      const rows = order.slice(start, start + batch);
      tf.tidy(() => {
        const take = (m: number, shape: number[]) => tf.tensor(gatherRows(data.train.inputs[m]!, shape.reduce((a, b) => a * b, 1), rows), [rows.length, ...shape]);
        const y = tf.oneHot(tf.tensor1d(rows.map((r) => data.train.labels[r]!), "int32"), spec.target.classes);
        const { grads } = tf.variableGrads(() => tf.losses.softmaxCrossEntropy(y, forward(take(0, spec.modalities[0]!.shape), take(1, spec.modalities[1]!.shape))) as tf.Scalar);
        for (const n of names) {
          const g = tf.add(grads[n]!, tf.mul(p[n]!, decay));
          const v = velocity.get(n)!;
          v.assign(tf.add(tf.mul(v, momentum), g));
          p[n]!.assign(tf.sub(p[n]!, tf.mul(v, lr)));
        }
      });
    }
    // Read the weights back once per epoch, as the generated loop reads its logs.
    await p["head.bias"]!.data();
    times.push(performance.now() - started);
  }
  variables.forEach((v) => v.dispose());
  velocity.forEach((v) => v.dispose());
  return median(times.slice(1)) / Math.ceil(data.train.size / batch);
}

const started: BackendName = await selectBackend(backend);
const baseline = await trainerOf("baseline.mmb");
const data = loadData(baseline.spec);

// One loop alone in this process: the comparison below runs each loop in its own process, since
// a loop that runs after the other in the same process inherits its compiled code and heap.
const alone = arg("--loop", "");
if (alone) {
  console.log(JSON.stringify({ ms: alone === "hand" ? await handWrittenStep(baseline.spec, data) : await generatedStep("baseline.mmb", data, true) }));
  process.exit(0);
}
const loopEpochs = "20";
const timeAlone = (which: string) => {
  const child = spawnSync(process.execPath, [fileURLToPath(import.meta.url), "--backend", backend, "--epochs", loopEpochs, "--loop", which], { encoding: "utf8", env: process.env });
  if (child.status !== 0) throw new Error(`the ${which} loop failed: ${child.stderr}`);
  return (JSON.parse(child.stdout.trim().split("\n").pop()!) as { ms: number }).ms;
};
// Alternate the two loops, five processes each, and take each one's median.
const plain: number[] = [];
const hands: number[] = [];
for (let round = 0; round < 5; round++) {
  hands.push(timeAlone("hand"));
  plain.push(timeAlone("generated"));
}
const [loop, hand] = [median(plain), median(hands)];
// The specs are compared in this process, the baseline first: one discarded run warms it up.
await generatedStep("baseline.mmb", data);
const generated = await generatedStep("baseline.mmb", data);
console.log(`training step on ${describeBackend(started)}, batch ${baseline.spec.train.batch}, median over the epochs after the first (the two loops: ${loopEpochs} epochs, each in its own process, median of 5 processes; the specs: ${epochs} epochs):`);
console.log(`  generated trainer, baseline model without a rule ${loop.toFixed(2)} ms, hand-written tfjs loop ${hand.toFixed(2)} ms: ratio ${(loop / hand).toFixed(2)} (target ≤ 1.05)`);
console.log(`  baseline.mmb with its logged rule values (scores, gradient norms) ${generated.toFixed(2)} ms`);
if (process.argv.includes("--loop-only")) process.exit(0);
console.log("  each spec over the baseline (same data); tensors alive at the end of each epoch:");
const specs: Record<string, number> = {};
const leaks = (counts: number[]) => (counts.slice(1).some((n) => n > counts[0]!) ? "  GROWING" : "");
console.log(`    ${"baseline.mmb".padEnd(24)} ${generated.toFixed(2).padStart(8)} ms  1.00×  [${tensorsPerEpoch["baseline.mmb"]!.join(", ")}]${leaks(tensorsPerEpoch["baseline.mmb"]!)}`);
for (const file of readdirSync(join(repositoryRoot, "specs")).filter((f) => f.endsWith(".mmb") && f !== "baseline.mmb").sort()) {
  const trainer = await trainerOf(file);
  if (trainer.spec.modalities.length !== 2 || trainer.spec.target.kind !== "class") continue;
  const ms = (specs[file] = await generatedStep(file, data));
  console.log(`    ${file.padEnd(24)} ${ms.toFixed(2).padStart(8)} ms  ${(ms / generated).toFixed(2)}×  [${tensorsPerEpoch[file]!.join(", ")}]${leaks(tensorsPerEpoch[file]!)}`);
}
const json = arg("--json", "");
if (json) writeFileSync(json, JSON.stringify({ backend, hand, loop, baseline: generated, specs, tensorsPerEpoch }, null, 2));
// A webgpu device keeps the process alive.
process.exit(0);
