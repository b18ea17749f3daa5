// Walks over the rule's expression graph, shared by the phases.
import { builtin } from "./builtins/index.js";
import type { RExpr, RuleValue } from "./ir.js";

/** Direct sub-expressions, for walks over the rule graph. */
export function children(e: RExpr): RExpr[] {
  switch (e.op) {
    case "call":
      return e.args;
    case "unary":
    case "perSample":
    case "split":
      return [e.arg];
    case "binary":
      return [e.left, e.right];
    case "perTensor":
      return [e.arg, e.gradient];
    case "if":
      return [e.condition, e.then, e.otherwise];
    case "reduceModalities":
    case "reduceBatch":
      return [e.body];
    case "grad":
      return e.loss ? [e.loss] : [];
    default:
      return [];
  }
}

/** The expression reads a split's values to the host (`purity`): its code awaits, in an async function. */
export function awaits(e: RExpr): boolean {
  return (e.op === "split" && builtin(e.fn)?.ofSplit?.awaited === true) || children(e).some(awaits);
}

/** A call whose first argument is recorded after the step and read on the next (`prev`). */
export function readsLastStep(e: RExpr): boolean {
  return e.op === "call" && builtin(e.fn)?.readsLastStep === true;
}

/** Names of rule values that `e` reads in this step (reads under `prev` are of the last step). */
export function reads(e: RExpr, out = new Set<string>()): Set<string> {
  if (e.op === "value") out.add(e.name);
  if (readsLastStep(e)) return out;
  for (const c of children(e)) reads(c, out);
  return out;
}

/**
 * The rule values that `expressions` read, directly or through each other, in `values`' order
 * (dependency order): an objective recomputes them inside itself so that they are differentiated.
 */
export function valuesRead(expressions: RExpr[], values: RuleValue[]): RuleValue[] {
  const needed = new Set<string>();
  const visit = (name: string) => {
    if (needed.has(name)) return;
    needed.add(name);
    const v = values.find((x) => x.name === name);
    if (v) reads(v.value).forEach(visit);
  };
  for (const e of expressions) reads(e).forEach(visit);
  return values.filter((v) => needed.has(v.name));
}

/** Whether `e` reads a gradient of the task loss, directly or through the rule values it reads. */
export function readsTaskGradient(e: RExpr, values: RuleValue[], seen = new Set<string>()): boolean {
  if (e.op === "grad" && !e.loss) return true;
  if (e.op === "value" && !seen.has(e.name)) {
    seen.add(e.name);
    const v = values.find((x) => x.name === e.name);
    return v !== undefined && readsTaskGradient(v.value, values, seen);
  }
  return children(e).some((c) => readsTaskGradient(c, values, seen));
}

/**
 * What a value needs from the step: nothing but numbers known beforehand (`before`: params, time,
 * learnables, parameters, last step's history), this step's forward pass (`forward`: outputs,
 * features, the target), or its gradients (`gradient`). Reads under `prev` are of the last step.
 */
export type Dependence = "before" | "forward" | "gradient";

export function dependence(e: RExpr, values: RuleValue[], seen = new Set<string>()): Dependence {
  const order: Dependence[] = ["before", "forward", "gradient"];
  const worst = (ds: Dependence[]) => ds.reduce((a, b) => (order.indexOf(b) > order.indexOf(a) ? b : a), "before" as Dependence);
  if (readsLastStep(e)) return "before";
  switch (e.op) {
    case "grad":
    case "perSample":
    case "perTensor":
      return "gradient";
    case "output":
    case "target":
      return "forward";
    // Epoch values and a split's means are known before the step: the epoch rule computed them.
    case "split":
      return "before";
    case "value": {
      if (e.epoch || seen.has(e.name)) return "before";
      seen.add(e.name);
      const v = values.find((x) => x.name === e.name);
      return v ? dependence(v.value, values, seen) : "before";
    }
    default:
      return worst(children(e).map((c) => dependence(c, values, seen)));
  }
}
