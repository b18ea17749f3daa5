import * as tf from "@tensorflow/tfjs";
import { beforeAll, describe, expect, it } from "vitest";
import { selectBackend } from "../runtime/backend.js";
import { kmeansPurity } from "../runtime/clustering.js";
import { Random } from "../runtime/random.js";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadTrainer } from "../cli/load-trainer.js";
import { train } from "../runtime/train.js";
import { compileOrThrow, fixedData as fixedSamples, logRecords, smallSpec, straightAndResumed } from "./helpers.js";
import { crossEntropy, expectUpdate, expectValues, features, fixedData, fullGradient, fused, lr, names, norm, oneStep, pair, scalar, share, spec, trueProb, type Params } from "./one-step.js";

/**
 * The language's third part, epoch rules (`every epoch { ... }`): `over` a split against the
 * model's outputs computed here from its parameters, `prev` across epochs, epoch values read by
 * the steps and their loss, snapshots of weights, `set weights(G)` with `init` and `fresh`, and a
 * resume that replays the epoch rule bit for bit.
 */
beforeAll(async () => {
  await selectBackend("cpu");
});

const linear = (body: string, loss = "cross_entropy(out, y)") => spec(pair, `fusion concat -> linear(4)\nloss ${loss}\n${body}`);

/** A split of the fixed data (train: the 16 samples of the one step per epoch; valid: 8 others). */
function split(which: "train" | "valid") {
  const data = fixedData(pair)[which];
  return { x: pair.map((_, k) => tf.tensor2d(data.inputs[k]!, [data.size, k === 0 ? 8 : 6])), y: tf.tensor1d(data.labels) };
}

/** −log softmax(o)[y], per sample. */
const nll = (o: tf.Tensor, y: tf.Tensor) => tf.neg(tf.log(trueProb(o, y)));
const mean = (t: tf.Tensor) => scalar(tf.mean(t));

/** ∂CE(out)/∂θ at p on the training batch: the first step's gradient (SGD without momentum: the update is lr times it). */
function firstGradient(p: Params, x: tf.Tensor[], y: tf.Tensor, prefix: string): tf.Tensor[] {
  const which = names(p, prefix);
  const grads = fullGradient((q) => crossEntropy(fused(q, features(q, x)), y), p, which);
  return which.map((n) => grads.get(n)!);
}

describe("every epoch: values over whole splits, read by the steps", () => {
  it("over(split, e) is the mean of a per-sample value over the split, on the weights the last epoch left; prev is the last epoch's value", async () => {
    const { init, epochRules } = await oneStep(pair, linear(`every epoch {
  t_out  = over(train, nll(out, y))
  v_acc  = over(valid, correct(out, y))
  v_a[m] = over(valid, nll(contrib[m], y))
  count  = prev(count, 0) + 1
  last_t = prev(t_out, -1)
}`), 2);
    const train = split("train");
    const valid = split("valid");
    const zv = features(init, valid.x);
    const outValid = fused(init, zv);
    expectValues(epochRules[0]!.t_out, [mean(nll(fused(init, features(init, train.x)), train.y))]);
    expectValues(epochRules[0]!.v_acc, [mean(tf.cast(tf.equal(tf.argMax(outValid, -1), tf.cast(valid.y, "int32")), "float32"))]);
    expectValues(epochRules[0]!.v_a, [0, 1].map((k) => mean(nll(share(init, zv, k), valid.y))));
    // The second epoch's values read the weights after the first epoch's step: they moved.
    expect(epochRules[1]!.t_out).toBeLessThan(epochRules[0]!.t_out as number);
    expect(epochRules.map((r) => r.count)).toEqual([1, 2]);
    expect(epochRules.map((r) => r.last_t)).toEqual([-1, epochRules[0]!.t_out]);
  });

  it("prev(x, init, n) is x n steps or epochs back; an epoch rule's prev of a step value is its value at the last step before the epoch", async () => {
    const { records, epochRules } = await oneStep(pair, linear(`every epoch {
  total = prev(C, 0)
  back2 = prev(total, -1, 2)
}
balance {
  C     = prev(C, 0) + 1
  three = prev(step, -1, 3)
}`).replace("batch 16", "batch 8"), 4);
    // Two steps per epoch: C counts the steps; the epoch rule sees C as the last epoch left it.
    expect(records.map((r) => r.C)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(epochRules.map((r) => r.total)).toEqual([0, 2, 4, 6]);
    expect(epochRules.map((r) => r.back2)).toEqual([-1, -1, 0, 2]);
    expect(records.map((r) => r.three)).toEqual([-1, -1, -1, 0, 1, 2, 3, 4]);
  });

  it("the steps and their loss read the epoch's values: a tensor, a plain number and a condition", async () => {
    const { init, after, record, epochRules, x, y } = await oneStep(pair, linear(`every epoch {
  w     = 0.5 + epoch
  s     = over(train, nll(out, y))
  early = epoch < 1
}
balance {
  k = s * 2
  when early { scale grad(encoder[a]) by 0 }
}`, "w * cross_entropy(out, y)"));
    expectValues(record.k, [2 * (epochRules[0]!.s as number)]);
    // The update: lr · 0.5 · ∂CE/∂θ; encoder a's held by the epoch's condition.
    const head = fullGradient((q) => crossEntropy(fused(q, features(q, x)), y), init, ["head.kernel"]).get("head.kernel")!;
    expectUpdate(init, after, "head.kernel", tf.mul(head, lr * 0.5));
    expect(Array.from(after.get("encoder.a.last.kernel")!)).toEqual(Array.from(init["encoder.a.last.kernel"]!.dataSync()));
    expect(Array.from(after.get("encoder.b.last.kernel")!)).not.toEqual(Array.from(init["encoder.b.last.kernel"]!.dataSync()));
  });

  it("a snapshot of weights at the epoch's start (gradient-shaped) is read by the steps; weights and init in the epoch rule", async () => {
    const { init, records, epochRules, x, y } = await oneStep(pair, linear(`every epoch {
  snap[m]  = weights(encoder[m])
  moved[m] = norm(weights(encoder[m]) - init(encoder[m]))
}
balance {
  since[m] = norm(weights(encoder[m]) - snap[m])
  e[m]     = norm(snap[m] - init(encoder[m]))
}`), 2);
    const step = pair.map((m) => lr * scalar(norm(firstGradient(init, x, y, `encoder.${m}`))));
    expectValues(epochRules[0]!.moved, [0, 0]);
    expectValues(epochRules[1]!.moved, step);
    expectValues(records[1]!.e, step);
    expectValues(records[1]!.since, [0, 0]);
  });

  it("set weights(G) at an epoch's start: a blend with init, and fresh(G), a new draw of the initial distribution", async () => {
    const { init, records, x, y } = await oneStep(pair, linear(`every epoch {
  when epoch == 1 {
    set weights(encoder[a]) = 0.25 * init(encoder[a]) + 0.75 * weights(encoder[a])
    set weights(encoder[b].dense) = fresh(encoder[b].dense)
  }
}
balance {
  d[m] = norm(weights(encoder[m]) - init(encoder[m]))
  c    = cos(weights(encoder[b].dense), init(encoder[b].dense))
  r    = norm(weights(encoder[b].dense)) / norm(init(encoder[b].dense))
}`), 2);
    // θ_a ← 0.25·θ0 + 0.75·(θ0 − lr·g0): 0.75 of the first step's move remains.
    expectValues([(records[1]!.d as number[])[0]!], [0.75 * lr * scalar(norm(firstGradient(init, x, y, "encoder.a")))]);
    // A fresh draw: the initial scale, in a direction unrelated to the initial one.
    expectValues([records[0]!.c as number], [1]);
    expect(Math.abs(records[1]!.c as number)).toBeLessThan(0.35);
    expect(records[1]!.r as number).toBeGreaterThan(0.75);
    expect(records[1]!.r as number).toBeLessThan(1.3);
  });

  it("set weights(G) in the step rules: after the optimiser step, from the updated weights", async () => {
    const { init, after, x, y } = await oneStep(pair, linear(`balance {
  set weights(head) = 0.5 * weights(head)
}`));
    const g = fullGradient((q) => crossEntropy(fused(q, features(q, x)), y), init, ["head.kernel"]).get("head.kernel")!;
    const expected = tf.mul(tf.sub(init["head.kernel"]!, tf.mul(g, lr)), 0.5).dataSync();
    after.get("head.kernel")!.forEach((v, i) => expect(Math.abs(v - expected[i]!)).toBeLessThan(1e-6));
  });

  it("a resumed run replays the epoch rule (over, prev, fresh) and its sets: bit-identical weights, history and epoch values", async () => {
    const source = smallSpec(
      `  scale grad(encoder[m]) by best`,
      `every epoch {
  v    = over(valid, nll(out, y))
  best = min(prev(best, 100), v)
  when epoch == 2 { set weights(encoder[b]) = 0.5 * fresh(encoder[b]) + 0.5 * weights(encoder[b]) }
}`,
    ).replace("train epochs 2", "train epochs 4");
    const { straight, resumed, a, b } = await straightAndResumed(source, 2, 4);
    expect(b.state.history).toEqual(a.state.history);
    const rules = (out: string) => logRecords(out).filter((r) => r.type === "epoch").map((r) => r.rule);
    expect(rules(resumed)).toEqual(rules(straight));
    const best = rules(straight).map((r) => r.best as number);
    expect(best.every((v, i) => i === 0 || v <= best[i - 1]!)).toBe(true);
  });

  it("class_means(split, z[m]): each class's mean feature over the split, read by the steps as class means", async () => {
    const { init, record, epochRules } = await oneStep(pair, linear(`every epoch {
  P[m] = class_means(valid, z[m])
  q[m] = purity(train, z[m])
}
balance {
  s[m] = sum(batch, prob(-distance(z[m], P[m]), y))
}`));
    const valid = split("valid");
    const train = split("train");
    const classMeans = (z: tf.Tensor) => {
      const oneHot = tf.oneHot(tf.cast(valid.y, "int32") as tf.Tensor1D, 4).toFloat();
      return tf.div(tf.matMul(oneHot, z, true, false), tf.maximum(tf.reshape(tf.sum(oneHot, 0), [-1, 1]), 1));
    };
    const zv = features(init, valid.x);
    const zt = features(init, train.x);
    // −‖z − P_c‖ as logits, the true class's probability summed over the batch.
    const s = [0, 1].map((k) => {
      const P = classMeans(zv[k]!);
      const distance = tf.sqrt(tf.sum(tf.square(tf.sub(tf.expandDims(zt[k]!, 1), tf.expandDims(P, 0))), -1));
      return scalar(tf.sum(trueProb(tf.neg(distance), train.y)));
    });
    expectValues(record.s, s);
    for (const q of epochRules[0]!.q as number[]) expect(q >= 0.25 && q <= 1).toBe(true);
  });

  it("k-means purity: 1 for classes that form clusters, the majority share for mixed ones, unchanged by scaling a dimension", () => {
    const random = new Random(5);
    const blobs = (labelOf: (blob: number, i: number) => number) => {
      const features = new Float32Array(4 * 40 * 3);
      const labels: number[] = [];
      for (let b = 0; b < 4; b++) {
        for (let i = 0; i < 40; i++) {
          const row = b * 40 + i;
          for (let d = 0; d < 3; d++) features[row * 3 + d] = (d === b % 3 ? 10 * (1 + Math.floor(b / 3)) : 0) + 0.3 * random.normal();
          labels.push(labelOf(b, i));
        }
      }
      return { features, labels };
    };
    const clean = blobs((b) => b);
    expect(kmeansPurity(clean.features, 160, 3, clean.labels, 4, 1)).toBe(1);
    // Each blob: 30 of its own class, 10 of the next.
    const mixed = blobs((b, i) => (i < 30 ? b : (b + 1) % 4));
    expect(kmeansPurity(mixed.features, 160, 3, mixed.labels, 4, 1)).toBeCloseTo(0.75, 10);
    const stretched = Float32Array.from(mixed.features, (v, i) => (i % 3 === 1 ? 100 * v - 7 : v));
    expect(kmeansPurity(stretched, 160, 3, mixed.labels, 4, 1)).toBeCloseTo(0.75, 10);
  });
});

describe("every epoch: no tensor outlives its epoch", () => {
  it("over(...), class_means(...) and purity(...) leave the tensors alive at each epoch's end the same, epoch after epoch", async () => {
    const out = mkdtempSync(join(tmpdir(), "mmb-epoch-leak-"));
    const rule = `every epoch {
  T[m] = over(train, nll(contrib[m], y))
  V    = over(valid, nll(out, y))
  C[m] = class_means(train, z[m])
  P[m] = purity(valid, z[m])
}`;
    const trainer = await loadTrainer(await compileOrThrow(smallSpec("  s[m] = sum(batch, prob(contrib[m], y))", rule).replace("train epochs 2", "train epochs 4")), out);
    await train(trainer, { out, backend: "cpu", data: fixedSamples(), log: () => {} });
    const tensors = logRecords(out).filter((r) => r.type === "epoch").map((r) => r.tensors as number);
    expect(tensors.length).toBe(4);
    // Before the fix: over's and class_means' sums were kept past the rule's scope, one per call and epoch.
    expect(new Set(tensors.slice(1)).size, `tensors at each epoch's end: ${tensors.join(", ")}`).toBe(1);
  });
});
