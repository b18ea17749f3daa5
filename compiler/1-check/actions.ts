import type { Expr, Stmt } from "../../grammar/ast.js";
import { error, type Span } from "../../diagnostics/index.js";
import * as components from "../components.js";
import type { ActionIR, GroupRef, RExpr } from "../ir.js";
import { dependence } from "../walks.js";
import { component } from "./component-options.js";
import type { CheckContext, Env } from "./context.js";
import { expr } from "./expressions.js";
import { gradientGroups, group } from "./groups.js";
import { describeKind, expectKind, expectScalar } from "./kinds.js";
import { index } from "./names.js";

/**
 * The balance block's actions, in spec order, each with the `when` conditions around it. A free
 * index in an action (`scale grad(encoder[m]) by k[m]`) makes it a loop over the modalities.
 */
export function checkActions(cx: CheckContext, stmts: Stmt[], when: RExpr[], out: ActionIR[], scope: Pick<Env, "epoch"> = {}): void {
  for (const stmt of stmts) {
    const loops = new Set<string>();
    const env: Env = { bound: new Set(!scope.epoch && cx.turn ? [cx.turn] : []), loops, ...scope };
    const line = cx.line(stmt.span);
    const text = cx.text(stmt.span);
    switch (stmt.kind) {
      case "When": {
        const condition = expr(cx, stmt.condition, env);
        if (condition && condition.kind !== "bool") {
          cx.report(error("MMB021", `a \`when\` condition must be true or false for the step, found ${describeKind(condition.kind)}`, stmt.condition.span, {
            help: condition.kind === "batchBool" ? "reduce over the batch first, e.g. `mean(batch, ...) > 0.5`" : "compare it, e.g. `epoch < 50`",
          }));
        }
        if (loops.size > 0) {
          cx.report(error("MMB009", "a `when` condition cannot depend on a modality index", stmt.condition.span, { help: "reduce over modalities first, e.g. `max(k, x[k]) > 1`" }));
        }
        checkActions(cx, stmt.body, condition ? [...when, condition] : when, out, scope);
        break;
      }
      case "Scale": {
        const target = actionTarget(cx, stmt.target, env, ["grad", "lr"]);
        const factor = expr(cx, stmt.factor, env);
        if (target && factor && expectOperand(cx, factor, stmt.factor.span, "a scale factor", target.fn === "grad" ? target.group : undefined)) {
          out.push({ kind: target.fn === "lr" ? "scaleLr" : "scale", group: target.group, factor, when, loop: [...loops], line, text });
        }
        break;
      }
      case "Noise": {
        const target = actionTarget(cx, stmt.target, env, ["grad"]);
        const dist = stmt.distribution;
        if (dist.kind !== "Call" || dist.callee.kind !== "Name" || dist.callee.name !== "normal" || dist.args.length !== 2) {
          cx.report(error("MMB007", "noise must be drawn from `normal(mean, std)`", dist.span, { help: "e.g. `noise grad(encoder[m]) ~ normal(0, std(grad(encoder[m])))`" }));
          break;
        }
        const mean = expr(cx, dist.args[0]!.value, env);
        const std = expr(cx, dist.args[1]!.value, env);
        if (target && mean && std && expectOperand(cx, mean, dist.args[0]!.span, "the noise mean", target.group) && expectOperand(cx, std, dist.args[1]!.span, "the noise standard deviation", target.group)) {
          out.push({ kind: "noise", group: target.group, mean, std, when, loop: [...loops], line, text });
        }
        break;
      }
      case "AddLoss": {
        const value = expr(cx, stmt.value, env);
        if (value && expectScalar(cx, value, stmt.value.span, "an added loss")) {
          if (loops.size > 0) {
            cx.report(error("MMB009", "an added loss must be one number: it cannot depend on a free modality index", stmt.value.span, { help: "sum it over the modalities: `add loss sum(m, ...)`" }));
          } else out.push({ kind: "addLoss", value, when, loop: [], line, text });
        }
        break;
      }
      case "Minimize": {
        const value = expr(cx, stmt.value, env);
        const target = group(cx, stmt.group, env);
        const optimizer = component(cx, stmt.optimizer, components.optimizers, "optimizer");
        if (!value || !target || !optimizer || !expectScalar(cx, value, stmt.value.span, "a minimised objective")) break;
        const key = JSON.stringify(target);
        const earlier = cx.minimized.get(key);
        if (earlier) {
          cx.report(error("MMB022", `\`${cx.text(stmt.group.span)}\` is already minimised by another objective`, stmt.group.span, {
            related: [{ span: earlier, message: "first minimised here" }],
            help: "a group has one objective: add the two objectives into one `minimize`",
          }));
          break;
        }
        cx.minimized.set(key, stmt.group.span);
        out.push({ kind: "minimize", value, group: target, optimizer, when, loop: [...loops], line, text });
        break;
      }
      case "Replace": {
        const target = actionTarget(cx, stmt.target, env, ["grad"]);
        const value = expr(cx, stmt.value, env);
        if (!target || !value) break;
        if (value.kind !== "grad") {
          cx.report(error("MMB008", `a gradient can only be replaced by a gradient, found ${describeKind(value.kind)}`, stmt.value.span, { help: "combine gradients of the same group, e.g. `0.5 * (grad(G, L1) + grad(G, L2))`; to rescale, use `scale`" }));
          break;
        }
        const foreign = gradientGroups(cx, value, new Map()).find((g) => JSON.stringify(g) !== JSON.stringify(target.group));
        if (foreign) {
          cx.report(error("MMB016", "a replacement must be built from gradients of the group it replaces", stmt.value.span, {
            help: `use \`grad(${cx.text((stmt.target as Extract<Expr, { kind: "Call" }>).args[0]!.value.span)}, ...)\` on the right`,
          }));
          break;
        }
        out.push({ kind: "replace", group: target.group, value, when, loop: [...loops], line, text });
        break;
      }
      case "Drop": {
        const target = stmt.target;
        if (target.kind !== "Index" || target.base.kind !== "Name" || target.base.name !== "z" || target.indices.length !== 1) {
          if (target.kind !== "Missing") cx.report(error("MMB018", "`drop` applies to a modality's features `z[m]`", target.span, { help: "e.g. `drop z[m] with 0.3`" }));
          break;
        }
        const modality = index(cx, target.indices[0]!, env);
        const probability = expr(cx, stmt.probability, env);
        if (!modality || !probability || !expectKind(cx, probability, ["scalar", "batch"], stmt.probability.span, "a drop probability")) break;
        // The drop decides the forward pass: its probability may come from numbers and history known
        // before it, or from this step's outputs (evaluated on a pass of their own), never from gradients.
        const values = cx.checkedValues();
        const needs = (v: RExpr) => dependence(v, values);
        const late = [probability, ...when].find((v) => needs(v) === "gradient" || (v !== probability && needs(v) === "forward"));
        if (late) {
          const conditionLate = late !== probability;
          cx.report(error("MMB027", conditionLate ? "a drop's conditions must be known before the forward pass" : "a drop decides the forward pass, so its probability cannot read this step's gradients", conditionLate ? stmt.span : stmt.probability.span, {
            help: "use numbers, `param`s, `step`, `epoch`, last step's values (`prev(x, 0)`) or this step's outputs (`prob(contrib[m], y)`), not gradients",
          }));
          break;
        }
        out.push({ kind: "drop", modality, probability, rescale: stmt.rescaled, probe: needs(probability) === "forward", when, loop: [...loops], line, text });
        break;
      }
      case "Set": {
        const target = stmt.target;
        if (target.kind === "Call" && target.callee.kind === "Name" && target.callee.name === "weights") {
          checkSetWeights(cx, stmt, env, when, loops, out);
          break;
        }
        const name = target.kind === "Name" ? target.name : target.kind === "Index" && target.base.kind === "Name" && target.indices.length === 1 ? target.base.name : undefined;
        const learnable = name !== undefined ? cx.learnables.get(name) : undefined;
        if (!learnable || learnable.perModality !== (target.kind === "Index")) {
          if (target.kind !== "Missing") {
            cx.report(error("MMB018", "`set` assigns a learnable (`set w = ...`, `set w[m] = ...`) or a group's weights (`set weights(G) = ...`)", target.span, { help: "declare a learnable first: `learnable w[m] = 1`" }));
          }
          break;
        }
        const modality = target.kind === "Index" ? index(cx, target.indices[0]!, env) : undefined;
        const value = expr(cx, stmt.value, env);
        if (!value || (target.kind === "Index" && !modality) || !expectScalar(cx, value, stmt.value.span, "an assigned value")) break;
        out.push({ kind: "assign", name: learnable.name, ...(modality ? { index: modality } : {}), value, when, loop: [...loops], line, text });
        break;
      }
      case "Param":
      case "Define":
        break;
    }
  }
}

/** `set weights(G) = e`: e gradient-shaped, built from values of G itself (its weights, `init`, `fresh`, gradients). */
function checkSetWeights(cx: CheckContext, stmt: Extract<Stmt, { kind: "Set" }>, env: Env, when: RExpr[], loops: Set<string>, out: ActionIR[]): void {
  const target = actionTarget(cx, stmt.target, env, ["weights"]);
  const value = expr(cx, stmt.value, env);
  if (!target || !value) return;
  if (value.kind !== "grad") {
    cx.report(error("MMB008", `a group's weights can only be set to a gradient-shaped value of the group, found ${describeKind(value.kind)}`, stmt.value.span, {
      help: "e.g. `set weights(encoder[m]) = a * init(encoder[m]) + (1 - a) * weights(encoder[m])`",
    }));
    return;
  }
  if (!expectOperand(cx, value, stmt.value.span, "the new weights", target.group)) return;
  out.push({ kind: "assignWeights", group: target.group, value, when, loop: [...loops], line: cx.line(stmt.span), text: cx.text(stmt.span) });
}

/**
 * An operand of `scale grad(G)` or `noise grad(G)`: one number for the whole group, or a
 * gradient-shaped value of G itself (`per_tensor(...)`), applied element by element.
 */
function expectOperand(cx: CheckContext, value: RExpr, span: Span, what: string, group: GroupRef | undefined): boolean {
  if (value.kind !== "grad" || !group) return expectScalar(cx, value, span, what);
  const foreign = gradientGroups(cx, value, new Map()).find((g) => JSON.stringify(g) !== JSON.stringify(group));
  if (!foreign) return true;
  cx.report(error("MMB016", `${what} of the group's shape must be built from gradients of that group`, span, { help: "e.g. `scale grad(G) by per_tensor(std(grad(G)))` with the same G on both sides" }));
  return false;
}

function actionTarget(cx: CheckContext, target: Expr, env: Env, allowed: string[]): { fn: string; group: GroupRef } | undefined {
  if (target.kind === "Call" && target.callee.kind === "Name" && allowed.includes(target.callee.name) && target.args.length === 1) {
    const checked = group(cx, target.args[0]!.value, env);
    return checked && { fn: target.callee.name, group: checked };
  }
  if (target.kind === "Missing") return undefined;
  return cx.report(error("MMB018", `this action applies to ${allowed.map((a) => `\`${a}(G)\``).join(" or ")} of a parameter group`, target.span, {
    help: "e.g. `scale grad(encoder[m]) by k[m]`",
  }));
}

