import * as tf from "@tensorflow/tfjs";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadTrainer } from "../cli/load-trainer.js";
import { selectBackend } from "../runtime/backend.js";
import { batchNorm, type BatchStatistics } from "../runtime/batch-norm.js";
import { loadCheckpoint, saveCheckpoint } from "../runtime/checkpoint.js";
import { Forward, initialValues, type Params } from "../runtime/model.js";
import { ResumeError, train } from "../runtime/train.js";
import { compileOrThrow, fixedData, straightAndResumed } from "./helpers.js";

/**
 * Batch normalisation in the tfjs trainer (runtime/batch-norm.ts), against the equations written
 * here: a training pass normalises with its batch's mean and biased variance; an evaluation pass
 * with the running statistics; the running statistics move once per update that moves the norm,
 * by 0.1 toward the update pass's batch (the variance unbiased), as PyTorch's BatchNorm. The
 * torch trainer's norm is compared with this one in torch-model.test.ts (training and
 * evaluation, gradients and second order) and torch-differential.test.ts (whole runs).
 */

/** Two MLP encoders with a batch-normalised hidden layer; fixedData: 16 training samples, one step per epoch. */
function spec(extra = "", train = "train epochs 1 batch 16 seed 2", loss = "loss cross_entropy(out, y)"): string {
  return `model bn
modality a : float[8]
modality b : float[6]
target y : class(4)
encoder[m] = mlp(hidden: [10], out: 5, norm: "batch")
fusion concat -> linear(4)
${loss}
optimizer sgd(lr: 0.1, momentum: 0.9)
${train}
${extra}
`;
}

const data = fixedData([8, 6]);

/** Rows of a modality's training inputs times its initial hidden kernel: the hidden layer's values before the norm, [16][10]. */
function hidden(modality: number, kernel: { values: Float32Array; shape: number[] }): number[][] {
  const [inputs, outputs] = kernel.shape as [number, number];
  const x = data.train.inputs[modality]!;
  return Array.from({ length: data.train.size }, (_, i) =>
    Array.from({ length: outputs }, (_, c) => {
      let sum = 0;
      for (let k = 0; k < inputs; k++) sum += x[i * inputs + k]! * kernel.values[k * outputs + c]!;
      return sum;
    }),
  );
}

/** The running statistics after one update from the initial ones (mean 0, variance 1), by the equations. */
function afterOneUpdate(rows: number[][]): { mean: number[]; variance: number[] } {
  const n = rows.length;
  const mean = rows[0]!.map((_, c) => rows.reduce((s, r) => s + r[c]!, 0) / n);
  const unbiased = mean.map((m, c) => rows.reduce((s, r) => s + (r[c]! - m) ** 2, 0) / (n - 1));
  return { mean: mean.map((m) => 0.1 * m), variance: unbiased.map((v) => 0.9 + 0.1 * v) };
}

async function run(source: string, epochs?: number) {
  const out = mkdtempSync(join(tmpdir(), "mmb-bn-"));
  const trainer = await loadTrainer(await compileOrThrow(source), out);
  const summary = await train(trainer, { out, data, backend: "cpu", log: () => {}, ...(epochs ? { epochs } : {}) });
  const { state, weights } = (await loadCheckpoint(join(out, "checkpoints")))!;
  const saved = new Map(state.manifest.map((m, i) => [m.name, Array.from(weights[i]!)]));
  return { trainer, summary, saved };
}

function expectClose(actual: number[] | undefined, expected: number[], what: string): void {
  expect(actual, what).toBeDefined();
  expected.forEach((v, i) => expect(Math.abs(actual![i]! - v), `${what}[${i}]: ${actual![i]} against ${v}`).toBeLessThan(1e-5 * Math.max(1, Math.abs(v))));
}

describe("batch normalisation", () => {
  it("a training pass normalises with the batch's mean and biased variance and records them; an evaluation pass with the running ones", async () => {
    await selectBackend("cpu");
    const x = [
      [1, -2, 0.5],
      [3, 0, -1.5],
      [-1, 4, 2.5],
      [0, 1, 1],
    ];
    const gain = [1.5, -0.5, 2];
    const bias = [0.1, 0.2, -0.3];
    const params: Params = { "l.norm.gain": tf.tensor1d(gain), "l.norm.bias": tf.tensor1d(bias) };
    const measured: BatchStatistics = new Map();
    const trained = batchNorm(params, "l.norm", tf.tensor2d(x), { training: true, measured }).arraySync() as number[][];
    const running = { mean: [0.5, -1, 2], variance: [2, 0.5, 4] };
    const evaluated = batchNorm(params, "l.norm", tf.tensor2d(x), {
      training: false,
      running: { "l.norm.running_mean": tf.tensor1d(running.mean), "l.norm.running_var": tf.tensor1d(running.variance) },
    }).arraySync() as number[][];
    for (let c = 0; c < 3; c++) {
      const column = x.map((r) => r[c]!);
      const mean = column.reduce((a, b) => a + b, 0) / 4;
      const variance = column.reduce((a, b) => a + (b - mean) ** 2, 0) / 4;
      expect(Math.abs((measured.get("l.norm")!.mean.arraySync() as number[])[c]! - mean)).toBeLessThan(1e-6);
      expect(Math.abs((measured.get("l.norm")!.variance.arraySync() as number[])[c]! - variance)).toBeLessThan(1e-6);
      x.forEach((row, i) => {
        expect(Math.abs(trained[i]![c]! - ((row[c]! - mean) / Math.sqrt(variance + 1e-5)) * gain[c]! - bias[c]!)).toBeLessThan(1e-5);
        expect(Math.abs(evaluated[i]![c]! - ((row[c]! - running.mean[c]!) / Math.sqrt(running.variance[c]! + 1e-5)) * gain[c]! - bias[c]!)).toBeLessThan(1e-5);
      });
    }
    expect(measured.get("l.norm")!.count).toBe(4);
    // As PyTorch: a channel of one value has no variance to normalise by.
    expect(() => batchNorm(params, "l.norm", tf.tensor2d([x[0]!]), { training: true, measured })).toThrow(/more than one value per channel/);
  });

  it("one update moves the running statistics by 0.1 toward its pass's batch, with the unbiased variance", async () => {
    const { trainer, saved } = await run(spec());
    const initial = initialValues(trainer.spec, 2);
    for (const [m, name] of ["a", "b"].entries()) {
      const { mean, variance } = afterOneUpdate(hidden(m, initial.get(`encoder.${name}.dense0.kernel`)!));
      expectClose(saved.get(`encoder.${name}.dense0.norm.running_mean`), mean, `${name}'s running mean`);
      expectClose(saved.get(`encoder.${name}.dense0.norm.running_var`), variance, `${name}'s running variance`);
    }
    // The dense layer before the norm has no bias: the norm's replaces it.
    expect(saved.has("encoder.a.dense0.bias")).toBe(false);
    expect(saved.has("encoder.a.dense0.norm.bias")).toBe(true);
  });

  it("with `turns step`, each modality's norms move once per batch, in the turn that updates them, not in the other's", async () => {
    // Turn a's pass measures b's norm too; b's turn (b's weights unchanged by a's) measures it again.
    // Moved in both turns, b's running mean would be 0.19 × the batch mean instead of 0.1 ×.
    const { trainer, saved } = await run(spec("", "train epochs 1 batch 16 seed 2 turns step", "loss[m] cross_entropy(alone[m], y)"));
    const initial = initialValues(trainer.spec, 2);
    for (const [m, name] of ["a", "b"].entries()) {
      const { mean, variance } = afterOneUpdate(hidden(m, initial.get(`encoder.${name}.dense0.kernel`)!));
      expectClose(saved.get(`encoder.${name}.dense0.norm.running_mean`), mean, `${name}'s running mean`);
      expectClose(saved.get(`encoder.${name}.dense0.norm.running_var`), variance, `${name}'s running variance`);
    }
  });

  it("a frozen encoder's norms keep their running statistics", async () => {
    const { trainer, saved } = await run(spec("stage joint {\n}\nstage probe {\n  train epochs 2\n  freeze encoder[m]\n}"));
    // The joint stage's one update moved them; the probe's two left them.
    const initial = initialValues(trainer.spec, 2);
    const { mean } = afterOneUpdate(hidden(0, initial.get("encoder.a.dense0.kernel")!));
    expectClose(saved.get("encoder.a.dense0.norm.running_mean"), mean, "a's running mean after the probe");
    // The finished stage's statistics are checkpointed with its weights (read by a later stage in evaluation mode).
    expectClose(saved.get("stage:joint:encoder.a.dense0.norm.running_mean"), mean, "the joint stage's running mean");
  });

  it("the epoch's metrics are measured in evaluation mode, with the running statistics", async () => {
    const { trainer, summary, saved } = await run(spec("", "train epochs 3 batch 16 seed 2"));
    const tensors = (names: string[]) => Object.fromEntries(names.map((n) => [n, tf.tensor1d(saved.get(n)!)]));
    const params = Object.fromEntries(
      [...initialValues(trainer.spec, 2)].map(([n, { shape }]) => [n, tf.tensor(saved.get(n)!, shape)]),
    ) as Params;
    const running = tensors([...saved.keys()].filter((n) => /^encoder\.[ab]\.dense0\.norm\.running_(mean|var)$/.test(n)));
    const accuracy = (how: "running" | "batch") =>
      tf.tidy(() => {
        const inputs = data.test.inputs.map((x, m) => tf.tensor(x, [data.test.size, m === 0 ? 8 : 6]));
        const target = tf.tensor1d(data.test.labels);
        const out = new Forward(trainer.spec, params, inputs, target, how === "batch", undefined, undefined, running).out;
        return tf.mean(tf.cast(tf.equal(tf.argMax(out, -1), target), "float32")).dataSync()[0]!;
      });
    expect(summary.test).toBeCloseTo(accuracy("running"), 6);
    // The running statistics are not the test batch's: a pass with the batch's scores differently here.
    expect(accuracy("batch")).not.toBeCloseTo(accuracy("running"), 6);
  });

  it("refuses to resume a checkpoint without the model's running statistics (an mmb's before batch norm), naming one", async () => {
    const out = mkdtempSync(join(tmpdir(), "mmb-bn-old-"));
    const trainer = await loadTrainer(await compileOrThrow(spec().replace("epochs 1", "epochs 2")), out);
    await train(trainer, { out, data, backend: "cpu", log: () => {}, epochs: 1 });
    const checkpoints = join(out, "checkpoints");
    const { state, weights } = (await loadCheckpoint(checkpoints))!;
    const kept = state.manifest.map((m, i) => [m, weights[i]!] as const).filter(([m]) => !m.name.includes("running_"));
    await saveCheckpoint(checkpoints, { ...state, manifest: kept.map(([m]) => m) }, kept.map(([, w]) => w));
    await expect(train(trainer, { out, data, backend: "cpu", log: () => {}, resume: true })).rejects.toThrow(ResumeError);
    await expect(train(trainer, { out, data, backend: "cpu", log: () => {}, resume: true })).rejects.toThrow(/has no encoder\.a\.dense0\.norm\.running_mean \(written by an mmb whose model differs\)/);
  });

  it("a resumed run continues from the checkpointed running statistics, bit for bit", async () => {
    const { a } = await straightAndResumed(spec().replace("epochs 1", "epochs 3").replace("model bn", 'model bn\ndata synthetic(classes: 4, samples: 120, dominant: a, seed: 3)'), 1, 3);
    expect(a.state.manifest.map((m) => m.name)).toContain("encoder.b.dense0.norm.running_var");
  });
});
