import * as tf from "@tensorflow/tfjs";
import { initialValues, modalityIndices, type Params, type StepServices } from "./model.js";
import type { GroupGradient, Value } from "./ops.js";
import { Groups, membersOf } from "./parameter-groups.js";
import type { StepRandom } from "./step-random.js";
import type { ModelSpec } from "./spec.js";

/** A new random initialisation of some parameters, drawn as training's first one is, from the run's seed and the step. */
export function freshValues(spec: ModelSpec, seed: number, step: number, names: string[]): tf.Tensor[] {
  const drawn = initialValues(spec, (seed * 1000003 + step * 7919 + 104729) % 2147483647);
  return names.map((n) => {
    const { values, shape } = drawn.get(n)!;
    return tf.tensor(values, shape);
  });
}

/**
 * What every rule sees, a step's (`StepContext`) and an epoch's (`EpochContext`): the modalities,
 * the parameters as they are now, as training began (`init`) or newly drawn (`fresh`), and `set`s,
 * made together once the rule has run so that each reads the same weights.
 */
export abstract class RuleContext implements StepServices {
  readonly group: Groups;
  abstract readonly random: StepRandom;
  /** `set` assignments waiting for the end of the rule. */
  private readonly assignments: [tf.Variable, tf.Tensor][] = [];

  constructor(
    readonly spec: ModelSpec,
    readonly params: Map<string, tf.Variable>,
    /** Steps taken before this one (an epoch rule: before the epoch). */
    readonly step: number,
    protected readonly seed: number,
    /** The initial value of each parameter (`init(G)`), made when a rule first asks. */
    private readonly initialValues: () => Map<string, tf.Tensor> = () => new Map(),
    /** The weights each finished stage ended with (`NAME.out`, `NAME.z[m]`). */
    private readonly finished: ReadonlyMap<string, Params> = new Map(),
  ) {
    this.group = new Groups(spec.modalities.map((m) => m.name));
  }

  get modalities(): number[] {
    return modalityIndices(this.spec);
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

  /** A learnable's value now (before the forward pass, or after the optimiser step for `set`). */
  param(group: string): tf.Tensor {
    const [name] = membersOf(this.params.keys(), group);
    return tf.clone(this.params.get(name!)!);
  }

  /** `weights(G)` outside a forward pass: the parameters now. */
  weights(group: string): tf.Tensor[] {
    return membersOf(this.params.keys(), group).map((n) => tf.clone(this.params.get(n)!));
  }

  initialOf(names: string[]): tf.Tensor[] {
    const values = this.initialValues();
    return names.map((n) => values.get(n)!);
  }

  /** `init(G)`: the group's parameters as training began. */
  initial(group: string): tf.Tensor[] {
    return this.initialOf(membersOf(this.params.keys(), group));
  }

  frozenParams(stage: string): Params {
    const weights = this.finished.get(stage);
    if (!weights) throw new Error(`stage ${stage} has not ended: its weights cannot be read yet`);
    return weights;
  }

  freshOf(names: string[]): tf.Tensor[] {
    return freshValues(this.spec, this.seed, this.step, names);
  }

  /** `fresh(G)`: a new random initialisation of the group's parameters, the same on resume. */
  fresh(group: string): tf.Tensor[] {
    return this.freshOf(membersOf(this.params.keys(), group));
  }

  /**
   * `set w = e`: a learnable's value after the rule. Every `set` reads the values before any is
   * made (`applyAssignments`), so that `set w[m] = w[m] / sum(k, w[k])` divides each by one sum.
   */
  assign(group: string, value: Value): void {
    const [name] = membersOf(this.params.keys(), group);
    const variable = this.params.get(name!)!;
    this.assignments.push([variable, tf.reshape(tf.cast(typeof value === "number" ? tf.scalar(value) : value, "float32"), variable.shape)]);
  }

  /** `set weights(G) = g`: each parameter of the group to its tensor of g. */
  assignWeights(group: string, value: GroupGradient): void {
    membersOf(this.params.keys(), group).forEach((name, i) => {
      const variable = this.params.get(name)!;
      const tensor = value[i];
      if (!tensor || tensor.shape.join() !== variable.shape.join()) throw new Error(`set weights: a value of shape [${tensor?.shape ?? ""}] for ${name} of shape [${variable.shape}]`);
      this.assignments.push([variable, tf.cast(tensor, "float32")]);
    });
  }

  /** Makes the rule's `set` assignments; the loop calls it after the rule. */
  applyAssignments(): void {
    for (const [variable, value] of this.assignments) variable.assign(value);
    this.assignments.length = 0;
  }
}
