import { error, type Diagnostic, type SourceText } from "../../../diagnostics/index.js";
import { builtin } from "../../builtins/index.js";
import type { ActionIR, ModelIR, RExpr } from "../../ir.js";
import { children } from "../../walks.js";

const help = "compile for tfjs, the default target (`mmb compile` without `--target`); docs/torch.md lists what the torch target covers";

/** Expressions of an action, its conditions included. */
function actionExpressions(a: ActionIR): RExpr[] {
  switch (a.kind) {
    case "scale":
    case "scaleLr":
      return [a.factor, ...a.when];
    case "noise":
      return [a.mean, a.std, ...a.when];
    case "drop":
      return [a.probability, ...a.when];
    case "addLoss":
    case "assign":
    case "assignWeights":
    case "minimize":
    case "replace":
      return [a.value, ...a.when];
  }
}

/** The first construct of `e` the torch target cannot emit yet, in words. */
function unsupported(e: RExpr): string | undefined {
  if (e.op === "call" && !builtin(e.fn)?.lower?.torch) return `\`${e.fn}(...)\``;
  // A draw per element of a gradient-shaped value follows the tfjs layout of each parameter, which the torch one transposes.
  if (e.op === "call" && builtin(e.fn)?.random && e.args.some((a) => a.kind === "grad")) return `\`${e.fn}(...)\` of a gradient-shaped value`;
  for (const c of children(e)) {
    const found = unsupported(c);
    if (found) return found;
  }
  return undefined;
}

/**
 * What a spec uses that the torch target does not emit yet: MMB037 at each line that uses it, so
 * that `--target torch` never writes a trainer that would compute something else than the spec
 * says. Stages, epoch rules and turns are in the target; a function without a `lower.torch`, and
 * a random draw per element of a gradient-shaped value, are not.
 */
export function torchSupport(model: ModelIR, source: SourceText): Diagnostic[] {
  const found: Diagnostic[] = [];
  const report = (line: number, what: string) =>
    found.push(error("MMB037", `${what} is not in the torch target yet`, source.lineSpan(line), { help }));
  // Every stage's loss and rule (the model's own without stages), their epoch rules, and `predict`.
  const rules = model.stages ? model.stages.map((s) => ({ loss: s.loss, rule: s.rule })) : [{ loss: model.loss, rule: model.rule }];
  const lines: { line: number; expressions: RExpr[] }[] = [
    ...rules.flatMap(({ loss, rule }) => [
      { line: loss.line, expressions: [loss.value] },
      ...[...rule.values, ...(rule.epoch?.values ?? [])].map((v) => ({ line: v.line, expressions: [v.value] })),
      ...[...rule.actions, ...(rule.epoch?.actions ?? [])].map((a) => ({ line: a.line, expressions: actionExpressions(a) })),
    ]),
    ...(model.predict ? [{ line: model.predict.line, expressions: [model.predict.value] }] : []),
  ];
  for (const { line, expressions } of lines) {
    const what = expressions.map(unsupported).find((w) => w !== undefined);
    if (what) report(line, what);
  }
  return found;
}
