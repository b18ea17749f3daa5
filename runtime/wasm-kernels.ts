import * as tf from "@tensorflow/tfjs";

/**
 * Replacement kernels for tfjs-backend-wasm 4.22, registered before the backend starts.
 * Measured gaps (shared/notes/tfjs-facts.md): no Conv2DBackpropFilter, so no conv layer could
 * train; matmuls with a transposed operand run ~10x slower than plain ones. Each replacement is
 * checked against the cpu backend in test/runtime.test.ts. Gradients are registered once for
 * every backend: Conv2DBackpropFilter's own gradient (second order) is in runtime/second-order.ts.
 */
type KernelInputs = Record<string, tf.TensorInfo>;
interface Backend {
  incRef(dataId: object): void;
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  typedArrayFromHeap(info: tf.TensorInfo): Float32Array | Int32Array | Uint8Array;
}

/**
 * Copies the block of `x` at `begin` with extent `size` into a new tensor of shape `outShape`
 * (the same number of elements), reading the wasm heap in place. tfjs-backend-wasm's Slice copies
 * the whole input out of the heap first (`readSync`), so taking 50 time steps of a sequence cost
 * 50 copies of the sequence.
 */
function sliceOnHeap(backend: Backend, x: tf.TensorInfo, begin: number[], size: number[], outShape: number[]): tf.TensorInfo {
  const out = backend.makeOutput(outShape, x.dtype);
  if (size.some((d) => d === 0)) return out;
  // Views after allocation: growing the heap detaches earlier views.
  const from = backend.typedArrayFromHeap(x);
  const to = backend.typedArrayFromHeap(out);
  // Trailing axes taken whole are one contiguous run per index of the others.
  let axes = x.shape.length;
  let run = 1;
  while (axes > 1 && size[axes - 1] === x.shape[axes - 1]) run *= x.shape[--axes]!;
  run *= size[axes - 1]!;
  const strides = x.shape.map((_, i) => x.shape.slice(i + 1).reduce((a, b) => a * b, 1));
  const outer = size.slice(0, axes - 1);
  const index = outer.map(() => 0);
  for (let written = 0; written < to.length; written += run) {
    let offset = begin[axes - 1]! * strides[axes - 1]!;
    index.forEach((i, axis) => (offset += (begin[axis]! + i) * strides[axis]!));
    to.set(from.subarray(offset, offset + run), written);
    for (let axis = outer.length - 1; axis >= 0 && ++index[axis]! === outer[axis]; axis--) index[axis] = 0;
  }
  return out;
}

function wrap(info: tf.TensorInfo, backend: Backend): tf.Tensor {
  backend.incRef(info.dataId);
  return tf.engine().makeTensorFromTensorInfo(info);
}

/** Runs `compute` on wrapped inputs and hands its result's data to the caller. */
function viaOps(inputs: KernelInputs, backend: Backend, compute: (t: Record<string, tf.Tensor>) => tf.Tensor): tf.TensorInfo {
  const wrapped = Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, wrap(v, backend)]));
  const result = tf.tidy(() => compute(wrapped));
  Object.values(wrapped).forEach((t) => t.dispose());
  backend.incRef(result.dataId);
  const info = { dataId: result.dataId, shape: result.shape, dtype: result.dtype };
  result.dispose();
  return info;
}

/**
 * dW[i,j,c,o] = Σ_{n,p,q} x[n, p·s+i−pad, q·s+j−pad, c] · dy[n,p,q,o]: a convolution of x
 * (batch and channels swapped) with dy as the filter, dilated by the stride. Any padding tfjs
 * takes (same, valid, explicit, a number with its rounding); NCHW inputs are read as NHWC.
 */
export function conv2dFilterGradient(
  x: tf.Tensor4D, dy: tf.Tensor4D, filterShape: number[], strides: number | number[], pad: unknown,
  dataFormat: "NHWC" | "NCHW" = "NHWC", dimRoundingMode?: "floor" | "round" | "ceil",
): tf.Tensor4D {
  const info = tf.backend_util.computeConv2DInfo(
    x.shape, filterShape as [number, number, number, number], strides as number | [number, number], 1,
    pad as "same" | "valid" | number | tf.backend_util.ExplicitPadding, dimRoundingMode, false, dataFormat === "NCHW" ? "channelsFirst" : "channelsLast",
  );
  if (dataFormat === "NCHW") {
    x = tf.transpose(x, [0, 2, 3, 1]);
    dy = tf.transpose(dy, [0, 2, 3, 1]);
  }
  const { filterHeight: kh, filterWidth: kw, strideHeight: sh, strideWidth: sw, inHeight: h, inWidth: w } = info;
  const [, oh, ow] = dy.shape;
  const { top, left } = info.padInfo;
  // Rows/columns of padded x that the filter reaches: exactly kh + (oh − 1)·sh of them.
  const needH = kh + (oh - 1) * sh;
  const needW = kw + (ow - 1) * sw;
  let padded: tf.Tensor4D = tf.pad(x, [[0, 0], [top, Math.max(0, needH - h - top)], [left, Math.max(0, needW - w - left)], [0, 0]]);
  padded = tf.slice(padded, [0, 0, 0, 0], [-1, needH, needW, -1]);
  const input = tf.transpose(padded, [3, 1, 2, 0]);
  const filter = tf.transpose(dy, [1, 2, 0, 3]);
  const out = tf.conv2d(input, filter, 1, "valid", "NHWC", [sh, sw]);
  return tf.transpose(out, [1, 2, 0, 3]);
}

type WasmKernelArgs = { inputs: KernelInputs; backend: Backend; attrs: Record<string, unknown> };

/** Replaces a wasm kernel for numeric tensors (string tensors keep the original, which the replacement may also call). */
function replaceNumeric(kernelName: string, kernelFunc: (args: WasmKernelArgs, original: (args: WasmKernelArgs) => tf.TensorInfo) => tf.TensorInfo | tf.TensorInfo[]): void {
  const original = tf.getKernel(kernelName, "wasm");
  if (!original) throw new Error(`wasm kernels: tfjs-backend-wasm has no ${kernelName} kernel`);
  tf.unregisterKernel(kernelName, "wasm");
  tf.registerKernel({
    ...original,
    kernelFunc: (args) => {
      const inputs = args.inputs as KernelInputs;
      if (Object.values(inputs).some((t) => t.dtype === "string")) return original.kernelFunc(args);
      return kernelFunc({ inputs, backend: args.backend as unknown as Backend, attrs: args.attrs as Record<string, unknown> }, (a) => original.kernelFunc(a as never) as tf.TensorInfo);
    },
  });
}

let registered = false;

export function registerWasmKernels(): void {
  if (registered) return;
  registered = true;
  replaceNumeric("Slice", ({ inputs, backend, attrs }) => {
    const x = inputs.x!;
    const [begin, size] = tf.slice_util.parseSliceParams(x as tf.TensorInfo as tf.Tensor, attrs.begin as number[], attrs.size as number[]);
    return sliceOnHeap(backend, x, begin, size, size);
  });
  // tfjs-backend-wasm splits through the same copying slice.
  replaceNumeric("SplitV", ({ inputs, backend, attrs }) => {
    const x = inputs.x!;
    const axis = tf.util.parseAxisParam(attrs.axis as number, x.shape)[0]!;
    const sizes = tf.backend_util.prepareSplitSize(x as tf.Tensor, attrs.numOrSizeSplits as number | number[], axis);
    let offset = 0;
    return sizes.map((part) => {
      const size = x.shape.map((d, a) => (a === axis ? part : d));
      const piece = sliceOnHeap(backend, x, x.shape.map((_, a) => (a === axis ? offset : 0)), size, size);
      offset += part;
      return piece;
    });
  });
  // The cpu backend's Identity shares the input's memory (tensors are immutable); wasm's copies it,
  // and tfjs clones every tensor it saves for the backward pass and casts float32 gradients to float32.
  const share = (backend: Backend, x: tf.TensorInfo): tf.TensorInfo => {
    backend.incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  };
  replaceNumeric("Identity", ({ inputs, backend }) => share(backend, inputs.x!));
  replaceNumeric("Cast", (args, original) => (args.attrs.dtype === args.inputs.x!.dtype ? share(args.backend, args.inputs.x!) : original(args)));
  replaceNumeric("Unpack", ({ inputs, backend, attrs }) => {
    const x = inputs.value!;
    const axis = ((attrs.axis as number) + x.shape.length) % x.shape.length;
    const outShape = x.shape.filter((_, i) => i !== axis);
    return Array.from({ length: x.shape[axis]! }, (_, i) =>
      sliceOnHeap(backend, x, x.shape.map((_, a) => (a === axis ? i : 0)), x.shape.map((d, a) => (a === axis ? 1 : d)), outShape),
    );
  });
  tf.registerKernel({
    kernelName: "Conv2DBackpropFilter",
    backendName: "wasm",
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { strides, pad, filterShape, dataFormat, dimRoundingMode } = attrs as unknown as {
        strides: number | number[]; pad: unknown; filterShape: number[]; dataFormat?: "NHWC" | "NCHW"; dimRoundingMode?: "floor" | "round" | "ceil";
      };
      return viaOps(inputs as KernelInputs, backend as unknown as Backend, (t) => conv2dFilterGradient(t.x as tf.Tensor4D, t.dy as tf.Tensor4D, filterShape, strides, pad, dataFormat, dimRoundingMode));
    },
  });

  const matMul = tf.getKernel("BatchMatMul", "wasm");
  if (matMul) {
    tf.unregisterKernel("BatchMatMul", "wasm");
    tf.registerKernel({
      ...matMul,
      kernelFunc: (args) => {
        const attrs = args.attrs as { transposeA?: boolean; transposeB?: boolean };
        if (!attrs.transposeA && !attrs.transposeB) return matMul.kernelFunc(args);
        return viaOps(args.inputs as KernelInputs, args.backend as unknown as Backend, ({ a, b }) => {
          const lastTwo = (t: tf.Tensor) => [...t.shape.keys()].map((i) => (i < t.rank - 2 ? i : i === t.rank - 2 ? t.rank - 1 : t.rank - 2));
          const plainA = attrs.transposeA ? tf.transpose(a!, lastTwo(a!)) : a!;
          const plainB = attrs.transposeB ? tf.transpose(b!, lastTwo(b!)) : b!;
          return tf.matMul(plainA, plainB);
        });
      },
    });
  }
}
