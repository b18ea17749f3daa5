import * as tf from "@tensorflow/tfjs";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadTrainer } from "../cli/load-trainer.js";
import { selectBackend } from "../runtime/backend.js";
import { loadCheckpoint } from "../runtime/checkpoint.js";
import { crossEntropy, gradNorm, gradStd, insideGradient, trueClassProb } from "../runtime/ops.js";
import { train } from "../runtime/train.js";
import { conv2dFilterGradient } from "../runtime/wasm-kernels.js";
import { compileOrThrow, smallSpec } from "./helpers.js";

// This file tests the pure wasm path (tfjs's kernels and ours in runtime/wasm-kernels.ts); the
// OpenBLAS kernels have their own file, test/native-kernels.test.ts.
process.env.MMB_NATIVE = "0";

function values(n: number, salt: number): number[] {
  return Array.from({ length: n }, (_, i) => Math.sin(i * 1.3 + salt) * 0.8);
}

describe("second-order gradients (the ops a rule's loss may differentiate through)", () => {
  // f(W1) = ‖∂L/∂W2‖ for L = CE(act(x·W1)·W2): d f / d W1[0][0] by autodiff vs central differences.
  const cases: [string, (h: tf.Tensor) => tf.Tensor][] = [
    ["tanh", (h) => tf.tanh(h)],
    ["sigmoid", (h) => tf.sigmoid(h)],
    ["relu", (h) => tf.relu(h)],
    ["exp", (h) => tf.exp(tf.mul(h, 0.3))],
  ];
  for (const [name, act] of cases) {
    it(`through ${name} and cross-entropy matches finite differences`, async () => {
      await selectBackend("cpu");
      const x = tf.tensor2d(values(8 * 5, 1), [8, 5]);
      const y = tf.tensor1d([0, 1, 2, 0, 1, 2, 0, 1]);
      const w1 = tf.tensor2d(values(5 * 4, 2), [5, 4]);
      const w2 = tf.tensor2d(values(4 * 3, 3), [4, 3]);
      const f = (a: tf.Tensor, b: tf.Tensor) => gradNorm(tf.grads((v: tf.Tensor) => crossEntropy(tf.matMul(act(tf.matMul(x, a)), v), y))([b]));
      const auto = tf.grads((a: tf.Tensor) => f(a, w2))([w1])[0]!.arraySync() as number[][];
      const eps = 1e-3;
      const shifted = (d: number) => {
        const w = w1.arraySync() as number[][];
        w[0]![0]! += d;
        return f(tf.tensor2d(w), w2).arraySync() as number;
      };
      const numeric = (shifted(eps) - shifted(-eps)) / (2 * eps);
      expect(Math.abs(auto[0]![0]! - numeric)).toBeLessThan(2e-3 * Math.max(1, Math.abs(numeric)));
    });
  }

  it("of the true-class probability and gradient std matches finite differences", async () => {
    await selectBackend("cpu");
    const x = tf.tensor2d(values(6 * 4, 4), [6, 4]);
    const y = tf.tensor1d([0, 1, 2, 1, 0, 2]);
    const w2 = tf.tensor2d(values(4 * 3, 5), [4, 3]);
    const f = (a: tf.Tensor) => gradStd(tf.grads((v: tf.Tensor) => tf.sum(trueClassProb(tf.matMul(tf.tanh(tf.mul(x, a)), v), y)))([w2]));
    const a0 = tf.scalar(0.7);
    const auto = tf.grad(f)(a0).arraySync() as number;
    const eps = 1e-3;
    const numeric = ((f(tf.scalar(0.7 + eps)).arraySync() as number) - (f(tf.scalar(0.7 - eps)).arraySync() as number)) / (2 * eps);
    expect(Math.abs(auto - numeric)).toBeLessThan(2e-3 * Math.max(1, Math.abs(numeric)));
  });
});

describe("cross-entropy differentiated once takes tfjs's fused form", () => {
  it("with the same value and gradient as the twice-differentiable form, and only inside one runtime gradient", async () => {
    await selectBackend("cpu");
    const logits = tf.tensor2d(values(5 * 4, 3), [5, 4]);
    const y = tf.tensor1d([0, 3, 1, 1, 2]);
    const gradient = (f: () => tf.Tensor) => tf.engine().gradients(() => f() as tf.Scalar, [logits], undefined, true);
    const twice = gradient(() => crossEntropy(logits, y)); // depth 0: the twice-differentiable form
    const once = gradient(() => insideGradient(() => crossEntropy(logits, y)));
    expect(once.value.dataSync()[0]).toBeCloseTo(twice.value.dataSync()[0]!, 6);
    once.grads[0]!.dataSync().forEach((g, i) => expect(g).toBeCloseTo(twice.grads[0]!.dataSync()[i]!, 6));
    // Nested in two runtime gradients, it keeps the form tfjs can differentiate again (the fused one throws).
    const secondOrder = (wrap: <T>(f: () => T) => T) => tf.grad((z: tf.Tensor) => wrap(() => tf.sum(tf.square(tf.grad((w: tf.Tensor) => wrap(() => crossEntropy(w, y)))(z)))))(logits).dataSync();
    const plain = secondOrder((f) => f());
    secondOrder(insideGradient).forEach((g, i) => expect(g).toBeCloseTo(plain[i]!, 6));
  });
});

describe("wasm replacement kernels agree with the cpu backend", () => {
  async function onBackend(name: string) {
    await selectBackend(name);
    const x = tf.tensor4d(values(2 * 9 * 7 * 3, 1), [2, 9, 7, 3]);
    const w = tf.tensor4d(values(3 * 3 * 3 * 4, 2), [3, 3, 3, 4]);
    const a = tf.tensor3d(values(2 * 5 * 3, 3), [2, 5, 3]);
    const conv = tf.grads((xx: tf.Tensor, ww: tf.Tensor) => tf.sum(tf.square(tf.conv2d(xx as tf.Tensor4D, ww as tf.Tensor4D, 2, "same"))))([x, w]);
    const convValid = tf.grads((ww: tf.Tensor) => tf.sum(tf.conv2d(x, ww as tf.Tensor4D, [1, 2], "valid")))([w]);
    const matmul = tf.grads((aa: tf.Tensor) => tf.sum(tf.square(tf.matMul(aa as tf.Tensor3D, aa as tf.Tensor3D, true, false))))([a]);
    const transposedB = tf.matMul(a, a, false, true);
    const cube = tf.tensor4d(values(2 * 5 * 4 * 3, 4), [2, 5, 4, 3]);
    const slices = [
      tf.slice(cube, [0, 1, 0, 0], [2, 3, -1, -1]), // trailing axes whole: runs of 12
      tf.slice(cube, [1, 2, 1, 1], [1, 2, 2, 2]), // strided on every axis
      tf.slice(tf.tensor1d(values(9, 5)), [2], [5]),
      tf.slice(cube, [0, 0, 0, 0], [2, 0, 4, 3]), // empty
      tf.slice(tf.reshape(cube, [2, 5, 2, 2, 3]), [0, 1, 1, 0, 1], [2, 2, 1, 2, 2]), // rank 5
    ];
    const unstacked = [0, 1, 3].flatMap((axis) => tf.unstack(cube, axis));
    const splits = [...tf.split(cube, 5, 1), ...tf.split(cube, [1, 2], -1), ...tf.split(cube, [2, -1], 2)];
    // The backward pass of an unstacked sequence (Pack) and a cast of the same and another dtype.
    const sequenceGradient = tf.grad((c: tf.Tensor) => tf.addN(tf.unstack(c, 1).map((step, t) => tf.mul(step, t + 1))).sum())(cube);
    const casts = [tf.cast(cube, "float32"), tf.cast(tf.mul(cube, 3), "int32"), tf.clone(cube)];
    return [...conv, ...convValid, ...matmul, transposedB, ...slices, ...unstacked, ...splits, sequenceGradient, ...casts].map((t) => Array.from(t.dataSync()));
  }
  it("Conv2DBackpropFilter (same and valid padding, strides 1 and 2), transposed BatchMatMul, Slice, Unpack, SplitV, Cast and Identity", async () => {
    const cpu = await onBackend("cpu");
    const wasm = await onBackend("wasm");
    expect(wasm.map((v) => v.length)).toEqual(cpu.map((v) => v.length));
    cpu.forEach((values, i) => values.forEach((v, j) => expect(Math.abs(v - wasm[i]![j]!)).toBeLessThan(1e-4 * Math.max(1, Math.abs(v)))));
  });
  it("the filter gradient formula equals tfjs's own on cpu (same, valid and explicit padding; NHWC and NCHW)", async () => {
    await selectBackend("cpu");
    const x = tf.tensor4d(values(1 * 6 * 7 * 2, 7), [1, 6, 7, 2]);
    const explicit: tf.backend_util.ExplicitPadding = [[0, 0], [1, 0], [2, 1], [0, 0]];
    for (const [pad, strides] of [["same", 2], ["valid", [2, 1]], [explicit, [1, 2]]] as const) {
      for (const format of ["NHWC", "NCHW"] as const) {
        const input = format === "NHWC" ? x : tf.transpose(x, [0, 3, 1, 2]);
        // NCHW pads its spatial axes last.
        const padding = format === "NHWC" || typeof pad === "string" ? pad : ([pad[0], pad[3], pad[1], pad[2]] as tf.backend_util.ExplicitPadding);
        const forward = (w: tf.Tensor) => tf.conv2d(input as tf.Tensor4D, w as tf.Tensor4D, strides as [number, number], padding, format);
        const dy = tf.tensor4d(values(forward(tf.zeros([3, 2, 2, 3])).size, 8), forward(tf.zeros([3, 2, 2, 3])).shape as [number, number, number, number]);
        const ours = conv2dFilterGradient(input as tf.Tensor4D, dy, [3, 2, 2, 3], strides as [number, number], padding, format).dataSync();
        const reference = tf.grad((w: tf.Tensor) => tf.sum(tf.mul(forward(w), dy)))(tf.zeros([3, 2, 2, 3])).dataSync();
        expect(ours.length).toBe(reference.length);
        ours.forEach((v, i) => expect(v, `${JSON.stringify(pad)} ${format}`).toBeCloseTo(reference[i]!, 5));
      }
    }
  });
});

describe("training loop", () => {
  const rule = `
    param alpha = 0.5
    s[m] = sum(batch, prob(contrib[m], y))
    k[m] = if s[m] > s[other(m)] then 1 - tanh(alpha) else 1
    d[m] = delta(norm(grad(encoder[m])))
    scale grad(encoder[m]) by k[m]`;

  for (const backend of ["cpu", "wasm"]) {
    it(`resumes from a checkpoint to the bit-identical result on ${backend}, without leaking tensors`, async () => {
      const code = await compileOrThrow(smallSpec(rule).replace("train epochs 2", "train epochs 3"));
      const straight = mkdtempSync(join(tmpdir(), "mmb-straight-"));
      const resumed = mkdtempSync(join(tmpdir(), "mmb-resumed-"));
      const trainer = await loadTrainer(code, straight);
      const quiet = { backend, log: () => {} };
      await selectBackend(backend);
      const before = tf.memory().numTensors;
      await train(trainer, { out: straight, ...quiet });
      expect(tf.memory().numTensors).toBe(before);
      await train(trainer, { out: resumed, epochs: 2, ...quiet });
      const summary = await train(trainer, { out: resumed, epochs: 3, resume: true, ...quiet });
      const a = (await loadCheckpoint(join(straight, "checkpoints")))!;
      const b = (await loadCheckpoint(join(resumed, "checkpoints")))!;
      expect(b.state.epoch).toBe(2);
      a.weights.forEach((w, i) => expect(Buffer.from(b.weights[i]!.buffer).equals(Buffer.from(w.buffer))).toBe(true));
      expect(b.state.history).toEqual(a.state.history);
      // The weights also read as a tfjs weights manifest (tf.io's format).
      const latest = readFileSync(join(straight, "checkpoints", "latest"), "utf8").trim();
      const { weightsManifest } = JSON.parse(readFileSync(join(straight, "checkpoints", latest, "model.json"), "utf8"));
      const decoded = tf.io.decodeWeights(new Uint8Array(readFileSync(join(straight, "checkpoints", latest, "weights.bin"))).buffer, weightsManifest[0].weights);
      a.state.manifest.forEach(({ name }, i) => expect(Buffer.from((decoded[name]!.dataSync() as Float32Array).buffer).equals(Buffer.from(a.weights[i]!.buffer))).toBe(true));
      Object.values(decoded).forEach((t) => t.dispose());
      expect(summary.test).toBe(JSON.parse(readFileSync(join(straight, "summary.json"), "utf8")).test);
      // The log has one record per step with every rule value, and one per epoch.
      const lines = readFileSync(join(straight, "log.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
      const steps = lines.filter((l) => l.type === "step");
      expect(steps.length).toBe(3 * 7);
      expect(Object.keys(steps[0])).toEqual(["type", "epoch", "step", "loss", "total_loss", "s", "k", "d", "grad_norm", "update_grad_norm"]);
      expect(steps[0].k.length).toBe(2);
      expect(lines.filter((l) => l.type === "epoch").length).toBe(3);
    });
  }

  it("stops on a non-finite rule value, naming it and its line, and keeps the last good checkpoint", async () => {
    // log(1 − epoch): 0 in epoch 0, −∞ in epoch 1.
    const code = await compileOrThrow(smallSpec(`  bad = log(1 - epoch)\n  scale grad(head) by 1`));
    const out = mkdtempSync(join(tmpdir(), "mmb-nan-"));
    const trainer = await loadTrainer(code, out);
    await expect(train(trainer, { out, backend: "cpu", log: () => {} })).rejects.toThrow(/non-finite value of `bad` \(spec line 13\) at step 7, epoch 1; the last good checkpoint \(epoch 1\) stays current/);
    const kept = (await loadCheckpoint(join(out, "checkpoints")))!;
    expect(kept.state.epoch).toBe(0);
  });

  it("never loads a checkpoint whose weights do not match their checksum (a write torn by a crash)", async () => {
    const code = await compileOrThrow(smallSpec());
    const out = mkdtempSync(join(tmpdir(), "mmb-torn-"));
    await train(await loadTrainer(code, out), { out, backend: "cpu", epochs: 1, log: () => {} });
    const latest = readFileSync(join(out, "checkpoints", "latest"), "utf8").trim();
    const weights = join(out, "checkpoints", latest, "weights.bin");
    writeFileSync(weights, readFileSync(weights).subarray(0, 100));
    await expect(loadCheckpoint(join(out, "checkpoints"))).rejects.toThrow(/is damaged \(weights do not match their checksum\)/);
  });

  it("fails fast, before allocating, with an estimate when a model cannot fit", async () => {
    const huge = await compileOrThrow(smallSpec().replace("encoder[m] = mlp(hidden: [10], out: 5)", "encoder[m] = mlp(hidden: [200000, 200000], out: 5)"));
    const out = mkdtempSync(join(tmpdir(), "mmb-huge-"));
    const trainer = await loadTrainer(huge, out);
    // Two encoders of 8·2e5 + 2e5 + 2e5·2e5 + 2e5 + 2e5·5 + 5 (a) and 6·2e5 + ... (b) parameters, a head of 44.
    const before = tf.memory().numBytes;
    await expect(train(trainer, { out, backend: "wasm", log: () => {} })).rejects.toThrow(
      /^training small needs about 1192\.\d GiB \(80,005,600,054 parameters with their gradients and optimiser state, and [\d,]+ activation values for a batch of 16\), more than the 4\.0 GiB the wasm backend can address; make the encoders smaller or the batch smaller$/,
    );
    expect(tf.memory().numBytes).toBe(before);
  });

  it("schedule plateau: the learning rate falls by gamma whenever valid accuracy stalls for `patience` epochs", async () => {
    const code = await compileOrThrow(smallSpec("", "schedule plateau(patience: 1, gamma: 0.5)").replace("train epochs 2", "train epochs 8"));
    const out = mkdtempSync(join(tmpdir(), "mmb-plateau-"));
    await train(await loadTrainer(code, out), { out, backend: "cpu", log: () => {} });
    const epochs = readFileSync(join(out, "log.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((l) => l.type === "epoch");
    // Replay the rule on the logged validation accuracies.
    let best = -Infinity;
    let factor = 1;
    for (const e of epochs) {
      expect(e.lr).toBeCloseTo(0.1 * factor, 12);
      if (e.valid.acc > best) best = e.valid.acc;
      else factor *= 0.5;
    }
    expect(factor).toBeLessThan(1); // it did stall at least once
  });
});
