import type { Stmt } from "../../grammar/ast.js";
import { error } from "../../diagnostics/index.js";
import { logFields, reservedNames } from "../builtins/index.js";
import type { RuleIR, RuleValue } from "../ir.js";
import { constantNumber } from "./component-options.js";
import type { CheckContext, Definition, Env } from "./context.js";
import { expr } from "./expressions.js";
import { describeKind } from "./kinds.js";

/** The balance block's `param`s and definitions, by name: equations, so their order does not matter. */
export function collectRuleNames(cx: CheckContext, stmts: Stmt[], scope: Definition["scope"] = "step"): void {
  for (const stmt of stmts) {
    if (stmt.kind === "When") collectRuleNames(cx, stmt.body, scope);
    if (stmt.kind !== "Param" && stmt.kind !== "Define") continue;
    const nameSpan = stmt.kind === "Param" ? stmt.name : stmt.target.name;
    const name = nameSpan.name;
    const earlier = cx.params.get(name)?.span ?? cx.definitions.get(name)?.stmt.target.name.span ?? cx.learnables.get(name)?.span ?? cx.modalitySpans.get(name);
    if (earlier) {
      cx.report(error("MMB020", `\`${name}\` is defined twice`, nameSpan.span, { related: [{ span: earlier, message: "first defined here" }], help: "rule values are equations: give each its own name" }));
      continue;
    }
    if (reservedNames.has(name) || name === cx.targetName) {
      cx.report(error("MMB020", `\`${name}\` is a built-in name`, nameSpan.span, { help: `choose another name, e.g. \`${name}_value\`` }));
      continue;
    }
    // The step log records rule values by name beside its own fields: one would hide the other.
    if (stmt.kind === "Define" && logFields.includes(name)) {
      cx.report(error("MMB020", `\`${name}\` is a field of the step log`, nameSpan.span, { help: `choose another name, e.g. \`my_${name}\`` }));
      continue;
    }
    if (stmt.kind === "Param") {
      const value = constantNumber(cx, stmt.value);
      // The command line's `--set` replaces the spec's value, so that every check sees what the run uses.
      if (value !== undefined) cx.params.set(name, { value: Object.hasOwn(cx.overrides, name) ? cx.overrides[name]! : value, span: stmt.name.span });
    } else {
      cx.definitions.set(name, { name, perModality: stmt.target.index !== undefined, scope, stmt, reads: new Map() });
    }
  }
}

/** Checks a definition once, on first use, so that its kind is known wherever it is read. */
export function checkDefinition(cx: CheckContext, definition: Definition): void {
  if (definition.state) return;
  definition.state = "checking";
  // A step rule's value is of the turn's modality too, where the modalities take turns.
  const turn = definition.scope === "step" && cx.turn ? [cx.turn] : [];
  const env: Env = { bound: new Set([...turn, ...(definition.stmt.target.index ? [definition.stmt.target.index.name] : [])]), reads: definition.reads, ...(definition.scope === "epoch" ? { epoch: true } : {}) };
  const value = expr(cx, definition.stmt.value, env);
  if (value && definition.scope === "epoch" && !["scalar", "bool", "grad", "prototypes"].includes(value.kind)) {
    cx.report(error("MMB008", `an epoch rule's value must be a number, a condition, gradient-shaped or class means, not ${describeKind(value.kind)}`, definition.stmt.value.span, {
      help: "average a per-sample value over a split: `over(valid, nll(out, y))`",
    }));
  } else if (value && value.kind === "label") {
    cx.report(error("MMB008", `\`${definition.name}\` must be a number, a head's outputs, features, a gradient or class means, not ${describeKind(value.kind)}`, definition.stmt.value.span, {
      help: "reduce it first, e.g. `norm(grad(...))`, `acc(out, y)` or `sum(batch, ...)`",
    }));
  } else definition.checked = value;
  definition.state = "done";
}

/** Reads under `prev` taken as numbers before their definition was checked must be numbers. */
export function confirmLastStepReads(cx: CheckContext): void {
  const reported = new Set<string>();
  for (const { definition } of cx.lastStepReads) {
    const kind = definition.checked?.kind;
    if (!kind || kind === "scalar" || reported.has(definition.name)) continue;
    reported.add(definition.name);
    cx.report(error("MMB008", `\`prev\` keeps numbers, but \`${definition.name}\` is ${describeKind(kind)}`, definition.stmt.value.span, {
      help: "keep a number from one step to the next, e.g. `prev(mean(batch, x), 0)`",
    }));
  }
}

/** The checked params and the rule values of one scope (the step's, or the epoch rule's), in spec order. */
export function ruleValues(cx: CheckContext, scope: Definition["scope"] = "step"): Pick<RuleIR, "params" | "values"> {
  const values: RuleValue[] = [];
  for (const d of cx.definitions.values()) {
    const index = d.stmt.target.index?.name;
    if (d.checked && d.scope === scope) values.push({ name: d.name, ...(index ? { index } : {}), value: d.checked, line: cx.line(d.stmt.span), text: cx.text(d.stmt.span) });
  }
  return { params: [...cx.params].map(([name, p]) => ({ name, value: p.value, line: cx.line(p.span) })), values };
}
