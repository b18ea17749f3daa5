import type { Program } from "../../grammar/ast.js";
import { error, type Diagnostic, type SourceText } from "../../diagnostics/index.js";
import type { ActionIR, ModelIR } from "../ir.js";
import { checkActions } from "./actions.js";
import { CheckContext } from "./context.js";
import { checkEpochActions, epochStatements } from "./epoch.js";
import { checkCycles } from "./cycles.js";
import { checkData, checkLoss, checkOptimizer, checkSchedule, checkTrain, sortDeclarations } from "./declarations.js";
import { checkDefinition, collectRuleNames, confirmLastStepReads, ruleValues } from "./definitions.js";
import { checkAuxHeads, checkEncoders } from "./encoders.js";
import { checkFusion } from "./fusion.js";
import { collectLearnables } from "./learnables.js";
import { checkTarget, collectModalities } from "./modalities.js";

export interface CheckOptions {
  /** `param` values from the command line (`--set name=value`); a name the spec does not declare is MMB026. */
  set?: Readonly<Record<string, number>>;
}

/**
 * Phase 2: AST → IR and diagnostics. The passes run in the order below, each filling the
 * context's tables for the next: the architecture, then the balance block's names, definitions,
 * cycles and actions. Reports every independent error and never throws (warnings do not withhold
 * the model); an expression with an error yields `undefined`, so that one mistake is reported once.
 */
export function check(program: Program, source: SourceText, options: CheckOptions = {}): { model?: ModelIR; diagnostics: Diagnostic[] } {
  const cx = new CheckContext(source, options.set);
  const { singles, balance, every } = sortDeclarations(cx, program);
  const epochBody = epochStatements(cx, every);

  // The architecture: modalities and target, encoders, learnables, fusion and heads, data, training.
  collectModalities(cx, program.decls);
  const target = checkTarget(cx, singles.TargetDecl);
  checkEncoders(cx, program.decls);
  collectLearnables(cx, program.decls);
  checkFusion(cx, singles.FusionDecl, target?.classes);
  checkAuxHeads(cx, program.decls, target?.classes);
  const data = checkData(cx, singles.DataDecl, target);
  const optimizer = checkOptimizer(cx, singles.OptimizerDecl);
  const schedule = checkSchedule(cx, singles.ScheduleDecl);
  const train = checkTrain(cx, singles.TrainDecl);

  // The balance block: names first (definitions are equations, in any order), then each definition, cycles, actions.
  // The loss comes after the definitions: it may read rule values that need no gradients.
  collectRuleNames(cx, balance);
  collectRuleNames(cx, epochBody, "epoch");
  checkSets(cx, options.set ?? {});
  for (const definition of cx.definitions.values()) checkDefinition(cx, definition);
  confirmLastStepReads(cx);
  checkCycles(cx);
  const loss = checkLoss(cx, singles.LossDecl);
  const actions: ActionIR[] = [];
  checkActions(cx, balance, [], actions);
  const epochActions = checkEpochActions(cx, epochBody);

  const model = !cx.diagnostics.some((d) => d.severity === "error") && target && cx.fusion && cx.head && loss && optimizer && schedule && data
    ? {
        name: singles.ModelDecl?.name.name ?? "model",
        data,
        modalities: cx.modalities,
        target,
        encoders: cx.encoders,
        fusion: cx.fusion,
        ...(cx.fuse ? { fuse: cx.fuse } : {}),
        head: cx.head,
        ...(cx.auxHead ? { auxHead: cx.auxHead } : {}),
        learnables: [...cx.learnables.values()].map(({ span: _span, ...l }) => l),
        unread: cx.unread,
        loss,
        optimizer,
        schedule,
        train,
        rule: {
          ...ruleValues(cx),
          actions,
          ...(every.length ? { epoch: { values: ruleValues(cx, "epoch").values, actions: epochActions, line: cx.line(every[0]!.span) } } : {}),
        },
      }
    : undefined;
  return { ...(model ? { model } : {}), diagnostics: cx.diagnostics };
}

/** MMB026: `--set` names a param the spec does not declare. */
function checkSets(cx: CheckContext, set: Readonly<Record<string, number>>): void {
  const declared = [...cx.params.keys()];
  for (const name of Object.keys(set).filter((n) => !cx.params.has(n))) {
    cx.report(error("MMB026", `--set ${name}: the spec declares no \`param ${name}\``, { start: 0, end: 0 }, {
      help: declared.length ? `params: ${declared.join(", ")}` : "declare it in the balance block: `param " + name + " = ...`",
    }));
  }
}
