import { error, type Span } from "../../diagnostics/index.js";
import type { RExpr, ValueKind } from "../ir.js";
import type { CheckContext } from "./context.js";

/** How a value kind reads in a message. */
export function describeKind(kind: ValueKind): string {
  return {
    scalar: "a number",
    bool: "a condition",
    batch: "one number per sample",
    batchBool: "one condition per sample",
    logits: "a head's outputs",
    features: "features",
    grad: "a gradient",
    label: "the target",
    prototypes: "class means",
  }[kind];
}

/** The help line for a value of `kind` where another kind was needed: how to get a number from it. */
export function kindHelp(kind: ValueKind): string {
  switch (kind) {
    case "grad":
      return "reduce the gradient to a number: `norm(grad(...))`, `std(grad(...))`";
    case "logits":
      return "score the outputs: `acc(out, y)`, `prob(out, y)`, `loss(out, y)`";
    case "batch":
      return "reduce over the batch: `sum(batch, ...)`";
    case "label":
      return "use the target inside a metric, e.g. `acc(out, y)`";
    default:
      return "see the kinds of values in README.md";
  }
}

export function expectKind(cx: CheckContext, value: RExpr, kinds: readonly ValueKind[], span: Span, what: string): boolean {
  if (kinds.includes(value.kind)) return true;
  const wanted = kinds.map(describeKind).join(" or ");
  cx.report(error("MMB008", `${what} needs ${wanted}, found ${describeKind(value.kind)}`, span, { help: kindHelp(value.kind) }));
  return false;
}

/** One number per step: a per-sample value gets MMB023 (reduce it), anything else MMB008. */
export function expectScalar(cx: CheckContext, value: RExpr, span: Span, what: string): boolean {
  if (value.kind === "scalar") return true;
  if (value.kind === "batch") {
    cx.report(error("MMB023", `${what} must be one number per step, but this is one per sample`, span, { help: "reduce over the batch: `mean(batch, ...)` or `sum(batch, ...)`" }));
  } else {
    cx.report(error("MMB008", `${what} must be a number, found ${describeKind(value.kind)}`, span, { help: "compute a number from it, e.g. `norm(grad(...))`" }));
  }
  return false;
}
