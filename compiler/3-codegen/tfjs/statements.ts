import { action, conditional } from "../../builtins/index.js";
import type { ActionIR, RExpr, RuleValue } from "../../ir.js";
import type { StepPlan } from "../../2-schedule/index.js";
import { awaits, readsTaskGradient, valuesRead } from "../../walks.js";
import { emitCall, expression, groupCode, indexCode, type Env } from "./expression.js";
import { commentText, safeName } from "./names.js";

/**
 * `const x = ...;` for a rule value, with the spec line it came from; per modality, an array. Only
 * the value's own index is bound in it, wherever it is emitted (inside an action's loop over m, a
 * value without index still reads and writes its `prev`/`ema` slots under its own key).
 */
export function valueStatement(v: RuleValue, env: Env): string {
  const comment = `// ${commentText(v.text)}  (line ${v.line})`;
  if (!v.index) return `${comment}\nconst ${safeName(v.name)} = ${expression(v.value, { ...env, bound: [] })};`;
  const index = safeName(v.index);
  const value = expression(v.value, { ...env, bound: [v.index] });
  if (awaits(v.value)) return `${comment}\nconst ${safeName(v.name)} = await Promise.all(ctx.modalities.map(async (${index}) => ${value}));`;
  return `${comment}\nconst ${safeName(v.name)} = ctx.perModality((${index}) => ${value});`;
}


/** The rule values the task loss reads, in dependency order. */
export function lossDependencies(loss: RExpr, plan: StepPlan): RuleValue[] {
  return valuesRead([loss], plan.values);
}

/** `when` conditions split into plain `if`s (host values) and tensor masks. */
export function conditionCode(conditions: RExpr[], env: Env): { host: string[]; masks: string[] } {
  return {
    host: conditions.filter((c) => c.host).map((c) => expression(c, env)),
    masks: conditions.filter((c) => !c.host).map((c) => expression(c, env)),
  };
}

/** `value` where every tensor condition holds, `otherwise` elsewhere (element by element for a gradient-shaped value). */
export function masked(value: string, masks: string[], otherwise: string, env: Env, gradientShaped = false): string {
  if (masks.length === 0) return value;
  const condition = masks.reduce((a, b) => emitCall(env, "and", a, b));
  return emitCall(env, gradientShaped ? conditional.tfjs.gradient : conditional.tfjs.tensor, condition, value, otherwise);
}

/** The body of an objective (`add loss`, `minimize`): the rule values it reads, then its value. */
export function objectiveBody(plan: Pick<StepPlan, "values">, expressions: RExpr[], env: Env, finalExpression: (env: Env) => string): string {
  const lines = valuesRead(expressions, plan.values).map((v) => valueStatement(v, env));
  return [...lines, `return ${finalExpression(env)};`].join("\n");
}

/** One action as statements: its operands' code, masked by tensor conditions, inside its loops and host conditions. */
export function actionStatement(a: Exclude<ActionIR, { kind: "addLoss" }>, plan: Pick<StepPlan, "values">, env: Env): string {
  const inner: Env = { ...env, bound: [...env.bound, ...a.loop] };
  const { host, masks } = conditionCode(a.when, inner);
  const entry = action(a.kind);
  const operand = (name: string, value: RExpr) => masked(expression(value, inner), masks, entry.otherwise![name]!, inner, value.kind === "grad");
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
      operands = { group: groupCode(a.group, inner), value: expression(a.value, inner), ...(masks.length ? { mask: masks.reduce((x, y) => emitCall(inner, "and", x, y)) } : {}) };
      break;
    case "drop": {
      // The probability is computed before the forward pass, with the rule values it reads: on a
      // forward pass of its own when it reads this step's outputs (`ctx.probe`), else from the step.
      const body = (e: Env) => objectiveBody(plan, [a.probability], e, (x) => expression(a.probability, x));
      const probability = a.probe
        ? `ctx.probe((f) => {\n${body(inner)}\n})`
        : valuesRead([a.probability], plan.values).length
          ? `ctx.beforeForward(() => {\n${body({ ...inner, learnablesFromStep: true })}\n})`
          : expression(a.probability, inner);
      operands = { modality: indexCode(a.modality, inner), probability, ...(a.rescale ? { rescale: "true" } : {}) };
      break;
    }
    case "assign": {
      // After the update: learnables are read as they are now.
      const after: Env = { ...inner, learnablesFromStep: true };
      const group = groupCode({ kind: "learnable", name: a.name, ...(a.index ? { modality: a.index } : {}) }, after);
      operands = { group, value: masked(expression(a.value, after), masks, `ctx.param(${group})`, after) };
      break;
    }
    case "assignWeights": {
      // After the update (or at the epoch's start): the weights are read as they are now.
      const after: Env = { ...inner, learnablesFromStep: true };
      const group = groupCode(a.group, after);
      operands = { group, value: masked(expression(a.value, after), masks, `ctx.weights(${group})`, after, true) };
      break;
    }
    case "minimize": {
      const secondOrder = [a.value, ...a.when].some((e) => readsTaskGradient(e, plan.values));
      operands = {
        group: groupCode(a.group, inner),
        optimizer: JSON.stringify({ kind: a.optimizer.kind, options: a.optimizer.options }),
        objective: objectiveBody(plan, [a.value, ...a.when], inner, (e) => masked(expression(a.value, e), masks, entry.otherwise!.value!, e)),
        ...(secondOrder ? {} : { options: ", { readsTaskGradient: false }" }),
      };
      break;
    }
  }
  let body = entry.lower.tfjs(operands);
  for (const variable of [...a.loop].reverse()) body = `for (const ${safeName(variable)} of ctx.modalities) {\n${body}\n}`;
  if (host.length > 0) body = action("when").lower.tfjs({ condition: host.join(" && "), body });
  return `// ${commentText(a.text)}  (line ${a.line})\n${body}`;
}

/** The added losses' sum, each under its own conditions, as the objective `ctx.backward` differentiates. */
export function addedLossBody(plan: StepPlan, env: Env): string {
  const expressions = plan.addedLosses.flatMap((a) => [a.value, ...a.when]);
  return objectiveBody(plan, expressions, env, (e) =>
    plan.addedLosses
      .map((a) => {
        const { host, masks } = conditionCode(a.when, e);
        const value = masked(expression(a.value, e), masks, action("addLoss").otherwise!.value!, e);
        return host.length > 0 ? `(${host.join(" && ")} ? ${value} : 0)` : value;
      })
      .reduce((a, b) => emitCall(e, "add", a, b)),
  );
}
