import type { StepPlan } from "../../2-schedule/index.js";
import type { SourceText } from "../../../diagnostics/index.js";
import type { ModelIR } from "../../ir.js";
import { generatorVersion, sourceHash, specData } from "../spec-data.js";
import { expression, fusionCode, historyKey, type Env } from "./expression.js";
import { commentLine, indent, pythonLiteral, pythonName, pythonNumber, pythonString } from "./names.js";
import { torchRuntime } from "./runtime-source.js";
import { actionStatement, addedLossFunction, lossDependencies, valueStatement } from "./statements.js";

/** `ctx.history.write(...)` for each `prev` record, inside loops over the modalities it is keyed by. */
function historyWrites(writes: StepPlan["prevWrites"], env: Env): string[] {
  return writes.map((w) => {
    const inner: Env = { ...env, bound: w.bound };
    let body = `ctx.history.write(${w.id}, ${historyKey(inner)}, ${expression(w.arg, inner)}${w.depth ? `, ${expression(w.depth, inner)}` : ""})`;
    for (const variable of [...w.bound].reverse()) body = `for ${pythonName(variable)} in ctx.modalities:\n${indent(body)}`;
    return body;
  });
}

/** A Python dict literal from spec names and the code of their values. */
function dictLiteral(entries: [name: string, code: string][]): string {
  return `{${entries.map(([name, code]) => `${pythonString(name)}: ${code}`).join(", ")}}`;
}

/**
 * `epoch_rule`: the `every epoch` block as a function the loop calls before each epoch's first
 * step. Numbers and conditions are logged with the epoch; snapshots and class means are kept for the steps.
 */
function epochRuleFunction(plan: NonNullable<StepPlan["epoch"]>, model: ModelIR, env: Env, name: string): { code: string; logged: string[] } {
  const scope: Env = { ...env, epochRule: true, learnablesFromStep: true };
  const body: string[] = [`"""The \`every epoch\` rule (spec line ${model.rule.epoch!.line}): at each epoch's start, before its first step; the steps read its values."""`];
  if (plan.values.length) body.push("# Epoch values, in dependency order, on the weights the last epoch left.", ...plan.values.map((v) => valueStatement(v, scope)));
  if (plan.prevWrites.length) body.push("", "# History: values that `prev(...)` reads at the next epoch.", ...historyWrites(plan.prevWrites, scope));
  if (plan.assignments.length) body.push("", "# Set before the epoch's first step, in spec order.", ...plan.assignments.map((a) => actionStatement(a, plan, scope)));
  const logged = plan.values.filter((v) => v.value.kind === "scalar" || v.value.kind === "bool");
  const kept = plan.values.filter((v) => !logged.includes(v));
  const values = (list: typeof logged) => dictLiteral(list.map((v) => [v.name, pythonName(v.name)]));
  body.push(`return dict(logged=${values(logged)}, kept=${values(kept)})`);
  return { code: `def ${name}(ctx, p):\n${indent(body.join("\n"))}`, logged: logged.map((v) => v.name) };
}

/**
 * One stage's functions (named with `suffix` when the spec has stages): its task loss, training
 * step and epoch rule, and the fields of its entry in `TRAINER`.
 */
function stageFunctions(model: ModelIR, plan: StepPlan, env: Env, suffix: string): { code: string; fields: string[] } {
  const index = model.loss.index;
  const turns = model.train.turns as "step" | "epoch" | undefined;
  const names = { taskLoss: `task_loss${suffix}`, trainStep: `train_step${suffix}`, epochRule: `epoch_rule${suffix}` };
  const lossEnv: Env = { ...env, scope: "f" };
  const lossValues = lossDependencies(model.loss.value, plan).map((v) => valueStatement(v, lossEnv));
  const lossValue = expression(model.loss.value, lossEnv);
  const lossBody = [...(/\bp\[/.test([...lossValues, lossValue].join("\n")) ? ["p = ctx.spec_params"] : []), ...lossValues, `return ${lossValue}`];
  // With `loss[m]`, the loss of one modality's turn: m is the turn's modality.
  const lossParameters = `f, ctx${index ? `, ${pythonName(index)}` : ""}`;
  const taskLoss = `# ${commentLine(model.loss.text)}  (line ${model.loss.line})\ndef ${names.taskLoss}(${lossParameters}):\n${indent(lossBody.join("\n"))}`;
  const lossArgument = index ? `lambda f, ctx: ${names.taskLoss}(f, ctx, ${pythonName(index)})` : names.taskLoss;

  const phases: string[] = [];
  if (plan.drops.length) phases.push("# Modality drops, drawn before the forward pass.", ...plan.drops.map((a) => actionStatement(a, plan, env)), "");
  const options = [...(plan.addedLosses.length > 0 && !plan.secondOrder ? ["reads_task_gradient=False"] : []), ...(turns ? ["only_reached=True"] : [])].map((o) => `, ${o}`).join("");
  phases.push(
    `# Forward pass, ${turns === "step" ? "this turn's" : "task"} loss and backward pass${plan.secondOrder ? " (second order: the added loss reads gradients)" : plan.addedLosses.length ? " (with the added loss)" : ""}.`,
  );
  if (plan.addedLosses.length > 0) {
    phases.push(...plan.addedLosses.map((a) => `# ${commentLine(a.text)}  (line ${a.line})`), addedLossFunction(plan, env), "");
    phases.push(`loss, grads, grad, f = ctx.backward(${lossArgument}, added_loss${options})`);
  } else phases.push(`loss, grads, grad, f = ctx.backward(${lossArgument}${options})`);
  if (plan.values.length) phases.push("", "# Rule values, in dependency order, from this step's raw gradients.", ...plan.values.map((v) => valueStatement(v, env)));
  if (plan.actions.length) phases.push("", "# Actions, in spec order.", ...plan.actions.map((a) => actionStatement(a, plan, env)));
  // `prev` records this step's values before the update, which would change a learnable's.
  if (plan.prevWrites.length) phases.push("", "# History: values that `prev(...)` reads on the next step.", ...historyWrites(plan.prevWrites, env));
  phases.push("", "# Optimiser step on the (modulated) gradients.", "ctx.update(grads)");
  if (plan.assignments.length) phases.push("", "# Learnables set after the update, in spec order.", ...plan.assignments.map((a) => actionStatement(a, plan, env)));
  // Gradients, head outputs, features and prototypes are intermediate values: the step log keeps numbers.
  const numeric = plan.values.filter((v) => !["grad", "logits", "features", "prototypes"].includes(v.value.kind));
  const values = dictLiteral(numeric.map((v) => [v.name, pythonName(v.name)]));
  const body: string[] = ['"""One training step, phase by phase."""'];
  if (turns === "step") {
    // Each turn's numbers are logged as one per modality, in turn order.
    const turn = `def turn(${pythonName(index!)}):\n${indent([...phases, "# The next turn reads the history this one wrote.", "ctx.end_turn()", `return dict(loss=loss, values=${values}, raw=grad)`].join("\n"))}`;
    body.push(
      "# One optimiser step per modality, in turn (`turns step`); each moves only what its loss reaches.",
      turn,
      "",
      "turns = [turn(m) for m in ctx.modalities]",
      "# The step's loss is the sum of the turns'; each encoder's gradient is logged from its own turn.",
      `values = {name: [t["values"][name] for t in turns] for name in ${pythonLiteral(numeric.map((v) => v.name), "", Infinity)}}`,
      'return dict(loss=sum_of([t["loss"] for t in turns]), values=values, raw=turns[-1]["raw"], turns=[t["raw"] for t in turns])',
    );
  } else if (turns === "epoch") {
    const length = Number(model.train.turn_epochs ?? 1);
    const turn = length === 1 ? "ctx.epoch" : `ctx.epoch // ${length}`;
    body.push(
      `# This epoch's turn (\`turns epoch\`${length === 1 ? "" : `, ${length} epochs each`}): the update moves only what its loss reaches.`,
      `${pythonName(index!)} = ctx.modalities[${turn} % len(ctx.modalities)]`,
      ...phases,
      `return dict(loss=loss, values=${values}, raw=grad)`,
    );
  } else body.push(...phases, `return dict(loss=loss, values=${values}, raw=grad)`);
  const functions = [taskLoss, `def ${names.trainStep}(ctx, p):\n${indent(body.join("\n"))}`];
  const epochRule = plan.epoch && epochRuleFunction(plan.epoch, model, env, names.epochRule);
  if (epochRule) functions.push(epochRule.code);
  const lines = [...numeric.map((v): [string, string] => [v.name, String(v.line)]), ...(epochRule ? plan.epoch!.values.filter((v) => epochRule.logged.includes(v.name)).map((v): [string, string] => [v.name, String(v.line)]) : [])];
  const perSample = numeric.filter((v) => v.value.kind === "batch" || v.value.kind === "batchBool").map((v) => v.name);
  const fields = [
    `train_step=${names.trainStep}`,
    `epoch_rule=${epochRule ? names.epochRule : "None"}`,
    `value_lines=${dictLiteral(lines)}`,
    `per_sample_values=${pythonLiteral(perSample)}`,
    `trained_separately=${pythonLiteral(plan.trainedSeparately)}`,
  ];
  return { code: functions.join("\n\n\n"), fields };
}

/** Phase 4, torch: IR + step plan → a self-contained PyTorch trainer (Python source). */
export function generateTorch(model: ModelIR, plan: StepPlan, source: SourceText): string {
  const env: Env = { bound: [], model, scope: "ctx" };
  const runtime = torchRuntime();
  const sections: string[] = [];
  const name = commentLine(source.fileName);
  sections.push(
    [
      "#!/usr/bin/env python3",
      `# Generated by mmb ${generatorVersion} from ${name} for PyTorch (torch 1.13 to 2.x, numpy). Edit the spec, not this file.`,
      "# Rule values are computed from this step's raw gradients; actions apply in spec order.",
      "#",
      "# Train on the spec's data, exported once for both targets:",
      `#   mmb data export ${name} -o data.npz`,
      "#   python3 trainer.py --data data.npz --out runs/NAME [--device cuda]",
      "# On N GPUs: torchrun --nproc_per_node N trainer.py --data data.npz --out runs/NAME --device cuda",
      ...runtime.imports,
    ].join("\n"),
  );
  sections.push(`# The model as the spec declares it outside its balance rule: architecture, data, optimiser, training settings.\nSPEC = ${pythonLiteral(specData(model, source.fileName))}`);
  sections.push(`# The spec's \`param\` values; \`--set name=value\` overrides them.\nPARAMS = ${dictLiteral(model.rule.params.map((x) => [x.name, pythonNumber(x.value)]))}`);
  const functions: string[] = [];
  if (model.fuse) functions.push(`# ${commentLine(model.fuse.text)}  (line ${model.fuse.line})\ndef fuse(inputs):\n${indent(`return ${fusionCode(model.fuse.value, env)}`)}`);
  const trainer = ["spec=SPEC", "params=PARAMS"];
  if (model.paramRanges) {
    sections.push(`# The calls that take a param as a constant, and the range each takes: \`--set\` is checked against them.\nPARAM_RANGES = ${pythonLiteral(model.paramRanges)}`);
    trainer.push("param_ranges=PARAM_RANGES");
  }
  if (model.stages && plan.stages) {
    // One set of functions per stage, in order; the loop runs them one stage after the other.
    const stages = model.stages.map((stage, i) => {
      const stageModel: ModelIR = { ...model, loss: stage.loss, optimizer: stage.optimizer, schedule: stage.schedule, train: stage.train, rule: stage.rule };
      const part = stageFunctions(stageModel, plan.stages![i]!, { ...env, model: stageModel }, `_${pythonName(stage.name)}`);
      functions.push(`# ---- stage ${commentLine(stage.name)} (line ${stage.line})\n${part.code}`);
      return `dict(name=${pythonString(stage.name)}, ${part.fields.join(", ")})`;
    });
    trainer.push(`stages=[\n${indent(stages.map((s) => `${s},`).join("\n"))}\n]`);
  } else {
    const part = stageFunctions(model, plan, env, "");
    functions.push(part.code);
    trainer.push(...part.fields);
  }
  if (model.predict) {
    const value = expression(model.predict.value, { ...env, scope: "f" });
    functions.push(
      `# ${commentLine(model.predict.text)}  (line ${model.predict.line})\ndef predict(f, p):\n${indent(`"""The outputs evaluation scores, instead of \`out\`: a forward pass of held-out samples in evaluation mode."""\nreturn ${value}`)}`,
    );
  }
  sections.push(functions.join("\n\n\n"));
  trainer.push(`source_hash=${pythonString(sourceHash(source.text))}`, `fuse=${model.fuse ? "fuse" : "None"}`, `predict=${model.predict ? "predict" : "None"}`);
  sections.push(`TRAINER = dict(\n${indent(trainer.map((t) => `${t},`).join("\n"))}\n)`);
  sections.push(`# ======== The mmb runtime for torch: the same in every generated trainer. ========\n\n${runtime.body.trim()}`);
  sections.push('if __name__ == "__main__":\n    main(TRAINER)');
  return `${sections.join("\n\n\n")}\n`;
}
