import type { Decl, Expr } from "../../grammar/ast.js";
import { error, nearest, warning, type Span } from "../../diagnostics/index.js";
import { builtin, fusionFunctionNames } from "../builtins/index.js";
import * as components from "../components.js";
import type { Component, FExpr, IndexRef } from "../ir.js";
import { component } from "./component-options.js";
import type { CheckContext, Env } from "./context.js";
import { index } from "./names.js";

const isFusionComponent = (name: string): boolean => Object.hasOwn(components.fusions, name);

/** `fusion F -> HEAD` or `fusion EXPR -> HEAD`: a built-in fusion or an expression over the features, then the head. */
export function checkFusion(cx: CheckContext, decl: Extract<Decl, { kind: "FusionDecl" }> | undefined, classes: number | undefined): void {
  if (!decl) {
    cx.report(error("MMB004", "the spec declares no fusion", { start: 0, end: 0 }, { help: "declare how features meet and the head, e.g. `fusion concat -> linear(6)`" }));
    return;
  }
  const value = decl.value;
  const builtinFusion = (value.kind === "Name" || (value.kind === "Call" && value.callee.kind === "Name" && !isModalityReduction(value))) && !isFusionTerm(cx, value);
  if (builtinFusion) {
    cx.fusion = component(cx, value, components.fusions, "fusion");
    if (cx.fusion) checkFusionPart(cx, cx.fusion, value.span);
  } else {
    const parts: Component[] = [];
    const fused = fusionExpr(cx, value, new Set(), parts);
    const width = fused && fusionWidth(cx, fused, new Map(), parts, value.span);
    if (fused && typeof width === "number") {
      cx.fusion = { kind: "expression", options: { width }, line: cx.line(decl.span) };
      cx.fuse = { value: fused, parts, width, line: cx.line(decl.span), text: cx.text(decl.span) };
      warnUnread(cx, fused, value.span);
    } else if (width === "scalar") {
      cx.report(error("MMB008", "a fusion must produce features, but this is one number", value.span, { help: "combine the features, e.g. `concat(j, w[j] * z[j])`" }));
    }
  }
  cx.head = component(cx, decl.head, components.heads, "head");
  if (cx.head && classes !== undefined && cx.head.options.out !== classes) {
    cx.report(error("MMB012", `the head has ${cx.head.options.out} outputs but the target has ${classes}`, decl.head.span, { help: `use \`linear(${classes})\`` }));
  }
  if (cx.head?.kind === "cosine" && cx.targetKind !== "class") {
    cx.report(error("MMB012", "a cosine head classifies: it needs a class target", decl.head.span, { help: "use `linear(N)` for regression or masks" }));
  }
}

function checkFusionPart(cx: CheckContext, part: Component, span: Span): void {
  if (part.kind === "film" && cx.modalities.length < 2) {
    cx.report(error("MMB030", "`film` conditions the other modalities on one, but this model has one modality", span, { help: "use `concat` or `sum`, or declare a second modality" }));
  } else if (part.kind === "film" && !cx.modalitySpans.has(String(part.options.by ?? ""))) {
    cx.report(error("MMB012", "`film` needs the conditioning modality: `film(by: <modality>)`", span, { help: `e.g. \`film(by: ${cx.modalities[0]?.name ?? "audio"})\`` }));
  }
  if (["sum", "gated", "film"].includes(part.kind)) {
    const sizes = new Set(cx.encoders.map((e) => e.options.out));
    if (sizes.size > 1) {
      cx.report(error("MMB024", `\`${part.kind}\` fusion needs every encoder to have the same \`out\`, found ${[...sizes].join(", ")}`, span, { help: "give every encoder the same `out:` option" }));
    }
  }
}

/**
 * Whether a fusion is linear in the features (f(0) = 0, f(a + b) = f(a) + f(b)): then a linear
 * head's logits split into one additive share per modality, `contrib[m]`.
 */
export function fusionIsLinear(cx: CheckContext): boolean {
  if (!cx.fuse) return ["concat", "sum"].includes(cx.fusion?.kind ?? "");
  const parts = cx.fuse.parts;
  /** "linear" in the features, "constant" (no features: numbers, learnables), or "other". */
  const form = (e: FExpr): "linear" | "constant" | "other" => {
    switch (e.op) {
      case "features":
        return "linear";
      case "number":
      case "learnable":
        return "constant";
      case "part":
        return ["concat", "sum"].includes(parts[e.index]!.kind) ? "linear" : "other";
      case "unary": {
        const inner = form(e.arg);
        return e.fn === "neg" ? inner : inner === "constant" ? "constant" : "other";
      }
      case "reduce":
        return form(e.body) === "linear" ? "linear" : "other";
      case "binary": {
        const [l, r] = [form(e.left), form(e.right)];
        if (l === "constant" && r === "constant") return "constant";
        if (e.fn === "+" || e.fn === "-") return l === "linear" && r === "linear" ? "linear" : "other";
        if (e.fn === "*") return (l === "linear" && r === "constant") || (l === "constant" && r === "linear") ? "linear" : "other";
        return l === "linear" && r === "constant" ? "linear" : "other";
      }
    }
  };
  return form(cx.fuse.value) === "linear";
}

/** MMB031: a modality whose features the fusion expression never reads trains for nothing the fused head sees. */
function warnUnread(cx: CheckContext, fused: FExpr, span: Span): void {
  const read = new Set<number>();
  const all = () => cx.modalities.forEach((_, m) => read.add(m));
  const visit = (e: FExpr): void => {
    if (e.op === "part" || (e.op === "features" && e.modality.kind !== "fixed")) all();
    else if (e.op === "features" && e.modality.kind === "fixed") read.add(e.modality.modality);
    else if (e.op === "unary") visit(e.arg);
    else if (e.op === "binary") [e.left, e.right].forEach(visit);
    else if (e.op === "reduce") visit(e.body);
  };
  visit(fused);
  for (const [m, modality] of cx.modalities.entries()) {
    if (read.has(m)) continue;
    cx.unread.push(modality.name);
    cx.report(warning("MMB031", `modality \`${modality.name}\` is never read by the fusion: the fused head does not see it`, cx.modalitySpans.get(modality.name)!, {
      related: [{ span, message: "the fusion" }],
      help: `read its features in the fusion (e.g. \`concat(j, z[j])\`), or remove the modality; no unimodal metric is reported for it`,
    }));
  }
}

/** `sum(j, ...)`-style calls, which make a fusion an expression rather than a component. */
function isModalityReduction(e: Extract<Expr, { kind: "Call" }>): boolean {
  return e.args.length === 2 && e.args.every((a) => !a.name) && e.args[0]!.value.kind === "Name";
}

/** A name or call that is a term of a fusion expression rather than a built-in fusion. */
function isFusionTerm(cx: CheckContext, e: Expr): boolean {
  const name = e.kind === "Name" ? e.name : e.kind === "Call" && e.callee.kind === "Name" ? e.callee.name : "";
  return !isFusionComponent(name) && (builtin(name)?.fusion === "elementwise" || cx.learnables.has(name) || name === "z");
}

/** A built-in fusion used as a term: checked as a component and addressed by position. */
function fusionPart(cx: CheckContext, e: Expr, parts: Component[]): FExpr | undefined {
  const part = component(cx, e, components.fusions, "fusion");
  if (!part) return undefined;
  checkFusionPart(cx, part, e.span);
  parts.push(part);
  return { op: "part", index: parts.length - 1 };
}

function fusionExpr(cx: CheckContext, e: Expr, bound: Set<string>, parts: Component[]): FExpr | undefined {
  const help = "a fusion combines `z[m]`, built-in fusions, learnables and numbers with + - * /, `concat(j, ...)`, `sum(j, ...)`, `mean(j, ...)`";
  const env: Env = { bound };
  switch (e.kind) {
    case "Missing":
      return undefined;
    case "Number":
      return { op: "number", value: e.value };
    case "Name": {
      if (isFusionComponent(e.name)) return fusionPart(cx, e, parts);
      const learnable = cx.learnables.get(e.name);
      if (learnable && !learnable.perModality) return { op: "learnable", name: e.name };
      if (learnable || e.name === "z") return cx.report(error("MMB009", `\`${e.name}\` has one value per modality: say which`, e.span, { help: `write \`${e.name}[m]\` inside \`concat(m, ...)\`` }));
      return cx.unknownName(e.name, e.span, [...cx.learnables.keys(), "z", ...Object.keys(components.fusions)], "name");
    }
    case "Index": {
      if (e.base.kind !== "Name" || e.indices.length !== 1) return cx.report(error("MMB008", "not a fusion term", e.span, { help }));
      const name = e.base.name;
      const learnable = cx.learnables.get(name);
      if (name !== "z" && !learnable?.perModality) {
        if (learnable) return cx.report(error("MMB008", `\`${name}\` is one value, not one per modality`, e.span, { help: `drop the index: \`${name}\`` }));
        return cx.unknownName(name, e.base.span, ["z", ...[...cx.learnables.values()].filter((l) => l.perModality).map((l) => l.name)], "per-modality name");
      }
      const modality = index(cx, e.indices[0]!, env);
      if (!modality) return undefined;
      return name === "z" ? { op: "features", modality } : { op: "learnable", name, index: modality };
    }
    case "Unary": {
      if (e.op !== "-") return cx.report(error("MMB008", "`not` has no meaning for features", e.span, { help }));
      const arg = fusionExpr(cx, e.operand, bound, parts);
      return arg && { op: "unary", fn: "neg", arg };
    }
    case "Binary": {
      if (!["+", "-", "*", "/"].includes(e.op)) return cx.report(error("MMB008", `\`${e.op}\` cannot combine features`, e.span, { help }));
      const left = fusionExpr(cx, e.left, bound, parts);
      const right = fusionExpr(cx, e.right, bound, parts);
      return left && right && { op: "binary", fn: e.op as "+", left, right };
    }
    case "Call": {
      if (e.callee.kind !== "Name") return cx.report(error("MMB008", "not a fusion term", e.span, { help }));
      const fn = e.callee.name;
      const entry = builtin(fn);
      if (entry?.fusion === "reduction" && isModalityReduction(e)) {
        const variable = (e.args[0]!.value as { name: string }).name;
        if (bound.has(variable) || cx.modalitySpans.has(variable)) {
          return cx.report(error("MMB007", `\`${variable}\` is already a modality here`, e.args[0]!.span, { help: `write \`${fn}(k, ...)\` with a fresh index name` }));
        }
        const body = fusionExpr(cx, e.args[1]!.value, new Set([...bound, variable]), parts);
        return body && { op: "reduce", fn: fn as "concat", variable, body };
      }
      if (isFusionComponent(fn)) return fusionPart(cx, e, parts);
      if (entry?.fusion === "elementwise") {
        if (e.args.length !== 1 || e.args[0]!.name) return cx.report(error("MMB007", `\`${fn}\` takes 1 argument: \`${entry.usage}\``, e.span, { help: `write \`${entry.usage}\`` }));
        const arg = fusionExpr(cx, e.args[0]!.value, bound, parts);
        return arg && { op: "unary", fn, arg };
      }
      const guess = nearest(fn, [...fusionFunctionNames, ...Object.keys(components.fusions)]);
      return cx.report(error("MMB006", `\`${fn}\` cannot be used in a fusion`, e.callee.span, { help: guess ? `did you mean \`${guess}\`? (${help})` : help }));
    }
    default:
      return cx.report(error("MMB008", "not a fusion term", e.span, { help }));
  }
}

/** Width of a fusion term's features for one binding of its modality indices; "scalar" for numbers. */
function fusionWidth(cx: CheckContext, e: FExpr, binding: Map<string, number>, parts: Component[], span: Span): number | "scalar" | undefined {
  const outs = cx.encoders.map((c) => Number(c.options.out));
  const resolve = (ref: IndexRef): number => (ref.kind === "fixed" ? ref.modality : ref.kind === "var" ? binding.get(ref.name)! : 1 - resolve(ref.of));
  const mismatch = (what: string, widths: number[]) =>
    cx.report(error("MMB024", `${what} needs features of equal width, found ${widths.join(" and ")}`, span, { help: "give the encoders the same `out:`, or `concat` the features instead" }));
  switch (e.op) {
    case "features":
      return outs[resolve(e.modality)];
    case "part":
      return ["concat", "attention"].includes(parts[e.index]!.kind) ? outs.reduce((a, b) => a + b, 0) : outs[0];
    case "number":
    case "learnable":
      return "scalar";
    case "unary":
      return fusionWidth(cx, e.arg, binding, parts, span);
    case "binary": {
      const left = fusionWidth(cx, e.left, binding, parts, span);
      const right = fusionWidth(cx, e.right, binding, parts, span);
      if (left === undefined || right === undefined) return undefined;
      if (left === "scalar") return right;
      if (right === "scalar" || left === right) return left;
      return mismatch(`\`${e.fn}\``, [left, right]);
    }
    case "reduce": {
      const widths: number[] = [];
      for (let m = 0; m < cx.modalities.length; m++) {
        const width = fusionWidth(cx, e.body, new Map([...binding, [e.variable, m]]), parts, span);
        if (width === undefined) return undefined;
        if (width === "scalar") {
          return cx.report(error("MMB008", `\`${e.fn}(${e.variable}, ...)\` in a fusion needs features, e.g. \`z[${e.variable}]\``, span, { help: "multiply the number by the features: `w[j] * z[j]`" }));
        }
        widths.push(width);
      }
      if (e.fn === "concat") return widths.reduce((a, b) => a + b, 0);
      return new Set(widths).size === 1 ? widths[0] : mismatch(`\`${e.fn}\``, widths);
    }
  }
}
