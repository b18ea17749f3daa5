import * as tf from "@tensorflow/tfjs";

/**
 * Operations the generated trainers call. Every op here may sit on a path that is
 * differentiated twice (rules whose loss contains gradient norms), so none uses `customGrad`
 * (tfjs cannot differentiate through it twice) — see `second-order.ts` — except where
 * `insideGradient` says that the path is differentiated once only.
 */
export type Value = tf.Tensor | number;
/** A condition: a tensor of booleans, or one known before the step (`epoch >= 1`). */
export type Condition = tf.Tensor | boolean;

const stopGradientKernel = "MmbStopGradient";
const registeredFor = new Set<string>();

/**
 * The identity, cut from differentiation: `detach(x)` in a spec. The tensor reaches the kernel as an
 * attribute, not an input, so the gradient tape records no edge from x: what x depends on is not
 * reached by the loss at all (its gradient is absent, not zero), and a turn (`loss[m]`) leaves
 * those parameters untouched, momentum and weight decay included.
 */
export function stopGradient<T extends tf.Tensor>(x: T): T {
  const backend = tf.getBackend();
  if (!registeredFor.has(backend)) {
    const identity = tf.getKernel("Identity", backend);
    if (!identity) throw new Error(`backend ${backend} has no Identity kernel`);
    tf.registerKernel({
      kernelName: stopGradientKernel,
      backendName: backend,
      kernelFunc: ({ attrs, backend: b }) => identity.kernelFunc({ inputs: { x: (attrs as unknown as { x: tf.Tensor }).x }, backend: b, attrs: {} }),
    });
    registeredFor.add(backend);
  }
  return tf.engine().runKernel(stopGradientKernel, {}, { x } as unknown as tf.NamedAttrMap) as T;
}

/** log Σ exp(z) over the last axis, written with ops whose gradients are twice differentiable. */
export function logSumExp(z: tf.Tensor): tf.Tensor {
  const peak = stopGradient(tf.max(z, -1, true));
  return tf.add(peak, tf.log(tf.sum(tf.exp(tf.sub(z, peak)), -1, true)));
}

function oneHot(target: tf.Tensor, classes: number): tf.Tensor {
  // tfjs-wasm returns wrong values for a float32 oneHot: build int32, then cast.
  return tf.cast(tf.oneHot(tf.cast(target, "int32") as tf.Tensor1D, classes), "float32");
}

/** log softmax(z)[y] per sample. */
function trueClassLogProb(logits: tf.Tensor, target: tf.Tensor): tf.Tensor {
  const classes = logits.shape[logits.shape.length - 1]!;
  return tf.sum(tf.mul(oneHot(target, classes), tf.sub(logits, logSumExp(logits))), -1);
}

let gradientDepth = 0;

/**
 * Runs `f` as the function of a gradient computation (the runtime's only way to take one). Ops
 * evaluated inside exactly one of them are differentiated once, and may take tfjs's cheaper
 * `customGrad` forms; anywhere else (inside two, or under a caller's own `tf.grad`) they keep
 * the twice-differentiable forms.
 */
export function insideGradient<T>(f: () => T): T {
  gradientDepth++;
  try {
    return f();
  } finally {
    gradientDepth--;
  }
}

export function crossEntropy(logits: tf.Tensor, target: tf.Tensor): tf.Tensor {
  if (gradientDepth !== 1) return tf.neg(tf.mean(trueClassLogProb(logits, target)));
  // Differentiated once at most: tfjs's fused form, a third of the kernels of the twice-differentiable one.
  return tf.losses.softmaxCrossEntropy(oneHot(target, logits.shape[logits.shape.length - 1]!), logits);
}

/** softmax(z)[y] per sample. */
export function trueClassProb(logits: tf.Tensor, target: tf.Tensor): tf.Tensor {
  return tf.exp(trueClassLogProb(logits, target));
}

export function accuracy(logits: tf.Tensor, target: tf.Tensor): tf.Tensor {
  return tf.mean(tf.cast(tf.equal(tf.argMax(logits, -1), tf.cast(target, "int32")), "float32"));
}

/** Per-class overlap of a mask prediction: Σ p·t, Σ p and Σ t over every pixel of the batch, [classes]. */
function overlaps(probabilities: tf.Tensor, target: tf.Tensor): { both: tf.Tensor; predicted: tf.Tensor; actual: tf.Tensor } {
  const classes = probabilities.shape[probabilities.shape.length - 1]!;
  const flat = tf.reshape(probabilities, [-1, classes]);
  const truth = tf.reshape(oneHot(target, classes), [-1, classes]);
  return { both: tf.sum(tf.mul(flat, truth), 0), predicted: tf.sum(flat, 0), actual: tf.sum(truth, 0) };
}

/**
 * Dice of a segmentation on the batch: mean over the classes present in the prediction or the
 * truth of 2·|P ∩ T| / (|P| + |T|), from the predicted class of each pixel.
 */
export function dice(logits: tf.Tensor, target: tf.Tensor): tf.Tensor {
  const classes = logits.shape[logits.shape.length - 1]!;
  const { both, predicted, actual } = overlaps(oneHot(tf.argMax(logits, -1), classes), target);
  const denominator = tf.add(predicted, actual);
  const present = tf.cast(tf.greater(denominator, 0), "float32");
  const perClass = tf.div(tf.mul(2, both), tf.maximum(denominator, 1));
  return tf.div(tf.sum(tf.mul(perClass, present)), tf.maximum(tf.sum(present), 1));
}

/** Soft Dice loss: 1 − mean over classes of (2·Σ p·t + 1) / (Σ p + Σ t + 1), p the softmax; differentiable. */
export function diceLoss(logits: tf.Tensor, target: tf.Tensor): tf.Tensor {
  const probabilities = tf.exp(tf.sub(logits, logSumExp(logits)));
  const { both, predicted, actual } = overlaps(probabilities, target);
  return tf.sub(1, tf.mean(tf.div(tf.add(tf.mul(2, both), 1), tf.add(tf.add(predicted, actual), 1))));
}

// ------------------------------------------------------------------ outputs as distributions, per sample

/** log softmax over the last axis, twice differentiable. */
const logSoftmax = (z: tf.Tensor): tf.Tensor => tf.sub(z, logSumExp(z));

/** A per-position value ([batch, ...]) as one number per sample: the mean over every axis but the first. */
function perSample(x: tf.Tensor): tf.Tensor {
  return x.rank <= 1 ? x : tf.mean(tf.reshape(x, [x.shape[0]!, -1]), 1);
}

/** −Σ p·log p of softmax over the last axis (classes, or the features' dimensions), per sample. */
export function entropy(z: tf.Tensor): tf.Tensor {
  const log = logSoftmax(z);
  return perSample(tf.neg(tf.sum(tf.mul(tf.exp(log), log), -1)));
}

/** log Σ exp over the last axis (the classes), per sample. */
export function logsumexp(z: tf.Tensor): tf.Tensor {
  return perSample(tf.squeeze(logSumExp(z), [-1]));
}

/** The largest class probability, per sample. */
export function confidence(z: tf.Tensor): tf.Tensor {
  return perSample(tf.exp(tf.sub(tf.max(z, -1), tf.squeeze(logSumExp(z), [-1]))));
}

/** Whether the most probable class is the target, per sample (a per-sample condition). */
export function correct(z: tf.Tensor, target: tf.Tensor): tf.Tensor {
  return tf.equal(tf.argMax(z, -1), tf.cast(target, "int32"));
}

/** −log softmax(z)[y], per sample: the cross-entropy of each sample. */
export function nll(z: tf.Tensor, target: tf.Tensor): tf.Tensor {
  return perSample(tf.neg(trueClassLogProb(z, target)));
}

/** The true class's probability minus the largest other one, per sample. */
export function margin(z: tf.Tensor, target: tf.Tensor): tf.Tensor {
  const p = tf.exp(logSoftmax(z));
  const truth = oneHot(target, z.shape[z.shape.length - 1]!);
  const mine = tf.sum(tf.mul(p, truth), -1);
  const others = tf.max(tf.sub(p, tf.mul(truth, 2)), -1);
  return perSample(tf.sub(mine, others));
}

/** KL(softmax(p) ‖ softmax(q)) over the last axis, per sample. */
export function kl(p: tf.Tensor, q: tf.Tensor): tf.Tensor {
  const logP = logSoftmax(p);
  return perSample(tf.sum(tf.mul(tf.exp(logP), tf.sub(logP, logSoftmax(q))), -1));
}

/** Jensen–Shannon divergence of softmax(p) and softmax(q), per sample. */
export function js(p: tf.Tensor, q: tf.Tensor): tf.Tensor {
  const [a, b] = [tf.exp(logSoftmax(p)), tf.exp(logSoftmax(q))];
  const m = tf.div(tf.add(a, b), 2);
  const part = (x: tf.Tensor, logX: tf.Tensor) => tf.sum(tf.mul(x, tf.sub(logX, tf.log(m))), -1);
  return perSample(tf.div(tf.add(part(a, logSoftmax(p)), part(b, logSoftmax(q))), 2));
}

/** Logits of the equal mixture of softmax(p) and softmax(q): log((softmax(p) + softmax(q)) / 2), itself a distribution. */
export function mixture(p: tf.Tensor, q: tf.Tensor): tf.Tensor {
  return tf.log(tf.div(tf.add(tf.exp(logSoftmax(p)), tf.exp(logSoftmax(q))), 2));
}

/** The mean squared difference of two outputs or features, per sample. */
export function meanSquaredDifference(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  return perSample(tf.square(tf.sub(a, b)));
}

/** The cosine of two outputs or features, per sample (each sample's values as one vector). */
export function cosine(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  const flat = (x: tf.Tensor) => tf.reshape(x, [x.shape[0]!, -1]);
  const [x, y] = [flat(a), flat(b)];
  const norms = tf.mul(tf.sqrt(tf.sum(tf.square(x), 1)), tf.sqrt(tf.sum(tf.square(y), 1)));
  return tf.div(tf.sum(tf.mul(x, y), 1), tf.add(norms, 1e-12));
}

/** Each vector along `axis` scaled to unit L2 norm: by default each sample's (the last axis). */
export function normalize(x: tf.Tensor, axis = -1): tf.Tensor {
  return tf.div(x, tf.add(tf.sqrt(tf.sum(tf.square(x), axis, true)), 1e-12));
}

function regressionError(output: tf.Tensor, target: tf.Tensor): tf.Tensor {
  return tf.sub(tf.reshape(output, [-1]), target);
}

export function meanAbsoluteError(output: tf.Tensor, target: tf.Tensor): tf.Tensor {
  return tf.mean(tf.abs(regressionError(output, target)));
}

export function meanSquaredError(output: tf.Tensor, target: tf.Tensor): tf.Tensor {
  return tf.mean(tf.square(regressionError(output, target)));
}

// ------------------------------------------------------------------ rule arithmetic

/**
 * A per-sample value [batch] against a head's outputs [batch, classes, ...]: it applies to each
 * sample's row (`w * alone[m]`), where broadcasting alone would align it with the last axis.
 */
function bySample(a: Value, b: Value): [Value, Value] {
  const rank = (v: Value) => (typeof v === "number" ? 0 : v.rank);
  const rows = (v: Value, other: Value) => (typeof v === "number" || typeof other === "number" ? v : tf.reshape(v, [v.shape[0]!, ...Array<number>(other.rank - 1).fill(1)]));
  if (rank(a) === 1 && rank(b) > 1) return [rows(a, b), b];
  if (rank(b) === 1 && rank(a) > 1) return [a, rows(b, a)];
  return [a, b];
}

export const add = (a: Value, b: Value): tf.Tensor => tf.add(...bySample(a, b));
export const sub = (a: Value, b: Value): tf.Tensor => tf.sub(...bySample(a, b));
export const mul = (a: Value, b: Value): tf.Tensor => tf.mul(...bySample(a, b));
export const div = (a: Value, b: Value): tf.Tensor => tf.div(...bySample(a, b));
export const pow = (a: Value, b: Value): tf.Tensor => tf.pow(a, b);
/** a − b·floor(a / b), as tf.mod and Python's %: the sign of the divisor. */
export const mod = (a: Value, b: Value): tf.Tensor => tf.mod(a, b);
export const neg = (a: Value): tf.Tensor => tf.neg(a);
export const less = (a: Value, b: Value): tf.Tensor => tf.less(a, b);
export const lessEqual = (a: Value, b: Value): tf.Tensor => tf.lessEqual(a, b);
export const greater = (a: Value, b: Value): tf.Tensor => tf.greater(a, b);
export const greaterEqual = (a: Value, b: Value): tf.Tensor => tf.greaterEqual(a, b);
export const equal = (a: Value, b: Value): tf.Tensor => tf.equal(a, b);
export const notEqual = (a: Value, b: Value): tf.Tensor => tf.notEqual(a, b);
/**
 * Conditions are constants for differentiation, but tfjs has no gradient for its logical kernels:
 * a differentiated loss that weights samples by `if c1 or c2 then ... else ...` would stop with
 * "gradient function not found for LogicalOr". Their gradient is zero, as Equal's and Greater's.
 */
for (const [kernelName, inputs] of [["LogicalAnd", ["a", "b"]], ["LogicalOr", ["a", "b"]], ["LogicalNot", ["x"]]] as const) {
  if (!tf.getGradient(kernelName)) {
    tf.registerGradient({
      kernelName,
      inputsToSave: [...inputs],
      gradFunc: (_dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => Object.fromEntries(inputs.map((name, i) => [name, () => tf.zeros(saved[i]!.shape, "float32")])),
    });
  }
}

export const and = (a: Condition, b: Condition): tf.Tensor => tf.logicalAnd(a, b);
export const or = (a: Condition, b: Condition): tf.Tensor => tf.logicalOr(a, b);
export const not = (a: Condition): tf.Tensor => tf.logicalNot(a);
export const abs = (a: Value): tf.Tensor => tf.abs(a);
export const exp = (a: Value): tf.Tensor => tf.exp(a);
export const log = (a: Value): tf.Tensor => tf.log(a);
export const sqrt = (a: Value): tf.Tensor => tf.sqrt(a);
export const tanh = (a: Value): tf.Tensor => tf.tanh(a);
export const sigmoid = (a: Value): tf.Tensor => tf.sigmoid(a);
export const relu = (a: Value): tf.Tensor => tf.relu(a);
export const sign = (a: Value): tf.Tensor => tf.sign(a);
export const square = (a: Value): tf.Tensor => tf.square(a);
export const floor = (a: Value): tf.Tensor => tf.floor(a);
export const sin = (a: Value): tf.Tensor => tf.sin(a);
export const minimum = (a: Value, b: Value): tf.Tensor => tf.minimum(a, b);
export const maximum = (a: Value, b: Value): tf.Tensor => tf.maximum(a, b);
/** x limited to [lo, hi]; the bounds may be tensors (tf.clipByValue takes numbers only). */
export const clamp = (x: Value, lo: Value, hi: Value): tf.Tensor => tf.minimum(tf.maximum(x, lo), hi);
export function detach(a: number): number;
export function detach<T extends tf.Tensor>(a: T): T;
export function detach(a: Value): Value;
export function detach(a: Value): Value {
  return typeof a === "number" ? a : stopGradient(a);
}

/** `if c then a else b`, elementwise. */
export function choose(condition: Condition, a: Value, b: Value): tf.Tensor {
  const c = tf.cast(condition, "bool");
  const ta = tf.cast(a, "float32");
  const tb = tf.cast(b, "float32");
  const shape = tf.broadcast_util.assertAndGetBroadcastShape(tf.broadcast_util.assertAndGetBroadcastShape(c.shape, ta.shape), tb.shape);
  return tf.where(tf.broadcastTo(c, shape), tf.broadcastTo(ta, shape), tf.broadcastTo(tb, shape));
}

/** `choose` for a gradient-shaped value: each element where the condition holds, `otherwise` elsewhere. */
export const chooseGradient = (condition: Condition, g: GroupGradient, otherwise: Value): GroupGradient => g.map((t) => choose(condition, t, otherwise));

export const sumBatch = (x: tf.Tensor): tf.Tensor => tf.sum(tf.cast(x, "float32"));
export const meanBatch = (x: tf.Tensor): tf.Tensor => tf.mean(tf.cast(x, "float32"));

/** Reductions over modalities (`sum(k, x[k])`). */
export const sumOf = (values: Value[]): tf.Tensor => tf.addN(values.map((v) => tf.cast(v, "float32")));
export const meanOf = (values: Value[]): tf.Tensor => tf.div(sumOf(values), values.length);
/** `concat(j, ...)` in a fusion: features side by side. */
export const concatOf = (values: tf.Tensor[]): tf.Tensor => tf.concat(values, -1);
export const maxOf = (values: Value[]): tf.Tensor => values.map((v) => tf.cast(v, "float32")).reduce((a, b) => tf.maximum(a, b));
export const minOf = (values: Value[]): tf.Tensor => values.map((v) => tf.cast(v, "float32")).reduce((a, b) => tf.minimum(a, b));

// ------------------------------------------------------------------ gradient statistics

/** The gradient of a parameter group: one tensor per parameter. */
export type GroupGradient = tf.Tensor[];

/**
 * `per_tensor(e)`: `e` computed for each parameter tensor of a gradient alone, as a gradient-shaped
 * value whose every tensor holds its own result.
 */
export const perTensor = (g: GroupGradient, e: (tensor: tf.Tensor) => Value): GroupGradient => g.map((t) => tf.mul(tf.onesLike(t), e(t)));

/** An elementwise function applied to every element of a gradient: `abs(grad(G))`, `sqrt(...)`. */
export const mapGradient = (g: GroupGradient, f: (t: tf.Tensor) => tf.Tensor): GroupGradient => g.map((t) => f(t));
/**
 * The group's elements as one vector, so that a statistic costs a few kernels rather than a few per
 * parameter: the step log takes every encoder's gradient norm at every step.
 */
const flat = (g: GroupGradient): tf.Tensor => (g.length === 1 ? tf.reshape(g[0]!, [-1]) : tf.concat(g.map((t) => tf.reshape(t, [-1]))));
const total = (g: GroupGradient, f: (t: tf.Tensor) => tf.Tensor): tf.Tensor => tf.sum(f(flat(g)));
const count = (g: GroupGradient): number => g.reduce((n, t) => n + t.size, 0);

export const gradNorm = (g: GroupGradient): tf.Tensor => tf.sqrt(total(g, tf.square));
export const gradNorm1 = (g: GroupGradient): tf.Tensor => total(g, tf.abs);
export const gradMean = (g: GroupGradient): tf.Tensor => tf.div(total(g, (t) => t), count(g));

/** Sample standard deviation over every element of the group (n − 1, as torch.std). */
export function gradStd(g: GroupGradient): tf.Tensor {
  const n = count(g);
  const mean = gradMean(g);
  return tf.sqrt(tf.div(total(g, (t) => tf.square(tf.sub(t, mean))), Math.max(1, n - 1)));
}

/** ‖z_i − P_k‖ for every sample i and row k: [batch, rows]; differentiable at 0 too. */
export function distance(z: tf.Tensor, prototypes: tf.Tensor): tf.Tensor {
  const squared = tf.add(tf.sub(tf.sum(tf.square(z), 1, true), tf.mul(2, tf.matMul(z as tf.Tensor2D, prototypes as tf.Tensor2D, false, true))), tf.reshape(tf.sum(tf.square(prototypes), 1), [1, -1]));
  return tf.sqrt(tf.add(tf.relu(squared), 1e-12));
}

export const gradDot = (a: GroupGradient, b: GroupGradient): tf.Tensor => tf.sum(tf.mul(flat(a), flat(b)));

export function gradCos(a: GroupGradient, b: GroupGradient): tf.Tensor {
  return tf.div(gradDot(a, b), tf.add(tf.mul(gradNorm(a), gradNorm(b)), 1e-12));
}

// Gradients combine like vectors of their group's parameters.
/** Element by element: two gradient-shaped values of one group, or one and a number. */
function elementwise(a: GroupGradient | Value, b: GroupGradient | Value, op: (x: Value, y: Value) => tf.Tensor): GroupGradient {
  const length = Array.isArray(a) ? a.length : (b as GroupGradient).length;
  return Array.from({ length }, (_, i) => op(Array.isArray(a) ? a[i]! : a, Array.isArray(b) ? b[i]! : b));
}
export const addGradients = (a: GroupGradient | Value, b: GroupGradient | Value): GroupGradient => elementwise(a, b, tf.add);
export const subGradients = (a: GroupGradient | Value, b: GroupGradient | Value): GroupGradient => elementwise(a, b, tf.sub);
export const mulGradients = (a: GroupGradient | Value, b: GroupGradient | Value): GroupGradient => elementwise(a, b, tf.mul);
export const divGradients = (a: GroupGradient | Value, b: GroupGradient | Value): GroupGradient => elementwise(a, b, tf.div);
export const scaleGradient = (g: GroupGradient, factor: Value): GroupGradient => g.map((t) => tf.mul(t, factor));
/** Each element of a gradient-shaped value limited to [lo, hi]. */
export const clampGradient = (g: GroupGradient, lo: Value, hi: Value): GroupGradient => g.map((t) => clamp(t, lo, hi));
