import * as tf from "@tensorflow/tfjs";

/**
 * tfjs's registered gradients of several ops read the op's saved *output*; differentiating
 * them again silently gives wrong numbers, and comparison ops have no gradient at all
 * (shared/notes/tfjs-facts.md). These replacements recompute from the op's input with taped
 * ops, which makes second derivatives correct; test/runtime.test.ts and test/encoders.test.ts
 * check them against finite differences.
 *
 * tfjs registers no gradient for `Conv2DBackpropFilter` (a conv kernel's gradient), so a loss
 * that reads the gradient of convolution weights (`norm(grad(encoder[m]))` with a conv1d or
 * conv2d encoder; conv1d is a conv2d in tfjs) threw when differentiated. Its gradient is
 * registered below, with taped ops (so a third derivative is right too); the other kernels on
 * the conv path (Conv2D, Conv2DBackpropInput, Mean, Reshape, Transpose, the bias add) have
 * correct, taped gradients in tfjs 4.22. test/conv-second-order.test.ts checks it against a
 * convolution written in plain loops and against finite differences, on cpu and wasm.
 */
let installed = false;

/** A zero gradient for x; gradients are float32 even where x is an integer tensor. */
const zeros = (x: tf.Tensor): tf.Tensor => tf.zeros(x.shape, "float32");

export function installSecondOrderGradients(): void {
  if (installed) return;
  installed = true;
  const fromInput = (kernelName: string, derivative: (x: tf.Tensor) => tf.Tensor) =>
    tf.registerGradient({
      kernelName,
      inputsToSave: ["x"],
      gradFunc: (dy, saved) => ({ x: () => tf.mul(dy as tf.Tensor, derivative(saved[0]!)) }),
    });
  fromInput("Exp", (x) => tf.exp(x));
  fromInput("Tanh", (x) => tf.sub(1, tf.square(tf.tanh(x))));
  fromInput("Sigmoid", (x) => {
    const s = tf.sigmoid(x);
    return tf.mul(s, tf.sub(1, s));
  });
  fromInput("Sqrt", (x) => tf.div(0.5, tf.sqrt(x)));
  fromInput("Rsqrt", (x) => tf.mul(-0.5, tf.pow(x, -1.5)));
  for (const kernelName of ["Equal", "NotEqual", "Less", "LessEqual", "Greater", "GreaterEqual"]) {
    tf.registerGradient({ kernelName, inputsToSave: ["a", "b"], gradFunc: (_, saved) => ({ a: () => zeros(saved[0]!), b: () => zeros(saved[1]!) }) });
  }
  tf.registerGradient({ kernelName: "Conv2DBackpropFilter", inputsToSave: ["x", "dy"], gradFunc: conv2dBackpropFilterGradient });
  // Zero gradients shaped like the input: ArgMax's output has fewer dimensions than its input.
  for (const kernelName of ["ArgMax", "Sign", "LogicalNot", "Floor", "Round"]) {
    tf.registerGradient({ kernelName, inputsToSave: ["x"], gradFunc: (_, saved) => ({ x: () => zeros(saved[0]!) }) });
  }
}

/**
 * The gradient of dW = Conv2DBackpropFilter(x, dy), which is bilinear in x and dy:
 *   dW[i,j,c,o] = Σ_{n,p,q} x[n, p·sh+i−top, q·sw+j−left, c] · dy[n,p,q,o].
 * For an upstream ddW shaped like the filter:
 *   ∂/∂x  = Conv2DBackpropInput(x.shape, dy, ddW)  (the transposed convolution of dy by ddW),
 *   ∂/∂dy = Conv2D(x, ddW)                           (dy has the convolution's output shape),
 * both with the op's strides, padding (same, valid or explicit), data format and rounding.
 */
function conv2dBackpropFilterGradient(ddW: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap): Record<string, () => tf.Tensor> {
  const [x, dy] = saved as [tf.Tensor4D, tf.Tensor4D];
  const filter = ddW as tf.Tensor4D;
  const { strides, pad, dataFormat, dimRoundingMode } = attrs as unknown as {
    strides: [number, number] | number;
    pad: "valid" | "same" | number | tf.backend_util.ExplicitPadding;
    dataFormat: "NHWC" | "NCHW";
    dimRoundingMode?: "floor" | "round" | "ceil";
  };
  return {
    // The kernel itself: tf.conv2dTranspose, its op, fixes the data format to NHWC. runKernel tapes it.
    x: () => tf.engine().runKernel("Conv2DBackpropInput", { dy, filter }, { strides, pad, dataFormat, dimRoundingMode, inputShape: x.shape } as unknown as tf.NamedAttrMap) as tf.Tensor4D,
    dy: () => tf.conv2d(x, filter, strides, pad, dataFormat, 1, dimRoundingMode),
  };
}
