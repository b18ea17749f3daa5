import type { Decl, Expr, Stmt } from "../../grammar/ast.js";
import { error, type Span } from "../../diagnostics/index.js";
import type { Builtin } from "../builtins/index.js";
import type { ActionIR, RExpr } from "../ir.js";
import { checkActions } from "./actions.js";
import { make, type CheckContext, type Env } from "./context.js";
import { expr } from "./expressions.js";
import { expectKind } from "./kinds.js";

/**
 * `every epoch { ... }`: rule values and `set`s evaluated at the start of each epoch, before its
 * first step, on the weights the last epoch left. They see no batch and no gradient: a split's
 * outputs are read through `over(split, e)`; `prev(x, init)` is x at the previous epoch. Step rules
 * read their values, constant for the epoch.
 */
export type EpochBlock = Extract<Decl, { kind: "EpochBlock" }>;

/** MMB034 for a block of another unit (`every step`); the statements of the `every epoch` blocks. */
export function epochStatements(cx: CheckContext, blocks: EpochBlock[]): Stmt[] {
  return blocks.flatMap((block) => {
    if (block.unit.name === "epoch") return block.body;
    cx.report(error("MMB034", `\`every ${block.unit.name}\` is not a block: rules run every step (\`balance { ... }\`) or every epoch (\`every epoch { ... }\`)`, block.unit.span, {
      help: block.unit.name === "step" ? "write the rules in `balance { ... }`" : "write `every epoch { ... }`; for every n epochs, test `epoch % n == 0` in it",
    }));
    return [];
  });
}

/** The `every epoch` block's actions: only `set`, which moves learnables or weights before the epoch's steps. */
export function checkEpochActions(cx: CheckContext, stmts: Stmt[]): Extract<ActionIR, { kind: "assign" | "assignWeights" }>[] {
  const actions: ActionIR[] = [];
  const allowed = (list: Stmt[]): Stmt[] =>
    list.flatMap((stmt): Stmt[] => {
      if (stmt.kind === "When") return [{ ...stmt, body: allowed(stmt.body) }];
      if (["Define", "Param", "Set"].includes(stmt.kind)) return [stmt];
      cx.report(error("MMB034", "an `every epoch` block can only `set` learnables or weights", stmt.span, {
        help: "gradients, drops and losses act on a step: put the action in `balance { ... }`, where it can read this block's values",
      }));
      return [];
    });
  checkActions(cx, allowed(stmts), [], actions, { epoch: true });
  return actions as Extract<ActionIR, { kind: "assign" | "assignWeights" }>[];
}

/**
 * MMB033 where an expression reads what its scope cannot see: a batch's outputs or gradients in an
 * epoch rule (outside `over`), or a whole split in a step rule. Returns true when it reported.
 */
export function invisible(cx: CheckContext, env: Env, span: Span, what: "outputs" | "gradients" | "split"): boolean {
  if (what === "split" ? env.epoch && !env.split : !env.epoch || (what === "outputs" && env.split)) return false;
  // One report per definition (`acc(out, y)` reads two outputs): its envs share its `reads`.
  const owner = env.reads ?? env;
  if (cx.invisibleReported.has(owner)) return true;
  cx.invisibleReported.add(owner);
  const [message, help] = {
    outputs: ["an epoch rule sees no batch, so it cannot read the model's outputs here", "average a per-sample value over a split: `over(valid, nll(out, y))`"],
    gradients: ["an epoch rule has no gradients: it runs between epochs", "compute gradient statistics in `balance { ... }`; an epoch rule reads weights: `norm(weights(encoder[m]))`"],
    split: [env.split ? "a split's value cannot be nested in another's" : "a whole split can only be read in an `every epoch` rule", "read it in `every epoch { x = over(valid, ...) }` and use `x` in the step rules"],
  }[what];
  cx.report(error("MMB033", message, span, { help }));
  return true;
}

/** `over(split, e)`, `class_means(split, z[m])`, `purity(split, z[m])`: a value of a whole split. */
export function splitCall(cx: CheckContext, e: Extract<Expr, { kind: "Call" }>, env: Env, entry: Builtin): RExpr | undefined {
  const usage = entry.example ?? entry.usage;
  const fn = entry.name;
  const { kinds, result } = entry.ofSplit!;
  if (e.args.length !== 2 || e.args.some((a) => a.name)) return cx.report(error("MMB007", `\`${fn}\` takes a split and a value of its samples: \`${usage}\``, e.span, { help: `write \`${usage}\`` }));
  if (invisible(cx, env, e.span, "split")) return undefined;
  const split = e.args[0]!.value;
  if (split.kind !== "Name" || (split.name !== "train" && split.name !== "valid")) {
    const test = split.kind === "Name" && split.name === "test";
    return cx.report(error("MMB007", test ? "a rule cannot read the test split: it measures the trained model" : `the first argument of \`${fn}\` is a split: \`train\` or \`valid\``, split.span, {
      help: test ? "measure on `valid`" : `write \`${usage}\``,
    }));
  }
  const arg = expr(cx, e.args[1]!.value, { ...env, split: split.name });
  if (!arg || !expectKind(cx, arg, [...kinds], e.args[1]!.span, `\`${fn}\``)) return undefined;
  return make({ op: "split", fn, split: split.name, arg }, result, [arg], { host: false });
}
