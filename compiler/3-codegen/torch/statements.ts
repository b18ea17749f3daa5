import { action, conditional } from "../../builtins/index.js";
import type { ActionIR, RExpr, RuleValue } from "../../ir.js";
import type { StepPlan } from "../../2-schedule/index.js";
import { readsTaskGradient, valuesRead } from "../../walks.js";
import { expression, groupCode, indexCode, type Env } from "./expression.js";
import { binaryOperators } from "../../builtins/index.js";
import { commentLine, indent, pythonLiteral, pythonName } from "./names.js";

const and = binaryOperators.find((o) => o.symbol === "and")!.torch.tensor;

/** `x = ...` for a rule value, with its spec line; per modality, a list (`ctx.per_modality`). */
export function valueStatement(v: RuleValue, env: Env): string {
  const comment = `# ${commentLine(v.text)}  (line ${v.line})`;
  if (!v.index) return `${comment}\n${pythonName(v.name)} = ${expression(v.value, { ...env, bound: [] })}`;
  return `${comment}\n${pythonName(v.name)} = ctx.per_modality(lambda ${pythonName(v.index)}: ${expression(v.value, { ...env, bound: [v.index] })})`;
}


export function lossDependencies(loss: RExpr, plan: StepPlan): RuleValue[] {
  return valuesRead([loss], plan.values);
}

/** `when` conditions split into plain `if`s (host values) and tensor masks. */
function conditionCode(conditions: RExpr[], env: Env): { host: string[]; masks: string[] } {
  return {
    host: conditions.filter((c) => c.host).map((c) => expression(c, env)),
    masks: conditions.filter((c) => !c.host).map((c) => expression(c, env)),
  };
}

/** `(a < b)` as `a < b`, where the parentheses wrap the whole expression (an `if` needs none). */
function unwrapped(code: string): string {
  if (!code.startsWith("(") || !code.endsWith(")")) return code;
  let depth = 0;
  for (let i = 0; i < code.length - 1; i++) {
    depth += code[i] === "(" ? 1 : code[i] === ")" ? -1 : 0;
    if (depth === 0) return code;
  }
  return code.slice(1, -1);
}

/** `value` where every tensor condition holds, `otherwise` elsewhere. */
function masked(value: string, masks: string[], otherwise: string): string {
  if (masks.length === 0) return value;
  return `${conditional.torch.tensor}(${masks.reduce((a, b) => `${and}(${a}, ${b})`)}, ${value}, ${otherwise})`;
}

/**
 * A nested function of the step (`added_loss`, a `minimize` objective, a drop's probe): the rule
 * values it reads, recomputed inside so that they are differentiated, then its value.
 */
export function objectiveFunction(name: string, parameters: string, plan: Pick<StepPlan, "values">, expressions: RExpr[], env: Env, finalExpression: (env: Env) => string): string {
  const lines = valuesRead(expressions, plan.values).map((v) => valueStatement(v, env));
  return `def ${name}(${parameters}):\n${indent([...lines, `return ${finalExpression(env)}`].join("\n"))}`;
}

/** One action as statements: nested functions it needs, then its call inside its loops and host conditions. */
export function actionStatement(a: Exclude<ActionIR, { kind: "addLoss" }>, plan: Pick<StepPlan, "values">, env: Env): string {
  const inner: Env = { ...env, bound: [...env.bound, ...a.loop] };
  const { host, masks } = conditionCode(a.when, inner);
  const entry = action(a.kind);
  const operand = (name: string, value: RExpr) => masked(expression(value, inner), masks, entry.otherwise![name]!);
  const before: string[] = [];
  let operands: Record<string, string>;
  switch (a.kind) {
    case "scale":
    case "scaleLr":
      operands = { group: groupCode(a.group, inner), factor: operand("factor", a.factor) };
      break;
    case "noise":
      operands = { group: groupCode(a.group, inner), mean: operand("mean", a.mean), std: operand("std", a.std) };
      break;
    case "replace":
      operands = { group: groupCode(a.group, inner), value: expression(a.value, inner), ...(masks.length ? { mask: masks.reduce((x, y) => `${and}(${x}, ${y})`) } : {}) };
      break;
    case "drop": {
      // The probability is computed before the forward pass: on a forward pass of its own when it
      // reads this step's outputs (`ctx.probe`), else from what the step knows beforehand.
      let probability = expression(a.probability, inner);
      if (a.probe || valuesRead([a.probability], plan.values).length) {
        const name = `drop_probability_${a.line}`;
        before.push(objectiveFunction(name, "f", plan, [a.probability], a.probe ? inner : { ...inner, learnablesFromStep: true }, (x) => expression(a.probability, x)));
        probability = a.probe ? `ctx.probe(${name})` : `${name}(None)`;
      }
      operands = { modality: indexCode(a.modality, inner), probability, ...(a.rescale ? { rescale: "true" } : {}) };
      break;
    }
    case "assign": {
      // After the update: learnables are read as they are now.
      const after: Env = { ...inner, learnablesFromStep: true };
      const group = groupCode({ kind: "learnable", name: a.name, ...(a.index ? { modality: a.index } : {}) }, after);
      operands = { group, value: masked(expression(a.value, after), masks, `ctx.param(${group})`) };
      break;
    }
    case "assignWeights": {
      const after: Env = { ...inner, learnablesFromStep: true };
      const group = groupCode(a.group, after);
      operands = { group, value: masked(expression(a.value, after), masks, `ctx.weights(${group})`) };
      break;
    }
    case "minimize": {
      const secondOrder = [a.value, ...a.when].some((e) => readsTaskGradient(e, plan.values));
      const name = `objective_${a.line}`;
      before.push(objectiveFunction(name, "f, grad", plan, [a.value, ...a.when], inner, (e) => masked(expression(a.value, e), masks, entry.otherwise!.value!)));
      operands = {
        group: groupCode(a.group, inner),
        optimizer: pythonLiteral({ kind: a.optimizer.kind, options: a.optimizer.options }, "", Infinity),
        objective: name,
        ...(secondOrder ? {} : { options: ", reads_task_gradient=False" }),
      };
      break;
    }
  }
  let body = [...before, entry.lower.torch(operands)].join("\n");
  for (const variable of [...a.loop].reverse()) body = `for ${pythonName(variable)} in ctx.modalities:\n${indent(body)}`;
  if (host.length > 0) body = action("when").lower.torch({ condition: host.length === 1 ? unwrapped(host[0]!) : host.join(" and "), body });
  return `# ${commentLine(a.text)}  (line ${a.line})\n${body}`;
}

/** `added_loss(f, grad)`: the added losses' sum, each under its own conditions, which `ctx.backward` differentiates. */
export function addedLossFunction(plan: StepPlan, env: Env): string {
  const expressions = plan.addedLosses.flatMap((a) => [a.value, ...a.when]);
  return objectiveFunction("added_loss", "f, grad", plan, expressions, env, (e) =>
    plan.addedLosses
      .map((a) => {
        const { host, masks } = conditionCode(a.when, e);
        const value = masked(expression(a.value, e), masks, action("addLoss").otherwise!.value!);
        return host.length > 0 ? `(${value} if ${host.join(" and ")} else 0)` : value;
      })
      .reduce((x, y) => `add(${x}, ${y})`),
  );
}
