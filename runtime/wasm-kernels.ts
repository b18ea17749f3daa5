import * as tf from "@tensorflow/tfjs";

/**
 * Replacement kernels for tfjs-backend-wasm 4.22, registered before the backend starts.
 * Measured gaps (shared/notes/tfjs-facts.md): no Conv2DBackpropFilter, so no conv layer could
 * train; matmuls with a transposed operand run ~10x slower than plain ones. Each replacement is
 * checked against the cpu backend in test/wasm-kernels.test.ts.
 */
type KernelInputs = Record<string, tf.TensorInfo>;
interface Backend {
  incRef(dataId: object): void;
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

/** TensorFlow's SAME/VALID/explicit padding: [before, after] per spatial axis. */
function paddingOf(pad: unknown, size: number, kernel: number, stride: number, outSize: number): [number, number] {
  if (pad === "valid") return [0, 0];
  if (pad === "same") {
    const total = Math.max((outSize - 1) * stride + kernel - size, 0);
    return [Math.floor(total / 2), total - Math.floor(total / 2)];
  }
  throw new Error(`Conv2DBackpropFilter replacement: padding ${String(pad)} not supported`);
}

/**
 * dW[i,j,c,o] = Σ_{n,p,q} x[n, p·s+i−pad, q·s+j−pad, c] · dy[n,p,q,o]: a convolution of x
 * (batch and channels swapped) with dy as the filter, dilated by the stride.
 */
export function conv2dFilterGradient(x: tf.Tensor4D, dy: tf.Tensor4D, filterShape: number[], strides: number | number[], pad: unknown): tf.Tensor4D {
  const [kh, kw] = filterShape as [number, number];
  const [sh, sw] = typeof strides === "number" ? [strides, strides] : (strides as [number, number]);
  const [, h, w] = x.shape;
  const [, oh, ow] = dy.shape;
  const [top] = paddingOf(pad, h, kh, sh, oh);
  const [left] = paddingOf(pad, w, kw, sw, ow);
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

let registered = false;

export function registerWasmKernels(): void {
  if (registered) return;
  registered = true;
  tf.registerKernel({
    kernelName: "Conv2DBackpropFilter",
    backendName: "wasm",
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { strides, pad, filterShape } = attrs as unknown as { strides: number | number[]; pad: unknown; filterShape: number[] };
      return viaOps(inputs as KernelInputs, backend as unknown as Backend, (t) => conv2dFilterGradient(t.x as tf.Tensor4D, t.dy as tf.Tensor4D, filterShape, strides, pad));
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
