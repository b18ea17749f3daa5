import * as tf from "@tensorflow/tfjs";
import { stopGradient } from "./ops.js";
import { Random } from "./random.js";
import type { ComponentSpec, ModelSpec } from "./spec.js";

/**
 * The model as named parameter tensors and a forward pass that is a pure function of them, so
 * that gradients (and gradients of gradient norms) can be taken with respect to any group.
 *
 * Parameter names form the groups a spec addresses: `encoder.<m>.*` (`encoder[m]`),
 * `encoder.<m>.last.*` (`encoder[m].last`), `fusion.*`, `head.*`, `aux.<m>.*` (`head[m]`),
 * `learnable.<name>[.<m>]`.
 */
export type Params = Record<string, tf.Tensor>;

interface ParamShape {
  name: string;
  shape: number[];
  init: "he" | "glorot" | "zeros" | number;
}

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

function numbers(value: unknown): number[] {
  return Array.isArray(value) ? value.map(Number) : [Number(value)];
}

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
      const layers = widths.slice(1).flatMap((w, i) => dense(`${prefix}.dense${i}`, widths[i]!, w));
      return [...layers, ...dense(`${prefix}.last`, widths[widths.length - 1]!, out, "glorot")];
    }
    case "conv1d":
    case "conv2d": {
      const channels = numbers(o.channels);
      const kernel = Number(o.kernel);
      const inChannels = encoder.kind === "conv2d" ? shape[0]! : shape[1]!;
      const window = encoder.kind === "conv2d" ? [kernel, kernel] : [kernel];
      const convs = channels.flatMap((c, i) => [
        { name: `${prefix}.conv${i}.kernel`, shape: [...window, i === 0 ? inChannels : channels[i - 1]!, c], init: "he" as const },
        { name: `${prefix}.conv${i}.bias`, shape: [c], init: "zeros" as const },
      ]);
      return [...convs, ...dense(`${prefix}.last`, channels[channels.length - 1]!, out, "glorot")];
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
  const widths = spec.encoders.map(featureWidth);
  return spec.fusion.kind === "concat" ? widths.reduce((a, b) => a + b, 0) : widths[0]!;
}

function headShapes(prefix: string, head: ComponentSpec, inputs: number): ParamShape[] {
  const out = Number(head.options.out);
  if (head.kind === "linear") return dense(prefix, inputs, out, "glorot");
  const widths = [inputs, ...numbers(head.options.hidden)];
  return [...widths.slice(1).flatMap((w, i) => dense(`${prefix}.dense${i}`, widths[i]!, w)), ...dense(`${prefix}.out`, widths[widths.length - 1]!, out, "glorot")];
}

export function parameterShapes(spec: ModelSpec): ParamShape[] {
  const shapes: ParamShape[] = [];
  spec.modalities.forEach((modality, m) => shapes.push(...encoderShapes(`encoder.${modality.name}`, spec.encoders[m]!, modality.shape)));
  const width = featureWidth(spec.encoders[0]!);
  if (spec.fusion.kind === "gated") spec.modalities.forEach((modality) => shapes.push(...dense(`fusion.gate.${modality.name}`, width, width, "glorot")));
  if (spec.fusion.kind === "film") shapes.push(...dense("fusion.gamma", width, width, "glorot"), ...dense("fusion.beta", width, width, "glorot"));
  shapes.push(...headShapes("head", spec.head, fusedWidth(spec)));
  if (spec.auxHead) spec.modalities.forEach((modality, m) => shapes.push(...headShapes(`aux.${modality.name}`, spec.auxHead!, featureWidth(spec.encoders[m]!))));
  for (const learnable of spec.learnables) {
    const names = learnable.perModality ? spec.modalities.map((m) => `learnable.${learnable.name}.${m.name}`) : [`learnable.${learnable.name}`];
    for (const name of names) shapes.push({ name, shape: [], init: learnable.init });
  }
  return shapes;
}

/** Initial values, drawn in JavaScript from the seed so that every backend starts alike. */
export function initialParameters(spec: ModelSpec, seed: number): Map<string, tf.Variable> {
  const random = new Random(seed);
  const params = new Map<string, tf.Variable>();
  for (const { name, shape, init } of parameterShapes(spec)) {
    const size = shape.reduce((a, b) => a * b, 1);
    const fanIn = shape.length >= 2 ? shape.slice(0, -1).reduce((a, b) => a * b, 1) : 1;
    const fanOut = shape.length >= 2 ? shape[shape.length - 1]! : 1;
    let values: Float32Array;
    if (init === "zeros") values = new Float32Array(size);
    else if (typeof init === "number") values = new Float32Array(size).fill(init);
    else values = random.normals(size, init === "he" ? Math.sqrt(2 / fanIn) : Math.sqrt(2 / (fanIn + fanOut)));
    params.set(name, tf.tidy(() => tf.variable(tf.tensor(values, shape), true, name)));
  }
  return params;
}

function applyDense(params: Params, prefix: string, x: tf.Tensor): tf.Tensor {
  return tf.add(tf.matMul(x as tf.Tensor2D, params[`${prefix}.kernel`] as tf.Tensor2D), params[`${prefix}.bias`]!);
}

function encode(params: Params, prefix: string, encoder: ComponentSpec, x: tf.Tensor, training: boolean): tf.Tensor {
  const o = encoder.options;
  const act = activations[String(o.activation ?? "relu")] ?? activations.relu!;
  const batch = x.shape[0]!;
  switch (encoder.kind) {
    case "mlp": {
      let h: tf.Tensor = tf.reshape(x, [batch, -1]);
      numbers(o.hidden).forEach((_, i) => {
        h = act(applyDense(params, `${prefix}.dense${i}`, h));
        const rate = Number(o.dropout ?? 0);
        if (training && rate > 0) h = tf.dropout(h, rate);
      });
      return applyDense(params, `${prefix}.last`, h);
    }
    case "conv2d": {
      let h: tf.Tensor = tf.transpose(x, [0, 2, 3, 1]);
      numbers(o.channels).forEach((_, i) => {
        h = act(tf.add(tf.conv2d(h as tf.Tensor4D, params[`${prefix}.conv${i}.kernel`] as tf.Tensor4D, 2, "same"), params[`${prefix}.conv${i}.bias`]!));
      });
      return applyDense(params, `${prefix}.last`, tf.mean(h, [1, 2]));
    }
    case "conv1d": {
      let h: tf.Tensor = x;
      numbers(o.channels).forEach((_, i) => {
        h = act(tf.add(tf.conv1d(h as tf.Tensor3D, params[`${prefix}.conv${i}.kernel`] as tf.Tensor3D, 2, "same"), params[`${prefix}.conv${i}.bias`]!));
      });
      return applyDense(params, `${prefix}.last`, tf.mean(h, 1));
    }
    case "lstm":
    case "gru":
      return applyDense(params, `${prefix}.last`, recurrent(params, `${prefix}.rnn`, encoder.kind, Number(o.hidden), x as tf.Tensor3D));
    default:
      throw new Error(`unknown encoder kind ${encoder.kind}`);
  }
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
  for (let t = 0; t < steps; t++) {
    const input = tf.squeeze(tf.slice(projected, [0, t, 0], [batch, 1, -1]), [1]);
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

function applyHead(params: Params, prefix: string, head: ComponentSpec, x: tf.Tensor): tf.Tensor {
  if (head.kind === "linear") return applyDense(params, prefix, x);
  const act = activations[String(head.options.activation ?? "relu")] ?? activations.relu!;
  let h = x;
  numbers(head.options.hidden).forEach((_, i) => (h = act(applyDense(params, `${prefix}.dense${i}`, h))));
  return applyDense(params, `${prefix}.out`, h);
}

/** The values of one forward pass; the per-modality views are computed only when read. */
export class Forward {
  readonly z: tf.Tensor[];
  readonly fused: tf.Tensor;
  readonly out: tf.Tensor;
  private readonly contribCache = new Map<number, tf.Tensor>();
  private readonly auxCache = new Map<number, tf.Tensor>();

  constructor(
    private readonly spec: ModelSpec,
    private readonly params: Params,
    readonly inputs: tf.Tensor[],
    readonly target: tf.Tensor,
    training: boolean,
    /** Evaluate with only this modality's features (the others' z set to zero). */
    only?: number,
  ) {
    this.z = spec.modalities.map((modality, m) => {
      const z = encode(params, `encoder.${modality.name}`, spec.encoders[m]!, inputs[m]!, training);
      return only === undefined || only === m ? z : tf.zerosLike(z);
    });
    this.fused = fuse(spec, params, this.z);
    this.out = applyHead(params, "head", spec.head, this.fused);
  }

  /** A parameter's tensor in this pass (a learnable read by a rule). */
  param(name: string): tf.Tensor {
    const value = this.params[name];
    if (!value) throw new Error(`no parameter ${name}`);
    return value;
  }

  /** Modality m's additive share of the logits of a linear head: z_m·W_m + b/M. */
  contrib(m: number): tf.Tensor {
    let value = this.contribCache.get(m);
    if (!value) {
      const kernel = this.params["head.kernel"] as tf.Tensor2D;
      const share = tf.div(this.params["head.bias"]!, this.spec.modalities.length);
      if (this.spec.fusion.kind === "concat") {
        const widths = this.spec.encoders.map(featureWidth);
        const offset = widths.slice(0, m).reduce((a, b) => a + b, 0);
        value = tf.add(tf.matMul(this.z[m] as tf.Tensor2D, tf.slice(kernel, [offset, 0], [widths[m]!, -1])), share);
      } else value = tf.add(tf.matMul(this.z[m] as tf.Tensor2D, kernel), share);
      this.contribCache.set(m, value);
    }
    return value;
  }

  /** Output of modality m's auxiliary head, which sees z[m] detached from the encoder. */
  aux(m: number): tf.Tensor {
    let value = this.auxCache.get(m);
    if (!value) {
      value = applyHead(this.params, `aux.${this.spec.modalities[m]!.name}`, this.spec.auxHead!, stopGradient(this.z[m]!));
      this.auxCache.set(m, value);
    }
    return value;
  }
}

function fuse(spec: ModelSpec, params: Params, z: tf.Tensor[]): tf.Tensor {
  switch (spec.fusion.kind) {
    case "concat":
      return tf.concat(z, 1);
    case "sum":
      return tf.addN(z);
    case "gated":
      return tf.addN(z.map((zm, m) => tf.mul(tf.sigmoid(applyDense(params, `fusion.gate.${spec.modalities[m]!.name}`, zm)), zm)));
    case "film": {
      const by = spec.modalities.findIndex((m) => m.name === spec.fusion.options.by);
      const others = tf.addN(z.filter((_, m) => m !== by));
      const gamma = applyDense(params, "fusion.gamma", z[by]!);
      const beta = applyDense(params, "fusion.beta", z[by]!);
      return tf.add(tf.mul(tf.add(1, gamma), others), beta);
    }
    default:
      throw new Error(`unknown fusion ${spec.fusion.kind}`);
  }
}
