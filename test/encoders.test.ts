import * as tf from "@tensorflow/tfjs";
import { describe, expect, it } from "vitest";
import { selectBackend } from "../runtime/backend.js";
import { Forward, initialParameters, type Params } from "../runtime/model.js";
import { crossEntropy, gradNorm } from "../runtime/ops.js";
import { Random } from "../runtime/random.js";
import { encoderCaseName, encoderCases, encoderModelSpec } from "./helpers.js";

/** Every encoder: its output shape, learning on a fixed batch, wasm equal to cpu, and second derivatives against finite differences. */
const encoders = encoderCases;

function batch(shape: number[]) {
  const random = new Random(3);
  const size = shape.reduce((a, b) => a * b, 1);
  const labels = Array.from({ length: 8 }, (_, i) => i % 3);
  // Each class shifts every input by its own constant, so that any encoder can learn it.
  const x = tf.tensor(Array.from({ length: 8 * size }, (_, i) => random.normal() * 0.5 + labels[Math.floor(i / size)]! - 1), [8, ...shape]);
  return { x, y: tf.tensor1d(labels) };
}

describe("encoders", () => {
  for (const [kind, shape, options] of encoders) {
    it(`${encoderCaseName(kind, options)}: learns a fixed batch, agrees across wasm and cpu, and its second derivatives match finite differences`, async () => {
      const spec = encoderModelSpec(kind, shape, options);
      const loss = (params: Params, x: tf.Tensor, y: tf.Tensor) => crossEntropy(new Forward(spec, params, [x], y, true).out, y);
      const outputs: number[][] = [];
      for (const backend of ["cpu", "wasm"]) {
        await selectBackend(backend);
        const variables = initialParameters(spec, 1);
        try {
          const params = Object.fromEntries(variables) as Params;
          const { x, y } = batch(shape);
          const f = new Forward(spec, params, [x], y, true);
          expect(f.z[0]!.shape).toEqual([8, 8]);
          outputs.push(Array.from(f.out.dataSync()));
          const before = loss(params, x, y).dataSync()[0]!;
          const names = [...variables.keys()];
          for (let step = 0; step < 40; step++) {
            tf.tidy(() => {
              const { grads } = tf.variableGrads(() => loss(params, x, y) as tf.Scalar, names.map((n) => variables.get(n)!));
              for (const n of names) variables.get(n)!.assign(tf.sub(variables.get(n)!, tf.mul(grads[n]!, 0.1)));
            });
          }
          expect(loss(params, x, y).dataSync()[0]!).toBeLessThan(0.7 * before);
        } finally {
          variables.forEach((v) => v.dispose());
        }
      }
      outputs[0]!.forEach((v, i) => expect(Math.abs(v - outputs[1]![i]!)).toBeLessThan(1e-4));

      // ∂‖∂L/∂W_last‖/∂θ for the encoder's first parameter, autodiff against central differences.
      // Not for ResNet: thousands of ReLU units, some of which any finite step moves across their
      // kink; its ops (conv, ReLU, the residual add) are each checked here and in runtime.test.ts.
      if (kind === "resnet") return;
      await selectBackend("cpu");
      const variables = initialParameters(spec, 1);
      const params = Object.fromEntries([...variables].map(([n, v]) => [n, tf.clone(v)])) as Params;
      variables.forEach((v) => v.dispose());
      const { x, y } = batch(shape);
      const first = Object.keys(params).find((n) => n.startsWith("encoder.x.") && !n.includes(".last."))!;
      const normOfLast = (p: Params) => {
        const last = ["encoder.x.last.kernel", "encoder.x.last.bias"];
        return gradNorm(tf.grads((...ts: tf.Tensor[]) => loss({ ...p, ...Object.fromEntries(last.map((n, i) => [n, ts[i]!])) }, x, y))(last.map((n) => p[n]!)));
      };
      const analytic = tf.grad((w: tf.Tensor) => normOfLast({ ...params, [first]: w }))(params[first]!);
      const direction = tf.tensor(Array.from({ length: params[first]!.size }, (_, i) => Math.sin(i + 1)), params[first]!.shape);
      // A small step: ReLU encoders (ResNet, the transformer's feed-forward) have kinks.
      const eps = 1e-3;
      const shifted = (s: number) => normOfLast({ ...params, [first]: tf.add(params[first]!, tf.mul(direction, s)) }).dataSync()[0]!;
      const numeric = (shifted(eps) - shifted(-eps)) / (2 * eps);
      const along = tf.sum(tf.mul(analytic, direction)).dataSync()[0]!;
      expect(Math.abs(along - numeric)).toBeLessThan(2e-2 * Math.abs(numeric) + 1e-3);
    });
  }
});
