import * as tf from "@tensorflow/tfjs";
import type { History } from "./history.js";
import { Forward, type Params } from "./model.js";
import type { GroupGradient, Value } from "./ops.js";
import { Optimizer } from "./optimizer.js";
import type { ComponentSpec, ModelSpec } from "./spec.js";

/** Parameter groups by name: a parameter belongs to a group when its name starts with it. */
export function inGroup(param: string, group: string): boolean {
  return param === group || param.startsWith(`${group}.`);
}

/** Names of the parameter groups a spec can address, for modality index m. */
export class Groups {
  constructor(private readonly modalities: readonly string[]) {}
  encoder = (m: number): string => `encoder.${this.modalities[m]}`;
  encoderLast = (m: number): string => `encoder.${this.modalities[m]}.last`;
  aux = (m: number): string => `aux.${this.modalities[m]}`;
  learnable = (name: string, m?: number): string => (m === undefined ? `learnable.${name}` : `learnable.${name}.${this.modalities[m]}`);
  readonly head = "head";
  readonly fusion = "fusion";
}

/** The update gradient of every parameter; actions change it in place, in spec order. */
export class Gradients {
  readonly lrFactors = new Map<string, tf.Tensor>();

  constructor(
    readonly values: Map<string, tf.Tensor>,
    private readonly noiseSeed: number,
  ) {}

  names(group: string): string[] {
    const names = [...this.values.keys()].filter((n) => inGroup(n, group));
    if (names.length === 0) throw new Error(`parameter group "${group}" has no parameters`);
    return names;
  }

  of(group: string): GroupGradient {
    return this.names(group).map((n) => this.values.get(n)!);
  }

  scale(group: string, factor: Value): void {
    for (const name of this.names(group)) this.replace(name, tf.mul(this.values.get(name)!, factor));
  }

  /** Adds N(mean, std²) noise; the draw depends only on the run's seed, the step and the parameter. */
  addNoise(group: string, mean: Value, std: Value): void {
    for (const name of this.names(group)) {
      const g = this.values.get(name)!;
      const seed = (this.noiseSeed + hash(name)) % 2147483647;
      this.replace(name, tf.add(g, tf.add(tf.mul(tf.randomNormal(g.shape, 0, 1, "float32", seed), std), mean)));
    }
  }

  scaleLearningRate(group: string, factor: Value): void {
    for (const name of this.names(group)) {
      const previous = this.lrFactors.get(name);
      this.lrFactors.set(name, previous ? tf.mul(previous, factor) : tf.cast(tf.scalar(0).add(factor), "float32"));
    }
  }

  private replace(name: string, value: tf.Tensor): void {
    this.values.set(name, value);
  }
}

function hash(text: string): number {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619) >>> 0;
  return h;
}

/** A differentiable view of ∂(task loss)/∂(group): gradients that can be differentiated again. */
export type GradientOf = (group: string) => GroupGradient;
export type TaskLoss = (f: Forward) => tf.Tensor;
export type Objective = (f: Forward, grad: GradientOf) => tf.Tensor;

/** What one training step can see and do; the generated `trainStep` drives it phase by phase. */
export class StepContext {
  readonly group: Groups;
  private taskLoss?: TaskLoss;
  /** Tensors kept alive past a gradient scope; the loop disposes them after the step. */
  readonly keptTensors: tf.Tensor[] = [];

  constructor(
    readonly spec: ModelSpec,
    readonly params: Map<string, tf.Variable>,
    readonly inputs: tf.Tensor[],
    readonly target: tf.Tensor,
    readonly step: number,
    readonly epoch: number,
    readonly history: History,
    private readonly separateOptimizers: Map<string, Optimizer>,
    private readonly seed: number,
    /** Parameter groups trained only by their own `minimize`. */
    private readonly trainedSeparately: readonly string[],
  ) {
    this.group = new Groups(spec.modalities.map((m) => m.name));
  }

  get modalities(): number[] {
    return this.spec.modalities.map((_, m) => m);
  }

  perModality<T>(value: (m: number) => T): T[] {
    return this.modalities.map(value);
  }

  /** The other modality; the checker allows `other(m)` only with exactly two. */
  other(m: number): number {
    return 1 - m;
  }

  /** Modalities except m, for `sum(k != m, ...)`. */
  except(m: number): number[] {
    return this.modalities.filter((k) => k !== m);
  }

  private trainable(): string[] {
    return [...this.params.keys()].filter((n) => !this.trainedSeparately.some((g) => inGroup(n, g)));
  }

  private forward(params: Params, keep: boolean): Forward {
    const f = new Forward(this.spec, params, this.inputs, this.target, true);
    if (keep) for (const t of [...f.z, f.fused, f.out]) this.keptTensors.push(tf.keep(t));
    return f;
  }

  /**
   * The differentiable gradient of the task loss at `params`, for objectives that contain
   * gradients (second order): one nested backward pass over all parameters, sliced by group.
   */
  private gradientOf(params: Params, names: string[], taskLoss: TaskLoss): { grad: GradientOf; loss: tf.Tensor; forward: Forward } {
    let forward!: Forward;
    const { value, grads } = tf.valueAndGrads((...ts: tf.Tensor[]) => {
      forward = this.forward({ ...params, ...Object.fromEntries(names.map((n, i) => [n, ts[i]!])) }, true);
      return taskLoss(forward) as tf.Scalar;
    })(names.map((n) => params[n]!));
    const byName = new Map(names.map((n, i) => [n, grads[i]!]));
    const grad: GradientOf = (group) => {
      const members = names.filter((n) => inGroup(n, group));
      if (members.length === 0) throw new Error(`parameter group "${group}" has no parameters`);
      return members.map((n) => byName.get(n)!);
    };
    return { grad, loss: value, forward };
  }

  /**
   * Forward pass, task loss, and the update gradient of every trainable parameter. With
   * `added`, the update gradient is that of task loss + added, differentiated through any
   * gradients `added` reads; `grads` still reports the raw ∂(task loss)/∂θ to rule values.
   */
  backward(taskLoss: TaskLoss, added?: Objective): { loss: tf.Tensor; grads: Gradients; raw: GradientOf; forward: Forward } {
    this.taskLoss = taskLoss;
    const names = this.trainable();
    const all = [...this.params.keys()];
    const noiseSeed = (this.seed * 1000003 + this.step) % 2147483647;
    let forward!: Forward;
    if (!added) {
      const { value, grads } = tf.valueAndGrads((...ts: tf.Tensor[]) => {
        forward = this.forward(Object.fromEntries(names.map((n, i) => [n, ts[i]!])) as Params, true);
        return taskLoss(forward) as tf.Scalar;
      })(names.map((n) => this.params.get(n)!));
      const gradients = new Gradients(new Map(names.map((n, i) => [n, grads[i]!])), noiseSeed);
      const raw = new Gradients(new Map(gradients.values), noiseSeed);
      return { loss: value, grads: gradients, raw: (g) => raw.of(g), forward };
    }
    let rawGrad!: GradientOf;
    let taskValue!: tf.Tensor;
    const { grads } = tf.valueAndGrads((...ts: tf.Tensor[]) => {
      const params: Params = { ...Object.fromEntries(this.params), ...Object.fromEntries(names.map((n, i) => [n, ts[i]!])) };
      const inner = this.gradientOf(params, all, taskLoss);
      forward = inner.forward;
      taskValue = tf.keep(inner.loss);
      const detached = new Map(all.map((n) => [n, tf.keep(tf.clone(inner.grad(n)[0]!))]));
      this.keptTensors.push(taskValue, ...detached.values());
      rawGrad = (group) => all.filter((n) => inGroup(n, group)).map((n) => detached.get(n)!);
      return tf.add(inner.loss, added(inner.forward, inner.grad)) as tf.Scalar;
    })(names.map((n) => this.params.get(n)!));
    const gradients = new Gradients(new Map(names.map((n, i) => [n, grads[i]!])), noiseSeed);
    return { loss: taskValue, grads: gradients, raw: rawGrad, forward };
  }

  /** Updates `group` with its own optimiser on `objective`, which may read gradients. */
  minimize(group: string, optimizer: ComponentSpec, objective: Objective): tf.Tensor {
    const taskLoss = this.taskLoss;
    if (!taskLoss) throw new Error("minimize runs after backward");
    const all = [...this.params.keys()];
    const names = all.filter((n) => inGroup(n, group));
    const { value, grads } = tf.valueAndGrads((...ts: tf.Tensor[]) => {
      const params: Params = { ...Object.fromEntries(this.params), ...Object.fromEntries(names.map((n, i) => [n, ts[i]!])) };
      const inner = this.gradientOf(params, all, taskLoss);
      return objective(inner.forward, inner.grad) as tf.Scalar;
    })(names.map((n) => this.params.get(n)!));
    let own = this.separateOptimizers.get(group);
    if (!own) {
      own = new Optimizer(optimizer);
      this.separateOptimizers.set(group, own);
    }
    own.apply(this.params, new Map(names.map((n, i) => [n, grads[i]!])), () => 1);
    return value;
  }

  /** Set by the loop: applies the optimiser to the update gradient. */
  update: (grads: Gradients) => void = () => {
    throw new Error("update is provided by the training loop");
  };
}
