import * as tf from "@tensorflow/tfjs";
import { describe, expect, it } from "vitest";
import { describeBackend, selectBackend } from "../runtime/backend.js";
import { loadNativeBlas } from "../runtime/native-kernels.js";

// The OpenBLAS kernels exist where `npm run build` found libopenblas-dev; CI installs it and sets
// MMB_REQUIRE_NATIVE=1 so that their absence fails there instead of skipping.
const available = loadNativeBlas() !== undefined;
const required = process.env.MMB_REQUIRE_NATIVE === "1";

function values(n: number, salt: number): number[] {
  return Array.from({ length: n }, (_, i) => Math.sin(i * 1.7 + salt) * 0.9);
}

type Case = [name: string, run: () => tf.Tensor[]];

const matmulCases: Case[] = [
  ["dense layer [64,512]·[512,10]", () => [tf.matMul(tf.tensor2d(values(64 * 512, 1), [64, 512]), tf.tensor2d(values(512 * 10, 2), [512, 10]))]],
  ...([[false, false], [true, false], [false, true], [true, true]] as const).map(([ta, tb]): Case => [
    `batched, transposeA=${ta} transposeB=${tb}`,
    () => [tf.matMul(tf.tensor3d(values(3 * 5 * 4, 3), ta ? [3, 4, 5] : [3, 5, 4]), tf.tensor3d(values(3 * 4 * 6, 4), tb ? [3, 6, 4] : [3, 4, 6]), ta, tb)],
  ]),
  ["broadcast [1,3,4]·[2,4,5]", () => [tf.matMul(tf.tensor3d(values(12, 5), [1, 3, 4]), tf.tensor3d(values(40, 6), [2, 4, 5]))]],
  ["rank 4 by rank 2 [2,2,3,4]·[4,5]", () => [tf.matMul(tf.tensor4d(values(48, 7), [2, 2, 3, 4]), tf.tensor2d(values(20, 8), [4, 5]))]],
  ["empty inner dimension gives zeros", () => [tf.matMul(tf.zeros([3, 0]), tf.zeros([0, 4]))]],
  ["gradients of both operands", () => tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.square(tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D))))([tf.tensor2d(values(35, 9), [7, 5]), tf.tensor2d(values(15, 10), [5, 3])])],
];

function convCase(name: string, xShape: [number, number, number, number], filterShape: [number, number, number, number], strides: number | [number, number], pad: "same" | "valid" | number): Case {
  return [
    name,
    () => {
      const x = tf.tensor4d(values(xShape.reduce((a, b) => a * b), 11), xShape);
      const w = tf.tensor4d(values(filterShape.reduce((a, b) => a * b), 12), filterShape);
      const f = (xx: tf.Tensor, ww: tf.Tensor) => tf.sum(tf.square(tf.conv2d(xx as tf.Tensor4D, ww as tf.Tensor4D, strides, pad)));
      return [tf.conv2d(x, w, strides, pad), ...tf.grads(f)([x, w])];
    },
  ];
}

const convCases: Case[] = [
  convCase("3×3, stride 1, same", [2, 9, 7, 3], [3, 3, 3, 4], 1, "same"),
  convCase("3×3, stride 2, same (even and odd sizes)", [2, 9, 8, 3], [3, 3, 3, 5], 2, "same"),
  convCase("3×3, strides [1, 2], valid", [1, 8, 9, 2], [3, 3, 2, 4], [1, 2], "valid"),
  convCase("5×3 filter, explicit padding 1", [2, 7, 6, 2], [5, 3, 2, 3], 1, 1),
  convCase("1×1 pointwise", [2, 4, 5, 6], [1, 1, 6, 3], 1, "valid"),
  convCase("conv1d-shaped (height 1)", [3, 1, 20, 4], [1, 3, 4, 8], [1, 2], "same"),
  convCase("wider: 3×3×16×32, stride 2", [4, 16, 16, 16], [3, 3, 16, 32], 2, "same"),
];

const reductionCases: Case[] = [
  ...(["sum", "mean"] as const).flatMap((op): Case[] => {
    const x = () => tf.tensor4d(values(2 * 5 * 6 * 3, 13), [2, 5, 6, 3]);
    return [
      [`${op} over batch and space (a bias gradient)`, () => [tf[op](x(), [0, 1, 2])]],
      [`${op} over space, kept dims (a global pool)`, () => [tf[op](x(), [1, 2], true)]],
      [`${op} over the last axis (left to wasm)`, () => [tf[op](x(), -1)]],
      [`${op} over every axis (no axis given)`, () => [tf[op](x())]],
      [`${op} over axes that are not contiguous (left to wasm)`, () => [tf[op](x(), [0, 2])]],
    ];
  }),
];

const shapes: Record<"cpu" | "native", number[][][]> = { cpu: [], native: [] };

async function run(backend: string, cases: Case[]): Promise<Float32Array[][]> {
  await selectBackend(backend);
  const outputs = cases.map(([, f]) => tf.tidy(f));
  shapes[backend === "cpu" ? "cpu" : "native"] = outputs.map((ts) => ts.map((t) => t.shape));
  return outputs.map((ts) => ts.map((t) => {
    const data = t.dataSync() as Float32Array;
    t.dispose();
    return data;
  }));
}

describe.runIf(available || required)("OpenBLAS kernels on the wasm backend agree with the cpu backend", () => {
  it("are loaded and registered", async () => {
    expect(available).toBe(true);
    await selectBackend("wasm");
    expect(describeBackend("wasm")).toBe("wasm + OpenBLAS");
  });
  for (const [label, cases] of [["BatchMatMul", matmulCases], ["Conv2D and its input and filter gradients", convCases], ["Sum and Mean over a block of axes", reductionCases]] as const) {
    it(label, async () => {
      const cpu = await run("cpu", cases);
      const native = await run("wasm", cases);
      cases.forEach(([name], i) => {
        cpu[i]!.forEach((expected, j) => {
          expect(native[i]![j]!.length, name).toBe(expected.length);
          expect(shapes.native[i]![j], name).toEqual(shapes.cpu[i]![j]);
          let scale = 1;
          let worst = 0;
          expected.forEach((v, k) => {
            scale = Math.max(scale, Math.abs(v));
            worst = Math.max(worst, Math.abs(v - native[i]![j]![k]!));
          });
          expect(worst / scale, `${name}, output ${j}`).toBeLessThan(1e-5);
        });
      });
    });
  }
});
