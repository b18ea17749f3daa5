import type { Stmt } from "../../grammar/ast.js";
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
  const epochBody = epochStatements(cx, decls.every);
  collectRuleNames(cx, decls.balance);
  collectRuleNames(cx, epochBody, "epoch");
  for (const definition of cx.definitions.values()) checkDefinition(cx, definition);
  confirmLastStepReads(cx);
  checkCycles(cx);
  const loss = checkLoss(cx, decls.LossDecl);
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

