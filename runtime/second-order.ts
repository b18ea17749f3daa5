import * as tf from "@tensorflow/tfjs";

/**
 * tfjs's registered gradients of several ops read the op's saved *output*; differentiating
 * them again silently gives wrong numbers, and comparison ops have no gradient at all
 * (shared/notes/tfjs-facts.md). These replacements recompute from the op's input with taped
 * ops, which makes second derivatives correct; test/second-order.test.ts checks each against
 * finite differences.
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
  // Zero gradients shaped like the input: ArgMax's output has fewer dimensions than its input.
  for (const kernelName of ["ArgMax", "Sign", "LogicalNot", "Floor", "Round"]) {
    tf.registerGradient({ kernelName, inputsToSave: ["x"], gradFunc: (_, saved) => ({ x: () => zeros(saved[0]!) }) });
  }
}
