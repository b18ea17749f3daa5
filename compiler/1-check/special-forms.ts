import type { Expr } from "../../grammar/ast.js";
import { error, type Span } from "../../diagnostics/index.js";
import { values as builtinValues, type Reduction } from "../builtins/index.js";
import type { IndexRef, RExpr } from "../ir.js";
import { children, readsTaskGradient } from "../walks.js";
import { applySignature } from "./calls.js";
import { make, type CheckContext, type Env } from "./context.js";
import { expr } from "./expressions.js";
import { group } from "./groups.js";
import { expectKind, expectScalar } from "./kinds.js";
import { index } from "./names.js";
import { invisible } from "./epoch.js";

/**
 * Calls whose arguments are not all values: a parameter group (`grad`), an index binder
 * (`sum(k, ...)`), or an expression evaluated once per sample (`per_sample`). Each builds an
 * IR node of its own; their catalogue entries name and document them.
 */
type CallExpr = Extract<Expr, { kind: "Call" }>;

/** `grad(G)` or `grad(G, L)`. */
export function gradCall(cx: CheckContext, e: CallExpr, env: Env): RExpr | undefined {
  if (invisible(cx, env, e.span, "gradients")) return undefined;
  const args = e.args;
  if (args.length < 1 || args.length > 2 || args.some((a) => a.name)) {
    return cx.report(error("MMB007", "`grad` takes a group and optionally a loss: `grad(G)` or `grad(G, L)`", e.span, { help: "e.g. `grad(encoder[m])` or `grad(encoder[m], cross_entropy(contrib[m], y))`" }));
  }
  const checked = group(cx, args[0]!.value, env);
  const loss = args[1] ? expr(cx, args[1].value, env) : undefined;
  if (args[1] && (!loss || !expectScalar(cx, loss, args[1].span, "the loss of `grad(G, L)`"))) return undefined;
  return checked && make({ op: "grad", group: checked, ...(loss ? { loss } : {}) }, "grad", [], { host: false, secondOrder: true });
}

/** `weights(G)`, `init(G)` or `fresh(G)`: a group's parameters, now, as training began, or newly drawn. */
export function parametersCall(cx: CheckContext, e: CallExpr, env: Env, fn: "weights" | "init" | "fresh"): RExpr | undefined {
  if (e.args.length !== 1 || e.args[0]!.name) return cx.report(error("MMB007", `\`${fn}\` takes a parameter group: \`${fn}(encoder[m])\``, e.span, { help: `write \`${fn}(encoder[m])\`` }));
  const checked = group(cx, e.args[0]!.value, env);
  return checked && make({ op: "parameters", group: checked, which: fn }, "grad", [], { host: false, secondOrder: false });
}

/** `index(m)`: modality m's position, a number known before the step. */
export function indexCall(cx: CheckContext, e: CallExpr, env: Env): RExpr | undefined {
  if (e.args.length !== 1 || e.args[0]!.name) return cx.report(error("MMB007", "`index` takes a modality index: `index(m)`", e.span, { help: "write `index(m)`" }));
  const modality = index(cx, e.args[0]!.value, env);
  return modality && make({ op: "modalityNumber", modality }, "scalar", [], { host: true });
}

/** `per_sample(e)`: a gradient statistic once per sample. */
export function perSample(cx: CheckContext, e: CallExpr, env: Env): RExpr | undefined {
  if (invisible(cx, env, e.span, "gradients")) return undefined;
  if (e.args.length !== 1 || e.args[0]!.name) {
    return cx.report(error("MMB007", "`per_sample` takes 1 argument: `per_sample(norm(grad(G)))`", e.span, { help: "write `per_sample(norm(grad(encoder[m].last)))`" }));
  }
  const arg = expr(cx, e.args[0]!.value, env);
  if (!arg || !expectKind(cx, arg, ["scalar"], e.args[0]!.span, "`per_sample`")) return undefined;
  if (!readsTaskGradient(arg, [])) {
    return cx.report(error("MMB008", "`per_sample` evaluates a gradient statistic for each sample, but this reads no gradient", e.args[0]!.span, {
      help: "e.g. `per_sample(norm(grad(encoder[m].last)))`; per-sample metrics need no wrapper: `prob(out, y)`",
    }));
  }
  // Each sample's pass is a batch of one: a batch norm would normalise it by its own statistics, not the batch's.
  const normalized = cx.encoders.findIndex((encoder) => encoder?.options.norm === "batch");
  if (normalized >= 0) {
    const encoder = cx.encoders[normalized]!;
    return cx.report(error("MMB038", `\`per_sample\` passes each sample through the model alone, but the ${encoder.kind} encoder of \`${cx.modalities[normalized]!.name}\` normalises over the batch`, e.span, {
      help: `give that encoder \`norm: "none"\`${encoder.kind === "resnet" ? " (a resnet's default is `batch`)" : ""}, or read a statistic of the batch's gradient instead`,
    }));
  }
  return make({ op: "perSample", arg }, "batch", [arg]);
}

/** `per_tensor(e)`: e must be a number read from exactly one gradient, which each tensor then stands for. */
export function perTensor(cx: CheckContext, e: CallExpr, env: Env): RExpr | undefined {
  if (invisible(cx, env, e.span, "gradients")) return undefined;
  const usage = "per_tensor(std(grad(encoder[m].conv.weight)))";
  if (e.args.length !== 1 || e.args[0]!.name) return cx.report(error("MMB007", `\`per_tensor\` takes 1 argument: \`${usage}\``, e.span, { help: `write \`${usage}\`` }));
  const arg = expr(cx, e.args[0]!.value, env);
  if (!arg || !expectKind(cx, arg, ["scalar"], e.args[0]!.span, "`per_tensor`")) return undefined;
  const gradients = outermostGradients(arg);
  const distinct = new Set(gradients.map((g) => JSON.stringify(g)));
  if (distinct.size !== 1) {
    return cx.report(error("MMB008", `\`per_tensor\` evaluates a number for each tensor of one gradient, but this reads ${distinct.size === 0 ? "no gradient" : `${distinct.size} different gradients`}`, e.args[0]!.span, {
      help: `e.g. \`${usage}\``,
    }));
  }
  return make({ op: "perTensor", arg, gradient: gradients[0]! }, "grad", [arg], { host: false });
}

/** The gradient-valued parts of a number's expression that are not inside another gradient-valued part. */
function outermostGradients(e: RExpr): RExpr[] {
  if (e.kind === "grad") return [e];
  return children(e).flatMap(outermostGradients);
}

/**
 * `sum(k, e)`, `sum(k != m, e)`, `sum(batch, e)`; without a binder, the entry's own signatures
 * (`mean(g)`, `max(a, b)`).
 */
export function reduction(cx: CheckContext, e: CallExpr, env: Env, entry: Reduction): RExpr | undefined {
  const fn = entry.name;
  const usage = `${fn}(k, x[k])\`, \`${fn}(k != m, x[k])\` or \`${fn}(batch, x)`;
  if (e.args.length === 2 && e.args.every((a) => !a.name)) {
    const [binder, body] = [e.args[0]!.value, e.args[1]!.value];
    if (binder.kind === "Name" && binder.name === "batch") {
      const reduce = entry.reduce.batch;
      if (!reduce) return cx.report(error("MMB007", `\`${fn}\` over the batch is not supported`, binder.span, { help: "use `sum(batch, ...)` or `mean(batch, ...)`" }));
      const value = expr(cx, body, env);
      if (!value || !expectKind(cx, value, ["batch", "batchBool"], body.span, `\`${fn}(batch, ...)\``)) return undefined;
      return make({ op: "reduceBatch", fn: fn as "sum" | "mean", body: value }, "scalar", [value]);
    }
    const clash = indexClash(cx, binder, body);
    if (clash) {
      return cx.report(error("MMB007", `\`${clash.name}\` already names ${clash.what}, so it cannot be the index of \`${fn}\``, clash.span, {
        help: `use a fresh index name, e.g. \`${fn}(j${binder.kind === "Binary" ? " != ..." : ""}, ...)\` with \`[j]\` in the body`,
      }));
    }
    const range = binderRange(cx, binder, env);
    if (range === null) return undefined;
    if (range?.exclude && cx.modalities.length < 2) {
      return cx.report(error("MMB030", `\`${fn}(${range.variable} != ...)\` reduces over the other modalities, but this model has one`, binder.span, { help: "with one modality there are no others: use the value itself" }));
    }
    if (range) {
      const inner: Env = { ...env, bound: new Set([...env.bound, range.variable]) };
      const value = expr(cx, body, inner);
      // Head outputs add up too: `sum(k, alone[k])` is an ensemble's logits.
      if (!value || !expectKind(cx, value, ["scalar", "batch", "logits"], body.span, `\`${fn}\` over modalities`)) return undefined;
      return make({ op: "reduceModalities", fn: fn as "sum", variable: range.variable, ...(range.exclude ? { exclude: range.exclude } : {}), body: value }, value.kind, [value]);
    }
  }
  if (entry.signatures.length > 0) return applySignature(cx, entry, e, env);
  if (e.args.length === 2 && e.args.every((a) => !a.name)) {
    return cx.report(error("MMB007", `the first argument of \`${fn}\` must be an index (\`k\`, \`k != m\`) or \`batch\``, e.args[0]!.span, { help: `write \`${usage}\`` }));
  }
  return cx.report(error("MMB007", `\`${fn}\` takes a range and a value`, e.span, { help: `write \`${usage}\`` }));
}

/**
 * A binder whose name is already taken by a rule value, param or learnable: `mean(k != m, ...)`,
 * or `mean(k, x[k])` whose body indexes by it. One diagnostic instead of several about the body.
 */
function indexClash(cx: CheckContext, binder: Expr, body: Expr): { name: string; what: string; span: Span } | undefined {
  const name = binder.kind === "Name" ? binder : binder.kind === "Binary" && binder.op === "!=" && binder.left.kind === "Name" ? binder.left : undefined;
  if (!name) return undefined;
  const what = cx.definitions.has(name.name) ? "a rule value" : cx.params.has(name.name) ? "a param" : cx.learnables.has(name.name) ? "a learnable" : undefined;
  if (!what) return undefined;
  if (binder.kind === "Binary" || indexesBy(body, name.name)) return { name: name.name, what, span: name.span };
  return undefined;
}

/** Whether `e` uses `name` inside brackets, as an index. */
function indexesBy(e: Expr, name: string): boolean {
  const stack: Expr[] = [e];
  while (stack.length) {
    const x = stack.pop()!;
    if (x.kind === "Index") {
      if (x.indices.some((i) => i.kind === "Name" && i.name === name)) return true;
      stack.push(x.base, ...x.indices);
    } else if (x.kind === "Call") stack.push(x.callee, ...x.args.map((a) => a.value));
    else if (x.kind === "Binary") stack.push(x.left, x.right);
    else if (x.kind === "Unary") stack.push(x.operand);
    else if (x.kind === "If") stack.push(x.condition, x.then, x.otherwise);
    else if (x.kind === "Member") stack.push(x.object);
  }
  return false;
}

/** `k` or `k != m` where `k` is a fresh name; undefined when the first argument is no binder, null after an error. */
function binderRange(cx: CheckContext, binder: Expr, env: Env): { variable: string; exclude?: IndexRef } | undefined | null {
  const isFreeName = (x: Expr): x is Extract<Expr, { kind: "Name" }> =>
    x.kind === "Name" && !cx.definitions.has(x.name) && !cx.params.has(x.name) && !cx.learnables.has(x.name) && !cx.modalitySpans.has(x.name) && !builtinValueNames.has(x.name) && x.name !== cx.targetName;
  if (isFreeName(binder) && !env.bound.has(binder.name)) return { variable: binder.name };
  if (binder.kind === "Binary" && binder.op === "!=" && isFreeName(binder.left)) {
    const exclude = index(cx, binder.right, env);
    return exclude ? { variable: binder.left.name, exclude } : null;
  }
  return undefined;
}

const builtinValueNames = new Set(builtinValues.map((v) => v.name));
