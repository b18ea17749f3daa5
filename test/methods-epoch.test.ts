import * as tf from "@tensorflow/tfjs";
import { beforeAll, describe, expect, it } from "vitest";
import { selectBackend } from "../runtime/backend.js";
import { batchOrder, crossEntropy, dense, expectParameters, expectValues, features, fixedData, fullGradient, fused, lr, oneStep, pair, param, scalar, share, shipped, sgdStep, shippedStages, spec, trueProb, type Params } from "./one-step.js";

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
      p = sgdStep(p, loss);
    }
    expect(w.some((v) => Math.abs(v - 1 / 3) > 0.05)).toBe(true); // the weights moved off equal
    expectParameters(after, p);
  });


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

  // The staged methods draw their student's (or probe's) weights anew (`fresh`); the tests start
  // them from the initial weights instead (`init`), which they can compute.
  const aux = (p: Params, z: tf.Tensor[], k: number) => dense(p, `aux.${pair[k]}`, z[k]!);
  const without = (p: Params, prefix: string) => Object.keys(p).filter((n) => !n.startsWith(prefix));
  const restart = (p: Params, init: Params, prefixes: string[]) => Object.fromEntries(Object.entries(p).map(([n, t]) => [n, prefixes.some((x) => n.startsWith(x)) ? init[n]! : t]));
  const mseTo = (z: tf.Tensor, target: tf.Tensor) => tf.mean(tf.mean(tf.square(tf.sub(z, target)), -1));

  it("UMT: unimodal teachers (each encoder through its own head), then a restarted model with CE + scaling·Σ MSE to the teachers' features", async () => {
    const body = shippedStages("umt", { teachers: 1, student: 2 }).replace(/fresh\(/g, "init(");
    const scaling = param(body, "scaling");
    const { init, after, x, y } = await oneStep(pair, spec(pair, body));
    const teacherLoss = (q: Params) => {
      const z = features(q, x);
      return tf.add(crossEntropy(aux(q, z, 0), y), crossEntropy(aux(q, z, 1), y));
    };
    const teacher = sgdStep(init, teacherLoss, without(init, "head."));
    const zt = features(teacher, x);
    const student = (q: Params) => {
      const z = features(q, x);
      return tf.add(crossEntropy(fused(q, z), y), tf.mul(scaling, tf.add(mseTo(z[0]!, zt[0]!), mseTo(z[1]!, zt[1]!))));
    };
    let p = restart(teacher, init, ["encoder.", "head."]);
    p = sgdStep(p, student, Object.keys(p));
    p = sgdStep(p, student, Object.keys(p));
    expectParameters(after, p);
  });

  it("G²D: CE + Σ_m [KL(teacher_m ‖ out) + MSE(z_m, teacher z_m)]; the modality whose teacher is surer on the batch gets no weight gradient", async () => {
    const body = shippedStages("g2d", { teachers: 1, student: 2 }).replace(/fresh\(/g, "init(");
    const { init, after, records, x, y } = await oneStep(pair, spec(pair, body));
    const teacherLoss = (q: Params) => {
      const z = features(q, x);
      return tf.add(crossEntropy(aux(q, z, 0), y), crossEntropy(aux(q, z, 1), y));
    };
    const teacher = sgdStep(init, teacherLoss, without(init, "head."));
    const zt = features(teacher, x);
    const logitsT = [0, 1].map((k) => aux(teacher, zt, k));
    const kl = (p: tf.Tensor, q: tf.Tensor) => tf.mean(tf.sum(tf.mul(tf.softmax(p), tf.sub(tf.logSoftmax(p), tf.logSoftmax(q))), -1));
    const student = (q: Params) => {
      const z = features(q, x);
      const out = fused(q, z);
      return tf.addN([crossEntropy(out, y), ...[0, 1].map((k) => tf.add(kl(logitsT[k]!, out), mseTo(z[k]!, zt[k]!)))]);
    };
    // S_m: the teachers' summed true-class probabilities on the batch (the same batch each epoch here).
    const S = [0, 1].map((k) => scalar(tf.sum(trueProb(logitsT[k]!, y))));
    const k = [0, 1].map((m) => (S[m]! > S[1 - m]! ? 0 : 1));
    expectValues(records[1]!.s, S);
    expectValues(records[1]!.k, k);
    expect(k).toContain(0);
    // Kernels (`.weight` without biases) of the surer teacher's encoder get no gradient.
    const factor = (name: string) => {
      const m = pair.findIndex((u) => name.startsWith(`encoder.${u}.`));
      return m >= 0 && name.endsWith(".kernel") ? k[m]! : 1;
    };
    let p = restart(teacher, init, ["encoder.", "head."]);
    p = sgdStep(p, student, Object.keys(p), factor);
    p = sgdStep(p, student, Object.keys(p), factor);
    expectParameters(after, p);
  });

  it("linear probe: joint training, then the encoders frozen and a restarted head trained alone on their features", async () => {
    const body = shippedStages("linear_probe", { joint: 1, probe: 2 }).replace(/fresh\(/g, "init(").replace(/optimizer adamw\([^)]*\)/, `optimizer sgd(lr: ${lr})`);
    const { init, after, records, x, y } = await oneStep(pair, spec(pair, body));
    const ce = (q: Params) => crossEntropy(fused(q, features(q, x)), y);
    let p = sgdStep(init, ce, Object.keys(init));
    p = restart(p, init, ["head."]);
    const head = Object.keys(p).filter((n) => n.startsWith("head."));
    p = sgdStep(sgdStep(p, ce, head), ce, head);
    expectParameters(after, p, 1e-5);
    expect(records.slice(1).map((r) => r.grad_norm)).toEqual([[0, 0], [0, 0]]);
  });

  it("InfoReg: while audio's information still grows (k > 0.05 over a 10-epoch window), the surer modality's gradient gains β·(θ − θ at the epoch's start)", async () => {
    const body = shipped("inforeg");
    const [threshold, c] = [param(body, "threshold"), [param(body, "beta_audio"), param(body, "beta_visual")]];
    const epochs = 13;
    // Two steps per epoch (batch 8), so that the weights move away from the epoch's snapshot.
    const { init, after, epochRules, records } = await oneStep(pair, spec(pair, body).replace("batch 16", "batch 8"), epochs);
    const data = fixedData(pair).train;
    const rows = (order: number[]) => ({
      x: pair.map((_, k) => tf.gather(tf.tensor2d(data.inputs[k]!, [16, k === 0 ? 8 : 6]), order)),
      y: tf.gather(tf.tensor1d(data.labels), order),
    });
    const kernels = ["encoder.a.dense0.kernel", "encoder.a.last.kernel"];
    let p = init;
    let pulled = 0;
    const T: number[] = [];
    for (let epoch = 0; epoch < epochs; epoch++) {
      const start = p;
      const t = (j: number) => (j >= 0 ? T[j]! : 0);
      const window = Array.from({ length: 10 }, (_, i) => t(epoch - 1 - i)).reduce((a, b) => a + b, 0);
      const growth = epoch === 0 ? 1 : (t(epoch - 1) - t(epoch - 11)) / window;
      expectValues([epochRules[epoch]!.growth as number], [growth]);
      let sum = 0;
      for (const half of [0, 1]) {
        const { x, y } = rows(batchOrder(epoch).slice(8 * half, 8 * half + 8));
        const loss = (q: Params) => {
          const z = features(q, x);
          return tf.addN([crossEntropy(fused(q, z), y), crossEntropy(share(q, z, 0), y), crossEntropy(share(q, z, 1), y)]);
        };
        const g = fullGradient(loss, p, Object.keys(p));
        // The information: the mean squared gradient over audio's weight tensors, summed over the epoch's steps.
        const squares = kernels.reduce((a, n) => a + scalar(tf.sum(tf.square(g.get(n)!))), 0);
        sum += squares / kernels.reduce((a, n) => a + p[n]!.size, 0);
        const z = features(p, x);
        const s = [0, 1].map((k) => scalar(tf.sum(trueProb(share(p, z, k), y))));
        const beta = [0, 1].map((m) => (growth > threshold && s[m]! > s[1 - m]! ? c[m]! * Math.exp(Math.tanh(s[m]! - s[1 - m]!)) : 0));
        expectValues(records[2 * epoch + half]!.s, s);
        if (half === 1 && beta.some((b) => b > 0)) pulled++;
        p = Object.fromEntries(Object.entries(p).map(([n, w]) => {
          const m = pair.findIndex((u) => n.startsWith(`encoder.${u}.`));
          const pull = m >= 0 ? tf.mul(beta[m]!, tf.sub(w, start[n]!)) : tf.zerosLike(w);
          return [n, tf.sub(w, tf.mul(tf.add(g.get(n)!, pull), lr))];
        }));
      }
      T.push(sum);
    }
    expect(pulled).toBeGreaterThan(0); // the regulation acted on some steps
    expectParameters(after, p);
  });

  it("LFM: α_cls a fixed quintic of the epoch; L = 2·(α_cls·CE(½out) + (1 − α_cls)·½Σ_m KL(m ‖ p_m)), m the heads' mixture", async () => {
    const body = shipped("lfm");
    const { init, after, epochRules, x, y } = await oneStep(pair, spec(pair, body), 3);
    const poly = (e: number) => 0.204623704 + 3.35472727e-3 * e + 1.22989557e-4 * e ** 2 - 2.92947416e-6 * e ** 3 + 2.23835486e-8 * e ** 4 - 5.39717505e-11 * e ** 5;
    expectValues(epochRules.map((r) => r.a_cls as number), [0, 1, 2].map(poly));
    // KL(m ‖ p) with m = (p_a + p_b)/2, written out: Σ_c m_c (log m_c − log p_c).
    const klFromMixture = (ua: tf.Tensor, ub: tf.Tensor, u: tf.Tensor) => {
      const m = tf.div(tf.add(tf.softmax(ua), tf.softmax(ub)), 2);
      return tf.sum(tf.mul(m, tf.sub(tf.log(m), tf.logSoftmax(u))), -1);
    };
    let p = init;
    for (let epoch = 0; epoch < 3; epoch++) {
      const a = poly(epoch);
      const loss = (q: Params) => {
        const z = features(q, x);
        const [ua, ub] = [share(q, z, 0), share(q, z, 1)];
        const align = tf.mean(tf.add(klFromMixture(ua, ub, ua), klFromMixture(ua, ub, ub)));
        return tf.mul(2, tf.add(tf.mul(a, crossEntropy(tf.mul(0.5, fused(q, z)), y)), tf.mul((1 - a) * 0.5, align)));
      };
      p = sgdStep(p, loss);
    }
    expectParameters(after, p, 1e-5);
  });
});
