import type { Arg, Expr } from "../../grammar/ast.js";
import { error, nearest } from "../../diagnostics/index.js";
import type { ComponentSpec, OptionSpec, OptionValue } from "../components.js";
import type { Component } from "../ir.js";
import { inRange } from "../../runtime/range.js";
import { rangeText } from "../range.js";
import type { CheckContext } from "./context.js";

/** A component call (`mlp(hidden: [128])`, `sgd(lr: 0.01)`) checked against its table in compiler/components.ts. */
export function component(cx: CheckContext, expr: Expr, table: Record<string, ComponentSpec>, what: string): Component | undefined {
  const callee = expr.kind === "Call" ? expr.callee : expr;
  const args: Arg[] = expr.kind === "Call" ? expr.args : [];
  if (callee.kind === "Missing") return undefined;
  if (callee.kind !== "Name") {
    return cx.report(error("MMB011", `expected a ${what} such as \`${Object.keys(table)[0]}(...)\``, expr.span, { help: `${what}s: ${Object.keys(table).join(", ")}` }));
  }
  const spec = Object.hasOwn(table, callee.name) ? table[callee.name] : undefined;
  if (!spec) {
    const guess = nearest(callee.name, Object.keys(table));
    return cx.report(error("MMB011", `unknown ${what} \`${callee.name}\``, callee.span, {
      help: guess ? `did you mean \`${guess}\`? (${what}s: ${Object.keys(table).join(", ")})` : `${what}s: ${Object.keys(table).join(", ")}`,
    }));
  }
  const options = defaults(spec);
  const given = new Set<string>();
  let ok = true;
  args.forEach((arg, i) => {
    const name = arg.name?.name ?? spec.positional?.[i];
    if (name !== undefined) given.add(name);
    if (name === undefined) {
      ok = cx.report(error("MMB012", `\`${callee.name}\` takes named options here`, arg.span, { help: `write \`${Object.keys(spec.options)[0] ?? "name"}: value\`` })) ?? false;
      return;
    }
    const option = Object.hasOwn(spec.options, name) ? spec.options[name] : undefined;
    if (!option) {
      const guess = nearest(name, Object.keys(spec.options));
      const known = Object.keys(spec.options);
      ok = cx.report(error("MMB012", `\`${callee.name}\` has no option \`${name}\``, arg.name?.span ?? arg.span, {
        help: guess ? `did you mean \`${guess}\`?` : known.length ? `options: ${known.join(", ")}` : `\`${callee.name}\` takes no options`,
      })) ?? false;
      return;
    }
    const value = optionValue(cx, arg.value, option, name);
    if (value === undefined) ok = false;
    else options[name] = value;
  });
  for (const [name, option] of Object.entries(spec.options)) {
    if (options[name] === undefined && option.type !== "modality" && !given.has(name)) {
      ok = cx.report(error("MMB012", `\`${callee.name}\` needs the option \`${name}\` (${option.doc})`, expr.span, { help: `write \`${callee.name}(${name}: ...)\`` })) ?? false;
    }
  }
  return ok ? { kind: callee.name, options, line: cx.line(expr.span) } : undefined;
}

/** The defaults of every option that has one. */
export function defaults(spec: ComponentSpec): Record<string, OptionValue> {
  const options: Record<string, OptionValue> = {};
  for (const [name, option] of Object.entries(spec.options)) if (option.default !== undefined) options[name] = option.default;
  return options;
}

export function optionValue(cx: CheckContext, expr: Expr, option: OptionSpec, name: string): OptionValue | undefined {
  const bad = (expected: string, span = expr.span) => cx.report(error("MMB012", `option \`${name}\` must be ${expected}`, span, { help: option.doc }));
  const inBounds = (n: number, span = expr.span): number | undefined => (!option.range || inRange(n, option.range) ? n : bad(`${rangeText(option.range)}, found ${n}`, span));
  switch (option.type) {
    case "int": {
      const n = constantNumber(cx, expr);
      if (n === undefined) return undefined;
      return Number.isInteger(n) && n >= 0 ? inBounds(n) : bad("a whole number");
    }
    case "number": {
      const n = constantNumber(cx, expr);
      return n === undefined ? undefined : inBounds(n);
    }
    case "ints": {
      if (expr.kind !== "List") return bad("a list of whole numbers, e.g. `[128, 64]`");
      const items = expr.items.map((item) => (item.kind === "Number" && Number.isInteger(item.value) && item.value > 0 ? item.value : undefined));
      return items.every((i) => i !== undefined) ? (items as number[]) : bad("a list of positive whole numbers");
    }
    case "string": {
      const text = expr.kind === "String" ? expr.value : expr.kind === "Name" ? expr.name : undefined;
      if (text === undefined) return bad("a name or a string");
      if (option.choices && !option.choices.includes(text)) return bad(`one of ${option.choices.map((c) => `\`${c}\``).join(", ")}, found \`${text}\``);
      return text;
    }
    case "bool":
      return expr.kind === "Name" && (expr.name === "true" || expr.name === "false") ? expr.name === "true" : bad("`true` or `false`");
    case "modality":
      if (expr.kind === "Name" && cx.modalitySpans.has(expr.name)) return expr.name;
      if (expr.kind === "Name") return cx.unknownName(expr.name, expr.span, [...cx.modalitySpans.keys()], "modality");
      return bad("a modality name");
  }
}

/** A number written in the spec: a finite literal, possibly negated. */
export function constantNumber(cx: CheckContext, expr: Expr): number | undefined {
  const literal = expr.kind === "Number" ? expr : expr.kind === "Unary" && expr.op === "-" && expr.operand.kind === "Number" ? expr.operand : undefined;
  if (literal) {
    const value = expr === literal ? literal.value : -literal.value;
    if (Number.isFinite(value)) return value;
    return cx.report(error("MMB019", `\`${literal.text}\` is too large for a number`, expr.span, { help: "numbers must be finite (below about 1.8e308)" }));
  }
  if (expr.kind === "Missing") return undefined;
  return cx.report(error("MMB019", "expected a number", expr.span, { help: "write a literal such as `0.1` or `1e-3`" }));
}
