import type { Program } from "../../grammar/ast.js";
import { error, nearest, type Diagnostic, type SourceText, type Span } from "../../diagnostics/index.js";
import type { ModelIR, StageIR } from "../ir.js";
import { CheckContext } from "./context.js";
import { checkData, checkTrain, sortDeclarations } from "./declarations.js";
import { checkAuxHeads, checkEncoders } from "./encoders.js";
import { checkFusion } from "./fusion.js";
import { collectLearnables } from "./learnables.js";
import { checkTarget, collectModalities } from "./modalities.js";
import { checkPredict } from "./predict.js";
import { checkStages } from "./stages.js";
import { checkTraining } from "./training.js";

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
  const { singles, balance, every, stages: stageDecls } = sortDeclarations(cx, program);

  // The architecture: modalities and target, encoders, learnables, fusion and heads, data, training.
  collectModalities(cx, program.decls);
  const target = checkTarget(cx, singles.TargetDecl);
  checkEncoders(cx, program.decls);
  collectLearnables(cx, program.decls);
  checkFusion(cx, singles.FusionDecl, target?.classes);
  checkAuxHeads(cx, program.decls, target?.classes);
  const data = checkData(cx, singles.DataDecl, target);

  // The training: one stage of the top-level declarations, or each `stage` in order, falling back on them.
  const stages = stageDecls.length
    ? checkStages(cx, stageDecls, singles, { balance, every })
    : [{ name: "", line: 1, ...checkTraining(cx, { ...singles, balance, every }), frozen: [] }];
  checkSets(cx, options.set ?? {}, singles.ModelDecl?.span ?? { start: 0, end: 0 });
  const predict = checkPredict(cx, singles.PredictDecl);
  const last = stages[stages.length - 1];

  const complete = stages.every((s) => s.loss && s.optimizer && s.schedule);
  const model = !cx.diagnostics.some((d) => d.severity === "error") && target && cx.fusion && cx.head && complete && last && data
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
        loss: last.loss!,
        optimizer: last.optimizer!,
        schedule: last.schedule!,
        train: stageDecls.length ? checkTrain(cx, singles.TrainDecl) : last.train,
        rule: last.rule,
        ...(predict ? { predict } : {}),
        ...(stageDecls.length ? { stages: stages as StageIR[] } : {}),
        ...(cx.paramRanges.size ? { paramRanges: Object.fromEntries(cx.paramRanges) } : {}),
      }
    : undefined;
  return { ...(model ? { model } : {}), diagnostics: cx.diagnostics };
}

/**
 * MMB026: `--set` names a param the spec does not declare. The command line has no span in the
 * spec: the caret goes under the param of the nearest name (a typo), else the first param, else
 * the `model` line.
 */
function checkSets(cx: CheckContext, set: Readonly<Record<string, number>>, model: Span): void {
  const declared = [...cx.params.keys()];
  for (const name of Object.keys(set).filter((n) => !cx.params.has(n))) {
    const near = nearest(name, declared);
    const span = cx.params.get(near ?? declared[0] ?? "")?.span ?? model;
    const params = `params: ${declared.join(", ")}`;
    cx.report(error("MMB026", `--set ${name}: the spec declares no \`param ${name}\``, span, {
      help: near ? `did you mean \`--set ${near}=${set[name]}\`? ${params}` : declared.length ? params : "declare it in the balance block: `param " + name + " = ...`",
    }));
  }
}
