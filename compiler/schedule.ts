import type { ActionIR, GroupRef, IndexRef, ModelIR, RExpr, RuleValue } from "./ir.js";

/**
 * Phase 4: orders one training step. The phases, in order: forward and task loss; backward
 * (raw gradients; with added losses, the gradient of their sum, second order where they read
 * gradients); rule values in dependency order; actions in spec order; optimiser update;
 * history (`prev` values recorded for the next step).
 */
export interface StepPlan {
  values: RuleValue[];
  /** Modality drops: they decide the forward pass, so they run before it. */
  drops: Extract<ActionIR, { kind: "drop" }>[];
  addedLosses: Extract<ActionIR, { kind: "addLoss" }>[];
  actions: Exclude<ActionIR, { kind: "addLoss" | "drop" }>[];
  /** `prev(x, init)` nodes: x is recorded after the rule values, read on the next step. */
  prevWrites: { id: number; arg: RExpr; bound: string[] }[];
  secondOrder: boolean;
  trainedSeparately: string[];
}

/** Direct sub-expressions, for walks over the rule graph. */
export function children(e: RExpr): RExpr[] {
  switch (e.op) {
    case "unary":
    case "gradStat":
    case "detach":
    case "perSample":
    case "history":
      return [e.arg];
    case "binary":
      return [e.left, e.right];
    case "if":
      return [e.condition, e.then, e.otherwise];
    case "reduceModalities":
    case "reduceBatch":
      return [e.body];
    case "gradCos":
    case "gradDot":
      return [e.a, e.b];
    case "grad":
      return e.loss ? [e.loss] : [];
    case "metric":
      return [e.output, e.target];
    case "classMean":
      return [e.features, e.target];
    case "distance":
      return [e.features, e.prototypes];
    default:
      return [];
  }
}

/** Names of rule values that `e` reads in this step (reads under `prev` are of the last step). */
export function reads(e: RExpr, out = new Set<string>()): Set<string> {
  if (e.op === "value") out.add(e.name);
  if (e.op === "history" && e.fn === "prev") return out;
  for (const c of children(e)) reads(c, out);
  return out;
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

function topological(values: RuleValue[]): RuleValue[] {
  const byName = new Map(values.map((v) => [v.name, v]));
  const done = new Set<string>();
  const ordered: RuleValue[] = [];
  const visit = (v: RuleValue) => {
    if (done.has(v.name)) return;
    done.add(v.name);
    for (const name of reads(v.value)) {
      const dependency = byName.get(name);
      if (dependency) visit(dependency);
    }
    ordered.push(v);
  };
  // Visit in spec order, so independent values keep the order the researcher wrote.
  values.forEach(visit);
  return ordered;
}

function collectPrev(e: RExpr, bound: string[], out: StepPlan["prevWrites"]): void {
  if (e.op === "history" && e.fn === "prev") out.push({ id: e.id, arg: e.arg, bound });
  const inner = e.op === "reduceModalities" ? [...bound, e.variable] : bound;
  for (const c of children(e)) collectPrev(c, inner, out);
}

/**
 * The runtime names of the parameters a group covers (see runtime/step.ts `Groups`); a group
 * indexed by a loop variable covers every modality.
 */
export function groupNames(group: GroupRef, model: ModelIR): string[] {
  if (group.weights) return groupNames({ ...group, weights: false }, model).map((g) => `${g}|weight`);
  const modalities = (ref: IndexRef | undefined): string[] => {
    if (ref?.kind === "fixed") return [model.modalities[ref.modality]!.name];
    return model.modalities.map((m) => m.name);
  };
  switch (group.kind) {
    case "encoder":
      return modalities(group.modality).map((m) => (group.part === "all" ? `encoder.${m}` : group.part === "last" ? `encoder.${m}.last` : `encoder.${m}|${group.part}`));
    case "auxHead":
      return modalities(group.modality).map((m) => `aux.${m}`);
    case "learnable":
      return group.modality ? modalities(group.modality).map((m) => `learnable.${group.name}.${m}`) : [`learnable.${group.name}`];
    case "head":
    case "fusion":
      return [group.kind];
  }
}

export function schedule(model: ModelIR): StepPlan {
  const values = topological(model.rule.values);
  const addedLosses = model.rule.actions.filter((a): a is Extract<ActionIR, { kind: "addLoss" }> => a.kind === "addLoss");
  const drops = model.rule.actions.filter((a): a is Extract<ActionIR, { kind: "drop" }> => a.kind === "drop");
  const actions = model.rule.actions.filter((a): a is Exclude<ActionIR, { kind: "addLoss" | "drop" }> => a.kind !== "addLoss" && a.kind !== "drop");
  const prevWrites: StepPlan["prevWrites"] = [];
  for (const v of values) collectPrev(v.value, v.index ? [v.index] : [], prevWrites);
  const trainedSeparately = [...new Set(actions.flatMap((a) => (a.kind === "minimize" ? groupNames(a.group, model) : [])))];
  const secondOrder = addedLosses.some((a) => [a.value, ...a.when].some((e) => readsTaskGradient(e, values)));
  return { values, drops, addedLosses, actions, prevWrites, secondOrder, trainedSeparately };
}
