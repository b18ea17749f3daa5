import * as tf from "@tensorflow/tfjs";
import { batchNorm, batchNormOf, statisticShapes, type BatchStatistics, type Normalization, type StatisticShape } from "./batch-norm.js";
import { logSumExp, normalize, stopGradient } from "./ops.js";
import { auxHeadGroup, encoderGroup, fusionGroup, Groups, headGroup, learnableParam, membersOf } from "./parameter-groups.js";
import { Random } from "./random.js";
import { type BatchRows, StepRandom } from "./step-random.js";
import type { ComponentSpec, FusionInputs, ModelSpec } from "./spec.js";

/**
 * The model as named parameter tensors and a forward pass that is a pure function of them, so
 * that gradients (and gradients of gradient norms) can be taken with respect to any group.
 *
 * Parameter names form the groups a spec addresses (see parameter-groups.ts).
 */
export type Params = Record<string, tf.Tensor>;

interface ParamShape {
  name: string;
  shape: number[];
  init: "he" | "glorot" | "zeros" | number;
}

/**
 * Zeros in place of a modality's features, not connected to its encoder: `tf.zerosLike` records a
 * zero gradient, so a loss of `alone[m]` would reach the other encoders, and a turn would move them
 * (weight decay, momentum).
 */
const absent = (z: tf.Tensor): tf.Tensor => tf.zeros(z.shape);

const activations: Record<string, (x: tf.Tensor) => tf.Tensor> = {
  relu: (x) => tf.relu(x),
  tanh: (x) => tf.tanh(x),
  sigmoid: (x) => tf.sigmoid(x),
  gelu: (x) => tf.mul(x, tf.sigmoid(tf.mul(x, 1.702))),
};

function dense(prefix: string, inputs: number, outputs: number, init: ParamShape["init"] = "he"): ParamShape[] {
  return [
    { name: `${prefix}.kernel`, shape: [inputs, outputs], init },
    { name: `${prefix}.bias`, shape: [outputs], init: "zeros" },
  ];
}

/**
 * A layer of `inputs` → `outputs` (kernel shape `kernel`), with a bias, or, batch-normalised
 * (`norm: "batch"`), with the norm's gain and bias instead: a bias before the norm would cancel out.
 */
function layer(prefix: string, kernel: number[], outputs: number, init: ParamShape["init"], normalized: boolean): ParamShape[] {
  const weights: ParamShape = { name: `${prefix}.kernel`, shape: kernel, init };
  if (!normalized) return [weights, { name: `${prefix}.bias`, shape: [outputs], init: "zeros" }];
  const norm = batchNormOf(prefix);
  return [weights, { name: `${norm}.gain`, shape: [outputs], init: 1 }, { name: `${norm}.bias`, shape: [outputs], init: "zeros" }];
}

/** Whether an encoder's hidden layers are batch-normalised. */
const batchNormalized = (encoder: ComponentSpec): boolean => encoder.options.norm === "batch";

function layerNorm(prefix: string, width: number): ParamShape[] {
  return [
    { name: `${prefix}.gain`, shape: [width], init: 1 },
    { name: `${prefix}.bias`, shape: [width], init: "zeros" },
  ];
}

function numbers(value: unknown): number[] {
  return Array.isArray(value) ? value.map(Number) : [Number(value)];
}

export const modalityIndices = (spec: ModelSpec): number[] => spec.modalities.map((_, m) => m);


/** Width of an encoder's output z[m]. */
export function featureWidth(encoder: ComponentSpec): number {
  return Number(encoder.options.out);
}

function encoderShapes(prefix: string, encoder: ComponentSpec, shape: number[]): ParamShape[] {
  const out = featureWidth(encoder);
  const o = encoder.options;
  switch (encoder.kind) {
    case "mlp": {
      const widths = [shape.reduce((a, b) => a * b, 1), ...numbers(o.hidden)];
      const layers = widths.slice(1).flatMap((w, i) => layer(`${prefix}.dense${i}`, [widths[i]!, w], w, "he", batchNormalized(encoder)));
      return [...layers, ...dense(`${prefix}.last`, widths[widths.length - 1]!, out, "glorot")];
    }
    case "conv1d":
    case "conv2d": {
      const channels = numbers(o.channels);
      const kernel = Number(o.kernel);
      const inChannels = encoder.kind === "conv2d" ? shape[0]! : shape[1]!;
      const window = encoder.kind === "conv2d" ? [kernel, kernel] : [kernel];
      const convs = channels.flatMap((c, i) => layer(`${prefix}.conv${i}`, [...window, i === 0 ? inChannels : channels[i - 1]!, c], c, "he", batchNormalized(encoder)));
      return [...convs, ...dense(`${prefix}.last`, channels[channels.length - 1]!, out, "glorot")];
    }
    case "transformer": {
      const dim = Number(o.dim);
      const ff = Number(o.ff);
      const blocks = Array.from({ length: Number(o.layers) }, (_, l) => {
        const b = `${prefix}.block${l}`;
        return [
          ...["query", "key", "value", "output"].flatMap((p) => dense(`${b}.${p}`, dim, dim, "glorot")),
          ...layerNorm(`${b}.norm1`, dim),
          ...dense(`${b}.ff1`, dim, ff),
          ...dense(`${b}.ff2`, ff, dim, "glorot"),
          ...layerNorm(`${b}.norm2`, dim),
        ];
      });
      return [...dense(`${prefix}.input`, shape[1]!, dim, "glorot"), { name: `${prefix}.position`, shape: [shape[0]!, dim], init: "glorot" }, ...blocks.flat(), ...dense(`${prefix}.last`, dim, out, "glorot")];
    }
    case "resnet": {
      const channels = numbers(o.channels);
      const conv = (name: string, k: number, from: number, to: number): ParamShape[] => layer(name, [k, k, from, to], to, "he", batchNormalized(encoder));
      const shapes = conv(`${prefix}.stem`, 3, shape[0]!, channels[0]!);
      channels.forEach((c, i) => {
        for (let j = 0; j < Number(o.blocks); j++) {
          const from = j === 0 && i > 0 ? channels[i - 1]! : c;
          const b = `${prefix}.stage${i}.block${j}`;
          shapes.push(...conv(`${b}.conv1`, 3, from, c), ...conv(`${b}.conv2`, 3, c, c));
          // A 1×1 projection where the shape changes: more channels, or stride 2.
          if (from !== c || (j === 0 && i > 0)) shapes.push(...conv(`${b}.skip`, 1, from, c));
        }
      });
      return [...shapes, ...dense(`${prefix}.last`, channels[channels.length - 1]!, out, "glorot")];
    }
    case "lstm":
    case "gru": {
      const hidden = Number(o.hidden);
      const gates = encoder.kind === "lstm" ? 4 : 3;
      return [
        { name: `${prefix}.rnn.kernel`, shape: [shape[1]!, gates * hidden], init: "glorot" },
        { name: `${prefix}.rnn.recurrent`, shape: [hidden, gates * hidden], init: "glorot" },
        { name: `${prefix}.rnn.bias`, shape: [gates * hidden], init: "zeros" },
        ...dense(`${prefix}.last`, hidden, out, "glorot"),
      ];
    }
    default:
      throw new Error(`unknown encoder kind ${encoder.kind}`);
  }
}

function fusedWidth(spec: ModelSpec): number {
  if (spec.fusion.kind === "expression") return Number(spec.fusion.options.width);
  const widths = spec.encoders.map(featureWidth);
  return ["concat", "attention"].includes(spec.fusion.kind) ? widths.reduce((a, b) => a + b, 0) : widths[0]!;
}

/** Parameters of a built-in fusion; in a fusion expression each part has its own prefix. */
function fusionShapes(prefix: string, fusion: ComponentSpec, spec: ModelSpec): ParamShape[] {
  const width = featureWidth(spec.encoders[0]!);
  const modalities = spec.modalities.length;
  switch (fusion.kind) {
    case "gated":
      return spec.modalities.flatMap((modality) => dense(`${prefix}.gate.${modality.name}`, width, width, "glorot"));
    case "film":
      return [...dense(`${prefix}.gamma`, width, width, "glorot"), ...dense(`${prefix}.beta`, width, width, "glorot")];
    case "attention":
      return [
        { name: `${prefix}.w1`, shape: [modalities, modalities], init: "glorot" },
        { name: `${prefix}.w2`, shape: [modalities, modalities], init: "glorot" },
      ];
    default:
      return [];
  }
}

/** Prefix of the parameters of fusion part i (the whole fusion when it is one built-in). */
const partPrefix = (i: number): string => `${fusionGroup}.${i}`;

/** A head's output units: its `out`, times the pixels of a segmentation mask. */
function headOutputs(head: ComponentSpec, spec: ModelSpec): number {
  return Number(head.options.out) * (spec.target.kind === "mask" ? spec.target.shape!.reduce((a, b) => a * b, 1) : 1);
}

function headShapes(prefix: string, head: ComponentSpec, inputs: number, spec: ModelSpec): ParamShape[] {
  const out = headOutputs(head, spec);
  if (head.kind === "linear") return dense(prefix, inputs, out, "glorot");
  if (head.kind === "cosine") return [{ name: `${prefix}.kernel`, shape: [inputs, out], init: "glorot" }];
  const widths = [inputs, ...numbers(head.options.hidden)];
  return [...widths.slice(1).flatMap((w, i) => dense(`${prefix}.dense${i}`, widths[i]!, w)), ...dense(`${prefix}.out`, widths[widths.length - 1]!, out, "glorot")];
}

/** The running statistics of the model's batch norms (batch-norm.ts), checkpointed beside its parameters. */
export function modelStatistics(spec: ModelSpec): StatisticShape[] {
  return statisticShapes(parameterShapes(spec));
}

export function parameterShapes(spec: ModelSpec): ParamShape[] {
  const shapes: ParamShape[] = [];
  spec.modalities.forEach((modality, m) => shapes.push(...encoderShapes(encoderGroup(modality.name), spec.encoders[m]!, modality.shape)));
  if (spec.fusionParts) spec.fusionParts.forEach((part, i) => shapes.push(...fusionShapes(partPrefix(i), part, spec)));
  else shapes.push(...fusionShapes(fusionGroup, spec.fusion, spec));
  shapes.push(...headShapes(headGroup, spec.head, fusedWidth(spec), spec));
  if (spec.auxHead) spec.modalities.forEach((modality, m) => shapes.push(...headShapes(auxHeadGroup(modality.name), spec.auxHead!, featureWidth(spec.encoders[m]!), spec)));
  for (const learnable of spec.learnables) {
    const names = learnable.perModality ? spec.modalities.map((m) => learnableParam(learnable.name, m.name)) : [learnableParam(learnable.name)];
    for (const name of names) shapes.push({ name, shape: [], init: learnable.init });
  }
  return shapes;
}

/**
 * A rough memory need of training, checked before any allocation: weights, gradients and two
 * optimiser slots per parameter, and a batch's activations kept for the backward pass (×3 for
 * rules that differentiate twice). Counts are per float32 value.
 */
export function estimateMemory(spec: ModelSpec): { parameters: number; activations: number; bytes: number } {
  const parameters = parameterShapes(spec).reduce((n, p) => n + p.shape.reduce((a, b) => a * b, 1), 0);
  const perSample = spec.modalities.reduce((total, modality, m) => {
    const encoder = spec.encoders[m]!;
    const size = modality.shape.reduce((a, b) => a * b, 1);
    const o = encoder.options;
    switch (encoder.kind) {
      case "conv2d": {
        const [, h, w] = modality.shape;
        return total + size + numbers(o.channels).reduce((sum, c, i) => sum + c * Math.ceil(h! / 2 ** (i + 1)) * Math.ceil(w! / 2 ** (i + 1)), 0);
      }
      case "conv1d":
        return total + size + numbers(o.channels).reduce((sum, c, i) => sum + c * Math.ceil(modality.shape[0]! / 2 ** (i + 1)), 0);
      case "lstm":
      case "gru":
        return total + size + modality.shape[0]! * Number(o.hidden) * 6;
      case "transformer":
        return total + size + Number(o.layers) * modality.shape[0]! * (8 * Number(o.dim) + Number(o.ff) + Number(o.heads) * modality.shape[0]!);
      case "resnet": {
        const [, h, w] = modality.shape;
        return total + size + numbers(o.channels).reduce((sum, c, i) => sum + 4 * Number(o.blocks) * c * Math.ceil(h! / 2 ** i) * Math.ceil(w! / 2 ** i), 0);
      }
      default:
        return total + size + numbers(o.hidden).reduce((a, b) => a + b, 0) + featureWidth(encoder);
    }
  }, 0);
  const activations = perSample * spec.train.batch * 3;
  return { parameters, activations, bytes: 4 * (parameters * 4 + activations) };
}

/** Initial values, drawn in JavaScript from the seed so that every backend starts alike. */
export function initialParameters(spec: ModelSpec, seed: number): Map<string, tf.Variable> {
  return new Map([...initialValues(spec, seed)].map(([name, { values, shape }]) => [name, tf.tidy(() => tf.variable(tf.tensor(values, shape), true, name))]));
}

/** The initial values of every parameter, as numbers: the same draw as `initialParameters`, for `init(G)`. */
export function initialValues(spec: ModelSpec, seed: number): Map<string, { values: Float32Array; shape: number[] }> {
  const random = new Random(seed);
  const out = new Map<string, { values: Float32Array; shape: number[] }>();
  for (const { name, shape, init } of parameterShapes(spec)) {
    const size = shape.reduce((a, b) => a * b, 1);
    const fanIn = shape.length >= 2 ? shape.slice(0, -1).reduce((a, b) => a * b, 1) : 1;
    const fanOut = shape.length >= 2 ? shape[shape.length - 1]! : 1;
    let values: Float32Array;
    if (init === "zeros") values = new Float32Array(size);
    else if (typeof init === "number") values = new Float32Array(size).fill(init);
    else values = random.normals(size, init === "he" ? Math.sqrt(2 / fanIn) : Math.sqrt(2 / (fanIn + fanOut)));
    out.set(name, { values, shape });
  }
  return out;
}

function applyDense(params: Params, prefix: string, x: tf.Tensor): tf.Tensor {
  return tf.add(tf.matMul(x as tf.Tensor2D, params[`${prefix}.kernel`] as tf.Tensor2D), params[`${prefix}.bias`]!);
}

/** Layer `name`'s kernel applied to its input (`applied`), then the layer's bias, or its batch norm. */
function biasOrNorm(params: Params, name: string, applied: tf.Tensor, how: Normalization, normalized: boolean): tf.Tensor {
  return normalized ? batchNorm(params, batchNormOf(name), applied, how) : tf.add(applied, params[`${name}.bias`]!);
}

/** A training pass's dropout of one layer's output (StepRandom.layerDropout). */
type LayerDropout = (layer: string, h: tf.Tensor, rate: number) => tf.Tensor;

function encode(params: Params, prefix: string, encoder: ComponentSpec, x: tf.Tensor, how: Normalization, dropout?: LayerDropout): tf.Tensor {
  const o = encoder.options;
  const act = activations[String(o.activation ?? "relu")] ?? activations.relu!;
  const batch = x.shape[0]!;
  const normalized = batchNormalized(encoder);
  switch (encoder.kind) {
    case "mlp": {
      let h: tf.Tensor = tf.reshape(x, [batch, -1]);
      numbers(o.hidden).forEach((_, i) => {
        const name = `${prefix}.dense${i}`;
        h = act(biasOrNorm(params, name, tf.matMul(h as tf.Tensor2D, params[`${name}.kernel`] as tf.Tensor2D), how, normalized));
        const rate = Number(o.dropout ?? 0);
        if (dropout && rate > 0) h = dropout(name, h, rate);
      });
      return applyDense(params, `${prefix}.last`, h);
    }
    case "conv2d": {
      let h: tf.Tensor = tf.transpose(x, [0, 2, 3, 1]);
      numbers(o.channels).forEach((_, i) => {
        const name = `${prefix}.conv${i}`;
        h = act(biasOrNorm(params, name, tf.conv2d(h as tf.Tensor4D, params[`${name}.kernel`] as tf.Tensor4D, 2, "same"), how, normalized));
      });
      return applyDense(params, `${prefix}.last`, tf.mean(h, [1, 2]));
    }
    case "conv1d": {
      let h: tf.Tensor = x;
      numbers(o.channels).forEach((_, i) => {
        const name = `${prefix}.conv${i}`;
        h = act(biasOrNorm(params, name, tf.conv1d(h as tf.Tensor3D, params[`${name}.kernel`] as tf.Tensor3D, 2, "same"), how, normalized));
      });
      return applyDense(params, `${prefix}.last`, tf.mean(h, 1));
    }
    case "transformer":
      return applyDense(params, `${prefix}.last`, tf.mean(transformer(params, prefix, Number(o.layers), Number(o.heads), x as tf.Tensor3D), 1));
    case "resnet": {
      const conv = (name: string, input: tf.Tensor4D, stride: number) =>
        biasOrNorm(params, name, tf.conv2d(input, params[`${name}.kernel`] as tf.Tensor4D, stride, "same"), how, normalized) as tf.Tensor4D;
      return applyDense(params, `${prefix}.last`, tf.mean(resnet(params, prefix, numbers(o.channels).length, Number(o.blocks), conv, tf.transpose(x, [0, 2, 3, 1]) as tf.Tensor4D), [1, 2]));
    }
    case "lstm":
    case "gru":
      return applyDense(params, `${prefix}.last`, recurrent(params, `${prefix}.rnn`, encoder.kind, Number(o.hidden), x as tf.Tensor3D));
    default:
      throw new Error(`unknown encoder kind ${encoder.kind}`);
  }
}

/** A dense layer applied to every step of [batch, time, features]. */
function applyDenseSteps(params: Params, prefix: string, x: tf.Tensor3D): tf.Tensor3D {
  const [batch, steps, width] = x.shape;
  return tf.reshape(applyDense(params, prefix, tf.reshape(x, [batch * steps, width])), [batch, steps, -1]);
}

function applyLayerNorm(params: Params, prefix: string, x: tf.Tensor): tf.Tensor {
  const mean = tf.mean(x, -1, true);
  const centered = tf.sub(x, mean);
  const scale = tf.sqrt(tf.add(tf.mean(tf.square(centered), -1, true), 1e-5));
  return tf.add(tf.mul(tf.div(centered, scale), params[`${prefix}.gain`]!), params[`${prefix}.bias`]!);
}

/**
 * Post-norm transformer blocks. The attention softmax is exp(s − logSumExp(s)), whose second
 * derivative is right (tfjs's Softmax gradient reads its saved output).
 */
function transformer(params: Params, prefix: string, layers: number, heads: number, x: tf.Tensor3D): tf.Tensor3D {
  const [batch, steps] = x.shape;
  let h = tf.add(applyDenseSteps(params, `${prefix}.input`, x), params[`${prefix}.position`]!) as tf.Tensor3D;
  const dim = h.shape[2]!;
  const split = (t: tf.Tensor3D) => tf.transpose(tf.reshape(t, [batch, steps, heads, dim / heads]), [0, 2, 1, 3]) as tf.Tensor4D;
  for (let l = 0; l < layers; l++) {
    const b = `${prefix}.block${l}`;
    const [q, k, v] = ["query", "key", "value"].map((p) => split(applyDenseSteps(params, `${b}.${p}`, h)));
    const scores = tf.div(tf.matMul(q!, k!, false, true), Math.sqrt(dim / heads));
    const attention = tf.exp(tf.sub(scores, logSumExp(scores)));
    const mixed = tf.reshape(tf.transpose(tf.matMul(attention, v!), [0, 2, 1, 3]), [batch, steps, dim]) as tf.Tensor3D;
    h = applyLayerNorm(params, `${b}.norm1`, tf.add(h, applyDenseSteps(params, `${b}.output`, mixed))) as tf.Tensor3D;
    const ff = applyDenseSteps(params, `${b}.ff2`, tf.relu(applyDenseSteps(params, `${b}.ff1`, h)) as tf.Tensor3D);
    h = applyLayerNorm(params, `${b}.norm2`, tf.add(h, ff)) as tf.Tensor3D;
  }
  return h;
}

/**
 * ResNet basic blocks on [batch, height, width, channels], as torchvision's: conv–norm–relu,
 * conv–norm, plus the input (through a 1×1 conv–norm where the shape changes), relu. `conv`
 * applies a named convolution with its bias or its batch norm.
 */
function resnet(params: Params, prefix: string, stages: number, blocks: number, conv: (name: string, input: tf.Tensor4D, stride: number) => tf.Tensor4D, x: tf.Tensor4D): tf.Tensor4D {
  let h = tf.relu(conv(`${prefix}.stem`, x, 1)) as tf.Tensor4D;
  for (let i = 0; i < stages; i++) {
    for (let j = 0; j < blocks; j++) {
      const b = `${prefix}.stage${i}.block${j}`;
      const stride = j === 0 && i > 0 ? 2 : 1;
      const inner = conv(`${b}.conv2`, tf.relu(conv(`${b}.conv1`, h, stride)) as tf.Tensor4D, 1);
      const skip = params[`${b}.skip.kernel`] ? conv(`${b}.skip`, h, stride) : h;
      h = tf.relu(tf.add(inner, skip)) as tf.Tensor4D;
    }
  }
  return h;
}

/** An LSTM or GRU written with differentiable ops only (no fused kernels), last hidden state out. */
function recurrent(params: Params, prefix: string, kind: string, hidden: number, x: tf.Tensor3D): tf.Tensor {
  const [batch, steps] = x.shape;
  const kernel = params[`${prefix}.kernel`] as tf.Tensor2D;
  const recurrentKernel = params[`${prefix}.recurrent`] as tf.Tensor2D;
  const bias = params[`${prefix}.bias`]!;
  const projected = tf.add(tf.matMul(tf.reshape(x, [batch * steps, -1]), kernel), bias).reshape([batch, steps, -1]);
  let h: tf.Tensor = tf.zeros([batch, hidden]);
  let c: tf.Tensor = tf.zeros([batch, hidden]);
  // One unstack, not a slice per step: the gradient of a slice is a padded copy of the whole
  // sequence, so slicing made the backward pass quadratic in the sequence length.
  for (const input of tf.unstack(projected, 1)) {
    if (kind === "lstm") {
      const [i, f, g, o] = tf.split(tf.add(input, tf.matMul(h as tf.Tensor2D, recurrentKernel)), 4, 1);
      c = tf.add(tf.mul(tf.sigmoid(f!), c), tf.mul(tf.sigmoid(i!), tf.tanh(g!)));
      h = tf.mul(tf.sigmoid(o!), tf.tanh(c));
    } else {
      const [xz, xr, xn] = tf.split(input, 3, 1);
      const [hz, hr, hn] = tf.split(tf.matMul(h as tf.Tensor2D, recurrentKernel), 3, 1);
      const z = tf.sigmoid(tf.add(xz!, hz!));
      const r = tf.sigmoid(tf.add(xr!, hr!));
      const n = tf.tanh(tf.add(xn!, tf.mul(r, hn!)));
      h = tf.add(tf.mul(tf.sub(1, z), n), tf.mul(z, h));
    }
  }
  return h;
}

/**
 * Widths of the modalities' slices of the fused features, where the fusion places them side by
 * side (`concat`); one slice otherwise. A cosine head compares each slice with its own weights.
 */
function fusedSlices(spec: ModelSpec, prefix: string, x: tf.Tensor): number[] {
  return prefix === headGroup && spec.fusion.kind === "concat" ? spec.encoders.map(featureWidth) : [x.shape[1]!];
}

/** s · Σ over slices of normalize(x_slice) · W_slice with each class's weight column normalised: cosines, no bias. */
function cosineLogits(kernel: tf.Tensor, x: tf.Tensor, slices: number[], scale: number): tf.Tensor {
  let offset = 0;
  const parts = slices.map((width) => {
    const xs = tf.slice(x, [0, offset], [-1, width]);
    const ws = tf.slice(kernel, [offset, 0], [width, -1]);
    offset += width;
    return tf.matMul(normalize(xs) as tf.Tensor2D, normalize(ws, 0) as tf.Tensor2D);
  });
  return tf.mul(scale, parts.length === 1 ? parts[0]! : tf.addN(parts));
}

/** A head's outputs: [batch, out], or [batch, height, width, classes] for a segmentation mask. */
function applyHead(params: Params, prefix: string, head: ComponentSpec, x: tf.Tensor, spec: ModelSpec): tf.Tensor {
  let out: tf.Tensor;
  if (head.kind === "linear") out = applyDense(params, prefix, x);
  else if (head.kind === "cosine") out = cosineLogits(params[`${prefix}.kernel`]!, x, fusedSlices(spec, prefix, x), Number(head.options.scale));
  else {
    const act = activations[String(head.options.activation ?? "relu")] ?? activations.relu!;
    let h = x;
    numbers(head.options.hidden).forEach((_, i) => (h = act(applyDense(params, `${prefix}.dense${i}`, h))));
    out = applyDense(params, `${prefix}.out`, h);
  }
  return spec.target.kind === "mask" ? tf.reshape(out, [x.shape[0]!, ...spec.target.shape!, Number(head.options.out)]) : out;
}

/** What a training step lends its forward passes, for the rules evaluated on them. */
export interface StepServices {
  random: StepRandom;
  /** The initial values of these parameters (`init(G)`). */
  initialOf(names: string[]): tf.Tensor[];
  /** A new random initialisation of these parameters (`fresh(G)`). */
  freshOf(names: string[]): tf.Tensor[];
  /** The weights a finished stage ended with, and its batch norms' running statistics. */
  frozenParams(stage: string): Params;
}

/** The values of one forward pass; the per-modality views are computed only when read. */
export class Forward {
  /** Names of the parameter groups a spec can address (the task loss reads them here: it has no step). */
  readonly group: Groups;
  readonly z: tf.Tensor[];
  readonly fused: tf.Tensor;
  readonly out: tf.Tensor;
  /** A training pass's batch statistics, by batch norm (batch-norm.ts): the step's update pass moves the running ones by them. */
  readonly measured: BatchStatistics = new Map();
  private readonly cache = new Map<string, tf.Tensor>();
  private readonly frozenPasses = new Map<string, Forward>();

  constructor(
    private readonly spec: ModelSpec,
    private readonly params: Params,
    readonly inputs: tf.Tensor[],
    readonly target: tf.Tensor,
    /** Training (dropout; batch norms normalise with the batch) or evaluation (with `running`). */
    training: boolean,
    /**
     * Per-modality multipliers of z[m]: 0 evaluates without the modality, a [batch, 1] mask
     * drops it for some samples (`drop z[m] with p`). Absent: every modality as it is.
     */
    keep?: (tf.Tensor | number)[],
    /** The step this pass belongs to: its random draws and the initial parameters (evaluation needs neither). */
    private readonly step: StepServices = {
      random: new StepRandom(0, 0),
      initialOf: () => [],
      freshOf: () => [],
      frozenParams: (stage) => {
        throw new Error(`no stage weights in this pass (${stage})`);
      },
    },
    /** The batch norms' running statistics, by name, for an evaluation pass. */
    running: Params = {},
    /** Where a per-sample pass's row lies in the step's batch: its draws are that row of the batch's. Absent: the whole batch. */
    private readonly rows?: BatchRows,
  ) {
    this.group = new Groups(spec.modalities.map((m) => m.name));
    const how: Normalization = training ? { training, measured: this.measured } : { training, running };
    const whole = { first: 0, total: target.shape[0]! };
    const dropout: LayerDropout | undefined = training ? (layer, h, rate) => step.random.layerDropout(layer, h, rate, rows ?? whole) : undefined;
    this.z = spec.modalities.map((modality, m) => {
      const z = encode(params, encoderGroup(modality.name), spec.encoders[m]!, inputs[m]!, how, dropout);
      const factor = keep?.[m] ?? 1;
      return factor === 1 ? z : factor === 0 ? absent(z) : tf.mul(z, factor);
    });
    this.fused = fuse(spec, params, this.z);
    this.out = applyHead(params, headGroup, spec.head, this.fused, spec);
  }

  /** Computes a view once; a view made inside a gradient scope that has ended is made again. */
  private cached(key: string, compute: () => tf.Tensor): tf.Tensor {
    let value = this.cache.get(key);
    if (!value || value.isDisposed) {
      value = compute();
      this.cache.set(key, value);
    }
    return value;
  }

  /** The fused head's output with only modality m's features (the others' z set to zero). */
  alone(m: number): tf.Tensor {
    return this.cached(`alone${m}`, () => this.headWith((k) => k === m));
  }

  /** The fused head's output with modality m's features set to zero. */
  without(m: number): tf.Tensor {
    return this.cached(`without${m}`, () => this.headWith((k) => k !== m));
  }

  private headWith(present: (m: number) => boolean): tf.Tensor {
    const z = this.z.map((zm, m) => (present(m) ? zm : absent(zm)));
    return applyHead(this.params, headGroup, this.spec.head, fuse(this.spec, this.params, z), this.spec);
  }

  /** Modality indices, for reductions over modalities in the task loss. */
  get modalities(): number[] {
    return modalityIndices(this.spec);
  }

  except(m: number): number[] {
    return this.modalities.filter((k) => k !== m);
  }

  /** The other modality; the checker allows `other(m)` only with exactly two. */
  other(m: number): number {
    return 1 - m;
  }

  /** The step's random draws (`uniform`, `bernoulli`, `dropout`); a per-sample pass's are its row's of the batch's. */
  get random(): StepRandom {
    return this.rows ? this.step.random.forRows(this.rows) : this.step.random;
  }

  /** `weights(G)`: the group's parameters in this pass (copies, as `param`), differentiable in an objective. */
  weights(group: string): tf.Tensor[] {
    return membersOf(Object.keys(this.params), group).map((n) => tf.clone(this.params[n]!));
  }

  /** `init(G)`: the group's parameters as training began. */
  initial(group: string): tf.Tensor[] {
    return this.step.initialOf(membersOf(Object.keys(this.params), group));
  }

  /**
   * `NAME.out`, `NAME.z[m]`, ...: this pass's inputs through the model with the weights stage NAME
   * ended with, in evaluation mode (a frozen teacher), made once per pass.
   */
  frozen(stage: string): Forward {
    let pass = this.frozenPasses.get(stage);
    // A pass made inside a gradient scope that has ended is made again, as a cached view is.
    if (!pass || [pass.out, ...pass.z].some((t) => t.isDisposed)) {
      const frozen = this.step.frozenParams(stage);
      pass = new Forward(this.spec, frozen, this.inputs, this.target, false, undefined, this.step, frozen);
      this.frozenPasses.set(stage, pass);
    }
    return pass;
  }

  /** `fresh(G)`: a new random initialisation of the group's parameters. */
  fresh(group: string): tf.Tensor[] {
    return this.step.freshOf(membersOf(Object.keys(this.params), group));
  }

  /**
   * A parameter's value in this pass (a learnable read by a rule). A copy, not the variable: the
   * optimiser step assigns the variable afterwards, and a rule value must keep the value it had
   * when the step computed it (the step log reads it after the update). Copies share the data.
   */
  param(name: string): tf.Tensor {
    const value = this.params[name];
    if (!value) throw new Error(`no parameter ${name}`);
    return tf.clone(value);
  }

  /**
   * Modality m's additive share of the logits of a linear head over a fusion linear in the
   * features (the checker allows nothing else): fuse(z_m alone)·W + b/M; z_m·W_m + b/M for concat.
   */
  contrib(m: number): tf.Tensor {
    return this.cached(`contrib${m}`, () => {
      const kernel = this.params["head.kernel"] as tf.Tensor2D;
      if (this.spec.head.kind === "cosine") {
        // A cosine head over concat: modality m's cosines with its own slice of the weights, scaled.
        const widths = this.spec.encoders.map(featureWidth);
        const offset = widths.slice(0, m).reduce((a, b) => a + b, 0);
        return cosineLogits(tf.slice(kernel, [offset, 0], [widths[m]!, -1]), this.z[m]!, [widths[m]!], Number(this.spec.head.options.scale));
      }
      const share = tf.div(this.params["head.bias"]!, this.spec.modalities.length);
      if (this.spec.fuse) {
        const alone = this.z.map((zm, k) => (k === m ? zm : absent(zm)));
        return tf.add(tf.matMul(fuse(this.spec, this.params, alone) as tf.Tensor2D, kernel), share);
      }
      if (this.spec.fusion.kind === "concat") {
        const widths = this.spec.encoders.map(featureWidth);
        const offset = widths.slice(0, m).reduce((a, b) => a + b, 0);
        return tf.add(tf.matMul(this.z[m] as tf.Tensor2D, tf.slice(kernel, [offset, 0], [widths[m]!, -1])), share);
      }
      return tf.add(tf.matMul(this.z[m] as tf.Tensor2D, kernel), share);
    });
  }

  /** Output of modality m's auxiliary head, which sees z[m] detached from the encoder unless declared `detach: false`. */
  aux(m: number): tf.Tensor {
    const head = this.spec.auxHead!;
    return this.cached(`aux${m}`, () => {
      // `head[m] = ...(detach: false)`: the head's loss trains the encoder too.
      const z = head.options.detach === false ? this.z[m]! : stopGradient(this.z[m]!);
      return applyHead(this.params, auxHeadGroup(this.spec.modalities[m]!.name), head, z, this.spec);
    });
  }
}

function fuse(spec: ModelSpec, params: Params, z: tf.Tensor[]): tf.Tensor {
  if (!spec.fuse) return applyFusion(spec, params, fusionGroup, spec.fusion, z);
  const inputs: FusionInputs = {
    z,
    modalities: modalityIndices(spec),
    part: (i) => applyFusion(spec, params, partPrefix(i), spec.fusionParts![i]!, z),
    learnable: (name, m) => params[learnableParam(name, m === undefined ? undefined : spec.modalities[m]!.name)]!,
    other: (m) => 1 - m,
  };
  return spec.fuse(inputs);
}

function applyFusion(spec: ModelSpec, params: Params, prefix: string, fusion: ComponentSpec, z: tf.Tensor[]): tf.Tensor {
  switch (fusion.kind) {
    case "concat":
      return tf.concat(z, 1);
    case "sum":
      return tf.addN(z);
    case "gated":
      return tf.addN(z.map((zm, m) => tf.mul(tf.sigmoid(applyDense(params, `${prefix}.gate.${spec.modalities[m]!.name}`, zm)), zm)));
    case "film": {
      const by = spec.modalities.findIndex((m) => m.name === fusion.options.by);
      const others = tf.addN(z.filter((_, m) => m !== by));
      const gamma = applyDense(params, `${prefix}.gamma`, z[by]!);
      const beta = applyDense(params, `${prefix}.beta`, z[by]!);
      return tf.add(tf.mul(tf.add(1, gamma), others), beta);
    }
    case "attention": {
      // Squeeze each modality to its mean feature, weight the modalities per sample, keep them side by side.
      const pooled = tf.stack(z.map((zm) => tf.mean(zm, 1)), 1) as tf.Tensor2D;
      const hidden = tf.relu(tf.matMul(pooled, params[`${prefix}.w1`] as tf.Tensor2D));
      const weights = tf.sigmoid(tf.matMul(hidden, params[`${prefix}.w2`] as tf.Tensor2D));
      return tf.concat(z.map((zm, m) => tf.mul(tf.slice(weights, [0, m], [-1, 1]), zm)), 1);
    }
    default:
      throw new Error(`unknown fusion ${fusion.kind}`);
  }
}
