import type { Stmt } from "../../grammar/ast.js";
import { error } from "../../diagnostics/index.js";
import type { OptionValue } from "../components.js";
import type { ActionIR, Component, ModelIR, RuleIR } from "../ir.js";
import { checkActions } from "./actions.js";
import type { CheckContext } from "./context.js";
import { checkCycles } from "./cycles.js";
import { checkLoss, checkOptimizer, checkSchedule, checkTrain, type Singles } from "./declarations.js";
import { checkDefinition, collectRuleNames, confirmLastStepReads, ruleValues } from "./definitions.js";
import { checkEpochActions, epochStatements, type EpochBlock } from "./epoch.js";

/** What one stage trains with: its loss, optimiser, schedule and settings, and its rules. */
export interface Training {
  loss?: ModelIR["loss"];
  optimizer?: Component;
  schedule?: Component;
  train: Record<string, OptionValue>;
  rule: RuleIR;
}

/**
 * The rules (`balance` and `every epoch` blocks: names first, as definitions are equations in any
 * order, then each definition, cycles, actions), then the loss, which may read rule values that
 * need no gradients, and the optimiser, schedule and settings.
 */
export function checkTraining(cx: CheckContext, decls: Pick<Singles, "LossDecl" | "OptimizerDecl" | "ScheduleDecl" | "TrainDecl"> & { balance: Stmt[]; every: EpochBlock[] }): Training {
  const optimizer = checkOptimizer(cx, decls.OptimizerDecl);
  const schedule = checkSchedule(cx, decls.ScheduleDecl);
  const train = checkTrain(cx, decls.TrainDecl);
  // In a turn, the loss's index is the modality whose turn it is, for the step rules too.
  const turnIndex = train.turns !== undefined ? decls.LossDecl?.index?.name : undefined;
  if (turnIndex) cx.turn = turnIndex;
  else delete cx.turn;
  const epochBody = epochStatements(cx, decls.every);
  collectRuleNames(cx, decls.balance);
  collectRuleNames(cx, epochBody, "epoch");
  for (const definition of cx.definitions.values()) checkDefinition(cx, definition);
  confirmLastStepReads(cx);
  checkCycles(cx);
  const loss = checkLoss(cx, decls.LossDecl);
  checkTurns(cx, decls, train, decls.balance);
  const actions: ActionIR[] = [];
  checkActions(cx, decls.balance, [], actions);
  const epochActions = checkEpochActions(cx, epochBody);
  const rule: RuleIR = {
    ...ruleValues(cx),
    actions,
    ...(decls.every.length ? { epoch: { values: ruleValues(cx, "epoch").values, actions: epochActions, line: cx.line(decls.every[0]!.span) } } : {}),
  };
  return { ...(loss ? { loss } : {}), ...(optimizer ? { optimizer } : {}), ...(schedule ? { schedule } : {}), train, rule };
}


/**
 * MMB036: `loss[m]` and the `turns` setting come together (one loss per modality says what each
 * turn trains; `turns` says when); `turn_epochs` only with `turns epoch`; under `turns step` the
 * step rule runs once per turn, so its values are one per turn, not per modality.
 */
function checkTurns(cx: CheckContext, decls: Pick<Singles, "LossDecl" | "TrainDecl">, train: Record<string, OptionValue>, balance: Stmt[]): void {
  const index = decls.LossDecl?.index;
  const setting = decls.TrainDecl?.settings.find((s) => s.key.name === "turns");
  // An invalid `turns` value has its own MMB012.
  if (index && !setting) {
    cx.report(error("MMB036", `\`loss[${index.name}]\` is one loss per modality, but the spec does not say how they take turns`, index.span, {
      help: "add `turns step` (one optimiser step per modality on each batch) or `turns epoch` (one modality per epoch) to `train`",
    }));
  }
  if (setting && train.turns !== undefined && decls.LossDecl && !index) {
    cx.report(error("MMB036", "`turns` needs one loss per modality", setting.key.span, { help: "write the loss as `loss[m] ...`, reading modality m's outputs" }));
  }
  const length = decls.TrainDecl?.settings.find((s) => s.key.name === "turn_epochs");
  if (length && train.turns !== "epoch") {
    cx.report(error("MMB036", "`turn_epochs` is the length of a turn of `turns epoch`", length.key.span, { help: "add `turns epoch`, or remove `turn_epochs`" }));
  }
  // Under `turns step`, a step rule runs once per turn and logs one number per modality: a value of its own per modality would log a table.
  const perModality = train.turns === "step" && index ? balance.find((s) => s.kind === "Define" && s.target.index) : undefined;
  if (perModality?.kind === "Define") {
    cx.report(error("MMB036", `with \`turns step\`, the rule runs once per turn, for the turn's modality \`${index!.name}\`: \`${perModality.target.name.name}[${perModality.target.index!.name}]\` would be one value per modality in every turn`, perModality.target.span, {
      help: `write it for the turn's modality: \`${perModality.target.name.name} = ...\` reading \`[${index!.name}]\`, logged once per turn`,
    }));
  }
}
