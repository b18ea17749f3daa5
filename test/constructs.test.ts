import * as tf from "@tensorflow/tfjs";
import { beforeAll, describe, expect, it } from "vitest";
import { analyze } from "../compiler/index.js";
import { selectBackend } from "../runtime/backend.js";
import { stopGradient } from "../runtime/ops.js";
import { diagnose, logRecords, smallSpec, straightAndResumed } from "./helpers.js";
import { batch, crossEntropy, dense, dropDraws, expectUpdate, expectValues, features, fullGradient, fused, lr, oneStep, pair, share, spec, type Params } from "./one-step.js";

/**
 * The constructs of the language's second part (outputs as distributions, parameters as values,
 * masks decided by values, assignments, random draws, time arithmetic), each against its
 * definition computed here from the model's own parameters, and their diagnostics.
 */
beforeAll(async () => {
  await selectBackend("cpu");
});

const softmax = (o: tf.Tensor) => tf.softmax(o);
const mean = (t: tf.Tensor) => tf.mean(t).dataSync()[0]!;
const linear = (body: string) => spec(pair, `fusion concat -> linear(4)\nloss cross_entropy(out, y)\n${body}`);

describe("reductions over modalities of host values", () => {
  it("stay plain numbers: sum(k, 1) + 1 is 3 with two modalities, not a tensor added to a number", async () => {
    const { record } = await oneStep(pair, linear(`balance {
  c = sum(k, 1) + 1
  h = max(k, index(k)) * 2 + min(k, index(k))
  av = mean(k, index(k) + epoch) - 0.5
}`));
    expect([record.c, record.h, record.av]).toEqual([3, 2, 0]);
  });
});

describe("outputs as distributions, per sample (batch means logged)", () => {
  it("entropy, confidence, nll, margin, kl, js, logsumexp, mse and cos of outputs and features, correct", async () => {
    const { init, record, x, y } = await oneStep(pair, linear(`balance {
  e_out  = entropy(out)
  e_z    = entropy(z[a])
  conf   = confidence(out)
  nl     = nll(out, y)
  mar    = margin(out, y)
  kab    = kl(contrib[a], contrib[b])
  jab    = js(contrib[a], contrib[b])
  lse    = logsumexp(out)
  sq     = mse(contrib[a], contrib[b])
  cz     = cos(z[a], normalize(z[b]))
  right  = mean(batch, correct(out, y))
}`));
    const z = features(init, x);
    const out = fused(init, z);
    const [ua, ub] = [share(init, z, 0), share(init, z, 1)];
    const entropy = (o: tf.Tensor) => tf.neg(tf.sum(tf.mul(softmax(o), tf.logSoftmax(o)), -1));
    const p = softmax(out);
    const truth = tf.oneHot(tf.cast(y, "int32") as tf.Tensor1D, 4);
    const kl = (a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(softmax(a), tf.sub(tf.logSoftmax(a), tf.logSoftmax(b))), -1);
    const m = tf.div(tf.add(softmax(ua), softmax(ub)), 2);
    const js = tf.div(tf.add(tf.sum(tf.mul(softmax(ua), tf.sub(tf.log(softmax(ua)), tf.log(m))), -1), tf.sum(tf.mul(softmax(ub), tf.sub(tf.log(softmax(ub)), tf.log(m))), -1)), 2);
    const unit = (t: tf.Tensor) => tf.div(t, tf.norm(t, 2, 1, true));
    expectValues(record.e_out, [mean(entropy(out))]);
    expectValues(record.e_z, [mean(entropy(z[0]!))]);
    expectValues(record.conf, [mean(tf.max(p, -1))]);
    expectValues(record.nl, [mean(tf.neg(tf.sum(tf.mul(truth, tf.logSoftmax(out)), -1)))]);
    expectValues(record.mar, [mean(tf.sub(tf.sum(tf.mul(p, truth), -1), tf.max(tf.sub(p, tf.mul(truth, 2)), -1)))]);
    expectValues(record.kab, [mean(kl(ua, ub))]);
    expectValues(record.jab, [mean(js)]);
    expectValues(record.lse, [mean(tf.logSumExp(out, -1))]);
    expectValues(record.sq, [mean(tf.mean(tf.square(tf.sub(ua, ub)), -1))]);
    expectValues(record.cz, [mean(tf.sum(tf.mul(unit(z[0]!), unit(z[1]!)), -1))]);
    expectValues(record.right, [mean(tf.cast(tf.equal(tf.argMax(out, -1), tf.cast(y, "int32")), "float32"))]);
    expect(Math.abs(record.kab as number)).toBeGreaterThan(1e-3); // the divergences are not trivially 0
  });

  it("a cosine head: s·Σ_m cos(z_m, W_m's class column), no bias; contrib[m] each modality's part", async () => {
    const { init, after, record, x, y } = await oneStep(pair, spec(pair, `fusion concat -> cosine(4, scale: 3)
loss cross_entropy(out, y)
balance {
  ca = sum(batch, prob(contrib[a], y))
}`));
    const cosines = (p: Params, zm: tf.Tensor, k: number) => {
      const w = tf.slice(p["head.kernel"]!, [k * 5, 0], [5, -1]);
      return tf.mul(3, tf.matMul(tf.div(zm, tf.add(tf.norm(zm, 2, 1, true), 1e-12)) as tf.Tensor2D, tf.div(w, tf.add(tf.norm(w, 2, 0, true), 1e-12)) as tf.Tensor2D));
    };
    const loss = (p: Params) => {
      const z = features(p, x);
      return crossEntropy(tf.add(cosines(p, z[0]!, 0), cosines(p, z[1]!, 1)), y);
    };
    const z = features(init, x);
    expectValues(record.ca, [tf.sum(tf.sum(tf.mul(softmax(cosines(init, z[0]!, 0)), tf.oneHot(tf.cast(y, "int32") as tf.Tensor1D, 4)), -1)).dataSync()[0]!]);
    expect(Object.keys(init)).not.toContain("head.bias");
    const g = fullGradient(loss, init, Object.keys(init));
    for (const name of Object.keys(init)) expectUpdate(init, after, name, tf.mul(g.get(name)!, lr));
  });
});

describe("auxiliary heads that train their encoder", () => {
  it("head[m] = linear(N, detach: false): the head's loss reaches the encoder; with the default it does not", async () => {
    const aux = (detach: string) => spec(pair, `head[m] = linear(4${detach})
fusion concat -> linear(4)
loss cross_entropy(out, y) + sum(k, cross_entropy(head[k], y))`);
    for (const [option, reaches] of [[", detach: false", true], ["", false]] as const) {
      const { init, after, x, y } = await oneStep(pair, aux(option));
      const loss = (p: Params) => {
        const z = features(p, x);
        const zs = reaches ? z : z.map((t) => stopGradient(t));
        return tf.add(crossEntropy(fused(p, z), y), tf.addN(pair.map((m, k) => crossEntropy(dense(p, `aux.${m}`, zs[k]!), y))));
      };
      const g = fullGradient(loss, init, Object.keys(init));
      for (const name of Object.keys(init)) expectUpdate(init, after, name, tf.mul(g.get(name)!, lr));
    }
  });
});

describe("parameters as values", () => {
  it("weights(G) and init(G): ‖g‖²/‖θ‖², the distance from the start (0 at step 0), elementwise arithmetic, ema of a squared gradient", async () => {
    const { init, record, x, y } = await oneStep(pair, linear(`balance {
  speed[m] = square(norm(grad(encoder[m]))) / square(norm(weights(encoder[m])))
  moved    = norm(weights(encoder[a]) - init(encoder[a]))
  ratio    = norm(grad(head) / (weights(head) + 10))
  fisher   = mean(ema(square(grad(head)), 0.9))
}`));
    const loss = (p: Params) => crossEntropy(fused(p, features(p, x)), y);
    const g = fullGradient(loss, init, Object.keys(init));
    const of = (prefix: string) => Object.keys(init).filter((n) => n.startsWith(prefix));
    const squaredNorm = (ts: tf.Tensor[]) => ts.reduce((s, t) => s + tf.sum(tf.square(t)).dataSync()[0]!, 0);
    expectValues(record.speed, pair.map((m) => squaredNorm(of(`encoder.${m}.`).map((n) => g.get(n)!)) / squaredNorm(of(`encoder.${m}.`).map((n) => init[n]!))));
    expectValues(record.moved, [0]);
    const head = of("head");
    expectValues(record.ratio, [Math.sqrt(squaredNorm(head.map((n) => tf.div(g.get(n)!, tf.add(init[n]!, 10)))))]);
    // The first step's ema is its argument: the mean of the squared head gradient.
    const elements = head.reduce((s, n) => s + init[n]!.size, 0);
    expectValues(record.fisher, [squaredNorm(head.map((n) => g.get(n)!)) / elements]);
  });
});

describe("assignments, masks and random draws", () => {
  it("set w[m] after the optimiser step reads the updated values: the weights are renormalised to sum to 2", async () => {
    const { init, after, x, y } = await oneStep(pair, spec(pair, `learnable w[m] = 1
fusion concat(j, w[j] * z[j]) -> linear(4)
loss cross_entropy(out, y)
balance {
  set w[m] = 2 * w[m] / sum(k, w[k])
}`));
    const loss = (p: Params) => {
      const z = features(p, x).map((t, k) => tf.mul(p[`learnable.w.${pair[k]}`]!, t));
      return crossEntropy(fused(p, z), y);
    };
    const g = fullGradient(loss, init, Object.keys(init));
    const stepped = pair.map((m) => 1 - lr * g.get(`learnable.w.${m}`)!.dataSync()[0]!);
    expect(Math.abs(stepped[0]! - stepped[1]!)).toBeGreaterThan(1e-6); // the update moved them apart
    pair.forEach((m, k) => expect(after.get(`learnable.w.${m}`)![0]).toBeCloseTo((2 * stepped[k]!) / (stepped[0]! + stepped[1]!), 5));
  });

  it("drop with a probability read from this step's outputs (a probe pass), rescaled: kept features × 1/(1 − p)", async () => {
    // q_a = 0.5 exactly, computed from this step's outputs; b is never dropped.
    const { init, after, record, x, y } = await oneStep(pair, linear(`balance {
  q[m] = if index(m) == 0 then 0.5 * mean(batch, prob(out, y)) / mean(batch, prob(out, y)) else 0
  drop z[m] with q[m] rescaled
}`));
    expectValues(record.q, [0.5, 0]);
    const keep = dropDraws(0).map((u) => (u < 0.5 ? 0 : 2));
    expect(new Set(keep).size).toBe(2); // some samples kept, some dropped
    const loss = (p: Params) => {
      const z = features(p, x);
      return crossEntropy(fused(p, [tf.mul(z[0]!, tf.tensor2d(keep, [batch, 1])), z[1]!]), y);
    };
    const g = fullGradient(loss, init, Object.keys(init));
    for (const name of Object.keys(init)) expectUpdate(init, after, name, tf.mul(g.get(name)!, lr));
  });

  it("drop with a probability from last step's values: prev(x, 1) at the first step drops modality a entirely", async () => {
    const { init, after } = await oneStep(pair, linear(`balance {
  x = mean(batch, prob(out, y))
  drop z[m] with if index(m) == 0 then prev(x, 1) else 0
}`));
    const moved = (name: string) => Math.max(...Array.from(init[name]!.dataSync(), (v, i) => Math.abs(v - after.get(name)![i]!)));
    expect(moved("encoder.a.dense0.kernel")).toBe(0);
    expect(moved("encoder.b.dense0.kernel")).toBeGreaterThan(1e-6);
  });

  it("a drop with p = 1, rescaled, zeroes the features (kept ones × 1/(1 − p), and no sample is kept): no 0/0", async () => {
    const { init, after, record } = await oneStep(pair, linear(`balance {
  p[m] = if index(m) == 0 then 1 else 0 * mean(batch, prob(out, y))
  drop z[m] with p[m] rescaled
}`));
    expect(Number.isFinite(record.loss)).toBe(true);
    const moved = (name: string) => Math.max(...Array.from(init[name]!.dataSync(), (v, i) => Math.abs(v - after.get(name)![i]!)));
    expect(moved("encoder.a.dense0.kernel")).toBe(0);
    expect(moved("encoder.b.dense0.kernel")).toBeGreaterThan(1e-6);
  });

  it("a drop decided by a definition without index that reads prev: the value written is the value read (its slot is not keyed by the drop's m)", async () => {
    const { init, after } = await oneStep(pair, linear(`balance {
  c = step + 1
  x = prev(c, 0)
  drop z[m] with if index(m) == 0 and x > 0 then 1 else 0
}`), 2);
    // Step 0: x = 0, nothing dropped; step 1: x = 1, modality a dropped, so its first layer moved only at step 0.
    const once = await oneStep(pair, linear("balance {\n}"), 1);
    const kernel = "encoder.a.dense0.kernel";
    Array.from(after.get(kernel)!).forEach((v, i) => expect(v).toBeCloseTo(once.after.get(kernel)![i]!, 6));
    expect(Math.max(...Array.from(init[kernel]!.dataSync(), (v, i) => Math.abs(v - after.get(kernel)![i]!)))).toBeGreaterThan(1e-6);
  });

  it("uniform, bernoulli, floor, % and index: draws in range and of the asked frequency, floor-mod arithmetic", async () => {
    const { record } = await oneStep(pair, linear(`balance {
  u1   = uniform()
  u2   = uniform()
  frac = mean(bernoulli(0 * abs(grad(encoder[b])) + 0.3))
  ints = 7 % 3 + floor(2.5) + index(b)
  neg  = (0 - 7) % 3
}`));
    for (const u of [record.u1, record.u2] as number[]) expect(u >= 0 && u < 1).toBe(true);
    expect(record.u1).not.toBe(record.u2); // each call its own stream
    expect(Math.abs((record.frac as number) - 0.3)).toBeLessThan(0.15); // 125 elements: 3.5 standard errors
    expect(record.ints).toBe(4);
    expect(record.neg).toBe(2);
  });

  it("a resumed run draws, masks, carries its gradient-shaped ema and sets its learnables as the uninterrupted one: bit-identical weights", async () => {
    const source = smallSpec(
      `  q    = uniform()
  e    = uniform(epoch)
  x    = mean(batch, prob(out, y))
  F[m] = ema(square(grad(encoder[m])), 0.9)
  drop z[m] with if index(m) == 0 then 0.5 * q * prev(x, 0) else 0 rescaled
  scale grad(encoder[m]) by bernoulli(clamp(0.5 * F[m] / mean(F[m]), 0, 1))
  set w[m] = 2 * w[m] / sum(k, w[k])`,
    )
      .replace("fusion concat -> linear(4)", "learnable w[m] = 1\nfusion concat(j, w[j] * z[j]) -> linear(4)")
      .replace("train epochs 2", "train epochs 3");
    const { straight, resumed, a, b } = await straightAndResumed(source, 2, 3);
    expect(b.state.epoch).toBe(2);
    expect(b.state.history).toEqual(a.state.history);
    // The learnables moved apart and were renormalised; the third epoch's steps logged the same draws.
    const w = a.state.manifest.flatMap(({ name }, i) => (name.startsWith("learnable.w.") ? [a.weights[i]![0]!] : []));
    const steps = (out: string) => logRecords(out).filter((r) => r.type === "step" && r.epoch === 2);
    expect(steps(resumed).map((r) => [r.q, r.e, r.x])).toEqual(steps(straight).map((r) => [r.q, r.e, r.x]));
    expect(w[0]! + w[1]!).toBeCloseTo(2, 5);
    expect(w[0]).not.toBeCloseTo(1, 5);
  });
});

describe("diagnostics of the new constructs", () => {
  it("wrong kinds and places are coded", () => {
    const codes = (body: string) => analyze(smallSpec(body)).diagnostics.map((d) => d.code);
    expect(codes("v = entropy(grad(head))")).toEqual(["MMB008"]);
    expect(codes("v = kl(out, z[a])")).toEqual(["MMB008"]);
    expect(codes("v = correct(out, y) + 1")).toEqual(["MMB008"]);
    expect(codes("v = norm(weights(fusion))")).toEqual(["MMB025"]);
    expect(codes("set v = 1")).toEqual(["MMB018"]);
    expect(codes("v = uniform(acc(out, y))")).toEqual(["MMB027"]);
    expect(codes("v = bernoulli(out)")).toEqual(["MMB008"]);
    expect(codes("v = index(k)")).toEqual(["MMB009"]);
    expect(diagnose(smallSpec("v = 7 % 3\n w = floor(2.5)"))).toEqual([]);
  });

  it("the loss may read rule values, not ones computed from its own gradients (MMB017)", () => {
    const spec = smallSpec("g = norm(grad(head))").replace("loss cross_entropy(out, y)", "loss cross_entropy(out, y) * g");
    expect(analyze(spec).diagnostics.map((d) => [d.code, d.message])).toEqual([["MMB017", "the loss reads `g`, which is computed from this step's gradients: the loss's own"]]);
    expect(diagnose(smallSpec("h = mean(batch, prob(out, y))").replace("loss cross_entropy(out, y)", "loss cross_entropy(out, y) * h"))).toEqual([]);
  });
});
