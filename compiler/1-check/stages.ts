import type { Decl, Stmt } from "../../grammar/ast.js";
import { error, type Span } from "../../diagnostics/index.js";
import type { GroupRef, RExpr, StageIR } from "../ir.js";
import { children } from "../walks.js";
import type { CheckContext } from "./context.js";
import { sortDeclarations, type Singles } from "./declarations.js";
import type { EpochBlock } from "./epoch.js";
import { group } from "./groups.js";
import { checkTraining, type Training } from "./training.js";

/** What a stage may declare; the model itself (modalities, encoders, fusion, heads, data) is the spec's, shared by every stage. */
const stageKinds: ReadonlySet<Decl["kind"]> = new Set(["LossDecl", "OptimizerDecl", "ScheduleDecl", "TrainDecl", "BalanceBlock", "EpochBlock", "FreezeDecl"]);

/**
 * `stage NAME { ... }` blocks, in order. Each trains the one model with its own loss, optimiser,
 * schedule and settings (falling back on the spec's own declarations) and its own rules, whose
 * names are its own; `freeze G` leaves groups untrained. A stage reads the weights an earlier
 * stage ended with as `NAME.out`, `NAME.z[m]`, `NAME.head[m]`.
 */
export function checkStages(cx: CheckContext, stages: Extract<Decl, { kind: "StageDecl" }>[], top: Singles, rules: { balance: Stmt[]; every: EpochBlock[] }): (Training & Omit<StageIR, keyof Training>)[] {
  if (rules.balance.length || rules.every.length) {
    const first = rules.balance[0]?.span ?? rules.every[0]!.span;
    cx.report(error("MMB035", "with stages, every rule belongs to a stage", first, { help: "move the `balance` and `every epoch` blocks into the `stage` that uses them" }));
  }
  cx.stages = stages.map((s) => s.name.name);
  return stages.flatMap((stage, index) => {
    const earlier = stages.slice(0, index).find((s) => s.name.name === stage.name.name);
    if (earlier) {
      cx.report(error("MMB035", `stage \`${stage.name.name}\` is declared twice`, stage.name.span, { related: [{ span: earlier.name.span, message: "first declared here" }], help: "give each stage its own name" }));
      return [];
    }
    for (const decl of stage.body.filter((d) => !stageKinds.has(d.kind))) {
      cx.report(error("MMB035", "a stage declares how it trains: `loss`, `optimizer`, `schedule`, `train`, `freeze`, `balance`, `every epoch`", decl.span, {
        help: "modalities, encoders, the fusion, heads and data are the model's, shared by every stage: declare them outside",
      }));
    }
    const own = sortDeclarations(cx, { decls: stage.body.filter((d) => stageKinds.has(d.kind)) });
    // Each stage's rules have names of their own; params are the spec's, and history slots stay unique.
    cx.definitions.clear();
    cx.lastStepReads.length = 0;
    cx.minimized.clear();
    cx.stage = index;
    const training = checkTraining(cx, {
      LossDecl: own.singles.LossDecl ?? top.LossDecl,
      OptimizerDecl: own.singles.OptimizerDecl ?? top.OptimizerDecl,
      ScheduleDecl: own.singles.ScheduleDecl ?? top.ScheduleDecl,
      TrainDecl: inherited(own.singles.TrainDecl, top.TrainDecl),
      balance: own.balance,
      every: own.every,
    });
    const frozen = own.freeze.flatMap((decl) => decl.groups.flatMap((g) => group(cx, g, { bound: new Set(), loops: new Set() }) ?? [])) as GroupRef[];
    checkFrozenGradients(cx, training, frozen, own.freeze[0]?.span);
    return [{ name: stage.name.name, line: cx.line(stage.span), ...training, frozen }];
  });
}

/** A stage's `train` settings: the spec's own, each replaced by the stage's where it gives one. */
function inherited(own: Singles["TrainDecl"], top: Singles["TrainDecl"]): Singles["TrainDecl"] {
  if (!own || !top) return own ?? top;
  const keys = new Set(own.settings.map((s) => s.key.name));
  return { ...own, settings: [...top.settings.filter((s) => !keys.has(s.key.name)), ...own.settings] };
}

/** Whether two groups share parameters: the same kind, modality and layers, where an index variable stands for every modality. */
function overlaps(a: GroupRef, b: GroupRef): boolean {
  if (a.kind !== b.kind) return false;
  const modality = (g: GroupRef) => ("modality" in g && g.modality?.kind === "fixed" ? g.modality.modality : undefined);
  const [ma, mb] = [modality(a), modality(b)];
  if (ma !== undefined && mb !== undefined && ma !== mb) return false;
  if (a.kind === "learnable" && b.kind === "learnable" && a.name !== b.name) return false;
  if (a.kind === "encoder" && b.kind === "encoder") return a.part === "all" || b.part === "all" || a.part === b.part;
  return true;
}

/** MMB035: a rule reads the gradient of (or scales, replaces, minimises) a group its stage freezes, which has none. */
function checkFrozenGradients(cx: CheckContext, training: Training, frozen: GroupRef[], span: Span | undefined): void {
  if (!frozen.length || !span) return;
  const groups: { group: GroupRef; line: number }[] = [];
  const visit = (e: RExpr, line: number) => {
    if (e.op === "grad") groups.push({ group: e.group, line });
    children(e).forEach((c) => visit(c, line));
  };
  training.rule.values.forEach((v) => visit(v.value, v.line));
  for (const a of training.rule.actions) {
    if ("group" in a) groups.push({ group: a.group, line: a.line });
    for (const e of "value" in a ? [a.value] : []) visit(e, a.line);
  }
  const hit = groups.find(({ group: g }) => frozen.some((f) => overlaps(f, g)));
  if (hit) {
    cx.report(error("MMB035", `line ${hit.line} reads or changes the gradient of a group this stage freezes, which has none`, span, {
      help: "freeze fewer groups, or move that rule to a stage that trains the group",
    }));
  }
}

/** `NAME.x` where NAME is a stage: its index, or MMB035 when it has not run yet where it is read. */
export function earlierStage(cx: CheckContext, name: string, span: { start: number; end: number }): string | undefined {
  const index = cx.stages.indexOf(name);
  if (index < 0) return undefined;
  if (cx.stage === undefined || index >= cx.stage) {
    cx.report(error("MMB035", cx.stage === index ? `stage \`${name}\` reads its own final weights, which exist only once it has ended` : `stage \`${name}\` has not trained yet when this is read`, span, {
      help: `read the weights of an earlier stage: \`${cx.stages[0]}\` can be read from the stages after it`,
    }));
    return "";
  }
  return name;
}
