import type { Decl, Program, Stmt } from "../../grammar/ast.js";
import { error, nearest, type Span } from "../../diagnostics/index.js";
import { dependence } from "../walks.js";
import * as components from "../components.js";
import type { OptionValue } from "../components.js";
import type { Component, ModelIR } from "../ir.js";
import { component, defaults, optionValue } from "./component-options.js";
import type { CheckContext } from "./context.js";
import { expr } from "./expressions.js";
import { expectScalar } from "./kinds.js";

/** Declarations a spec makes at most once, by kind. */
export type Singles = { [K in Decl["kind"]]?: Extract<Decl, { kind: K }> };

/** Splits the program into its once-only declarations (MMB003 for a second one), the balance blocks' statements and the `every` blocks. */
export function sortDeclarations(
  cx: CheckContext,
  program: Pick<Program, "decls">,
): { singles: Singles; balance: Stmt[]; every: Extract<Decl, { kind: "EpochBlock" }>[]; stages: Extract<Decl, { kind: "StageDecl" }>[]; freeze: Extract<Decl, { kind: "FreezeDecl" }>[] } {
  const singles = new Map<Decl["kind"], Decl>();
  const balance: Stmt[] = [];
  const every: Extract<Decl, { kind: "EpochBlock" }>[] = [];
  const stages: Extract<Decl, { kind: "StageDecl" }>[] = [];
  const freeze: Extract<Decl, { kind: "FreezeDecl" }>[] = [];
  for (const decl of program.decls) {
    if (decl.kind === "StageDecl") {
      stages.push(decl);
      continue;
    }
    if (decl.kind === "FreezeDecl") {
      freeze.push(decl);
      continue;
    }
    if (decl.kind === "BalanceBlock") {
      balance.push(...decl.body);
      continue;
    }
    if (decl.kind === "EpochBlock") {
      every.push(decl);
      continue;
    }
    if (["ModalityDecl", "EncoderDecl", "LearnableDecl", "HeadDecl"].includes(decl.kind)) continue;
    const previous = singles.get(decl.kind);
    if (previous) {
      const keyword = cx.text(decl.span).split(/\s/)[0];
      cx.report(error("MMB003", `\`${keyword}\` is declared twice`, decl.span, {
        label: "second declaration",
        related: [{ span: previous.span, message: "first declared here" }],
        help: `keep one \`${keyword}\` declaration`,
      }));
    } else singles.set(decl.kind, decl);
  }
  return { singles: Object.fromEntries(singles) as Singles, balance, every, stages, freeze };
}

/** `data SOURCE(...)`: the embedded generators, or `files(...)` with a `from` on every modality and the target. */
export function checkData(cx: CheckContext, decl: Singles["DataDecl"], target: ModelIR["target"] | undefined): Component | undefined {
  if (!decl) return { kind: "synthetic", options: defaults(components.dataSources.synthetic!), line: 1 };
  const data = component(cx, decl.value, components.dataSources, "data source");
  if (data?.kind === "files") {
    const missing = [...cx.modalities.filter((m) => m.source === undefined).map((m) => `modality \`${m.name}\``), ...(target && target.source === undefined ? [`target \`${target.name}\``] : [])];
    if (missing.length) {
      return cx.report(error("MMB029", `\`files\` data needs a file for every modality and the target: ${missing.join(", ")} has none`, decl.value.span, {
        help: 'add `from "file"` to each, e.g. `modality audio : float[64] from "audio.npy"`',
      }));
    }
  } else if (data) {
    const declared = cx.modalities.find((m) => m.source !== undefined);
    if (declared || target?.source !== undefined) {
      return cx.report(error("MMB029", `\`from\` files are read by \`data files(...)\`, but the data is \`${data.kind}\``, decl.value.span, { help: "write `data files()` to train on the declared files, or remove the `from` clauses" }));
    }
  }
  if (data && !splitsFit(cx, data, decl.value.span)) return undefined;
  if (data && data.options.dominant === undefined && cx.modalities[0]) data.options.dominant = cx.modalities[0].name;
  return data;
}

/** The validation and test fractions leave samples to train on; a fold names one of the folds. */
function splitsFit(cx: CheckContext, data: Component, span: Span): boolean {
  const { valid, test, fold, folds } = data.options;
  if (typeof valid === "number" && typeof test === "number" && valid + test >= 1) {
    cx.report(error("MMB012", `\`valid: ${valid}\` and \`test: ${test}\` leave no samples to train on`, span, { help: "the two fractions must add up to less than 1, e.g. `valid: 0.15, test: 0.15`" }));
    return false;
  }
  if (typeof fold === "number" && typeof folds === "number" && fold >= folds) {
    cx.report(error("MMB012", `\`fold: ${fold}\` is not one of the ${folds} folds (0 to ${folds - 1})`, span, { help: `choose a fold from 0 to ${folds - 1}` }));
    return false;
  }
  return true;
}

export function checkOptimizer(cx: CheckContext, decl: Singles["OptimizerDecl"]): Component | undefined {
  if (!decl) {
    return cx.report(error("MMB004", "the spec declares no optimizer", { start: 0, end: 0 }, { help: "add e.g. `optimizer sgd(lr: 1e-3, momentum: 0.9)`" }));
  }
  return component(cx, decl.value, components.optimizers, "optimizer");
}

export function checkSchedule(cx: CheckContext, decl: Singles["ScheduleDecl"]): Component | undefined {
  return decl ? component(cx, decl.value, components.schedules, "schedule") : { kind: "constant", options: {}, line: 1 };
}

/** `train epochs N batch N ...`: every setting with its default, overridden by the spec. */
export function checkTrain(cx: CheckContext, decl: Singles["TrainDecl"]): Record<string, OptionValue> {
  const settings: Record<string, OptionValue> = {};
  for (const [key, spec] of Object.entries(components.trainSettings)) if (spec.default !== undefined) settings[key] = spec.default;
  for (const { key, value } of decl?.settings ?? []) {
    const spec = Object.hasOwn(components.trainSettings, key.name) ? components.trainSettings[key.name] : undefined;
    if (!spec) {
      const guess = nearest(key.name, Object.keys(components.trainSettings));
      cx.report(error("MMB012", `unknown training setting \`${key.name}\``, key.span, {
        help: guess ? `did you mean \`${guess}\`?` : `settings: ${Object.keys(components.trainSettings).join(", ")}`,
      }));
      continue;
    }
    const checked = optionValue(cx, value, spec, key.name);
    if (checked !== undefined) settings[key.name] = checked;
  }
  return settings;
}

/**
 * `loss EXPR`: one number per step; `loss[m] EXPR`, one per modality (m bound in EXPR). It may read rule values (evaluated inside the loss), but none
 * computed from this step's gradients: those are the loss's own (MMB017).
 */
export function checkLoss(cx: CheckContext, decl: Singles["LossDecl"]): ModelIR["loss"] | undefined {
  if (!decl) {
    return cx.report(error("MMB004", "the spec declares no loss", { start: 0, end: 0 }, { help: "add e.g. `loss cross_entropy(out, y)`" }));
  }
  const reads = new Map<string, Span>();
  const value = expr(cx, decl.value, { bound: new Set(decl.index ? [decl.index.name] : []), reads });
  if (!value) return undefined;
  if (!expectScalar(cx, value, decl.value.span, "the loss")) return undefined;
  const values = cx.checkedValues();
  for (const [name, span] of reads) {
    const definition = cx.definitions.get(name);
    if (definition?.checked && dependence(definition.checked, values) === "gradient") {
      return cx.report(error("MMB017", `the loss reads \`${name}\`, which is computed from this step's gradients: the loss's own`, span, {
        help: "read gradients in the balance block (`add loss`, `scale`), or last step's value with `prev(...)`",
      }));
    }
  }
  return { value, line: cx.line(decl.span), text: cx.text(decl.span), ...(decl.index ? { index: decl.index.name } : {}) };
}
