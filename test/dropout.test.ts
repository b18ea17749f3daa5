import * as tf from "@tensorflow/tfjs";
import { describe, expect, it } from "vitest";
import { Forward, initialParameters, type Params, type StepServices } from "../runtime/model.js";
import { Random } from "../runtime/random.js";
import { StepRandom } from "../runtime/step-random.js";
import { encoderModelSpec, smallSpec, straightAndResumed } from "./helpers.js";

/**
 * An encoder's `dropout` option (mlp): drawn from the step's streams (runtime/step-random.ts), so that
 * the passes of one step drop the same units, a per-sample pass its own row's, a resumed run the draws
 * a straight one makes, and the torch trainer the same ones (test/torch-differential.test.ts, "with
 * dropout"; test/torch-distributed.test.ts for a batch two processes share). A per-sample pass's
 * draws of the spec's own `dropout(x, p)` and `bernoulli(p)` are its row's of the batch's too.
 */

/** FNV-1a over 32-bit words or a string's characters, written out here rather than taken from the runtime. */
const fnv = (parts: number[]) => parts.reduce((h, part) => Math.imul(h ^ part, 16777619) >>> 0, 2166136261);

/** The mask the layer's draw should give, from the equations: its stream is (seed, step, the layer name's hash with the top bit set). */
function expectedMask(seed: number, step: number, layer: string, rate: number, size: number): number[] {
  const id = (fnv([...layer].map((c) => c.charCodeAt(0))) | 0x80000000) >>> 0;
  const random = new Random(fnv([seed, step, id]));
  return Array.from({ length: size }, () => (random.uniform() >= rate ? Math.fround(1 / (1 - rate)) : 0));
}

describe("an encoder's dropout draws from the step's streams, and a per-sample pass draws its row's", () => {
  it("zeroes each element with probability rate, from the layer's own stream, and scales the others by 1/(1 − rate)", async () => {
    const x = tf.fill([6, 40], 2);
    const dropped = await new StepRandom(7, 3).layerDropout("encoder.a.dense0", x, 0.25, { first: 0, total: 6 }).data();
    const mask = expectedMask(7, 3, "encoder.a.dense0", 0.25, 240);
    expect(Array.from(dropped)).toEqual(mask.map((m) => Math.fround(2 * m)));
    // About a quarter dropped; another layer, and the next step, draw otherwise.
    const zeros = mask.filter((m) => m === 0).length;
    expect(zeros).toBeGreaterThan(35);
    expect(zeros).toBeLessThan(85);
    expect(expectedMask(7, 3, "encoder.a.dense1", 0.25, 240)).not.toEqual(mask);
    expect(expectedMask(7, 4, "encoder.a.dense0", 0.25, 240)).not.toEqual(mask);
  });

  it("gives a per-sample pass its row of the batch's draw", async () => {
    const random = new StepRandom(1, 9);
    const x = tf.randomNormal([5, 12], 0, 1, "float32", 4);
    const whole = tf.reshape(random.layerDropout("encoder.b.dense0", x, 0.5, { first: 0, total: 5 }), [5, 12]);
    for (let sample = 0; sample < 5; sample++) {
      const one = random.layerDropout("encoder.b.dense0", tf.slice(x, [sample], [1]), 0.5, { first: sample, total: 5 });
      expect(Array.from(await one.data())).toEqual(Array.from(await tf.slice(whole, [sample], [1]).data()));
    }
  });

  it("gives a per-sample pass its row of the batch's draws of the spec's dropout(x, p) and bernoulli(p) too", async () => {
    const random = new StepRandom(2, 5);
    const x = tf.randomNormal([4, 6], 0, 1, "float32", 1);
    const p = tf.tensor1d([0.2, 0.5, 0.7, 0.9]);
    const dropped = random.dropout(0, x, 0.5);
    const drawn = random.bernoulli(1, p) as tf.Tensor;
    // A per-sample pass's draws come through its Forward (`f.random`, as a compiled loss reads them).
    const spec = encoderModelSpec("mlp", [6], { hidden: [4], out: 3 });
    const variables = initialParameters(spec, 1);
    const services: StepServices = { random, initialOf: () => [], freshOf: () => [], frozenParams: () => ({}) };
    try {
      for (let sample = 0; sample < 4; sample++) {
        const one = new Forward(spec, Object.fromEntries(variables) as Params, [tf.slice(x, [sample], [1])], tf.tensor1d([0]), true, undefined, services, undefined, { first: sample, total: 4 });
        const row = (t: tf.Tensor) => Array.from(tf.slice(t, [sample], [1]).dataSync());
        expect(Array.from(one.random.dropout(0, tf.slice(x, [sample], [1]), 0.5).dataSync()), `dropout, sample ${sample}`).toEqual(row(dropped));
        expect(Array.from((one.random.bernoulli(1, tf.slice(p, [sample], [1])) as tf.Tensor).dataSync()), `bernoulli, sample ${sample}`).toEqual(row(drawn));
      }
    } finally {
      variables.forEach((v) => v.dispose());
    }
    // The rows differ: a per-sample pass that took the stream's start would give every sample row 0's.
    expect(Array.from(tf.slice(dropped, [1], [1]).dataSync())).not.toEqual(Array.from(tf.slice(dropped, [0], [1]).dataSync()));
  });

  it("drops the same units in every training pass of a step, none in an evaluation pass", async () => {
    const options = { hidden: [32], out: 8, activation: "tanh" };
    const spec = encoderModelSpec("mlp", [12], { ...options, dropout: 0.5 });
    const plain = encoderModelSpec("mlp", [12], { ...options, dropout: 0 });
    const variables = initialParameters(spec, 1);
    const params = Object.fromEntries(variables) as Params;
    const x = [tf.randomNormal([8, 12], 0, 1, "float32", 2)];
    const y = tf.tensor1d([0, 1, 2, 0, 1, 2, 0, 1]);
    const step = (n: number): StepServices => ({ random: new StepRandom(3, n), initialOf: () => [], freshOf: () => [], frozenParams: () => ({}) });
    const out = (s: typeof spec, training: boolean, n: number) => Array.from(new Forward(s, params, x, y, training, undefined, step(n)).out.dataSync());
    try {
      expect(out(spec, true, 5)).toEqual(out(spec, true, 5));
      expect(out(spec, true, 6)).not.toEqual(out(spec, true, 5));
      expect(out(spec, true, 5)).not.toEqual(out(plain, true, 5));
      expect(out(spec, false, 5)).toEqual(out(plain, false, 5));
    } finally {
      variables.forEach((v) => v.dispose());
    }
  });

  it("stopped and resumed, a run with dropout ends bit for bit where a straight run does", async () => {
    const spec = smallSpec().replace("mlp(hidden: [10], out: 5)", "mlp(hidden: [10], out: 5, dropout: 0.3)").replace("epochs 2", "epochs 3");
    expect(spec).toContain("dropout: 0.3");
    await straightAndResumed(spec, 1, 3);
  }, 120_000);
});
