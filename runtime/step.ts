import * as tf from "@tensorflow/tfjs";
import type { BatchStatistics } from "./batch-norm.js";
import type { History } from "./history.js";
import { Forward, type Params } from "./model.js";
import type { EpochNumber, EpochResult } from "./epoch.js";
import { inGroup, membersOf } from "./parameter-groups.js";
import { RuleContext } from "./rule-context.js";
import { insideGradient, stopGradient, type GroupGradient, type Value } from "./ops.js";
import { Optimizer } from "./optimizer.js";
import { nameHash, Random } from "./random.js";
import { StepRandom } from "./step-random.js";
import type { ComponentSpec, ModelSpec } from "./spec.js";

/** The update gradient of every parameter; actions change it in place, in spec order. */
export class Gradients {
  readonly lrFactors = new Map<string, tf.Tensor>();

  constructor(
    readonly values: Map<string, tf.Tensor>,
    private readonly noiseSeed: number,
    /** The batch statistics of the pass these gradients come from: the update moves the running statistics by them. */
    readonly measured: BatchStatistics = new Map(),
  ) {}

  names(group: string): string[] {
    return membersOf(this.values.keys(), group);
  }

  of(group: string): GroupGradient {
    return this.names(group).map((n) => this.values.get(n)!);
  }

  /** Multiplies by one number, or element by element by a gradient-shaped value of this group. */
  scale(group: string, factor: Value | GroupGradient): void {
    this.names(group).forEach((name, i) => this.values.set(name, tf.mul(this.values.get(name)!, elementOf(factor, i, name))));
  }

  /**
   * Adds N(mean, std²) noise (mean and std one number, or one per element); the draw depends only
   * on the run's seed, the step and the parameter, and is drawn in JavaScript as the data is: the
   * same on every backend and in the torch trainer (runtime/torch/step.py draws the same stream).
   */
  addNoise(group: string, mean: Value | GroupGradient, std: Value | GroupGradient): void {
    this.names(group).forEach((name, i) => {
      const g = this.values.get(name)!;
      const draw = tf.tensor(new Random((this.noiseSeed + nameHash(name)) % 2147483647).normals(g.size), g.shape);
      this.values.set(name, tf.add(g, tf.add(tf.mul(draw, elementOf(std, i, name)), elementOf(mean, i, name))));
    });
  }

  scaleLearningRate(group: string, factor: Value): void {
    for (const name of this.names(group)) {
      const previous = this.lrFactors.get(name);
      this.lrFactors.set(name, previous ? tf.mul(previous, factor) : tf.cast(tf.scalar(0).add(factor), "float32"));
    }
  }

  /** `replace grad(G) by value`; with a mask, only where the mask holds. */
  replace(group: string, value: GroupGradient, mask?: tf.Tensor): void {
    const names = this.names(group);
    if (value.length !== names.length) throw new Error(`replace: ${value.length} gradients for the ${names.length} parameters of "${group}"`);
    names.forEach((name, i) => {
      const old = this.values.get(name)!;
      const replacement = value[i]!;
      if (replacement.shape.join() !== old.shape.join()) throw new Error(`replace: gradient of shape [${replacement.shape}] for ${name} of shape [${old.shape}]`);
      this.values.set(name, mask ? tf.where(tf.broadcastTo(tf.cast(mask, "bool"), old.shape), replacement, old) : replacement);
    });
  }
}

/**
 * Value and gradients of `f` at `xs`, differentiable again. A parameter `f` does not depend on
 * (an auxiliary head, under the task loss) gets a zero gradient instead of an error.
 */
function valueAndGrads(f: (xs: tf.Tensor[]) => tf.Tensor, xs: tf.Tensor[]): { value: tf.Tensor; grads: tf.Tensor[]; reached: boolean[] } {
  const { value, grads } = tf.engine().gradients(() => insideGradient(() => f(xs)) as tf.Scalar, xs, undefined, true);
  return { value, grads: grads.map((g, i) => g ?? tf.zerosLike(xs[i]!)), reached: grads.map((g) => Boolean(g)) };
}

/**
 * The update gradients of `names`; with `onlyReached`, only of the parameters the loss depends on:
 * one modality's turn (`turns`) moves its own encoder and what it shares, and leaves the rest
 * as they are (no weight decay, no momentum), as PyTorch's optimisers skip a parameter without a
 * gradient.
 */
function updateGradients(names: string[], grads: tf.Tensor[], reached: boolean[], onlyReached: boolean, noiseSeed: number, measured: BatchStatistics): Gradients {
  return new Gradients(new Map(names.flatMap((n, i) => (onlyReached && !reached[i] ? [] : [[n, grads[i]!] as const]))), noiseSeed, measured);
}

/** The `i`-th parameter's part of an operand: the number itself, or its tensor of a gradient-shaped value. */
function elementOf(operand: Value | GroupGradient, i: number, name: string): Value {
  if (!Array.isArray(operand)) return operand;
  const part = operand[i];
  if (!part) throw new Error(`a gradient-shaped operand of ${operand.length} tensors for parameter ${i + 1} (${name}) of its group`);
  return part;
}

/** The task loss of a forward pass; it reads the step (`ctx`: history, time, params) where it reads rule values. */
export type TaskLoss = (f: Forward, ctx: StepContext) => tf.Tensor;
/**
 * ∂(task loss)/∂(group), or ∂loss/∂(group) for `grad(G, L)`; with `sample`, of that sample's
 * loss alone (`per_sample`). Gradients that can be differentiated again.
 */
export type GradientOf = (group: string, loss?: TaskLoss, sample?: number) => GroupGradient;
export type Objective = (f: Forward, grad: GradientOf) => tf.Tensor;

/** What one training step can see and do; the generated `trainStep` drives it phase by phase. */
export class StepContext extends RuleContext {
  private taskLoss?: TaskLoss;
  /** The loss the update differentiates: the task loss plus every added loss (set by `backward`). */
  totalLoss?: tf.Tensor;
  /** Tensors kept alive past a gradient scope; the loop disposes them after the step. */
  readonly keptTensors: tf.Tensor[] = [];
  /** The forward pass drop probabilities read (`probe`), made at most once per step. */
  private probeForward?: Forward;
  /** The step's random draws (`uniform`, `bernoulli`, `dropout`), the same in every pass of the step. */
  readonly random: StepRandom;
  /** Per-modality multipliers of z[m] this step (`drop`); every forward pass of the step uses them. */
  private readonly keep: (tf.Tensor | number)[];

  constructor(
    spec: ModelSpec,
    params: Map<string, tf.Variable>,
    readonly inputs: tf.Tensor[],
    readonly target: tf.Tensor,
    step: number,
    readonly epoch: number,
    readonly history: History,
    private readonly separateOptimizers: Map<string, Optimizer>,
    seed: number,
    /** Parameter groups trained only by their own `minimize`. */
    private readonly trainedSeparately: readonly string[],
    initialValues: () => Map<string, tf.Tensor> = () => new Map(),
    /** The spec's `param` values (the task loss may read them). */
    readonly specParams: Record<string, number> = {},
    /** What the epoch rule computed at this epoch's start (`every epoch`). */
    private readonly epochValues: EpochResult = { logged: {}, kept: {} },
    /** The weights each finished stage ended with (`NAME.out`, `NAME.z[m]`). */
    finished: ReadonlyMap<string, Params> = new Map(),
    /** `progress`: the share of this epoch's batches done before this one, in [0, 1). */
    readonly progress = 0,
  ) {
    super(spec, params, step, seed, initialValues, finished);
    this.keep = spec.modalities.map(() => 1);
    this.random = new StepRandom(seed, step);
  }

  /** A value of the epoch rule (one per modality: modality m's), constant during the epoch. */
  epochValue(name: string, m?: number): tf.Tensor {
    const one = this.epochValueOf(name, m);
    return one instanceof tf.Tensor ? one : tf.scalar(Number(one));
  }

  /** An epoch value the rule computed from time and params alone: a plain number. */
  epochNumber(name: string, m?: number): number {
    return Number(this.epochValueOf(name, m));
  }

  /** An epoch condition the rule computed from time and params alone: a plain boolean. */
  epochCondition(name: string, m?: number): boolean {
    return Boolean(this.epochValueOf(name, m));
  }

  private epochValueOf(name: string, m?: number): EpochNumber {
    const value = this.epochValues.logged[name];
    const one = Array.isArray(value) ? value[m!] : value;
    if (one === undefined) throw new Error(`the epoch rule computed no \`${name}\``);
    return one;
  }

  /** A gradient-shaped value of the epoch rule (a snapshot of weights). */
  epochGradient(name: string, m?: number): GroupGradient {
    return this.epochKept(name, m) as GroupGradient;
  }

  /** A tensor of the epoch rule the log does not keep (class means). */
  epochTensor(name: string, m?: number): tf.Tensor {
    return this.epochKept(name, m) as tf.Tensor;
  }

  private epochKept(name: string, m?: number): tf.Tensor | GroupGradient {
    const value = this.epochValues.kept[name];
    const one = m === undefined ? value : (value as (tf.Tensor | GroupGradient)[] | undefined)?.[m];
    if (!one) throw new Error(`the epoch rule computed no \`${name}\``);
    return one as tf.Tensor | GroupGradient;
  }

  /**
   * `drop z[m] with p`: zero modality m's features for each sample with probability p (one number,
   * or one per sample); `rescale`: the kept samples' features × 1/(1 − p).
   */
  drop(m: number, p: Value, options: { rescale?: boolean } = {}): void {
    const batch = this.inputs[m]!.shape[0]!;
    const random = new Random((this.seed * 1000003 + this.step * 7919 + m) % 2147483647);
    const draws = Float32Array.from({ length: batch }, () => random.uniform());
    const mask =
      typeof p === "number"
        ? tf.tensor2d(draws.map((u) => (u < p ? 0 : 1)), [batch, 1])
        : tf.reshape(tf.cast(tf.greaterEqual(tf.tensor1d(draws), tf.reshape(p, [-1])), "float32"), [batch, 1]);
    // Where p = 1 no sample is kept: divNoNan gives those zeros 0, not 0/0.
    this.keep[m] = options.rescale ? tf.divNoNan(mask, tf.reshape(tf.sub(1, p), [-1, 1])) : mask;
  }

  /**
   * A drop probability that reads this step's outputs: evaluated on a forward pass of the current
   * parameters without any drop (made once per step), as a constant.
   */
  probe(value: (f: Forward) => Value): Value {
    this.probeForward ??= new Forward(this.spec, Object.fromEntries(this.params), this.inputs, this.target, true, undefined, this);
    const v = value(this.probeForward);
    return typeof v === "number" ? v : stopGradient(v);
  }

  /** A drop's probability computed from values known before the forward pass (history, params, time). */
  beforeForward(value: () => Value): Value {
    return value();
  }

  private trainable(): string[] {
    return [...this.params.keys()].filter((n) => !this.trainedSeparately.some((g) => inGroup(n, g)));
  }

  private forward(params: Params, keep: boolean, sample?: number): Forward {
    if (sample !== undefined) {
      const one = (t: tf.Tensor) => tf.slice(t, [sample], [1]);
      const rows = { first: sample, total: this.target.shape[0]! };
      return new Forward(this.spec, params, this.inputs.map(one), one(this.target), true, this.keep.map((k) => (typeof k === "number" ? k : one(k))), this, undefined, rows);
    }
    const f = new Forward(this.spec, params, this.inputs, this.target, true, this.keep, this);
    if (keep) {
      const statistics = [...f.measured.values()].flatMap(({ mean, variance }) => [mean, variance]);
      for (const t of [...f.z, f.fused, f.out, ...statistics]) this.keptTensors.push(tf.keep(t));
    }
    return f;
  }

  /**
   * The differentiable gradient of the task loss at `params`, for objectives that contain
   * gradients (second order): one nested backward pass over all parameters, sliced by group.
   */
  private gradientOf(params: Params, names: string[], taskLoss: TaskLoss): { grad: GradientOf; loss: tf.Tensor; forward: Forward } {
    let forward!: Forward;
    const { value, grads } = valueAndGrads((ts: tf.Tensor[]) => {
      forward = this.forward({ ...params, ...Object.fromEntries(names.map((n, i) => [n, ts[i]!])) }, true);
      return taskLoss(forward, this) as tf.Scalar;
    }, names.map((n) => params[n]!));
    const byName = new Map(names.map((n, i) => [n, grads[i]!]));
    const grad = this.gradients(params, taskLoss, (group) => {
      return membersOf(names, group).map((n) => byName.get(n)!);
    });
    return { grad, loss: value, forward };
  }

  /**
   * The `grad` a rule reads at `params`: `ofTask` gives the task loss's gradients, already
   * computed; `grad(G, L)` and per-sample gradients take a pass of their own.
   */
  private gradients(params: Params, taskLoss: TaskLoss, ofTask: (group: string) => GroupGradient): GradientOf {
    return (group, loss, sample) => (loss || sample !== undefined ? this.lossGradient(params, group, loss ?? taskLoss, sample) : ofTask(group));
  }

  /** ∂loss/∂(group) at `params`, through a forward pass of its own (on one sample, if given); differentiable again. */
  private lossGradient(params: Params, group: string, loss: TaskLoss, sample?: number): GroupGradient {
    const members = membersOf(Object.keys(params), group);
    return valueAndGrads((ts) => loss(this.forward({ ...params, ...Object.fromEntries(members.map((n, i) => [n, ts[i]!])) }, false, sample), this), members.map((n) => params[n]!)).grads;
  }

  /** `per_sample(e)`: e evaluated for each sample of the batch, as one value per sample. */
  perSample(value: (sample: number) => tf.Tensor | number): tf.Tensor {
    const size = this.target.shape[0]!;
    return tf.stack(Array.from({ length: size }, (_, i) => tf.reshape(tf.cast(tf.scalar(0).add(value(i)), "float32"), [])));
  }

  /**
   * Forward pass, task loss, and the update gradient of every trainable parameter. With
   * `added`, the update gradient is that of task loss + added, differentiated through any
   * gradients `added` reads; `grads` still reports the raw ∂(task loss)/∂θ to rule values.
   * `onlyReached` (a modality's turn): the update leaves out parameters the loss does not depend on.
   */
  backward(taskLoss: TaskLoss, added?: Objective, options: { readsTaskGradient?: boolean; onlyReached?: boolean } = {}): { loss: tf.Tensor; grads: Gradients; raw: GradientOf; forward: Forward } {
    const { readsTaskGradient = true, onlyReached = false } = options;
    this.taskLoss = taskLoss;
    const names = this.trainable();
    const all = [...this.params.keys()];
    const noiseSeed = (this.seed * 1000003 + this.step) % 2147483647;
    let forward!: Forward;
    if (added && !readsTaskGradient) {
      // First order: the task loss's own gradients for the rule, plus the added loss's.
      const task = this.backward(taskLoss, undefined, { onlyReached });
      const current = Object.fromEntries(this.params) as Params;
      const extra = valueAndGrads((ts) => {
        const params: Params = { ...current, ...Object.fromEntries(names.map((n, i) => [n, ts[i]!])) };
        return added(this.forward(params, false), this.gradients(params, taskLoss, (g) => this.lossGradient(params, g, taskLoss)));
      }, names.map((n) => this.params.get(n)!));
      names.forEach((n, i) => {
        const own = task.grads.values.get(n);
        if (own || extra.reached[i] || !onlyReached) task.grads.values.set(n, own ? tf.add(own, extra.grads[i]!) : extra.grads[i]!);
      });
      this.totalLoss = tf.add(task.loss, extra.value);
      return task;
    }
    if (!added) {
      const { value, grads, reached } = valueAndGrads((ts: tf.Tensor[]) => {
        forward = this.forward({ ...Object.fromEntries(this.params), ...Object.fromEntries(names.map((n, i) => [n, ts[i]!])) }, true);
        return taskLoss(forward, this) as tf.Scalar;
      }, names.map((n) => this.params.get(n)!));
      const gradients = updateGradients(names, grads, reached, onlyReached, noiseSeed, forward.measured);
      const raw = new Gradients(new Map(names.map((n, i) => [n, grads[i]!])), noiseSeed);
      const current = Object.fromEntries(this.params) as Params;
      this.totalLoss = value;
      return { loss: value, grads: gradients, raw: this.gradients(current, taskLoss, (g) => raw.of(g)), forward };
    }
    let rawGrad!: GradientOf;
    let taskValue!: tf.Tensor;
    const { value: total, grads, reached } = valueAndGrads((ts: tf.Tensor[]) => {
      const params: Params = { ...Object.fromEntries(this.params), ...Object.fromEntries(names.map((n, i) => [n, ts[i]!])) };
      const inner = this.gradientOf(params, all, taskLoss);
      forward = inner.forward;
      taskValue = tf.keep(inner.loss);
      const detached = new Map(all.map((n) => [n, tf.keep(tf.clone(inner.grad(n)[0]!))]));
      this.keptTensors.push(taskValue, ...detached.values());
      const current = Object.fromEntries(this.params) as Params;
      rawGrad = this.gradients(current, taskLoss, (group) => membersOf(all, group).map((n) => detached.get(n)!));
      return tf.add(inner.loss, added(inner.forward, inner.grad)) as tf.Scalar;
    }, names.map((n) => this.params.get(n)!));
    const gradients = updateGradients(names, grads, reached, onlyReached, noiseSeed, forward.measured);
    this.totalLoss = total;
    return { loss: taskValue, grads: gradients, raw: rawGrad, forward };
  }

  /**
   * Updates `group` with its own optimiser on `objective`. An objective that reads gradients of
   * the task loss is differentiated through them (second order).
   */
  minimize(group: string, optimizer: ComponentSpec, objective: Objective, options = { readsTaskGradient: true }): tf.Tensor {
    const taskLoss = this.taskLoss;
    if (!taskLoss) throw new Error("minimize runs after backward");
    const all = [...this.params.keys()];
    const names = all.filter((n) => inGroup(n, group));
    const { value, grads } = valueAndGrads((ts: tf.Tensor[]) => {
      const params: Params = { ...Object.fromEntries(this.params), ...Object.fromEntries(names.map((n, i) => [n, ts[i]!])) };
      if (!options.readsTaskGradient) {
        return objective(this.forward(params, false), (g, loss, sample) => {
          if (!loss) throw new Error("this objective was compiled without task gradients");
          return this.lossGradient(params, g, loss, sample);
        }) as tf.Scalar;
      }
      const inner = this.gradientOf(params, all, taskLoss);
      return objective(inner.forward, inner.grad) as tf.Scalar;
    }, names.map((n) => this.params.get(n)!));
    let own = this.separateOptimizers.get(group);
    if (!own) {
      own = new Optimizer(optimizer);
      this.separateOptimizers.set(group, own);
    }
    own.apply(this.params, new Map(names.map((n, i) => [n, grads[i]!])), () => 1);
    return value;
  }

  /**
   * Ends one modality's turn of `turns step`: each turn takes an optimiser step, and the next
   * turn's rules read the history this one wrote (`prev`, `ema`, the projection of `owm`).
   */
  endTurn(): void {
    this.history.advance();
  }

  /** Set by the loop: applies the optimiser to the update gradient. */
  update: (grads: Gradients) => void = () => {
    throw new Error("update is provided by the training loop");
  };
}
