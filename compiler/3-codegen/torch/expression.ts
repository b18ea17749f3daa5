import { binaryOperators, builtin, conditional, isReduction, unaryOperators, type LoweringContext } from "../../builtins/index.js";
import type { FExpr, GroupRef, IndexRef, ModelIR, RExpr, ValueKind } from "../../ir.js";
import { pythonName, pythonNumber, pythonString } from "./names.js";

/** What an expression's code can see where it is emitted (as the tfjs generator's `Env`). */
export interface Env {
  /** Modality index variables in scope. */
  bound: string[];
  model: ModelIR;
  /** What ranges over modalities: the step context, or the forward pass inside `task_loss`. */
  scope: "ctx" | "f";
  /** Inside `per_sample(...)`: the variable holding the sample index. */
  sample?: string;
  /** Inside `per_tensor(...)`: the gradient (as JSON) that the variable `tensor`, one of its tensors, stands for. */
  tensor?: string;
  /** Without a forward pass (a drop's probability, `set` after the update): learnables are read from the step. */
  learnablesFromStep?: boolean;
  /** In the generated `epoch_rule`: epoch values are its locals. */
  epochRule?: boolean;
}

const binaryOps = new Map(binaryOperators.map((o) => [o.symbol, o.torch]));
const unaryOps = new Map(unaryOperators.map((o) => [o.symbol === "-" ? "neg" : o.symbol, o.torch]));

export function indexCode(ref: IndexRef, env: Env): string {
  switch (ref.kind) {
    case "var":
      return pythonName(ref.name);
    case "fixed":
      return String(ref.modality);
    case "other":
      return `${env.scope}.other(${indexCode(ref.of, env)})`;
  }
}

/** A group's name, through the step's `group` (or the forward pass's, in the task loss). */
export function groupCode(group: GroupRef, env: Env): string {
  const groups = `${env.scope}.group`;
  if (group.weights) return `${groups}.weights(${groupCode({ ...group, weights: false }, env)})`;
  switch (group.kind) {
    case "encoder":
      if (group.part === "all") return `${groups}.encoder(${indexCode(group.modality, env)})`;
      if (group.part === "last") return `${groups}.encoder_last(${indexCode(group.modality, env)})`;
      return `${groups}.encoder_layers(${indexCode(group.modality, env)}, ${pythonString(group.part)})`;
    case "head":
      return `${groups}.head`;
    case "fusion":
      return `${groups}.fusion`;
    case "auxHead":
      return `${groups}.aux(${indexCode(group.modality, env)})`;
    case "learnable":
      return `${groups}.learnable(${pythonString(group.name)}${group.modality ? `, ${indexCode(group.modality, env)}` : ""})`;
  }
}

/** The key of a stateful call's slot: one per binding of the modality indices in scope (as the tfjs trainer's). */
export function historyKey(env: Env): string {
  return env.bound.length === 0 ? `""` : `f"${env.bound.map((b) => `{${pythonName(b)}}`).join(",")}"`;
}

/** A comprehension over the modalities in scope of a reduction: `[body for k in ctx.modalities]`. */
function overModalities(variable: string, range: string, body: string): string {
  return `[${body} for ${pythonName(variable)} in ${range}]`;
}

/** The Python of a rule expression. Host values (step, epoch, params, literals) stay plain numbers. */
export function expression(e: RExpr, env: Env): string {
  const sub = (x: RExpr) => expression(x, env);
  if (env.tensor !== undefined && e.kind === "grad" && JSON.stringify(e) === env.tensor) return "[tensor]";
  switch (e.op) {
    case "number":
      return pythonNumber(e.value);
    case "param":
      return `p[${pythonString(e.name)}]`;
    case "time":
      return `ctx.${e.which}`;
    case "value":
      // A step reads an epoch value from its context; in the epoch rule it is a local like any other.
      if (e.epoch && !env.epochRule) return `ctx.epoch_value(${pythonString(e.name)}${e.index ? `, ${indexCode(e.index, env)}` : ""})`;
      return e.index ? `${pythonName(e.name)}[${indexCode(e.index, env)}]` : pythonName(e.name);
    case "learnable":
      return `${env.learnablesFromStep ? "ctx" : "f"}.param(${groupCode({ kind: "learnable", name: e.name, ...(e.index ? { modality: e.index } : {}) }, env)})`;
    case "unary": {
      const op = unaryOps.get(e.fn)!;
      return e.host ? `(${op.host}${sub(e.arg)})` : `${op.tensor}(${sub(e.arg)})`;
    }
    case "binary": {
      const op = binaryOps.get(e.fn)!;
      return e.host ? `(${sub(e.left)} ${op.host} ${sub(e.right)})` : `${op.tensor}(${sub(e.left)}, ${sub(e.right)})`;
    }
    case "if":
      // A condition known without tensors picks one branch, which alone is computed (and differentiated).
      if (e.host || (e.condition.host && !e.then.host && !e.otherwise.host)) return `(${sub(e.then)} if ${sub(e.condition)} else ${sub(e.otherwise)})`;
      return `${conditional.torch.tensor}(${sub(e.condition)}, ${sub(e.then)}, ${sub(e.otherwise)})`;
    case "reduceModalities": {
      const range = e.exclude ? `${env.scope}.except_(${indexCode(e.exclude, env)})` : `${env.scope}.modalities`;
      const body = expression(e.body, { ...env, bound: [...env.bound, e.variable] });
      return `${reductionOf(e.fn).reduce.torch.modalities}(${overModalities(e.variable, range, body)})`;
    }
    case "reduceBatch":
      return `${reductionOf(e.fn).reduce.torch.batch!}(${sub(e.body)})`;
    case "grad":
      if (e.loss) return `grad(${groupCode(e.group, env)}, lambda f: ${sub(e.loss)})`;
      return env.sample ? `grad(${groupCode(e.group, env)}, sample=${env.sample})` : `grad(${groupCode(e.group, env)})`;
    case "perSample":
      return `ctx.per_sample(lambda sample: ${expression(e.arg, { ...env, sample: "sample" })})`;
    case "parameters":
      // The initial and a fresh draw are the step's (`ctx`, in scope everywhere); the weights are the pass's.
      return e.which === "weights" ? `${env.scope}.weights(${groupCode(e.group, env)})` : `ctx.${e.which === "init" ? "initial" : "fresh"}(${groupCode(e.group, env)})`;
    case "modalityNumber":
      return indexCode(e.modality, env);
    case "perTensor":
      return `per_tensor(${sub(e.gradient)}, lambda tensor: ${expression(e.arg, { ...env, tensor: JSON.stringify(e.gradient) })})`;
    case "output": {
      // An earlier stage's outputs: the model with the weights that stage ended with, on this pass's inputs.
      const pass = e.stage ? `ctx.frozen(${pythonString(e.stage)}, f)` : "f";
      if (e.which === "out") return `${pass}.out`;
      if (e.which === "z") return `${pass}.z[${indexCode(e.modality!, env)}]`;
      return `${pass}.${e.which}(${indexCode(e.modality!, env)})`;
    }
    case "target":
      return "f.target";
    case "call":
      return lowerEntry(e.fn, e.args.map((a) => expression(a, env)), e.args.map((a) => a.kind), e.kind, e.host, env, e.state);
    case "split":
      return `ctx.${builtin(e.fn)!.ofSplit!.torchMethod}(${pythonString(e.split)}, lambda f: ${expression(e.arg, { ...env, learnablesFromStep: false })})`;
  }
}

function reductionOf(fn: string) {
  const entry = builtin(fn);
  if (!entry || !isReduction(entry)) throw new Error(`${fn} is not a reduction`);
  return entry;
}

function lowerEntry(fn: string, args: string[], kinds: ValueKind[], result: ValueKind, host: boolean, env: Env, state?: number): string {
  const lowering = builtin(fn)?.lower?.torch;
  // test/torch-catalogue.test.ts keeps every entry with a torch lowering: a missing one is mmb's bug, said as such.
  if (!lowering) throw new Error(`no torch lowering for ${fn}`);
  const cx: LoweringContext = {
    args,
    kinds,
    result,
    host,
    call: (name, ...callArgs) => `${name}(${callArgs.join(", ")})`,
    ref: (name) => name,
    state: { id: state ?? -1, key: historyKey(env) },
    scope: env.scope,
    target: env.model.target,
  };
  return lowering.emit(cx);
}

/** The Python of a fusion expression over `inputs` (runtime/torch/model.py's fusion inputs). */
export function fusionCode(e: FExpr, env: Env): string {
  const sub = (x: FExpr) => fusionCode(x, env);
  const index = (ref: IndexRef): string => (ref.kind === "var" ? pythonName(ref.name) : ref.kind === "fixed" ? String(ref.modality) : `inputs.other(${index(ref.of)})`);
  switch (e.op) {
    case "features":
      return `inputs.z[${index(e.modality)}]`;
    case "part":
      return `inputs.part(${e.index})`;
    case "number":
      return pythonNumber(e.value);
    case "learnable":
      return `inputs.learnable(${pythonString(e.name)}${e.index ? `, ${index(e.index)}` : ""})`;
    case "unary":
      return e.fn === "neg" ? `${unaryOps.get("neg")!.tensor}(${sub(e.arg)})` : lowerEntry(e.fn, [sub(e.arg)], ["features"], "features", false, env);
    case "binary":
      return `${binaryOps.get(e.fn)!.tensor}(${sub(e.left)}, ${sub(e.right)})`;
    case "reduce":
      return `${reductionOf(e.fn).reduce.torch.modalities}(${overModalities(e.variable, "inputs.modalities", sub(e.body))})`;
  }
}
