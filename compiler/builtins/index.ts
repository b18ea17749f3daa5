/**
 * The builtin catalogue: every function, reduction, metric and history operator of the rule
 * language (one entry each, by family), the operators, the named values and the actions.
 * Adding a function is one entry here and, if new, one runtime op.
 */
import { distributions } from "./distributions.js";
import { epochs } from "./epochs.js";
import { gradients } from "./gradients.js";
import { history } from "./history.js";
import { math } from "./math.js";
import { metrics } from "./metrics.js";
import { binaryOperators, conditional, unaryOperators } from "./operators.js";
import { places } from "./places.js";
import { prototypes } from "./prototypes.js";
import { random } from "./random.js";
import { concat, detach, reductions, type Reduction } from "./reductions.js";
import type { Builtin } from "./types.js";
import { values } from "./values.js";

export type * from "./types.js";
export type { Reduction } from "./reductions.js";
export type { Action } from "./actions.js";
export type { Operator } from "./operators.js";
export type { BuiltinValue } from "./values.js";
export { actions, action } from "./actions.js";
export { binaryOperators, conditional, unaryOperators } from "./operators.js";
export { logFields, values } from "./values.js";

/** Every function, in the order of the reference. */
export const builtins: readonly Builtin[] = [...math, detach, ...reductions, concat, ...random, ...distributions, ...gradients, ...metrics, ...history, ...prototypes, ...epochs, ...places];

const byName = new Map(builtins.map((b) => [b.name, b]));

export function builtin(name: string): Builtin | undefined {
  return byName.get(name);
}

export function isReduction(entry: Builtin): entry is Reduction {
  return entry.form === "reduction";
}

/** Names a spec cannot give its own values: functions and built-in values. */
export const reservedNames: ReadonlySet<string> = new Set([...builtins.map((b) => b.name), ...values.map((v) => v.name)]);

/** Functions a rule expression can call, for "did you mean". */
export const ruleFunctionNames: readonly string[] = builtins.filter((b) => !b.misuse).map((b) => b.name);

/** Functions a fusion expression can call. */
export const fusionFunctionNames: readonly string[] = builtins.filter((b) => b.fusion).map((b) => b.name);

/** Every runtime function a lowering may call: the generated module imports them, so spec names avoid them. */
export const runtimeNames: ReadonlySet<string> = new Set([
  ...builtins.flatMap((b) => [...(b.lower?.tfjs.runtime ?? []), ...(b.formRuntime ?? []), ...(isReduction(b) ? [b.reduce.modalities, ...(b.reduce.batch ? [b.reduce.batch] : [])] : [])]),
  ...[...binaryOperators, ...unaryOperators].flatMap((o) => [o.tfjs.tensor, o.tfjs.gradient, o.tfjs.elementwise].filter((n): n is string => n !== undefined)),
  conditional.tfjs.tensor,
  conditional.tfjs.gradient,
]);
