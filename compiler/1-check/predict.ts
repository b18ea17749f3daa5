import type { Decl, Expr } from "../../grammar/ast.js";
import { error, type Span } from "../../diagnostics/index.js";
import { builtin } from "../builtins/index.js";
import type { ModelIR } from "../ir.js";
import type { CheckContext } from "./context.js";
import { expr } from "./expressions.js";
import { expectKind } from "./kinds.js";

/** Forms of the catalogue that read a training step (gradients, weights, per-sample or per-tensor gradients) or a whole split. */
const trainingForms = new Set(["grad", "parameters", "perSample", "perTensor", "split"]);

/**
 * `predict EXPR`: the outputs evaluation scores instead of `out` (unimodal outputs weighted by their
 * entropy, an ensemble's sum of logits). It is evaluated on held-out samples, one batch at a time,
 * with nothing of training: it reads the model's outputs on the sample, learnables and params, but
 * not the target, gradients, weights, time, rule values, state carried between steps or an earlier
 * stage's weights (MMB033 at the read).
 */
export function checkPredict(cx: CheckContext, decl: Extract<Decl, { kind: "PredictDecl" }> | undefined): ModelIR["predict"] | undefined {
  if (!decl) return undefined;
  const hidden = unseen(cx, decl.value);
  if (hidden) {
    return cx.report(error("MMB033", `\`predict\` is evaluated on held-out samples, where ${hidden.what}`, hidden.span, {
      help: "predict from the model's outputs on the sample: `out`, `alone[m]`, `head[m]`, `z[m]`, with learnables and params",
    }));
  }
  const value = expr(cx, decl.value, { bound: new Set() });
  if (!value || !expectKind(cx, value, ["logits"], decl.value.span, "`predict`")) return undefined;
  return { value, line: cx.line(decl.span), text: cx.text(decl.span) };
}

/** The first read in `e` that a prediction cannot see, and why. */
function unseen(cx: CheckContext, e: Expr): { span: Span; what: string } | undefined {
  switch (e.kind) {
    case "Name":
      if (e.name === cx.targetName) return { span: e.span, what: "the target is what is predicted" };
      if (e.name === "step" || e.name === "epoch") return { span: e.span, what: "there is no step or epoch" };
      if (cx.definitions.has(e.name)) return { span: e.span, what: `rule values such as \`${e.name}\` belong to training steps` };
      return undefined;
    case "Member":
      return cx.stages.includes(e.object.kind === "Name" ? e.object.name : "") ? { span: e.span, what: "an earlier stage's weights are not the model's" } : unseen(cx, e.object);
    case "Call": {
      const name = e.callee.kind === "Name" ? e.callee.name : "";
      const entry = builtin(name);
      if (entry && (trainingForms.has(entry.form ?? "") || entry.stateful || entry.random || entry.readsLastStep)) {
        return { span: e.callee.span, what: `\`${name}\` reads training (gradients, weights, history, draws or a split)` };
      }
      for (const arg of e.args) {
        const found = unseen(cx, arg.value);
        if (found) return found;
      }
      return undefined;
    }
    case "Index":
      return unseen(cx, e.base) ?? e.indices.map((i) => unseen(cx, i)).find(Boolean);
    case "Unary":
      return unseen(cx, e.operand);
    case "Binary":
      return unseen(cx, e.left) ?? unseen(cx, e.right);
    case "If":
      return unseen(cx, e.condition) ?? unseen(cx, e.then) ?? unseen(cx, e.otherwise);
    default:
      return undefined;
  }
}
