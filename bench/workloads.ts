/**
 * The performance issue's three reference workloads, one SGD training step each, written with the
 * same tfjs ops as the runtime's encoders (runtime/model.ts): dense layers as matMul + add,
 * convolutions NHWC, the LSTM unrolled with one matMul per step. bench/torch/workloads.py is the
 * same in PyTorch. Prints one JSON line per workload: median milliseconds per step.
 *   node dist/bench/workloads.js [--backend wasm|cpu|webgpu] [--steps 50] [--index i]
 * MMB_NATIVE=0 keeps the wasm backend on its own kernels (no OpenBLAS).
 */
import * as tf from "@tensorflow/tfjs";
import { describeBackend, selectBackend } from "../runtime/backend.js";
import { median } from "./median.js";

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1]! : fallback;
};

interface Workload {
  name: string;
  batch: number;
  /** Weight shapes, initialised He-style; biases are the 1-D shapes. */
  weights: Record<string, number[]>;
  input: number[];
  forward(x: tf.Tensor, w: Record<string, tf.Variable>): tf.Tensor;
}

const dense = (x: tf.Tensor, w: Record<string, tf.Variable>, name: string) => tf.add(tf.matMul(x as tf.Tensor2D, w[`${name}.kernel`] as tf.Tensor2D), w[`${name}.bias`]!);

const mlp = (batch: number): Workload => ({
  name: `mlp 512-512-512-10, batch ${batch}`,
  batch,
  input: [512],
  weights: { "l0.kernel": [512, 512], "l0.bias": [512], "l1.kernel": [512, 512], "l1.bias": [512], "l2.kernel": [512, 10], "l2.bias": [10] },
  forward: (x, w) => dense(tf.relu(dense(tf.relu(dense(x, w, "l0")), w, "l1")), w, "l2"),
});

export const workloads: Workload[] = [
  mlp(64),
  mlp(256),
  {
    name: "conv 16x1x64x64",
    batch: 16,
    input: [64, 64, 1],
    weights: { "c0.kernel": [3, 3, 1, 32], "c0.bias": [32], "c1.kernel": [3, 3, 32, 64], "c1.bias": [64], "out.kernel": [64, 10], "out.bias": [10] },
    forward: (x, w) => {
      const h0 = tf.relu(tf.add(tf.conv2d(x as tf.Tensor4D, w["c0.kernel"] as tf.Tensor4D, 1, "same"), w["c0.bias"]!));
      const h1 = tf.relu(tf.add(tf.conv2d(h0 as tf.Tensor4D, w["c1.kernel"] as tf.Tensor4D, 2, "same"), w["c1.bias"]!));
      return dense(tf.mean(h1, [1, 2]), w, "out");
    },
  },
  {
    name: "lstm 50x74, hidden 64",
    batch: 32,
    input: [50, 74],
    weights: { "lstm.kernel": [74, 256], "lstm.recurrent": [64, 256], "lstm.bias": [256], "out.kernel": [64, 10], "out.bias": [10] },
    forward: (x, w) => {
      const [batch, steps] = x.shape as [number, number];
      const inputs = tf.unstack(tf.reshape(dense(tf.reshape(x, [batch * steps, -1]), w, "lstm"), [batch, steps, -1]), 1);
      let h: tf.Tensor = tf.zeros([batch, 64]);
      let c: tf.Tensor = tf.zeros([batch, 64]);
      for (const input of inputs) {
        const [i, f, g, o] = tf.split(tf.add(input, tf.matMul(h as tf.Tensor2D, w["lstm.recurrent"] as tf.Tensor2D)), 4, 1);
        c = tf.add(tf.mul(tf.sigmoid(f!), c), tf.mul(tf.sigmoid(i!), tf.tanh(g!)));
        h = tf.mul(tf.sigmoid(o!), tf.tanh(c));
      }
      return dense(h, w, "out");
    },
  },
];

/** Median milliseconds of one SGD step (forward, cross-entropy, backward, update) after warm-up. */
export async function timeStep(workload: Workload, steps: number): Promise<number> {
  const w = Object.fromEntries(
    Object.entries(workload.weights).map(([name, shape]) => [name, tf.variable(shape.length === 1 ? tf.zeros(shape) : tf.randomNormal(shape, 0, Math.sqrt(2 / shape.slice(0, -1).reduce((a, b) => a * b, 1)), "float32", 1), true, `${workload.name}/${name}`)]),
  );
  const smallest = Object.values(w).reduce((a, b) => (b.size < a.size ? b : a));
  const x = tf.randomNormal([workload.batch, ...workload.input], 0, 1, "float32", 2);
  const y = tf.oneHot(tf.tensor1d(Array.from({ length: workload.batch }, (_, i) => i % 10), "int32"), 10);
  const optimizer = tf.train.sgd(0.01);
  const times: number[] = [];
  for (let i = 0; i < steps + 10; i++) {
    const started = performance.now();
    tf.tidy(() => {
      optimizer.minimize(() => tf.losses.softmaxCrossEntropy(y, workload.forward(x, w)) as tf.Scalar);
    });
    // wasm and cpu run kernels synchronously; reading the smallest weight keeps other backends (webgpu) honest too.
    await smallest.data();
    if (i >= 10) times.push(performance.now() - started);
  }
  Object.values(w).forEach((v) => v.dispose());
  tf.dispose([x, y]);
  optimizer.dispose();
  return median(times);
}

if (process.argv[1]?.endsWith("workloads.js")) {
  const backend = await selectBackend(arg("--backend", "wasm"));
  const steps = Number(arg("--steps", "50"));
  // One workload per process (`--index i`) gives each its own peak memory.
  const index = arg("--index", "");
  for (const workload of index === "" ? workloads : [workloads[Number(index)]!]) {
    const ms = await timeStep(workload, steps);
    const peakMiB = process.resourceUsage().maxRSS / 1024;
    console.log(JSON.stringify({ workload: workload.name, backend: describeBackend(backend), batch: workload.batch, ms, samplesPerSecond: (workload.batch * 1000) / ms, peakMiB }));
  }
  // A webgpu device keeps the process alive.
  process.exit(0);
}
