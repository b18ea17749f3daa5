import { binaryOperators, builtin, conditional, isReduction, unaryOperators, type LoweringContext } from "../../builtins/index.js";
import type { FExpr, GroupRef, IndexRef, ModelIR, RExpr, ValueKind } from "../../ir.js";
import { awaits } from "../../walks.js";
import { numberLiteral, safeName } from "./names.js";

export interface Env {
  /** Modality index variables in scope. */
  bound: string[];
  model: ModelIR;
  /** Runtime functions the module calls, for its import. */
  used: Set<string>;
  /** What ranges over modalities: the step context, or the forward pass inside `taskLoss`. */
  scope: "ctx" | "f";
  /** Inside `per_sample(...)`: the variable holding the sample index. */
  sample?: string;
  /** Inside `per_tensor(...)`: the gradient (as JSON) that the variable `tensor`, one of its tensors, stands for. */
  tensor?: string;
  /** Without a forward pass (a drop's probability, `set` after the update): learnables are read from the step, as they are now. */
  learnablesFromStep?: boolean;
  /** In the generated `epochRule`: epoch values are its locals. */
  epochRule?: boolean;
}

const binaryOps = new Map(binaryOperators.map((o) => [o.symbol, o.tfjs]));
const unaryOps = new Map(unaryOperators.map((o) => [o.symbol === "-" ? "neg" : o.symbol, o.tfjs]));

/** A call of a runtime function, which the module then imports. */
export function emitCall(env: Env, fn: string, ...args: string[]): string {
  env.used.add(fn);
  return `${fn}(${args.join(", ")})`;
}

export function indexCode(ref: IndexRef, env: Env): string {
  switch (ref.kind) {
    case "var":
      return safeName(ref.name);
    case "fixed":
      return `${ref.modality} /* ${env.model.modalities[ref.modality]!.name} */`;
    case "other":
      return `${env.scope}.other(${indexCode(ref.of, env)})`;
  }
}

/** A group's name, through the step's `group` (or the forward pass's, in the task loss, which has no step). */
export function groupCode(group: GroupRef, env: Env): string {
  const groups = `${env.scope}.group`;
  if (group.weights) return `${groups}.weights(${groupCode({ ...group, weights: false }, env)})`;
  switch (group.kind) {
    case "encoder":
      if (group.part === "all" || group.part === "last") return `${groups}.${group.part === "last" ? "encoderLast" : "encoder"}(${indexCode(group.modality, env)})`;
      return `${groups}.encoderLayers(${indexCode(group.modality, env)}, ${JSON.stringify(group.part)})`;
    case "head":
      return `${groups}.head`;
    case "fusion":
      return `${groups}.fusion`;
    case "auxHead":
      return `${groups}.aux(${indexCode(group.modality, env)})`;
    case "learnable":
      return `${groups}.learnable(${JSON.stringify(group.name)}${group.modality ? `, ${indexCode(group.modality, env)}` : ""})`;
  }
}

/** The key of a stateful call's slot: one per binding of the modality indices in scope. */
export function historyKey(env: Env): string {
  return env.bound.length === 0 ? `""` : `\`${env.bound.map((b) => `\${${safeName(b)}}`).join(",")}\``;
}

/** The TypeScript for a rule expression. Host values (step, epoch, params, literals) stay plain numbers. */
export function expression(e: RExpr, env: Env): string {
  const call = (fn: string, ...args: string[]) => emitCall(env, fn, ...args);
  const sub = (x: RExpr) => expression(x, env);
  if (env.tensor !== undefined && e.kind === "grad" && JSON.stringify(e) === env.tensor) return "[tensor]";
  switch (e.op) {
    case "number":
      return numberLiteral(e.value);
    case "param":
      return `p.${e.name}`;
    case "time":
      return `ctx.${e.which}`;
    case "value":
      // A step reads an epoch value from its context; in the epoch rule it is a local like any other.
      if (e.epoch && !env.epochRule) {
        const accessor = { grad: "epochGradient", prototypes: "epochTensor" }[e.kind as string] ?? (!e.host ? "epochValue" : e.kind === "bool" ? "epochCondition" : "epochNumber");
        return `ctx.${accessor}(${JSON.stringify(e.name)}${e.index ? `, ${indexCode(e.index, env)}` : ""})`;
      }
      return e.index ? `${safeName(e.name)}[${indexCode(e.index, env)}]!` : safeName(e.name);
    case "split": {
      const read = builtin(e.fn)!.ofSplit!;
      const code = `ctx.${read.method}(${JSON.stringify(e.split)}, (f) => ${expression(e.arg, { ...env, learnablesFromStep: false })})`;
      return read.awaited ? `(await ${code})` : code;
    }
    case "learnable":
      return `${env.learnablesFromStep ? "ctx" : "f"}.param(${groupCode({ kind: "learnable", name: e.name, ...(e.index ? { modality: e.index } : {}) }, env)})`;
    case "unary": {
      const op = unaryOps.get(e.fn)!;
      if (e.kind === "grad") return call(op.gradient!, sub(e.arg), "-1");
      return e.host ? `${op.host}(${sub(e.arg)})` : call(op.tensor, sub(e.arg));
    }
    case "binary": {
      const op = binaryOps.get(e.fn)!;
      if (e.kind === "grad") {
        const both = e.left.kind === "grad" && e.right.kind === "grad";
        // A number scaling a gradient (`e * g`, `g / e`) and two gradients adding keep their own runtime calls.
        if ((e.fn === "+" || e.fn === "-") && both) return call(op.gradient!, sub(e.left), sub(e.right));
        if (!both && (e.fn === "*" || (e.fn === "/" && e.left.kind === "grad"))) {
          const [vector, factor] = e.left.kind === "grad" ? [e.left, e.right] : [e.right, e.left];
          return call(op.gradient!, sub(vector), e.fn === "/" ? call("div", "1", sub(factor)) : sub(factor));
        }
        return call(op.elementwise!, sub(e.left), sub(e.right));
      }
      if (!e.host) return call(op.tensor, sub(e.left), sub(e.right));
      return typeof op.host === "string" ? `(${sub(e.left)} ${op.host} ${sub(e.right)})` : op.host(sub(e.left), sub(e.right));
    }
    case "if":
      // A condition known without tensors picks one branch, which alone is computed (and differentiated):
      // in a turn's loss, the other branch's parameters are then not reached at all.
      if (e.host || (e.condition.host && !e.then.host && !e.otherwise.host)) return `(${sub(e.condition)} ? ${sub(e.then)} : ${sub(e.otherwise)})`;
      return call(conditional.tfjs.tensor, sub(e.condition), sub(e.then), sub(e.otherwise));
    case "reduceModalities": {
      const variable = safeName(e.variable);
      const range = e.exclude ? `${env.scope}.except(${indexCode(e.exclude, env)})` : `${env.scope}.modalities`;
      const body = expression(e.body, { ...env, bound: [...env.bound, e.variable] });
      const reduce = reductionOf(e.fn).reduce;
      // A body that awaits (a split read to the host) runs per modality in an async callback.
      const list = awaits(e.body) ? `(await Promise.all(${range}.map(async (${variable}) => ${body})))` : `${range}.map((${variable}) => ${body})`;
      // Plain numbers reduce in JavaScript: a tensor would meet JavaScript's own `+` further on.
      if (e.host) return reduce.host!(list);
      return call(reduce.modalities, list);
    }
    case "reduceBatch":
      return call(reductionOf(e.fn).reduce.batch!, sub(e.body));
    case "grad":
      if (e.loss) return `grad(${groupCode(e.group, env)}, (f) => ${sub(e.loss)})`;
      return env.sample ? `grad(${groupCode(e.group, env)}, undefined, ${env.sample})` : `grad(${groupCode(e.group, env)})`;
    case "perSample":
      return `ctx.perSample((sample) => ${expression(e.arg, { ...env, sample: "sample" })})`;
    case "parameters":
      return `${env.scope}.${{ weights: "weights", init: "initial", fresh: "fresh" }[e.which]}(${groupCode(e.group, env)})`;
    case "modalityNumber":
      return indexCode(e.modality, env);
    case "perTensor":
      return call("perTensor", sub(e.gradient), `(tensor) => ${expression(e.arg, { ...env, tensor: JSON.stringify(e.gradient) })}`);
    case "output": {
      // An earlier stage's outputs: the model with the weights that stage ended with, on this pass's inputs.
      const pass = e.stage ? `f.frozen(${JSON.stringify(e.stage)})` : "f";
      if (e.which === "out") return `${pass}.out`;
      if (e.which === "z") return `${pass}.z[${indexCode(e.modality!, env)}]!`;
      return `${pass}.${e.which}(${indexCode(e.modality!, env)})`;
    }
    case "target":
      return "f.target";
    case "call":
      return lowerCall(e, env);
  }
}

function reductionOf(fn: string) {
  const entry = builtin(fn);
  if (!entry || !isReduction(entry)) throw new Error(`${fn} is not a reduction`);
  return entry;
}

/** A catalogue function, emitted by its entry's tfjs lowering. */
function lowerCall(e: Extract<RExpr, { op: "call" }>, env: Env): string {
  const args = e.args.map((a) => expression(a, env));
  return lowerEntry(e.fn, args, e.args.map((a) => a.kind), e.kind, e.host, env, e.state);
}

function lowerEntry(fn: string, args: string[], kinds: ValueKind[], result: ValueKind, host: boolean, env: Env, state?: number): string {
  const lowering = builtin(fn)?.lower?.tfjs;
  if (!lowering) throw new Error(`no tfjs lowering for ${fn}`);
  const cx: LoweringContext = {
    args,
    kinds,
    result,
    host,
    call: (name, ...callArgs) => emitCall(env, name, ...callArgs),
    ref: (name) => {
      env.used.add(name);
      return name;
    },
    state: { id: state ?? -1, key: historyKey(env) },
    scope: env.scope,
    target: env.model.target,
  };
  return lowering.emit(cx);
}

/** The TypeScript of a fusion expression over `inputs` (see runtime `FusionInputs`). */
export function fusionCode(e: FExpr, env: Env): string {
  const sub = (x: FExpr) => fusionCode(x, env);
  const index = (ref: IndexRef): string =>
    ref.kind === "var" ? safeName(ref.name) : ref.kind === "fixed" ? `${ref.modality} /* ${env.model.modalities[ref.modality]!.name} */` : `inputs.other(${index(ref.of)})`;
  switch (e.op) {
    case "features":
      return `inputs.z[${index(e.modality)}]!`;
    case "part":
      return `inputs.part(${e.index}) /* ${env.model.fuse!.parts[e.index]!.kind} */`;
    case "number":
      return numberLiteral(e.value);
    case "learnable":
      return `inputs.learnable(${JSON.stringify(e.name)}${e.index ? `, ${index(e.index)}` : ""})`;
    case "unary":
      return e.fn === "neg" ? emitCall(env, unaryOps.get("neg")!.tensor, sub(e.arg)) : lowerEntry(e.fn, [sub(e.arg)], ["features"], "features", false, env);
    case "binary":
      return emitCall(env, binaryOps.get(e.fn)!.tensor, sub(e.left), sub(e.right));
    case "reduce":
      return emitCall(env, reductionOf(e.fn).reduce.modalities, `inputs.modalities.map((${safeName(e.variable)}) => ${sub(e.body)})`);
  }
}
