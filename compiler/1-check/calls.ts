import type { Expr } from "../../grammar/ast.js";
import { error, nearest, type Span } from "../../diagnostics/index.js";
import { builtin, isReduction, ruleFunctionNames, type Builtin, type ParamSpec, type RefineContext, type Signature } from "../builtins/index.js";
import { inRange, type ParamRange, type Range } from "../../runtime/range.js";
import { rangeText } from "../range.js";
import type { RExpr, ValueKind } from "../ir.js";
import { constantNumber } from "./component-options.js";
import { make, type CheckContext, type Env } from "./context.js";
import { expr } from "./expressions.js";
import { groupShape } from "./groups.js";
import { describeKind, kindHelp } from "./kinds.js";
import { splitCall } from "./epoch.js";
import { gradCall, indexCall, parametersCall, perSample, perTensor, reduction } from "./special-forms.js";

type CallExpr = Extract<Expr, { kind: "Call" }>;

/** A call in a rule expression: looked up in the builtin catalogue and checked against its entry. */
export function call(cx: CheckContext, e: CallExpr, env: Env): RExpr | undefined {
  if (e.callee.kind !== "Name") return cx.report(error("MMB006", "only built-in functions can be called", e.callee.span, { help: "see the function list in README.md" }));
  const fn = e.callee.name;
  const entry = builtin(fn);
  if (!entry) {
    const guess = nearest(fn, ruleFunctionNames);
    return cx.report(error("MMB006", `unknown function \`${fn}\``, e.callee.span, { label: "not a built-in function", help: guess ? `did you mean \`${guess}\`?` : "see the function list in README.md" }));
  }
  if (entry.misuse) return cx.report(error(entry.misuse.code, entry.misuse.message, e.span, { help: entry.misuse.help }));
  if (entry.form === "grad") return gradCall(cx, e, env);
  if (entry.form === "perSample") return perSample(cx, e, env);
  if (entry.form === "perTensor") return perTensor(cx, e, env);
  if (entry.form === "parameters") return parametersCall(cx, e, env, entry.name as "weights" | "init" | "fresh");
  if (entry.form === "index") return indexCall(cx, e, env);
  if (entry.form === "split") return splitCall(cx, e, env, entry);
  if (env.split && (entry.stateful || entry.random)) {
    return cx.report(error("MMB033", `\`${fn}\` ${entry.random ? "draws once per step" : "carries a value between steps"}, which a split's value, evaluated batch by batch, cannot`, e.span, {
      help: `compute it outside: \`x = over(valid, ...)\`, then \`${fn}(x, ...)\``,
    }));
  }
  if (isReduction(entry)) return reduction(cx, e, env, entry);
  return applySignature(cx, entry, e, env);
}

/**
 * Checks a call against its entry's signatures: the arity, each argument once, then the first
 * overload whose argument kinds all fit. When none fits, one MMB008 names the first argument
 * that no overload accepts, with the kinds the overloads would take there.
 */
export function applySignature(cx: CheckContext, entry: Builtin, e: CallExpr, env: Env): RExpr | undefined {
  const arities = [...new Set(entry.signatures.map((s) => s.params.length))];
  if (e.args.some((a) => a.name) || !arities.includes(e.args.length)) {
    const counts = arities.join(" or ");
    const plural = arities.length === 1 && arities[0] === 1 ? "" : "s";
    return cx.report(error("MMB007", `\`${entry.name}\` takes ${counts} argument${plural}: \`${example(entry)}\``, e.span, { help: `write \`${example(entry)}\`` }));
  }
  const candidates = entry.signatures.filter((s) => s.params.length === e.args.length);
  const args: (RExpr | undefined)[] = e.args.map((arg, i) => {
    const param = candidates[0]!.params[i]!;
    if ("constant" in param) return constantArgument(cx, entry, param.name, param.constant, arg.value);
    return expr(cx, arg.value, i === 0 && entry.readsLastStep ? { ...env, underHistory: true } : env);
  });
  if (!args.every((a): a is RExpr => a !== undefined)) return undefined;
  const signature = candidates.find((s) => s.params.every((p, i) => "constant" in p || p.kinds.includes(args[i]!.kind)));
  if (!signature) return reportMismatch(cx, entry, candidates, args, e.args.map((a) => a.span));
  if (entry.refine && !entry.refine(refineContext(cx, entry, e, args))) return undefined;
  const result = resultKind(signature, args);
  const early = entry.hostOnly ? args.findIndex((a) => !a.host) : -1;
  if (early >= 0) {
    return cx.report(error("MMB027", `\`${entry.name}\`'s arguments must be known before the step: numbers, params, \`step\`, \`epoch\``, e.args[early]!.span, { help: `e.g. \`${example(entry)}\`` }));
  }
  const state = entry.stateful || entry.random ? cx.historyCount++ : undefined;
  return make({ op: "call", fn: entry.name, args, ...(state !== undefined ? { state } : {}) }, result, args, {
    host: (entry.host ?? false) && args.every((a) => a.host),
    ...(entry.cutsGradient ? { secondOrder: false } : {}),
  });
}

function resultKind(signature: Signature, args: RExpr[]): ValueKind {
  if (signature.result !== "lift") return signature.result;
  return args.some((a) => a.kind === "batch" || a.kind === "batchBool") ? "batch" : "scalar";
}

/** The first argument position no overload accepts, with the kinds the overloads that got that far take there. */
function reportMismatch(cx: CheckContext, entry: Builtin, candidates: Signature[], args: RExpr[], spans: Span[]): undefined {
  const accepts = (p: ParamSpec, arg: RExpr) => "constant" in p || p.kinds.includes(arg.kind);
  const firstFailure = (s: Signature) => s.params.findIndex((p, i) => !accepts(p, args[i]!));
  const position = Math.max(...candidates.map(firstFailure));
  const wanted = new Set(candidates.filter((s) => firstFailure(s) === position).flatMap((s) => {
    const p = s.params[position]!;
    return "constant" in p ? [] : [...p.kinds];
  }));
  const found = args[position]!.kind;
  return cx.report(error("MMB008", `\`${entry.name}\` needs ${[...wanted].map(describeKind).join(" or ")}, found ${describeKind(found)}`, spans[position]!, { help: kindHelp(found) }));
}

/**
 * An argument known before training: a number, or a `param` (whose value the command line may
 * set). Its range is checked against the value the run will use.
 */
function constantArgument(cx: CheckContext, entry: Builtin, name: string, range: Range, e: Expr): RExpr | undefined {
  let value: number;
  let node: RExpr;
  let origin = "";
  if (e.kind === "Name") {
    const param = cx.params.get(e.name);
    if (!param) return cx.report(error("MMB019", `\`${entry.name}\`'s ${name} must be a number or a \`param\``, e.span, { help: `write e.g. \`${example(entry)}\`` }));
    value = param.value;
    node = make({ op: "param", name: e.name }, "scalar", [], { host: true });
    origin = Object.hasOwn(cx.overrides, e.name) ? ` (\`--set ${e.name}=${value}\`)` : ` (\`param ${e.name}\`)`;
    recordParamRange(cx, e.name, { range, text: rangeText(range), use: `\`${entry.name}\`'s ${name}`, line: cx.line(e.span) });
  } else {
    const number = constantNumber(cx, e);
    if (number === undefined) return undefined;
    value = number;
    node = make({ op: "number", value }, "scalar", [], { host: true });
  }
  if (!inRange(value, range)) {
    return cx.report(error("MMB019", `\`${entry.name}\`'s ${name} must be ${rangeText(range)}, found ${value}${origin}`, e.span, { help: `choose ${name} ${rangeText(range)}, e.g. \`${example(entry)}\`` }));
  }
  return node;
}

/** What a trainer's own `--set` checks (runtime/range.ts): each call that takes the param, once. */
function recordParamRange(cx: CheckContext, param: string, taken: ParamRange): void {
  const ranges = cx.paramRanges.get(param) ?? [];
  if (!ranges.some((r) => r.use === taken.use && r.line === taken.line)) cx.paramRanges.set(param, [...ranges, taken]);
}

/** A call of the entry as the help lines show it. */
function example(entry: Builtin): string {
  return entry.example ?? entry.usage;
}

function refineContext(cx: CheckContext, entry: Builtin, e: CallExpr, args: RExpr[]): RefineContext {
  return {
    name: entry.name,
    args: args.map((a, i) => {
      const shape = a.op === "grad" ? groupShape(cx, a.group) : undefined;
      return { kind: a.kind, span: e.args[i]!.span, ...(shape !== undefined ? { shape } : {}) };
    }),
    span: e.span,
    targetKind: cx.targetKind,
    report: (code, message, extra) => {
      cx.report(error(code, message, e.span, extra));
      return false;
    },
  };
}
