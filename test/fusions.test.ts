import * as tf from "@tensorflow/tfjs";
import { beforeAll, describe, expect, it } from "vitest";
import { selectBackend } from "../runtime/backend.js";
import { Forward, initialParameters, type Params } from "../runtime/model.js";
import type { ModelSpec } from "../runtime/spec.js";
import { fusionModelSpec, weightedConcat } from "./helpers.js";

function run(spec: ModelSpec) {
  const variables = initialParameters(spec, 2);
  const params = Object.fromEntries([...variables].map(([n, v]) => [n, tf.clone(v)])) as Params;
  variables.forEach((v) => v.dispose());
  const inputs = [tf.tensor2d(Array.from({ length: 20 }, (_, i) => Math.sin(i)), [4, 5]), tf.tensor2d(Array.from({ length: 16 }, (_, i) => Math.cos(i)), [4, 4])];
  const y = tf.tensor1d([0, 1, 2, 0]);
  return { params, f: new Forward(spec, params, inputs, y, false), inputs, y };
}

const close = (a: tf.Tensor, b: tf.Tensor) => Array.from(a.dataSync()).forEach((v, i) => expect(v).toBeCloseTo(b.dataSync()[i]!, 5));

beforeAll(async () => {
  await selectBackend("cpu");
});

describe("fusions: each against an independent computation of its definition", () => {
  it("concat and sum", () => {
    const concat = run(fusionModelSpec({ kind: "concat", options: {} })).f;
    close(concat.fused, tf.concat(concat.z, 1));
    const sum = run(fusionModelSpec({ kind: "sum", options: {} })).f;
    close(sum.fused, tf.add(sum.z[0]!, sum.z[1]!));
  });

  it("gated: Σ σ(W_m z_m + b_m) ⊙ z_m", () => {
    const { f, params } = run(fusionModelSpec({ kind: "gated", options: {} }));
    const gate = (m: string, z: tf.Tensor) => tf.sigmoid(tf.add(tf.matMul(z as tf.Tensor2D, params[`fusion.gate.${m}.kernel`] as tf.Tensor2D), params[`fusion.gate.${m}.bias`]!));
    close(f.fused, tf.add(tf.mul(gate("a", f.z[0]!), f.z[0]!), tf.mul(gate("b", f.z[1]!), f.z[1]!)));
  });

  it("film(by: a): (1 + γ(z_a)) ⊙ z_b + β(z_a)", () => {
    const { f, params } = run(fusionModelSpec({ kind: "film", options: { by: "a" } }));
    const dense = (p: string, z: tf.Tensor) => tf.add(tf.matMul(z as tf.Tensor2D, params[`${p}.kernel`] as tf.Tensor2D), params[`${p}.bias`]!);
    close(f.fused, tf.add(tf.mul(tf.add(1, dense("fusion.gamma", f.z[0]!)), f.z[1]!), dense("fusion.beta", f.z[0]!)));
  });

  it("attention: α = σ(relu([mean z_a, mean z_b]·W1)·W2) per sample, output [α_a z_a, α_b z_b]", () => {
    const { f, params } = run(fusionModelSpec({ kind: "attention", options: {} }));
    const z = f.z.map((t) => t.arraySync() as number[][]);
    const w1 = params["fusion.w1"]!.arraySync() as number[][];
    const w2 = params["fusion.w2"]!.arraySync() as number[][];
    const expected = z[0]!.map((_, i) => {
      const pooled = z.map((zm) => zm[i]!.reduce((a, b) => a + b, 0) / zm[i]!.length);
      const hidden = [0, 1].map((k) => Math.max(0, pooled[0]! * w1[0]![k]! + pooled[1]! * w1[1]![k]!));
      const alpha = [0, 1].map((k) => 1 / (1 + Math.exp(-(hidden[0]! * w2[0]![k]! + hidden[1]! * w2[1]![k]!))));
      return [...z[0]![i]!.map((v) => v * alpha[0]!), ...z[1]![i]!.map((v) => v * alpha[1]!)];
    });
    close(f.fused, tf.tensor2d(expected));
  });

  it("an expression (concat(j, w[j] * z[j])): the learnables scale each modality, and receive gradients", () => {
    const spec = fusionModelSpec({ kind: "expression", options: { width: 8 } }, { fuse: weightedConcat, fusionParts: [], learnables: [{ name: "w", perModality: true, init: 1 }] });
    const { f, params, inputs, y } = run(spec);
    params["learnable.w.a"] = tf.scalar(2);
    const scaled = new Forward(spec, params, inputs, y, false);
    close(scaled.fused, tf.concat([tf.mul(f.z[0]!, 2), f.z[1]!], 1));
    const grad = tf.grad((w: tf.Tensor) => tf.sum(new Forward(spec, { ...params, "learnable.w.b": w }, inputs, y, false).out))(params["learnable.w.b"]!);
    expect(Math.abs(grad.dataSync()[0]!)).toBeGreaterThan(1e-6);
  });
});
