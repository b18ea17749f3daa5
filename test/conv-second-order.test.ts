import * as tf from "@tensorflow/tfjs";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadTrainer } from "../cli/load-trainer.js";
import { selectBackend } from "../runtime/backend.js";
import { loadCheckpoint } from "../runtime/checkpoint.js";
import { Forward, initialParameters, type Params } from "../runtime/model.js";
import { crossEntropy } from "../runtime/ops.js";
import type { ModelSpec } from "../runtime/spec.js";
import { train } from "../runtime/train.js";
import { compileOrThrow, convSpec, fixedData, logRecords } from "./helpers.js";

/**
 * A convolution's second order (#18). tfjs registers no gradient for Conv2DBackpropFilter (a
 * conv kernel's gradient); runtime/second-order.ts does. Checked here: the registered gradient
 * against the convolution written in plain loops, a third derivative through it against finite
 * differences, ∂‖∂L/∂θ‖²/∂θ of the runtime's conv2d and conv1d encoders against finite
 * differences, and a spec whose added loss reads the gradient of conv encoders, one step against
 * the update computed here and two epochs on cpu and wasm.
 */

const backends = ["cpu", "wasm"] as const;

function values(n: number, salt: number): number[] {
  return Array.from({ length: n }, (_, i) => Math.sin(i * 1.37 + salt) * 0.9);
}

type Pad = "same" | "valid" | [[number, number], [number, number], [number, number], [number, number]];

/** The kernel itself, as tfjs's Conv2D gradient calls it (taped by runKernel). */
function backpropFilter(x: tf.Tensor4D, dy: tf.Tensor4D, filterShape: number[], strides: [number, number], pad: Pad, dataFormat: "NHWC" | "NCHW" = "NHWC"): tf.Tensor4D {
  return tf.engine().runKernel("Conv2DBackpropFilter", { x, dy }, { strides, pad, dataFormat, dimRoundingMode: undefined, filterShape } as unknown as tf.NamedAttrMap) as tf.Tensor4D;
}

/**
 * With f(x, dy) = Σ R ⊙ dW, dW[i,j,c,o] = Σ_{n,p,q} x[n, p·sh+i−top, q·sw+j−left, c]·dy[n,p,q,o]
 * (TensorFlow's padding, written out here): dW, ∂f/∂x and ∂f/∂dy, in plain loops over float64.
 */
function byLoops(xShape: number[], x: number[], dyShape: number[], dy: number[], r: number[], filterShape: number[], [sh, sw]: [number, number], pad: Pad) {
  const [n, h, w, c] = xShape as [number, number, number, number];
  const [, oh, ow, o] = dyShape as [number, number, number, number];
  const [kh, kw] = filterShape as [number, number];
  const before = (size: number, k: number, s: number, out: number, explicit: number) =>
    pad === "valid" ? 0 : pad === "same" ? Math.floor(Math.max((out - 1) * s + k - size, 0) / 2) : explicit;
  const top = before(h, kh, sh, oh, typeof pad === "string" ? 0 : pad[1][0]);
  const left = before(w, kw, sw, ow, typeof pad === "string" ? 0 : pad[2][0]);
  const dW = new Array<number>(kh * kw * c * o).fill(0);
  const dx = new Array<number>(x.length).fill(0);
  const ddy = new Array<number>(dy.length).fill(0);
  for (let b = 0; b < n; b++)
    for (let p = 0; p < oh; p++)
      for (let q = 0; q < ow; q++)
        for (let i = 0; i < kh; i++)
          for (let j = 0; j < kw; j++) {
            const row = p * sh + i - top;
            const col = q * sw + j - left;
            if (row < 0 || row >= h || col < 0 || col >= w) continue;
            for (let ci = 0; ci < c; ci++)
              for (let co = 0; co < o; co++) {
                const xi = ((b * h + row) * w + col) * c + ci;
                const di = ((b * oh + p) * ow + q) * o + co;
                const wi = ((i * kw + j) * c + ci) * o + co;
                dW[wi]! += x[xi]! * dy[di]!;
                dx[xi]! += r[wi]! * dy[di]!;
                ddy[di]! += r[wi]! * x[xi]!;
              }
          }
  return { dW, dx, ddy };
}

function expectClose(actual: ArrayLike<number>, expected: number[], what: string, tolerance = 1e-4): void {
  expect(actual.length, what).toBe(expected.length);
  const scale = Math.max(1, ...expected.map(Math.abs));
  Array.from(actual).forEach((v, i) => expect(Math.abs(v - expected[i]!), `${what}[${i}]`).toBeLessThan(tolerance * scale));
}

const geometries: { filter: [number, number]; strides: [number, number]; pad: Pad }[] = [
  { filter: [3, 3], strides: [1, 1], pad: "same" },
  { filter: [3, 3], strides: [2, 2], pad: "same" },
  { filter: [3, 2], strides: [1, 1], pad: "valid" },
  { filter: [3, 3], strides: [2, 2], pad: "valid" },
  { filter: [2, 3], strides: [2, 1], pad: "same" },
  { filter: [3, 3], strides: [2, 2], pad: [[0, 0], [1, 0], [2, 1], [0, 0]] },
  { filter: [3, 2], strides: [1, 2], pad: [[0, 0], [0, 2], [1, 1], [0, 0]] },
];

describe("the gradient of Conv2DBackpropFilter (a conv kernel's gradient, differentiated again)", () => {
  for (const backend of backends) {
    for (const { filter, strides, pad } of geometries) {
      it(`equals the convolution written in loops: ${filter.join("×")} filter, strides ${strides.join(",")}, ${JSON.stringify(pad)} padding, on ${backend}`, async () => {
        await selectBackend(backend);
        const xShape = [2, 7, 6, 3];
        const filterShape: [number, number, number, number] = [...filter, 3, 4];
        const x = tf.tensor4d(values(2 * 7 * 6 * 3, 1), xShape as [number, number, number, number]);
        // dy has the forward convolution's output shape.
        const dyShape = tf.conv2d(x, tf.zeros(filterShape) as tf.Tensor4D, strides, pad).shape as [number, number, number, number];
        const dy = tf.tensor4d(values(dyShape.reduce((a, b) => a * b, 1), 2), dyShape);
        const r = tf.tensor4d(values(filterShape.reduce((a, b) => a * b, 1), 3), filterShape as [number, number, number, number]);
        const expected = byLoops(xShape, values(x.size, 1), dyShape, values(dy.size, 2), values(r.size, 3), filterShape, strides, pad);

        // The kernel itself, and its gradient with respect to both inputs.
        expectClose(backpropFilter(x, dy, filterShape, strides, pad).dataSync(), expected.dW, "dW");
        const [dx, ddy] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(r, backpropFilter(a as tf.Tensor4D, b as tf.Tensor4D, filterShape, strides, pad))))([x, dy]);
        expectClose(dx!.dataSync(), expected.dx, "∂/∂x");
        expectClose(ddy!.dataSync(), expected.ddy, "∂/∂dy");

        // As a rule meets it: Σ R ⊙ ∂(Σ U ⊙ conv2d(x, W))/∂W is the same f, with dy = U.
        const w0 = tf.tensor4d(values(r.size, 4), filterShape as [number, number, number, number]);
        const nested = (a: tf.Tensor, u: tf.Tensor) =>
          tf.sum(tf.mul(r, tf.grad((w: tf.Tensor) => tf.sum(tf.mul(u, tf.conv2d(a as tf.Tensor4D, w as tf.Tensor4D, strides, pad))))(w0)));
        const [nx, nu] = tf.grads(nested)([x, dy]);
        expectClose(nx!.dataSync(), expected.dx, "nested ∂/∂x");
        expectClose(nu!.dataSync(), expected.ddy, "nested ∂/∂U");
      });
    }

    if (backend === "cpu") {
      // The wasm backend's Conv2D takes NHWC only.
      it("passes the NCHW data format through (cpu)", async () => {
        await selectBackend("cpu");
        const filterShape: [number, number, number, number] = [3, 2, 3, 4];
        const strides: [number, number] = [2, 1];
        const pad: Pad = [[0, 0], [1, 0], [0, 1], [0, 0]];
        const x = tf.tensor4d(values(2 * 7 * 6 * 3, 1), [2, 7, 6, 3]);
        const dyShape = tf.conv2d(x, tf.zeros(filterShape) as tf.Tensor4D, strides, pad).shape as [number, number, number, number];
        const dy = tf.tensor4d(values(dyShape.reduce((a, b) => a * b, 1), 2), dyShape);
        const r = tf.tensor4d(values(filterShape.reduce((a, b) => a * b, 1), 3), filterShape as [number, number, number, number]);
        const expected = byLoops(x.shape, values(x.size, 1), dyShape, values(dy.size, 2), values(r.size, 3), filterShape, strides, pad);
        const first = (t: tf.Tensor) => tf.transpose(t, [0, 3, 1, 2]) as tf.Tensor4D;
        const last = (t: tf.Tensor) => tf.transpose(t, [0, 2, 3, 1]);
        const padFirst = [pad[0], pad[3], pad[1], pad[2]] as Pad;
        expectClose(backpropFilter(first(x), first(dy), filterShape, strides, padFirst, "NCHW").dataSync(), expected.dW, "dW");
        const [dx, ddy] = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(r, backpropFilter(a as tf.Tensor4D, b as tf.Tensor4D, filterShape, strides, padFirst, "NCHW"))))([first(x), first(dy)]);
        expectClose(last(dx!).dataSync(), expected.dx, "∂/∂x");
        expectClose(last(ddy!).dataSync(), expected.ddy, "∂/∂dy");
      });
    }

    it(`is itself differentiable (third order), against finite differences, on ${backend}`, async () => {
      await selectBackend(backend);
      const filterShape = [3, 3, 2, 3];
      const x = tf.tensor4d(values(2 * 6 * 5 * 2, 5), [2, 6, 5, 2]);
      const dy = tf.tensor4d(values(2 * 3 * 3 * 3, 6), [2, 3, 3, 3]);
      const t = tf.tensor4d(values(x.size, 7), x.shape);
      // q(x, dy) = Σ T ⊙ ∂(½‖dW(x, dy)‖²)/∂x: differentiating it again runs through this gradient's
      // own outputs (Conv2DBackpropInput, Conv2D) and Conv2DBackpropFilter once more. Cubic in
      // (x, dy) jointly, quadratic in dy and linear in x: central differences are exact up to rounding.
      const q = (a: tf.Tensor, b: tf.Tensor) =>
        tf.sum(tf.mul(t, tf.grad((xx: tf.Tensor) => tf.mul(0.5, tf.sum(tf.square(backpropFilter(xx as tf.Tensor4D, b as tf.Tensor4D, filterShape, [2, 2], "same")))))(a)));
      const [gx, gdy] = tf.grads(q)([x, dy]);
      const directionX = tf.tensor4d(values(x.size, 8), x.shape);
      const directionDy = tf.tensor4d(values(dy.size, 9), dy.shape);
      const eps = 0.25;
      const along = (shift: (s: number) => [tf.Tensor, tf.Tensor]) => (q(...shift(eps)).dataSync()[0]! - q(...shift(-eps)).dataSync()[0]!) / (2 * eps);
      const numericX = along((s) => [tf.add(x, tf.mul(directionX, s)), dy]);
      const numericDy = along((s) => [x, tf.add(dy, tf.mul(directionDy, s))]);
      const analyticX = tf.sum(tf.mul(gx!, directionX)).dataSync()[0]!;
      const analyticDy = tf.sum(tf.mul(gdy!, directionDy)).dataSync()[0]!;
      expect(Math.abs(analyticX)).toBeGreaterThan(1);
      expect(Math.abs(analyticDy)).toBeGreaterThan(1);
      expect(Math.abs(analyticX - numericX)).toBeLessThan(1e-3 * Math.abs(numericX));
      expect(Math.abs(analyticDy - numericDy)).toBeLessThan(1e-3 * Math.abs(numericDy));
    });
  }
});

function modelSpec(kind: "conv1d" | "conv2d", shape: number[]): ModelSpec {
  return {
    name: kind, source: "test", data: { kind: "synthetic", options: {} },
    modalities: [{ name: "x", shape }], target: { name: "y", kind: "class", classes: 3 },
    encoders: [{ kind, options: { channels: [4, 5], kernel: 3, out: 6, activation: "tanh" } }], fusion: { kind: "concat", options: {} },
    head: { kind: "linear", options: { out: 3 } }, learnables: [], optimizer: { kind: "sgd", options: {} }, schedule: { kind: "constant", options: {} },
    train: { epochs: 1, batch: 6, seed: 1, clip: 0, patience: 0 },
  };
}

describe("∂‖∂L/∂θ‖²/∂θ of the runtime's conv encoders against finite differences", () => {
  const cases: ["conv1d" | "conv2d", number[]][] = [
    ["conv2d", [2, 7, 6]],
    ["conv1d", [9, 3]],
  ];
  for (const [kind, shape] of cases) {
    it(`${kind}: every encoder parameter (kernels, biases, last layer), on cpu and wasm`, async () => {
      const along: number[] = [];
      for (const backend of backends) {
        await selectBackend(backend);
        const spec = modelSpec(kind, shape);
        const variables = initialParameters(spec, 1);
        const params = Object.fromEntries([...variables].map(([n, v]) => [n, tf.clone(v)])) as Params;
        variables.forEach((v) => v.dispose());
        const size = shape.reduce((a, b) => a * b, 1);
        const x = tf.tensor([...values(6 * size, 11)], [6, ...shape]);
        const y = tf.tensor1d([0, 1, 2, 0, 1, 2]);
        const encoder = Object.keys(params).filter((n) => n.startsWith("encoder.x."));
        expect(encoder.filter((n) => /conv\d\.kernel$/.test(n))).toHaveLength(2);
        const loss = (p: Params) => crossEntropy(new Forward(spec, p, [x], y, true).out, y);
        // φ(θ) = ‖∂L/∂θ_encoder‖²: the conv kernels' gradients are Conv2DBackpropFilter.
        const phi = (p: Params) =>
          tf.addN(tf.grads((...ts: tf.Tensor[]) => loss({ ...p, ...Object.fromEntries(encoder.map((n, i) => [n, ts[i]!])) }))(encoder.map((n) => p[n]!)).map((g) => tf.sum(tf.square(g))));
        const analytic = tf.grads((...ts: tf.Tensor[]) => phi({ ...params, ...Object.fromEntries(encoder.map((n, i) => [n, ts[i]!])) }))(encoder.map((n) => params[n]!));
        const direction = encoder.map((n, k) => tf.tensor(values(params[n]!.size, 20 + k), params[n]!.shape));
        const length = Math.sqrt(direction.reduce((s, d) => s + tf.sum(tf.square(d)).dataSync()[0]!, 0));
        const eps = 3e-3;
        const shifted = (s: number) => phi({ ...params, ...Object.fromEntries(encoder.map((n, i) => [n, tf.add(params[n]!, tf.mul(direction[i]!, s / length))])) }).dataSync()[0]!;
        const numeric = (shifted(eps) - shifted(-eps)) / (2 * eps);
        const value = analytic.reduce((s, g, i) => s + tf.sum(tf.mul(g, direction[i]!)).dataSync()[0]! / length, 0);
        expect(Math.abs(value)).toBeGreaterThan(1e-3); // not vacuous
        expect(Math.abs(value - numeric), `${kind} on ${backend}: ${value} vs ${numeric}`).toBeLessThan(2e-3 * Math.abs(numeric) + 2e-5);
        // Each kernel's own share, along that kernel alone: the second conv's kernel reads the first's output.
        for (const name of encoder.filter((n) => /conv\d\.kernel$/.test(n))) {
          const i = encoder.indexOf(name);
          const alone = (s: number) => phi({ ...params, [name]: tf.add(params[name]!, tf.mul(direction[i]!, s)) }).dataSync()[0]!;
          const numericAlone = (alone(eps) - alone(-eps)) / (2 * eps);
          const valueAlone = tf.sum(tf.mul(analytic[i]!, direction[i]!)).dataSync()[0]!;
          expect(Math.abs(valueAlone - numericAlone), `${name} on ${backend}: ${valueAlone} vs ${numericAlone}`).toBeLessThan(2e-3 * Math.abs(numericAlone) + 1e-5);
        }
        along.push(value);
      }
      expect(Math.abs(along[0]! - along[1]!)).toBeLessThan(1e-3 * Math.abs(along[0]!));
    });
  }
});

describe("a rule whose added loss reads the gradient of conv encoders", () => {
  const rule = (c: number) => `balance {\n  add loss ${c} * sum(k, norm(grad(encoder[k])))\n}\n`;
  const data = fixedData([16, 32]);

  it("one step on cpu equals θ − lr·∂(L + c·Σ_k ‖∂L/∂θ_k‖)/∂θ computed here, its second-order share against finite differences", async () => {
    await selectBackend("cpu");
    const lr = 0.1;
    // A weight large enough that the second-order term's share of the update is far above the tolerance.
    const c = 0.5;
    const out = mkdtempSync(join(tmpdir(), "mmb-conv2-"));
    const trainer = await loadTrainer(await compileOrThrow(convSpec(rule(c), lr)), out);
    await train(trainer, { out, backend: "cpu", data, log: () => {} });
    const checkpoint = (await loadCheckpoint(join(out, "checkpoints")))!;
    const after = new Map(checkpoint.state.manifest.map((m, i) => [m.name, checkpoint.weights[i]!]));

    // The model of convSpec written here: conv2d(channels: [6, 8], kernel 3, stride 2, same, relu),
    // a spatial mean, the encoder's last layer (5 features), concat, linear(4), cross-entropy.
    const variables = initialParameters(trainer.spec, 2);
    const init = Object.fromEntries([...variables].map(([n, v]) => [n, tf.clone(v)])) as Params;
    variables.forEach((v) => v.dispose());
    const x = [tf.tensor4d(data.train.inputs[0]!, [16, 1, 4, 4]), tf.tensor4d(data.train.inputs[1]!, [16, 2, 4, 4])];
    const y = tf.oneHot(tf.tensor1d(Array.from(data.train.labels), "int32"), 4);
    const encode = (p: Params, m: string, input: tf.Tensor) => {
      let h = tf.transpose(input, [0, 2, 3, 1]) as tf.Tensor4D;
      for (const i of [0, 1]) h = tf.relu(tf.add(tf.conv2d(h, p[`encoder.${m}.conv${i}.kernel`] as tf.Tensor4D, 2, "same"), p[`encoder.${m}.conv${i}.bias`]!)) as tf.Tensor4D;
      return tf.add(tf.matMul(tf.mean(h, [1, 2]) as tf.Tensor2D, p[`encoder.${m}.last.kernel`] as tf.Tensor2D), p[`encoder.${m}.last.bias`]!);
    };
    const taskLoss = (p: Params) => {
      const logits = tf.add(tf.matMul(tf.concat([encode(p, "a", x[0]!), encode(p, "b", x[1]!)], 1), p["head.kernel"] as tf.Tensor2D), p["head.bias"]!);
      return tf.neg(tf.mean(tf.sum(tf.mul(y, tf.sub(logits, tf.logSumExp(logits, -1, true))), -1)));
    };
    const names = Object.keys(init);
    const of = (m: string) => names.filter((n) => n.startsWith(`encoder.${m}.`));
    const gradNorm = (p: Params, group: string[]) =>
      tf.sqrt(tf.addN(tf.grads((...ts: tf.Tensor[]) => taskLoss({ ...p, ...Object.fromEntries(group.map((n, i) => [n, ts[i]!])) }))(group.map((n) => p[n]!)).map((g) => tf.sum(tf.square(g)))));
    const total = (p: Params) => tf.add(taskLoss(p), tf.mul(c, tf.add(gradNorm(p, of("a")), gradNorm(p, of("b")))));
    const grads = tf.grads((...ts: tf.Tensor[]) => total(Object.fromEntries(names.map((n, i) => [n, ts[i]!]))))(names.map((n) => init[n]!));
    // The second-order term moves the conv kernels: the update differs from the task loss's alone.
    const plain = tf.grads((...ts: tf.Tensor[]) => taskLoss(Object.fromEntries(names.map((n, i) => [n, ts[i]!]))))(names.map((n) => init[n]!));
    const kernel = names.indexOf("encoder.b.conv0.kernel");
    expect(tf.max(tf.abs(tf.sub(grads[kernel]!, plain[kernel]!))).dataSync()[0]!).toBeGreaterThan(1e-2);
    names.forEach((n, i) => {
      const expected = tf.sub(init[n]!, tf.mul(grads[i]!, lr)).dataSync();
      after.get(n)!.forEach((v, j) => expect(Math.abs(v - expected[j]!), n).toBeLessThan(1e-5));
    });

    // The reference above differentiates through the same registered gradient. Without it: the
    // update's second-order share, (θ − θ')/lr − ∂L/∂θ = c·∂R/∂θ with R = Σ_k ‖∂L/∂θ_k‖, along a
    // direction over every parameter, against central differences of R (first order only).
    const regulariser = (p: Params) => tf.add(gradNorm(p, of("a")), gradNorm(p, of("b")));
    const direction = names.map((n, k) => tf.tensor(values(init[n]!.size, 30 + k), init[n]!.shape));
    const length = Math.sqrt(direction.reduce((s, d) => s + tf.sum(tf.square(d)).dataSync()[0]!, 0));
    const fromRun = names.reduce((s, n, i) => {
      const share = tf.div(tf.sub(tf.div(tf.sub(init[n]!, tf.tensor(after.get(n)!, init[n]!.shape)), lr), plain[i]!), c);
      return s + tf.sum(tf.mul(share, direction[i]!)).dataSync()[0]! / length;
    }, 0);
    const eps = 1e-3;
    const shifted = (s: number) => regulariser(Object.fromEntries(names.map((n, i) => [n, tf.add(init[n]!, tf.mul(direction[i]!, s / length))]))).dataSync()[0]!;
    const numeric = (shifted(eps) - shifted(-eps)) / (2 * eps);
    expect(Math.abs(numeric)).toBeGreaterThan(1e-2); // not vacuous
    expect(Math.abs(fromRun - numeric), `${fromRun} vs ${numeric}`).toBeLessThan(1e-3 * Math.abs(numeric) + 2e-5);
  });

  it("trains two epochs on cpu and on wasm with finite losses, to the same weights", async () => {
    const weights: Map<string, Float32Array>[] = [];
    for (const backend of backends) {
      const out = mkdtempSync(join(tmpdir(), `mmb-conv2-${backend}-`));
      const trainer = await loadTrainer(await compileOrThrow(convSpec(rule(0.01)).replace("train epochs 1 ", "train epochs 2 ")), out);
      await train(trainer, { out, backend, data, log: () => {} });
      const steps = logRecords(out).filter((r) => r.type === "step");
      expect(steps).toHaveLength(2);
      for (const step of steps) expect(Number.isFinite(step.loss), JSON.stringify(step)).toBe(true);
      const checkpoint = (await loadCheckpoint(join(out, "checkpoints")))!;
      weights.push(new Map(checkpoint.state.manifest.map((m, i) => [m.name, checkpoint.weights[i]!])));
    }
    for (const [name, cpu] of weights[0]!) cpu.forEach((v, i) => expect(Math.abs(v - weights[1]!.get(name)![i]!), name).toBeLessThan(1e-4));
  });
});
