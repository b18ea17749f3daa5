import type { Expr } from "../../grammar/ast.js";
import { error } from "../../diagnostics/index.js";
import type { RExpr, ValueKind } from "../ir.js";
import { call } from "./calls.js";
import { make, type CheckContext, type Env } from "./context.js";
import { expectKind } from "./kinds.js";
import { gradientGroups, groupShape } from "./groups.js";
import { indexed, name, stageOutput } from "./names.js";

/** A rule expression → a typed IR expression, or undefined after reporting why not. */
export function expr(cx: CheckContext, e: Expr, env: Env): RExpr | undefined {
  switch (e.kind) {
    case "Missing":
      return undefined;
    case "Number":
      return make({ op: "number", value: e.value }, "scalar", [], { host: true });
    case "String":
      return cx.report(error("MMB008", "a string cannot be used in an equation", e.span, { help: "strings only name files and options" }));
    case "List":
      return cx.report(error("MMB008", "a list cannot be used in an equation", e.span, { help: "lists only give component options such as `hidden: [128, 64]`" }));
    case "Name":
      return name(cx, e.name, e.span, env);
    case "Index":
      return indexed(cx, e, env);
    case "Member":
      if (e.object.kind === "Name" && cx.stages.includes(e.object.name)) return stageOutput(cx, e.object.name, e.object.span, e.property.name, undefined, env, e.span);
      return cx.report(error("MMB008", `\`.${e.property.name}\` names a parameter group, which is not a number`, e.span, { help: `use it inside \`grad(...)\`, e.g. \`norm(grad(${cx.text(e.span)}))\`` }));
    case "Unary": {
      const operand = expr(cx, e.operand, env);
      if (!operand) return undefined;
      const allowed: ValueKind[] = e.op === "not" ? ["bool", "batchBool"] : ["scalar", "batch", "logits", "grad"];
      if (!expectKind(cx, operand, allowed, e.operand.span, `\`${e.op}\``)) return undefined;
      return make({ op: "unary", fn: e.op === "not" ? "not" : "neg", arg: operand }, operand.kind, [operand]);
    }
    case "Binary":
      return binary(cx, e, env);
    case "If": {
      const condition = expr(cx, e.condition, env);
      const then = expr(cx, e.then, env);
      const otherwise = expr(cx, e.otherwise, env);
      if (!condition || !then || !otherwise) return undefined;
      if (!expectKind(cx, condition, ["bool", "batchBool"], e.condition.span, "an `if` condition")) return undefined;
      if (!expectKind(cx, then, ["scalar", "batch"], e.then.span, "an `if` branch") || !expectKind(cx, otherwise, ["scalar", "batch"], e.otherwise.span, "an `if` branch")) return undefined;
      const kind = [condition.kind, then.kind, otherwise.kind].some((k) => k === "batch" || k === "batchBool") ? "batch" : "scalar";
      return make({ op: "if", condition, then, otherwise }, kind, [condition, then, otherwise]);
    }
    case "Call":
      return call(cx, e, env);
  }
}

function binary(cx: CheckContext, e: Extract<Expr, { kind: "Binary" }>, env: Env): RExpr | undefined {
  const left = expr(cx, e.left, env);
  const right = expr(cx, e.right, env);
  if (!left || !right) return undefined;
  const numeric: ValueKind[] = ["scalar", "batch"];
  const logical: ValueKind[] = ["bool", "batchBool"];
  const perSample = left.kind.startsWith("batch") || right.kind.startsWith("batch");
  if (e.op === "and" || e.op === "or") {
    if (!expectKind(cx, left, logical, e.left.span, `\`${e.op}\``) || !expectKind(cx, right, logical, e.right.span, `\`${e.op}\``)) return undefined;
    return make({ op: "binary", fn: e.op, left, right }, perSample ? "batchBool" : "bool", [left, right]);
  }
  const vector = vectorArithmetic(e.op, left, right);
  if (vector === "grad" && left.kind === "grad" && right.kind === "grad" && !sameShape(cx, left, right)) {
    return cx.report(error("MMB016", `\`${e.op}\` combines gradient-shaped values element by element: they need one shape`, e.span, {
      help: "combine values of one group, e.g. `grad(encoder[m]) / weights(encoder[m])`",
    }));
  }
  if (vector) return make({ op: "binary", fn: e.op, left, right }, vector, [left, right]);
  if (!expectKind(cx, left, numeric, e.left.span, `\`${e.op}\``) || !expectKind(cx, right, numeric, e.right.span, `\`${e.op}\``)) return undefined;
  const comparison = ["<", "<=", ">", ">=", "==", "!="].includes(e.op);
  const kind: ValueKind = comparison ? (perSample ? "batchBool" : "bool") : perSample ? "batch" : "scalar";
  return make({ op: "binary", fn: e.op, left, right }, kind, [left, right]);
}

/** Whether two gradient-shaped values have one shape, where the checker can know both. */
function sameShape(cx: CheckContext, left: RExpr, right: RExpr): boolean {
  const shapeOf = (e: RExpr) => {
    const groups = gradientGroups(cx, e, new Map());
    return groups.length ? groupShape(cx, groups[0]!)?.key : undefined;
  };
  const [a, b] = [shapeOf(left), shapeOf(right)];
  return a === undefined || b === undefined || a === b;
}

/**
 * Head outputs and gradients combine like vectors: added to or subtracted from their own kind,
 * scaled by a number (head outputs also by one number per sample); gradient-shaped values also
 * elementwise. Returns the result's kind, or undefined when the operands are not vectors.
 */
function vectorArithmetic(op: string, left: RExpr, right: RExpr): ValueKind | undefined {
  const vectors: ValueKind[] = ["logits", "grad"];
  // Gradient-shaped values combine elementwise with each other and with numbers, by every operator.
  if (["+", "-", "*", "/"].includes(op) && (left.kind === "grad" || right.kind === "grad") && [left.kind, right.kind].every((k) => k === "grad" || k === "scalar")) return "grad";
  if ((op === "+" || op === "-") && vectors.includes(left.kind) && left.kind === right.kind) return left.kind;
  if (op === "*" && vectors.includes(left.kind) && right.kind === "scalar") return left.kind;
  if (op === "*" && vectors.includes(right.kind) && left.kind === "scalar") return right.kind;
  if (op === "/" && vectors.includes(left.kind) && right.kind === "scalar") return left.kind;
  // One number per sample scales each sample's outputs: `w[k] * alone[k]`.
  if (op === "*" && [left.kind, right.kind].includes("logits") && [left.kind, right.kind].includes("batch")) return "logits";
  if (op === "/" && left.kind === "logits" && right.kind === "batch") return "logits";
  return undefined;
}
