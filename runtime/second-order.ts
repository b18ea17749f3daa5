import * as tf from "@tensorflow/tfjs";

/**
 * tfjs's registered gradients of several ops read the op's saved *output*; differentiating
 * them again silently gives wrong numbers, and comparison ops have no gradient at all
 * (shared/notes/tfjs-facts.md). These replacements recompute from the op's input with taped
 * ops, which makes second derivatives correct; test/second-order.test.ts checks each against
 * finite differences.
 */
let installed = false;

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
    tf.registerGradient({ kernelName, gradFunc: (dy) => ({ a: () => tf.zerosLike(dy as tf.Tensor), b: () => tf.zerosLike(dy as tf.Tensor) }) });
  }
  for (const kernelName of ["ArgMax", "Sign", "LogicalNot", "Floor", "Round"]) {
    tf.registerGradient({ kernelName, gradFunc: (dy) => ({ x: () => tf.zerosLike(dy as tf.Tensor) }) });
  }
}
