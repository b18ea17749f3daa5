import * as tf from "@tensorflow/tfjs";
import { beforeAll, describe, expect, it } from "vitest";
import { selectBackend } from "../runtime/backend.js";
import { crossEntropy, expectValues, features, fixedData, fullGradient, fused, lr, oneStep, pair, param, scalar, share, shipped, spec, trueProb, type Params } from "./one-step.js";

/**
 * The methods of the language's third part, their shipped specs read from disk, against the
 * papers' equations computed here: each epoch's values from the model's parameters, and the
 * training they steer, step by step.
 */
beforeAll(async () => {
  await selectBackend("cpu");
});

/** A split of the fixed data (train: the one batch of each epoch; valid: 8 other samples). */
function split(which: "train" | "valid") {
  const data = fixedData(pair)[which];
  return { x: pair.map((_, k) => tf.tensor2d(data.inputs[k]!, [data.size, k === 0 ? 8 : 6])), y: tf.tensor1d(data.labels) };
}
const meanNll = (o: tf.Tensor, y: tf.Tensor) => scalar(tf.mean(tf.neg(tf.log(trueProb(o, y)))));

describe("methods of the epoch rule", () => {
  it("G-Blending: every head's train and validation loss each epoch; at each super-epoch w_k = |G_k/O_k²| / Σ_j |G_j/O_j²|, equal before; the blended loss trains", async () => {
    const body = shipped("gblending").replace(/param n\s*=\s*\d+/, "param n = 2");
    const n = param(body, "n");
    const epochs = 6;
    const { init, after, epochRules } = await oneStep(pair, spec(pair, body), epochs);
    const [train, valid] = [split("train"), split("valid")];
    // The heads: each modality's share of the linear head, then the fused output (index 2).
    const heads = (p: Params, x: tf.Tensor[]) => {
      const z = features(p, x);
      return [share(p, z, 0), share(p, z, 1), fused(p, z)];
    };
    let p: Params = init;
    let start = { T: [0, 0, 0], V: [0, 0, 0] };
    let w = [1 / 3, 1 / 3, 1 / 3];
    for (let epoch = 0; epoch < epochs; epoch++) {
      const T = heads(p, train.x).map((o) => meanNll(o, train.y));
      const V = heads(p, valid.x).map((o) => meanNll(o, valid.y));
      const rule = epochRules[epoch]!;
      expectValues(rule.T, T.slice(0, 2));
      expectValues(rule.V, V.slice(0, 2));
      expectValues([rule.T_out as number, rule.V_out as number], [T[2]!, V[2]!]);
      if (epoch % n === 0) {
        if (epoch > 0) {
          // G: validation loss gained over the super-epoch; O: overfitting gained.
          const r = [0, 1, 2].map((k) => Math.abs((start.V[k]! - V[k]!) / (V[k]! - T[k]! - (start.V[k]! - start.T[k]!)) ** 2));
          const total = r.reduce((a, b) => a + b, 0);
          w = r.map((v) => v / total);
        }
        start = { T, V };
      }
      expectValues([...(rule.w as number[]), rule.w_out as number], w);
      // One SGD step on the blended loss: w_out·CE(out) + Σ_k w_k·CE(contrib_k).
      const weights = w;
      const loss = (q: Params) => {
        const [ua, ub, out] = heads(q, train.x);
        return tf.addN([tf.mul(weights[2]!, crossEntropy(out!, train.y)), tf.mul(weights[0]!, crossEntropy(ua!, train.y)), tf.mul(weights[1]!, crossEntropy(ub!, train.y))]);
      };
      const g = fullGradient(loss, p, Object.keys(p));
      p = Object.fromEntries(Object.entries(p).map(([name, t]) => [name, tf.sub(t, tf.mul(g.get(name)!, lr))]));
    }
    expect(w.some((v) => Math.abs(v - 1 / 3) > 0.05)).toBe(true); // the weights moved off equal
    for (const [name, t] of Object.entries(p)) {
      const expected = t.dataSync();
      after.get(name)!.forEach((v, i) => expect(Math.abs(v - expected[i]!), name).toBeLessThan(1e-4));
    }
  });

  /** θ − lr·∂loss/∂θ for every parameter (SGD without momentum, as the test model trains). */
  const sgdStep = (p: Params, loss: (q: Params) => tf.Tensor): Params => {
    const g = fullGradient(loss, p, Object.keys(p));
    return Object.fromEntries(Object.entries(p).map(([name, t]) => [name, tf.sub(t, tf.mul(g.get(name)!, lr))]));
  };
  const expectParameters = (after: Map<string, Float32Array>, p: Params, tolerance = 1e-4) => {
    for (const [name, t] of Object.entries(p)) {
      const expected = t.dataSync();
      after.get(name)!.forEach((v, i) => expect(Math.abs(v - expected[i]!), name).toBeLessThan(tolerance));
    }
  };

  it("PMR: prototypes recomputed at each epoch's start from the training split, prototypical logits, coefficients and the prototype loss", async () => {
    const body = shipped("pmr");
    const alpha = param(body, "alpha");
    const { init, after, records, x, y } = await oneStep(pair, spec(pair, body), 2);
    const labels = Array.from(y.dataSync());
    // The class means of the features at p over the training split (here the one batch of each epoch).
    const prototypes = (p: Params) => features(p, x).map((z) => {
      const oneHot = tf.oneHot(tf.tensor1d(labels, "int32"), 4).toFloat();
      return tf.div(tf.matMul(oneHot, z, true, false), tf.maximum(tf.reshape(tf.sum(oneHot, 0), [-1, 1]), 1));
    });
    const sim = (p: Params, P: tf.Tensor[], k: number) => tf.neg(tf.sqrt(tf.sum(tf.square(tf.sub(tf.expandDims(features(p, x)[k]!, 1), tf.expandDims(P[k]!, 0))), -1)));
    let p = init;
    for (let epoch = 0; epoch < 2; epoch++) {
      const P = prototypes(p);
      const s = [0, 1].map((k) => scalar(tf.sum(trueProb(sim(p, P, k), y))));
      const c = [0, 1].map((k) => Math.min(Math.max(s[1 - k]! / s[k]! - 1, 0), 1));
      expectValues(records[epoch]!.s, s);
      expectValues(records[epoch]!.c, c);
      const point = p;
      p = sgdStep(point, (q) => tf.add(crossEntropy(fused(q, features(q, x)), y), tf.mul(alpha, tf.addN([0, 1].map((k) => tf.mul(c[k]!, crossEntropy(sim(q, P, k), y)))))));
    }
    expectParameters(after, p);
  });

  it("Diagnosing & re-learning: after the n-th epoch each encoder moves toward its initial weights by a = tanh(λ·|purity gap|)", async () => {
    const body = shipped("relearning").replace(/param n\s*=\s*\d+/, "param n = 1").replace(/param times\s*=\s*\d+/, "param times = 1");
    const lambda = param(body, "lambda");
    const { init, after, epochRules, x, y } = await oneStep(pair, spec(pair, body), 3);
    expect(epochRules.map((r) => r.reset)).toEqual([0, 0, 1]);
    const a = epochRules[2]!.move as number[];
    expect(Math.max(...a)).toBeGreaterThan(0.01); // the move is not vacuous
    // a is tanh(λ·gap) of two purities, each a share of the samples: gap ∈ [0, 1].
    for (const v of a) expect(v >= 0 && v <= Math.tanh(lambda)).toBe(true);
    const task = (q: Params) => crossEntropy(fused(q, features(q, x)), y);
    const before = sgdStep(sgdStep(init, task), task);
    const moved = Object.fromEntries(
      Object.entries(before).map(([name, t]) => {
        const k = pair.findIndex((m) => name.startsWith(`encoder.${m}.`));
        return [name, k < 0 ? t : tf.add(tf.mul(a[k]!, init[name]!), tf.mul(1 - a[k]!, t))];
      }),
    );
    expectParameters(after, sgdStep(moved, task));
  });
});
