import * as tf from "@tensorflow/tfjs";
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

/**
 * OpenBLAS kernels for the wasm backend: BatchMatMul, Conv2D, both convolution gradients, and
 * sums and means over leading axes run through sgemm in native/mmb_blas.c, reading and writing
 * the wasm heap in place. The addon is built by `npm run build` where libopenblas-dev is
 * installed; without it nothing here is used. Each kernel is checked against the cpu backend in
 * test/native-kernels.test.ts.
 */
export interface NativeBlas {
  gemm(transA: number, transB: number, batch: number, m: number, n: number, k: number, a: Float32Array, strideA: number, b: Float32Array, strideB: number, c: Float32Array): void;
  conv2d(x: Float32Array, filter: Float32Array, out: Float32Array, ...sizes: number[]): void;
  conv2dBackpropInput(dy: Float32Array, filter: Float32Array, dx: Float32Array, ...sizes: number[]): void;
  conv2dBackpropFilter(x: Float32Array, dy: Float32Array, dfilter: Float32Array, ...sizes: number[]): void;
}

/**
 * The OpenBLAS core for this CPU. OpenBLAS 0.3.21 does not recognise recent Xeons and falls back
 * to its Prescott kernels (32 GFLOP/s on one core here instead of 144), so the runtime names the
 * core from the CPU's flags through OPENBLAS_CORETYPE unless the user already set it. The bench
 * hands the same value to PyTorch, which uses the same library.
 */
export function openblasCoreType(): string | undefined {
  let flags: string[];
  try {
    flags = (readFileSync("/proc/cpuinfo", "utf8").match(/^flags\s*:(.*)$/m)?.[1] ?? "").trim().split(/\s+/);
  } catch {
    return undefined;
  }
  const has = (...names: string[]) => names.every((n) => flags.includes(n));
  if (has("avx512f", "avx512bw", "avx512vl", "avx512dq")) return "SkylakeX";
  if (has("avx2", "fma")) return "Haswell";
  return undefined;
}

let loaded: NativeBlas | null | undefined;

/** The addon, or undefined where it was not built (or MMB_NATIVE=0 turns it off). */
export function loadNativeBlas(): NativeBlas | undefined {
  if (loaded !== undefined) return loaded ?? undefined;
  loaded = null;
  if (process.env.MMB_NATIVE === "0") return undefined;
  // From runtime/ (sources) or dist/runtime/ (built).
  const path = ["../native/build/Release/mmb_blas.node", "../../native/build/Release/mmb_blas.node"]
    .map((p) => fileURLToPath(new URL(p, import.meta.url)))
    .find((p) => existsSync(p));
  if (!path) return undefined;
  // Read once, when the library loads.
  const core = process.env.OPENBLAS_CORETYPE ?? openblasCoreType();
  if (core) process.env.OPENBLAS_CORETYPE = core;
  try {
    loaded = createRequire(import.meta.url)(path) as NativeBlas;
  } catch (e) {
    process.emitWarning(`mmb: ${path} did not load (${(e as Error).message}); using the wasm kernels`);
  }
  return loaded ?? undefined;
}

interface WasmBackend {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(info: tf.TensorInfo): Float32Array;
}

type Attrs = Record<string, unknown>;
type KernelArgs = { inputs: Record<string, tf.TensorInfo>; backend: WasmBackend; attrs: Attrs };

/** Replaces a wasm kernel by `native`, which may hand a case it does not cover back to the kernel it replaced. */
function replace(kernelName: string, native: (args: KernelArgs, fallback: tf.KernelFunc) => tf.TensorInfo): void {
  const previous = tf.getKernel(kernelName, "wasm");
  if (!previous) throw new Error(`native kernels: the wasm backend has no ${kernelName} kernel to replace`);
  tf.unregisterKernel(kernelName, "wasm");
  tf.registerKernel({ ...previous, kernelFunc: (args) => native(args as unknown as KernelArgs, previous.kernelFunc) });
}

const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

function batchMatMul(blas: NativeBlas, args: KernelArgs, fallback: tf.KernelFunc): tf.TensorInfo {
  const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
  const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
  const outerA = a.shape.slice(0, -2);
  const outerB = b.shape.slice(0, -2);
  const batchA = size(outerA);
  const batchB = size(outerB);
  // One batch shape, or one side a single matrix; other broadcasts stay with the wasm kernel.
  const sameOuter = outerA.length === outerB.length && outerA.every((d, i) => d === outerB[i]);
  if (a.dtype !== "float32" || b.dtype !== "float32" || !(sameOuter || batchA === 1 || batchB === 1)) return fallback(args as never) as tf.TensorInfo;
  const [ra, ca] = a.shape.slice(-2) as [number, number];
  const [rb, cb] = b.shape.slice(-2) as [number, number];
  const [m, k] = transposeA ? [ca, ra] : [ra, ca];
  const n = transposeB ? rb : cb;
  if (k !== (transposeB ? cb : rb)) return fallback(args as never) as tf.TensorInfo; // let tfjs report the mismatch
  const outer = tf.broadcast_util.assertAndGetBroadcastShape(outerA, outerB);
  const out = args.backend.makeOutput([...outer, m, n], "float32");
  const batch = Math.max(batchA, batchB);
  if (batch * m * n * k > 0) {
    // Views are taken after the output is allocated: allocation may grow (and detach) the heap.
    const heap = args.backend;
    blas.gemm(+transposeA, +transposeB, batch, m, n, k, heap.typedArrayFromHeap(a), batchA === 1 ? 0 : m * k, heap.typedArrayFromHeap(b), batchB === 1 ? 0 : k * n, heap.typedArrayFromHeap(out));
  } else if (m * n * batch > 0) fillZeros(args.backend, out);
  return out;
}

/** Output memory from the wasm heap is not cleared; an empty product is all zeros. */
function fillZeros(backend: WasmBackend, info: tf.TensorInfo): void {
  backend.typedArrayFromHeap(info).fill(0);
}

/** The 13 sizes native/mmb_blas.c reads: n, h, w, in, kh, kw, out, strides, padding, output size. */
function convSizes(info: tf.backend_util.Conv2DInfo): number[] {
  return [
    info.batchSize, info.inHeight, info.inWidth, info.inChannels, info.filterHeight, info.filterWidth, info.outChannels,
    info.strideHeight, info.strideWidth, info.padInfo.top, info.padInfo.left, info.outHeight, info.outWidth,
  ];
}

function convInfo(xShape: number[], filterShape: number[], attrs: Attrs): tf.backend_util.Conv2DInfo | undefined {
  const { strides, pad, dataFormat, dilations, dimRoundingMode } = attrs as {
    strides: number | [number, number]; pad: "same" | "valid" | number | tf.backend_util.ExplicitPadding; dataFormat?: "NHWC" | "NCHW";
    dilations?: number | [number, number]; dimRoundingMode?: "floor" | "round" | "ceil";
  };
  const dilated = dilations !== undefined && (typeof dilations === "number" ? dilations !== 1 : dilations.some((d) => d !== 1));
  if ((dataFormat ?? "NHWC") !== "NHWC" || dilated) return undefined;
  return tf.backend_util.computeConv2DInfo(xShape as [number, number, number, number], filterShape as [number, number, number, number], strides, 1, pad, dimRoundingMode, false, "channelsLast");
}

const filledRows = new Map<string, Float32Array>();

/** A row of `length` copies of `value`, kept: reductions reuse a few lengths every step. */
function filled(length: number, value: number): Float32Array {
  const key = `${length}:${value}`;
  let row = filledRows.get(key);
  if (!row) filledRows.set(key, (row = new Float32Array(length).fill(value)));
  return row;
}

/**
 * Sum or mean over a contiguous block of axes that is not innermost (a bias gradient sums over
 * batch and space; a global pool averages over space): one row of ones times the input, per index
 * of the axes before the block. tfjs-backend-wasm transposes the input to reduce it instead.
 */
function reduceBlock(blas: NativeBlas, args: KernelArgs, fallback: tf.KernelFunc, mean: boolean): tf.TensorInfo {
  const x = args.inputs.x!;
  const { axis, keepDims } = args.attrs as { axis: number | number[] | null; keepDims: boolean };
  // No axis means every axis; negative axes count from the end.
  const axes = [...new Set(tf.util.parseAxisParam(axis as number | number[], x.shape))].sort((a, b) => a - b);
  const first = axes[0] ?? 0;
  const last = axes[axes.length - 1] ?? -1;
  const contiguous = axes.length > 0 && last - first + 1 === axes.length;
  const inner = size(x.shape.slice(last + 1));
  if (x.dtype !== "float32" || !contiguous || inner === 1) return fallback(args as never) as tf.TensorInfo;
  const outer = size(x.shape.slice(0, first));
  const reduced = size(x.shape.slice(first, last + 1));
  const shape = keepDims ? x.shape.map((d, i) => (i >= first && i <= last ? 1 : d)) : x.shape.filter((_, i) => i < first || i > last);
  const out = args.backend.makeOutput(shape, "float32");
  if (reduced === 0) fillZeros(args.backend, out);
  else if (outer * inner > 0) blas.gemm(0, 0, outer, 1, inner, reduced, filled(reduced, mean ? 1 / reduced : 1), 0, args.backend.typedArrayFromHeap(x), reduced * inner, args.backend.typedArrayFromHeap(out));
  return out;
}

let registered: boolean | undefined;

/** Registers the OpenBLAS kernels on the wasm backend (once); false where the addon is missing. */
export function registerNativeKernels(): boolean {
  if (registered !== undefined) return registered;
  const blas = loadNativeBlas();
  registered = blas !== undefined;
  if (!blas) return false;
  replace("BatchMatMul", (args, fallback) => batchMatMul(blas, args, fallback));
  replace("Sum", (args, fallback) => reduceBlock(blas, args, fallback, false));
  replace("Mean", (args, fallback) => reduceBlock(blas, args, fallback, true));
  const conv = (
    kernelName: string,
    call: "conv2d" | "conv2dBackpropInput" | "conv2dBackpropFilter",
    operands: [string, string],
    geometry: (inputs: Record<string, tf.TensorInfo>, attrs: Attrs) => [number[], number[]],
    output: (info: tf.backend_util.Conv2DInfo) => number[],
    worthwhile: (info: tf.backend_util.Conv2DInfo, attrs: Attrs) => boolean = () => true,
  ) =>
    replace(kernelName, (args, fallback) => {
      const [a, b] = operands.map((name) => args.inputs[name]!) as [tf.TensorInfo, tf.TensorInfo];
      const info = a.dtype === "float32" ? convInfo(...geometry(args.inputs, args.attrs), args.attrs) : undefined;
      if (!info || !worthwhile(info, args.attrs)) return fallback(args as never) as tf.TensorInfo;
      const shape = output(info);
      const heap = args.backend;
      const out = heap.makeOutput(shape, "float32");
      if (size(info.outShape) > 0) blas[call](heap.typedArrayFromHeap(a), heap.typedArrayFromHeap(b), heap.typedArrayFromHeap(out), ...convSizes(info));
      else if (size(shape) > 0) fillZeros(heap, out);
      return out;
    });
  // The wasm backend's own forward convolution (XNNPACK) beats im2col + sgemm when the product is
  // narrow (measured: 3×3×3→8 117 vs 230 µs, 3×3×8→16 112 vs 135 µs, 3×3×1→32 3.0 vs 4.2 ms) and
  // loses when it is wide (3×3×32→64 on 16×64×64: 22.7 vs 6.3 ms). Its gradients lose everywhere.
  // Numeric padding stays here: tfjs 4.22 sizes such an output from the filter's height alone, and
  // with a non-square filter the wasm kernel then writes past its output and corrupts the heap.
  const wasmIsFaster = (info: tf.backend_util.Conv2DInfo, attrs: Attrs) =>
    typeof attrs.pad === "string" && info.filterHeight * info.filterWidth * info.inChannels * info.outChannels < 2048;
  conv("Conv2D", "conv2d", ["x", "filter"], (inputs) => [inputs.x!.shape, inputs.filter!.shape], (info) => info.outShape, (info, attrs) => !wasmIsFaster(info, attrs));
  conv("Conv2DBackpropInput", "conv2dBackpropInput", ["dy", "filter"], (inputs, attrs) => [attrs.inputShape as number[], inputs.filter!.shape], (info) => info.inShape);
  conv("Conv2DBackpropFilter", "conv2dBackpropFilter", ["x", "dy"], (inputs, attrs) => [inputs.x!.shape, attrs.filterShape as number[]], (info) => info.filterShape);
  return true;
}
