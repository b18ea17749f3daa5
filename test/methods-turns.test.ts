import * as tf from "@tensorflow/tfjs";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { loadTrainer } from "../cli/load-trainer.js";
import { selectBackend } from "../runtime/backend.js";
import { Forward } from "../runtime/model.js";
import { Optimizer } from "../runtime/optimizer.js";
import { compileOrThrow, specsDir, straightAndResumed } from "./helpers.js";
import { crossEntropy, dense, encode, expectParameters, expectValues, fixedData, fullGradient, lr, norm, oneStep, pair, param, scalar, shipped, spec, trueProb, turnsOf, type Params } from "./one-step.js";

/**
 * The methods that train the modalities in turn (`loss[m]` with `turns`), their shipped specs read
 * from disk, against the papers' equations computed here step by step: which parameters each turn
 * moves, the history a turn leaves the next (MLA's projector), and the prediction evaluation scores.
 */
beforeAll(async () => {
  await selectBackend("cpu");
});

/** The shared head on modality k alone (a sum fusion of z_k): f_k = z_k·W + b. */
const alone = (p: Params, x: tf.Tensor[], k: number) => dense(p, "head", encode(p, pair[k]!, x[k]!));
/** The parameters one modality's turn reaches: its encoder and the shared head. */
const turnOf = (p: Params, k: number) => Object.keys(p).filter((n) => n.startsWith(`encoder.${pair[k]}.`) || n.startsWith("head."));
/** Per sample: the entropy of softmax(o). */
const entropy = (o: tf.Tensor) => tf.neg(tf.sum(tf.mul(tf.softmax(o), tf.logSoftmax(o)), -1));

/** SGD as PyTorch's (weight decay added to the gradient, then momentum) on the named parameters only; the rest stay, momentum and all. */
function sgdWithMomentum(buffers: Map<string, tf.Tensor>, options: { momentum: number; decay: number }) {
  return (p: Params, loss: (q: Params) => tf.Tensor, which: string[]): Params => {
    const g = fullGradient(loss, p, which);
    return Object.fromEntries(
      Object.entries(p).map(([n, t]) => {
        if (!which.includes(n)) return [n, t];
        const d = tf.add(g.get(n)!, tf.mul(t, options.decay));
        const b = buffers.has(n) ? tf.add(tf.mul(buffers.get(n)!, options.momentum), d) : d;
        buffers.set(n, b);
        return [n, tf.sub(t, tf.mul(b, lr))];
      }),
    );
  };
}

/** The fixed data's test split (8 samples), which evaluation scores. */
function testSplit() {
  const test = fixedData(pair).test;
  return { x: pair.map((_, k) => tf.tensor2d(test.inputs[k]!, [test.size, k === 0 ? 8 : 6])), y: tf.tensor1d(test.labels) };
}

/** The trainer of a test spec, to call its generated `predict` on a forward pass of the test split with given parameters. */
async function predictor(source: string) {
  const trainer = await loadTrainer(await compileOrThrow(source), mkdtempSync(join(tmpdir(), "mmb-predict-")));
  const { x, y } = testSplit();
  return (p: Params) => trainer.predict!(new Forward(trainer.spec, p, x, y, false), trainer.params);
}

describe("methods that train the modalities in turn", () => {
  it("MLA: each step, one SGD step per modality through the shared head, audio then visual; the other encoder keeps its weights and momentum", async () => {
    const body = shipped("mla");
    const source = spec(pair, body).replace("seed 2", `seed 2 ${turnsOf("mla")}`).replace(`sgd(lr: ${lr})`, `sgd(lr: ${lr}, momentum: 0.9, weight_decay: 0.01)`);
    expect(source).toContain("turns step");
    const { init, after, records, x, y } = await oneStep(pair, source, 2);
    const step = sgdWithMomentum(new Map(), { momentum: 0.9, decay: 0.01 });
    let p = init;
    for (let epoch = 0; epoch < 2; epoch++) {
      const losses: number[] = [];
      const norms: number[] = [];
      for (const k of [0, 1]) {
        const loss = (q: Params) => crossEntropy(alone(q, x, k), y);
        losses.push(scalar(loss(p)));
        norms.push(scalar(norm([...fullGradient(loss, p, turnOf(p, k).filter((n) => n.startsWith("encoder."))).values()])));
        p = step(p, loss, turnOf(p, k));
      }
      // The step logs the sum of its turns' losses, and each encoder's gradient norm from its own turn.
      expectValues(records[epoch]!.loss as number, [losses[0]! + losses[1]!]);
      expectValues(records[epoch]!.grad_norm, norms);
    }
    expectParameters(after, p, 1e-5);
  });

  it("MLA at test time: Σ_m w_m·f_m with w_m = exp(−H_m) / Σ_j exp(−H_j), H_m the entropy of each sample's softmax(f_m)", async () => {
    const source = spec(pair, shipped("mla")).replace("seed 2", `seed 2 ${turnsOf("mla")}`);
    const predict = await predictor(source);
    const { x } = testSplit();
    const { init } = await oneStep(pair, source);
    const f = [0, 1].map((k) => alone(init, x, k));
    const e = f.map((o) => tf.exp(tf.neg(entropy(o))));
    const w = e.map((ek) => tf.div(ek, tf.add(e[0]!, e[1]!)));
    const expected = tf.add(tf.mul(tf.reshape(w[0]!, [-1, 1]), f[0]!), tf.mul(tf.reshape(w[1]!, [-1, 1]), f[1]!));
    const actual = predict(init);
    expect(actual.shape).toEqual([8, 4]);
    expectValues(Array.from(actual.dataSync()), Array.from(expected.dataSync()));
    // Not the plain sum: the weights differ per sample.
    expect(Math.abs(scalar(tf.sub(w[0]!, 0.5).abs().max()))).toBeGreaterThan(1e-3);
  });

  it("MLA with the paper's projection (`--set project=1`): P ← P − k·kᵀ/(α + rᵀk), P/‖P‖_F, ∇W ← P·∇W, P carried from turn to turn and step to step", async () => {
    const body = shipped("mla").replace("param project = 0", "param project = 1");
    const { init, after, x, y } = await oneStep(pair, spec(pair, body).replace("seed 2", `seed 2 ${turnsOf("mla")}`), 2);
    let P = tf.eye(5);
    let p = init;
    for (let epoch = 0; epoch < 2; epoch++) {
      // One step per epoch: `progress` is 0, α = 0.1^(1 + 0).
      const alpha = 0.1;
      for (const k of [0, 1]) {
        const loss = (q: Params) => crossEntropy(alone(q, x, k), y);
        const which = turnOf(p, k);
        const g = fullGradient(loss, p, which);
        const r = tf.reshape(tf.mean(encode(p, pair[k]!, x[k]!), 0), [5, 1]);
        const kv = tf.matMul(P, r);
        P = tf.sub(P, tf.div(tf.matMul(kv, kv, false, true), tf.add(alpha, tf.matMul(r, kv, true, false))));
        P = tf.div(P, tf.norm(P));
        g.set("head.kernel", tf.matMul(P, g.get("head.kernel")!));
        p = Object.fromEntries(Object.entries(p).map(([n, t]) => [n, which.includes(n) ? tf.sub(t, tf.mul(g.get(n)!, lr)) : t]));
      }
    }
    expectParameters(after, p, 1e-5);
    // The projection changed the head's training (against the run without it).
    const plain = await oneStep(pair, spec(pair, shipped("mla")).replace("seed 2", `seed 2 ${turnsOf("mla")}`), 2);
    const moved = (a: Map<string, Float32Array>) => a.get("head.kernel")!;
    expect(Math.abs(moved(plain.after)[0]! - moved(after)[0]!)).toBeGreaterThan(1e-4);
  });

  it("ReconBoost: two epochs per modality's turn, a boosting epoch (w1 − w2·q_y)/C·CE on encoder m and the head (not the others, not β), then a joint epoch on β·Σ_k f_k; prediction β·Σ_k f_k", async () => {
    const body = shipped("reconboost");
    const [w1, w2, C] = [param(body, "w1"), param(body, "w2"), param(body, "C")];
    // With momentum and weight decay, as shipped: a learner out of its turn must not move at all.
    const source = spec(pair, body).replace("seed 2", `seed 2 ${turnsOf("reconboost")}`).replace(`sgd(lr: ${lr})`, `sgd(lr: ${lr}, momentum: 0.9, weight_decay: 0.01)`);
    expect(source).toContain("turns epoch turn_epochs 2");
    const step = sgdWithMomentum(new Map(), { momentum: 0.9, decay: 0.01 });
    const { init, after, epochRules, x, y } = await oneStep(pair, source, 4);
    expect(epochRules.map((r) => Boolean(r.boosting))).toEqual([true, false, true, false]);
    const boost = (q: Params) => q["learnable.boost"]!;
    let p = init;
    for (let epoch = 0; epoch < 4; epoch++) {
      const m = Math.floor(epoch / 2) % 2;
      const boosting = epoch % 2 === 0;
      const loss = boosting
        ? (q: Params) => {
            // q_y of the others' ensemble: a constant for the learner being fit.
            const others = tf.mul(boost(q), alone(q, x, 1 - m));
            const qy = trueProb(tf.tensor(others.dataSync(), others.shape), y);
            const nll = tf.neg(tf.log(trueProb(alone(q, x, m), y)));
            return tf.mean(tf.mul(tf.div(tf.sub(w1, tf.mul(w2, qy)), C), nll));
          }
        : (q: Params) => crossEntropy(tf.mul(boost(q), tf.add(alone(q, x, 0), alone(q, x, 1))), y);
      // Boosting moves encoder m and the head (not β, inside q); the joint epoch moves everything.
      p = step(p, loss, boosting ? turnOf(p, m) : Object.keys(p));
    }
    expectParameters(after, p, 1e-5);
    expect(after.get("learnable.boost")![0]).not.toBe(init["learnable.boost"]!.dataSync()[0]); // β learnt in the joint epochs
    const predict = await predictor(source);
    const { x: xt } = testSplit();
    expectValues(Array.from(predict(p).dataSync()), Array.from(tf.mul(boost(p), tf.add(alone(p, xt, 0), alone(p, xt, 1))).dataSync()));
  });

  it("a run stopped and resumed inside a turn continues bit for bit: MLA's projector and Adam's per-parameter steps, ReconBoost in the middle of visual's turn", async () => {
    const text = (name: string) => readFileSync(join(specsDir, `${name}.mmb`), "utf8");
    const mla = text("mla").replace("param project = 0", "param project = 1").replace(/optimizer sgd\([^)]*\)/, "optimizer adamw(lr: 1e-3)").replace("train epochs 20", "train epochs 3");
    // A smaller data set than the benchmark's: the check is of the state, not of the learning.
    const small = (t: string) => t.replace(/seed: 7\)/, "samples: 240, seed: 7)");
    await straightAndResumed(small(mla), 2, 3);
    await straightAndResumed(small(text("reconboost")).replace("train epochs 20", "train epochs 4"), 3, 4);
  });

  it("under `turns step`, a rule value named like JavaScript's own (`__proto__`) is logged once per turn like any other", async () => {
    const body = `fusion sum -> linear(4)\nloss[m] cross_entropy(alone[m], y)\nbalance {\n  __proto__ = norm(grad(encoder[m]))\n}`;
    const { records } = await oneStep(pair, spec(pair, body).replace("seed 2", "seed 2 turns step"));
    expect(Object.getOwnPropertyDescriptor(records[0], "__proto__")?.value).toEqual(records[0]!.grad_norm);
  });

  it("Adam counts each parameter's own steps: a parameter a turn leaves out keeps its bias correction", () => {
    const params = new Map([
      ["a", tf.variable(tf.tensor1d([1]))],
      ["b", tf.variable(tf.tensor1d([1]))],
    ]);
    const adam = new Optimizer({ kind: "adam", options: { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8 } });
    adam.apply(params, new Map([["a", tf.tensor1d([1])]]), () => 1);
    adam.apply(params, new Map([["b", tf.tensor1d([1])]]), () => 1);
    // Adam's first step moves by lr·sign(g) (m̂/√v̂ = 1 whatever the step count of a shared counter would say).
    expect(params.get("a")!.dataSync()[0]).toBeCloseTo(0.9, 6);
    expect(params.get("b")!.dataSync()[0]).toBeCloseTo(0.9, 6);
  });

  it("a checkpoint of an earlier mmb, with one step count for the optimiser, resumes with that count for each of its parameters", async () => {
    // Slots are named tfjs variables: each optimiser here has a parameter name of its own.
    const slots = (n: string) => ({ [`${n}/m`]: { shape: [1], values: [0.5] }, [`${n}/v`]: { shape: [1], values: [0.25] } });
    const options = { kind: "adam", options: { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8 } };
    const [old, current] = [new Optimizer(options), new Optimizer(options)];
    old.restore({ steps: 3, slots: slots("old") });
    current.restore({ steps: { now: 3 }, slots: slots("now") });
    expect((await old.state()).steps).toEqual({ old: 3 });
    const step = (optimizer: Optimizer, name: string) => {
      const p = new Map([[name, tf.variable(tf.tensor1d([1]))]]);
      optimizer.apply(p, new Map([[name, tf.tensor1d([1])]]), () => 1);
      return p.get(name)!.dataSync()[0];
    };
    expect(step(old, "old")).toBe(step(current, "now"));
  });
});
