import type { ValueKind } from "../ir.js";
import type { Range } from "../../runtime/range.js";

/**
 * One entry of the builtin catalogue: everything the compiler knows about a function of the rule
 * language, in one place. The checker checks calls against `signatures` generically, codegen
 * emits from `lower`, and the reference tables of README.md and docs/builtins.md are printed
 * from `usage` and `doc`. A second target adds its own field to `lower`.
 */
export interface Builtin {
  name: string;
  family: Family;
  /** How a call looks, for MMB007's help and the reference: `clamp(x, lo, hi)`. */
  usage: string;
  /** One line: what it computes. */
  doc: string;
  /** A typical call, for help lines where `usage`'s placeholders say too little: `norm(grad(encoder[m]))`. */
  example?: string;
  /** The overloads, tried in order: the first whose arguments all fit gives the result. */
  signatures: Signature[];
  /**
   * Calls that need more than a signature check have a form of their own (in
   * `1-check/special-forms.ts`): a parameter group (`grad`), an index binder (`sum(k, ...)`), or
   * an evaluation per sample (`per_sample`).
   */
  form?: "grad" | "reduction" | "perSample" | "perTensor" | "index" | "parameters" | "split";
  /** `form: "split"`: the kinds its value over the split may have, the result, and the epoch context's method. */
  ofSplit?: {
    kinds: readonly ValueKind[];
    result: ValueKind;
    method: string;
    /** The method reads the split's values to the host and returns a promise (a GPU's tensors cannot be read synchronously): the epoch rule awaits it. */
    awaited?: boolean;
    /** The torch trainer's epoch context's method (runtime/torch/epoch.py). */
    torchMethod: string;
  };
  /** Runtime functions a special form's code calls (a lowering names its own). */
  formRuntime?: readonly string[];
  /** Names valid in one place only (`normal` after `noise ... ~`) give this diagnostic elsewhere. */
  misuse?: { code: "MMB006" | "MMB007" | "MMB009" | "MMB018"; message: string; help: string };
  /** Applies to the features in a fusion expression: keeping their width (elementwise, `normalize`), or as a reduction over modalities. */
  fusion?: "elementwise" | "reduction";
  /** With arguments known on the host (numbers, params, `step`, `epoch`), the result is too: plain arithmetic, no tensors. */
  host?: boolean;
  /** The call keeps state between steps (history): the checker gives it a slot, checkpoints keep it. */
  stateful?: boolean;
  /** The call draws at random: the checker gives it a slot, its own random stream. */
  random?: boolean;
  /** Its arguments must be known before the step (numbers, params, `step`, `epoch`): `uniform(epoch)`. */
  hostOnly?: boolean;
  /** The first argument is recorded after the step and read on the next (`prev`): not a read of this step. */
  readsLastStep?: boolean;
  /** The result is a constant for differentiation: nothing second order flows through it. */
  cutsGradient?: boolean;
  /** A check the signature cannot express (shapes, the target's kind); reports and returns false on failure. */
  refine?: (call: RefineContext) => boolean;
  /**
   * How a call is emitted, per target; special forms and misused names have their own IR nodes or
   * none. Every entry with a tfjs lowering has a torch one (test/torch-catalogue.test.ts).
   */
  lower?: { tfjs: Lowering; torch?: Lowering };
}

export type Family = "math" | "random" | "distributions" | "gradients" | "metrics" | "history" | "prototypes" | "reductions" | "epochs" | "places";

/** An argument: a value of one of `kinds`, or a constant known before training (a number or a `param`). */
export type ParamSpec =
  | { name: string; kinds: readonly ValueKind[] }
  | { name: string; constant: Range };

export interface Signature {
  params: ParamSpec[];
  /** The result's kind; `lift`: one number per sample when an argument is, else one number. */
  result: ValueKind | "lift";
}

/** What `refine` sees: the checked arguments' kinds, and a way to report. */
export interface RefineContext {
  name: string;
  args: { kind: ValueKind; shape?: { key: string; text: string }; span: { start: number; end: number } }[];
  span: { start: number; end: number };
  targetKind: "class" | "real" | "mask";
  report(code: "MMB008" | "MMB016", message: string, extra: { help: string; related?: { span: { start: number; end: number }; message: string }[] }): false;
}

/** How a call becomes code: TypeScript in the tfjs trainer, Python in the torch one. */
export interface Lowering {
  /** Runtime functions the code may call: the trainer imports them, and spec names avoid them. */
  runtime: readonly string[];
  emit(cx: LoweringContext): string;
}

export interface LoweringContext {
  /** The arguments' code. */
  args: string[];
  kinds: ValueKind[];
  result: ValueKind;
  /** Every argument is a plain number known without tensors: emit JavaScript arithmetic (the torch runtime's functions take numbers too). */
  host: boolean;
  /** A call of a runtime function (recorded for the trainer's import). */
  call(fn: string, ...args: string[]): string;
  /** A runtime function passed as a value (recorded for the trainer's import). */
  ref(fn: string): string;
  /** The call's slot (a history entry, or a random stream) and the key of the modality indices in scope. */
  state: { id: number; key: string };
  /** Where the code runs: `ctx`, the step, or `f`, a forward pass (the task loss, an objective). */
  scope: "ctx" | "f";
  target: { kind: "class" | "real" | "mask"; classes: number };
}
