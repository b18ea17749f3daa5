import {
  auxHeadGroup, encoderGroup, encoderLastGroup, encoderLayersGroup, fusionGroup, headGroup, learnableParam, weightsOf,
} from "../../runtime/parameter-groups.js";
import { action } from "../builtins/index.js";
import type { ActionIR, GroupRef, IndexRef, ModelIR, RExpr, RuleValue } from "../ir.js";
import { children, reads, readsLastStep, readsTaskGradient } from "../walks.js";

/**
 * Phase 3: orders one training step. The phases, in order: forward and task loss; backward
 * (raw gradients; with added losses, the gradient of their sum, second order where they read
 * gradients); rule values in dependency order; actions in spec order; optimiser update;
 * history (`prev` values recorded for the next step).
 */
export interface StepPlan {
  values: RuleValue[];
  /** Modality drops: they decide the forward pass, so they run before it. */
  drops: Extract<ActionIR, { kind: "drop" }>[];
  addedLosses: Extract<ActionIR, { kind: "addLoss" }>[];
  actions: Exclude<ActionIR, { kind: "addLoss" | "drop" | "assign" | "assignWeights" }>[];
  /** `set`: after the optimiser step, in spec order. */
  assignments: Extract<ActionIR, { kind: "assign" | "assignWeights" }>[];
  /** `prev(x, init[, n])` nodes: x is recorded after the rule values, read on the next step; `depth`: n. */
  prevWrites: { id: number; arg: RExpr; bound: string[]; depth?: RExpr }[];
  secondOrder: boolean;
  trainedSeparately: string[];
  /** With `stage` blocks: each stage's own plan, in order (this plan is the last one's). */
  stages?: StepPlan[];
  /** The `every epoch` rule: its values in dependency order, its `prev` records and its `set`s. */
  epoch?: { values: RuleValue[]; prevWrites: StepPlan["prevWrites"]; assignments: StepPlan["assignments"] };
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
  if (e.op === "call" && readsLastStep(e)) out.push({ id: e.state!, arg: e.args[0]!, bound, ...(e.args[2] ? { depth: e.args[2] } : {}) });
  const inner = e.op === "reduceModalities" ? [...bound, e.variable] : bound;
  for (const c of children(e)) collectPrev(c, inner, out);
}

/** The runtime names of the parameters a group covers; a group indexed by a loop variable covers every modality. */
export function groupNames(group: GroupRef, model: ModelIR): string[] {
  if (group.weights) return groupNames({ ...group, weights: false }, model).map(weightsOf);
  const modalities = (ref: IndexRef | undefined): string[] => {
    if (ref?.kind === "fixed") return [model.modalities[ref.modality]!.name];
    return model.modalities.map((m) => m.name);
  };
  switch (group.kind) {
    case "encoder": {
      const part = group.part;
      return modalities(group.modality).map((m) => (part === "all" ? encoderGroup(m) : part === "last" ? encoderLastGroup(m) : encoderLayersGroup(m, part)));
    }
    case "auxHead":
      return modalities(group.modality).map(auxHeadGroup);
    case "learnable":
      return group.modality ? modalities(group.modality).map((m) => learnableParam(group.name, m)) : [learnableParam(group.name)];
    case "head":
      return [headGroup];
    case "fusion":
      return [fusionGroup];
  }
}

export function schedule(model: ModelIR): StepPlan {
  if (!model.stages) return scheduleStage(model);
  const stages = model.stages.map((s) => scheduleStage({ ...model, loss: s.loss, optimizer: s.optimizer, schedule: s.schedule, train: s.train, rule: s.rule }));
  return { ...stages[stages.length - 1]!, stages };
}

function scheduleStage(model: ModelIR): StepPlan {
  const values = topological(model.rule.values);
  // Each action runs in the phase its catalogue entry names: before the forward pass, in the loss, or after the rule values.
  const phase = (a: ActionIR) => action(a.kind).phase;
  const addedLosses = model.rule.actions.filter((a): a is Extract<ActionIR, { kind: "addLoss" }> => phase(a) === "loss");
  const drops = model.rule.actions.filter((a): a is Extract<ActionIR, { kind: "drop" }> => phase(a) === "before");
  const actions = model.rule.actions.filter((a): a is Exclude<ActionIR, { kind: "addLoss" | "drop" | "assign" | "assignWeights" }> => phase(a) === "after");
  const assignments = model.rule.actions.filter((a): a is Extract<ActionIR, { kind: "assign" | "assignWeights" }> => phase(a) === "update");
  const prevWrites: StepPlan["prevWrites"] = [];
  for (const v of values) collectPrev(v.value, v.index ? [v.index] : [], prevWrites);
  const epoch = model.rule.epoch && epochPlan(model.rule.epoch);
  // An epoch rule's `prev` of a step value reads the slot every step writes: the step records it.
  const stepNames = new Set(values.map((v) => v.name));
  const readsSteps = (w: StepPlan["prevWrites"][number]) => [...reads(w.arg)].some((n) => stepNames.has(n));
  if (epoch) {
    prevWrites.push(...epoch.prevWrites.filter(readsSteps));
    epoch.prevWrites = epoch.prevWrites.filter((w) => !readsSteps(w));
  }
  const trainedSeparately = [...new Set(actions.flatMap((a) => (a.kind === "minimize" ? groupNames(a.group, model) : [])))];
  const secondOrder = addedLosses.some((a) => [a.value, ...a.when].some((e) => readsTaskGradient(e, values)));
  return { values, drops, addedLosses, actions, assignments, prevWrites, secondOrder, trainedSeparately, ...(epoch ? { epoch } : {}) };
}

/** The epoch rule runs as a step does, without a batch: values, then `prev` records, then `set`s. */
function epochPlan(rule: NonNullable<ModelIR["rule"]["epoch"]>): NonNullable<StepPlan["epoch"]> {
  const values = topological(rule.values);
  const prevWrites: StepPlan["prevWrites"] = [];
  for (const v of values) collectPrev(v.value, v.index ? [v.index] : [], prevWrites);
  return { values, prevWrites, assignments: rule.actions };
}
