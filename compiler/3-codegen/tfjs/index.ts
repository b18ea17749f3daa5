import { Project, StructureKind, VariableDeclarationKind, type CodeBlockWriter, type StatementStructures, type WriterFunction } from "ts-morph";
import type { StepPlan } from "../../2-schedule/index.js";
import type { SourceText } from "../../../diagnostics/index.js";
import type { ModelIR, RuleValue } from "../../ir.js";
import { awaits } from "../../walks.js";
import { expression, fusionCode, historyKey, type Env } from "./expression.js";
import { commentText, memberAccess, numberLiteral, objectLiteral, safeName } from "./names.js";
import { actionStatement, addedLossBody, lossDependencies, valueStatement } from "./statements.js";
import { generatorVersion, sourceHash, specData } from "../spec-data.js";

function specLiteral(model: ModelIR, sourceName: string): string {
  const literal = JSON.stringify(specData(model, sourceName), null, 2);
  // The fusion expression is code, not data: the spec refers to the generated `fuse`.
  return model.fuse ? `${literal.slice(0, -2)},\n  fuse,\n}` : literal;
}

/**
 * `epochRule`: the `every epoch` block as a function the training loop calls before each epoch's
 * first step. Its numbers are logged with the epoch; gradient-shaped values (snapshots) and class
 * means are kept for the step rules only.
 */
function epochRuleFunction(plan: NonNullable<StepPlan["epoch"]>, model: ModelIR, env: Env, name: string, statements: Statements): { function: StatementStructures; logged: RuleValue[] } {
  const scope: Env = { ...env, epochRule: true, learnablesFromStep: true };
  const body: string[] = [];
  if (plan.values.length) body.push("// Epoch values, in dependency order, on the weights the last epoch left.", ...plan.values.map((v) => valueStatement(v, scope)));
  if (plan.prevWrites.length) body.push("", "// History: values that `prev(...)` reads at the next epoch.", ...historyWrites(plan.prevWrites, scope));
  if (plan.assignments.length) body.push("", "// Set before the epoch's first step, in spec order.", ...plan.assignments.map((a) => actionStatement(a, plan, scope)));
  // Numbers and conditions are logged; snapshots and class means are kept for the steps only.
  const logged = plan.values.filter((v) => v.value.kind === "scalar" || v.value.kind === "bool");
  // A value read from a split to the host (`purity`) is awaited: the rule is then async.
  const isAsync = [...plan.values.map((v) => v.value), ...plan.prevWrites.map((w) => w.arg), ...plan.assignments.flatMap((a) => [a.value, ...a.when])].some(awaits);
  const kept = plan.values.filter((v) => !logged.includes(v));
  body.push(`return { logged: ${objectLiteral(logged.map((v) => [v.name, safeName(v.name)]))}, kept: ${objectLiteral(kept.map((v) => [v.name, safeName(v.name)]))} };`);
  return {
    logged,
    function: {
      kind: StructureKind.Function,
      isExported: true,
      name,
      parameters: [
        { name: "ctx", type: "EpochContext" },
        { name: "p", type: "Params" },
      ],
      isAsync,
      returnType: isAsync ? "Promise<EpochResult>" : "EpochResult",
      statements: statements(body),
      leadingTrivia: `/** The \`every epoch\` rule (spec line ${model.rule.epoch!.line}): at each epoch's start, before its first step; the steps read its values. */\n`,
    },
  };
}

/** One in-memory project for every call: creating a project costs more than printing a small trainer. */
const project = new Project({ useInMemoryFileSystem: true });

type Statements = (lines: string[]) => WriterFunction;

/** `ctx.history.write(...)` for each `prev` record, inside loops over the modalities it is keyed by. */
function historyWrites(writes: StepPlan["prevWrites"], scope: Env): string[] {
  return writes.map((w) => {
    const inner: Env = { ...scope, bound: w.bound };
    let body = `ctx.history.write(${w.id}, ${historyKey(inner)}, ${expression(w.arg, inner)}${w.depth ? `, ${expression(w.depth, inner)}` : ""});`;
    for (const variable of [...w.bound].reverse()) body = `for (const ${safeName(variable)} of ctx.modalities) {\n${body}\n}`;
    return body;
  });
}

/**
 * One stage's functions: its task loss, training step and epoch rule (named with `suffix` when the
 * spec has stages), and the fields of its definition (`trainStep`, `valueLines`, ...).
 */
function stageModule(model: ModelIR, plan: StepPlan, env: Env, suffix: string, statements: Statements): { structures: StatementStructures[]; fields: string; functions: string } {
  // Rule values the loss reads are computed inside it, on each forward pass it is taken of.
  const index = model.loss.index;
  const lossEnv: Env = { ...env, scope: "f" };
  const lossValues = lossDependencies(model.loss.value, plan).map((v) => valueStatement(v, lossEnv));
  const taskLoss = expression(model.loss.value, lossEnv);
  const lossReadsStep = /\b(ctx|p)\./.test([...lossValues, taskLoss].join("\n"));
  const turns = model.train.turns as "step" | "epoch" | undefined;
  const values = plan.values.map((v) => valueStatement(v, env));
  const prevWrites = historyWrites(plan.prevWrites, env);
  const actions = plan.actions.map((a) => actionStatement(a, plan, env));
  const assignments = plan.assignments.map((a) => actionStatement(a, plan, env));
  const drops = plan.drops.map((a) => actionStatement(a, plan, env));
  const names = { taskLoss: `taskLoss${suffix}`, trainStep: `trainStep${suffix}`, epochRule: `epochRule${suffix}` };
  // With `loss[m]`, the loss of one modality's turn: m is the turn's modality.
  const turnLoss = index && (lossReadsStep ? `(f, ctx) => ${names.taskLoss}(f, ctx, ${safeName(index)})` : `(f) => ${names.taskLoss}(f, ${safeName(index)})`);
  const lossArgument = turnLoss || names.taskLoss;
  const options = [...(plan.addedLosses.length > 0 && !plan.secondOrder ? ["readsTaskGradient: false"] : []), ...(turns ? ["onlyReached: true"] : [])];
  const optionsArgument = options.length ? `, { ${options.join(", ")} }` : "";
  let backward = `const { loss, grads, raw: grad, forward: f } = ctx.backward(${lossArgument}${optionsArgument ? `, undefined${optionsArgument}` : ""});`;
  if (plan.addedLosses.length > 0) {
    const body = addedLossBody(plan, env);
    const lines = plan.addedLosses.map((a) => `// ${commentText(a.text)}  (line ${a.line})`).join("\n");
    backward = `${lines}\nconst { loss, grads, raw: grad, forward: f } = ctx.backward(${lossArgument}, (f, grad) => {\n${body}\n}${optionsArgument});`;
  }
  // Gradients, head outputs, features and prototypes are intermediate values: the step log keeps numbers.
  const numeric = plan.values.filter((v) => !["grad", "logits", "features", "prototypes"].includes(v.value.kind));
  const logged = objectLiteral(numeric.map((v) => [v.name, safeName(v.name)]));
  const structures: StatementStructures[] = [];
  structures.push({
    kind: StructureKind.Function,
    name: names.taskLoss,
    // The step, and the spec's params through it, where the loss or the rule values it reads need them; with `loss[m]`, the modality.
    parameters: [{ name: "f", type: "Forward" }, ...(lossReadsStep ? [{ name: "ctx", type: "StepContext" }] : []), ...(index ? [{ name: safeName(index), type: "number" }] : [])],
    returnType: "Tensor",
    statements: [...(/\bp\./.test([...lossValues, taskLoss].join("\n")) ? ["const p = ctx.specParams as Params;"] : []), ...lossValues, `return ${taskLoss};`],
    leadingTrivia: `// ${commentText(model.loss.text)}  (line ${model.loss.line})\n`,
  });
  // One step's phases; under `turns step`, one turn's, run once per modality.
  const phases: string[] = [];
  if (drops.length) phases.push("// Modality drops, drawn before the forward pass.", ...drops, "");
  phases.push(
    `// Forward pass, ${turns === "step" ? "this turn's" : "task"} loss and backward pass${plan.secondOrder ? " (second order: the added loss reads gradients)" : plan.addedLosses.length ? " (with the added loss)" : ""}.`,
    backward,
  );
  if (values.length) phases.push("", "// Rule values, in dependency order, from this step's raw gradients.", ...values);
  if (actions.length) phases.push("", "// Actions, in spec order.", ...actions);
  // `prev` records this step's values before the update, which would change a learnable's.
  if (prevWrites.length) phases.push("", "// History: values that `prev(...)` reads on the next step.", ...prevWrites);
  phases.push("", "// Optimiser step on the (modulated) gradients.", "ctx.update(grads);");
  if (assignments.length) phases.push("", "// Learnables set after the update, in spec order.", ...assignments);
  const body: string[] = [];
  if (turns === "step") {
    // Each turn's numbers are logged as one per modality, in turn order.
    const perTurn = objectLiteral(numeric.map((v) => [v.name, `turns.map((t) => t.values${memberAccess(v.name)})`]));
    body.push(
      "// One optimiser step per modality, in turn (`turns step`); each moves only what its loss reaches.",
      `const turns = ctx.modalities.map((${safeName(index!)}) => {`,
      ...phases,
      "// The next turn reads the history this one wrote.",
      "ctx.endTurn();",
      `return { loss, raw: grad${numeric.length ? `, values: ${logged}` : ""} };`,
      "});",
      "// The step's loss is the sum of the turns'; each encoder's gradient is logged from its own turn.",
      `return { loss: sumOf(turns.map((t) => t.loss)), values: ${perTurn}, raw: turns.at(-1)!.raw, turns: turns.map((t) => t.raw) };`,
    );
    env.used.add("sumOf");
  } else if (turns === "epoch") {
    const length = Number(model.train.turn_epochs ?? 1);
    const turn = length === 1 ? "ctx.epoch" : `Math.floor(ctx.epoch / ${length})`;
    body.push(
      `// This epoch's turn (\`turns epoch\`${length === 1 ? "" : `, ${length} epochs each`}): the update moves only what its loss reaches.`,
      `const ${safeName(index!)} = ctx.modalities[${turn} % ctx.modalities.length]!;`,
      ...phases,
      `return { loss, values: ${logged}, raw: grad };`,
    );
  } else body.push(...phases, `return { loss, values: ${logged}, raw: grad };`);
  structures.push({
    kind: StructureKind.Function,
    isExported: true,
    name: names.trainStep,
    parameters: [
      { name: "ctx", type: "StepContext" },
      { name: "p", type: "Params" },
    ],
    returnType: "StepResult",
    statements: statements(body),
    leadingTrivia: "/** One training step, phase by phase. */\n",
  });
  const epochRule = plan.epoch && epochRuleFunction(plan.epoch, model, env, names.epochRule, statements);
  if (epochRule) structures.push(epochRule.function);
  const valueLines = objectLiteral([...numeric, ...(epochRule?.logged ?? [])].map((v) => [v.name, String(v.line)]));
  // One number per sample: the step log records their batch mean.
  const perSample = numeric.filter((v) => v.value.kind === "batch" || v.value.kind === "batchBool").map((v) => v.name);
  const step = suffix ? `trainStep: ${names.trainStep}` : "trainStep";
  const rule = epochRule ? (suffix ? `, epochRule: ${names.epochRule}` : ", epochRule") : "";
  const fields = `trainedSeparately: ${JSON.stringify(plan.trainedSeparately)}, valueLines: ${valueLines}${perSample.length ? `, perSampleValues: ${JSON.stringify(perSample)}` : ""}`;
  return { structures, fields, functions: step + rule };
}

/** Phase 4: IR + step plan → the trainer module's TypeScript (unformatted). */
export function generate(model: ModelIR, plan: StepPlan, source: SourceText): string {
  const sourceName = source.fileName;
  const env: Env = { bound: [], model, used: new Set(), scope: "ctx" };
  const statements: Statements = (lines: string[]) => (w: CodeBlockWriter) => {
    for (const line of lines) w.writeLine(line);
  };

  // The module is built as one list of structures and printed once: ts-morph re-parses the file after every
  // `add...` call, which made code generation quadratic in the number of rule values.
  const module: StatementStructures[] = [];
  if (model.fuse) {
    module.push({
      kind: StructureKind.Function,
      name: "fuse",
      parameters: [{ name: "inputs", type: "FusionInputs" }],
      returnType: "Tensor",
      statements: [`return ${fusionCode(model.fuse.value, env)};`],
      leadingTrivia: `// ${commentText(model.fuse.text)}  (line ${model.fuse.line})\n`,
    });
  }
  module.push({
    kind: StructureKind.VariableStatement,
    isExported: true,
    declarationKind: VariableDeclarationKind.Const,
    declarations: [{ name: "spec", type: "ModelSpec", initializer: specLiteral(model, sourceName) }],
    leadingTrivia: `\n/** The model as the spec declares it outside its balance rule: architecture, data, optimiser, training settings. */\n`,
  });
  module.push({
    kind: StructureKind.VariableStatement,
    isExported: true,
    declarationKind: VariableDeclarationKind.Const,
    declarations: [{ name: "params", initializer: objectLiteral(model.rule.params.map((x) => [x.name, numberLiteral(x.value)])) }],
    leadingTrivia: "/** The spec's `param` values; `mmb train --set name=value` overrides them. */\n",
  });
  module.push({ kind: StructureKind.TypeAlias, name: "Params", type: "Record<keyof typeof params, number>", leadingTrivia: "\n" });
  const ranges = model.paramRanges ? Object.entries(model.paramRanges) : [];
  if (ranges.length) {
    module.push({
      kind: StructureKind.VariableStatement,
      isExported: true,
      declarationKind: VariableDeclarationKind.Const,
      declarations: [{ name: "paramRanges", initializer: objectLiteral(ranges.map(([name, taken]) => [name, JSON.stringify(taken)])) }],
      leadingTrivia: "\n/** The calls that take a param as a constant, and the range each takes: `mmb run --set` checks them, as `mmb train --set` checks the spec. */\n",
    });
  }
  const common = `spec, params${ranges.length ? ", paramRanges" : ""}`;
  const hash = `sourceHash: ${JSON.stringify(sourceHash(source.text))}`;
  let definition: string;
  if (model.stages && plan.stages) {
    // One set of functions per stage, in order; the loop runs them one stage after the other.
    const stages = model.stages.map((stage, i) => {
      const stageModel: ModelIR = { ...model, loss: stage.loss, optimizer: stage.optimizer, schedule: stage.schedule, train: stage.train, rule: stage.rule };
      const part = stageModule(stageModel, plan.stages![i]!, { ...env, model: stageModel }, `_${stage.name}`, statements);
      module.push(...part.structures.map((s, j) => (j === 0 ? { ...s, leadingTrivia: `\n// ---- stage ${commentText(stage.name)} (line ${stage.line})\n${(s as { leadingTrivia?: string }).leadingTrivia ?? ""}` } : s)) as StatementStructures[]);
      return `{ name: ${JSON.stringify(stage.name)}, ${part.fields}, ${part.functions} }`;
    });
    definition = `{ ${common}, ${hash}, stages: [${stages.join(", ")}] }`;
  } else {
    const part = stageModule(model, plan, env, "", statements);
    module.push(...part.structures);
    definition = `{ ${common}, ${part.fields}, ${hash}, ${part.functions} }`;
  }
  if (model.predict) {
    const value = expression(model.predict.value, { ...env, scope: "f" });
    const readsParams = /\bp\./.test(value);
    module.push({
      kind: StructureKind.Function,
      isExported: true,
      name: "predict",
      parameters: [{ name: "f", type: "Forward" }, ...(readsParams ? [{ name: "p", type: "Params" }] : [])],
      returnType: "Tensor",
      statements: [`return ${value};`],
      leadingTrivia: `\n// ${commentText(model.predict.text)}  (line ${model.predict.line})\n/** The outputs evaluation scores, instead of \`out\`: a forward pass of held-out samples in evaluation mode. */\n`,
    });
    definition = `${definition.slice(0, -2)}, predict }`;
  }
  module.push({
    kind: StructureKind.VariableStatement,
    isExported: true,
    declarationKind: VariableDeclarationKind.Const,
    declarations: [{ name: "trainer", type: "TrainerDefinition", initializer: definition }],
  });
  module.push({ kind: StructureKind.ExportAssignment, isExportEquals: false, expression: "trainer", leadingTrivia: "\n" });
  module.unshift({
    kind: StructureKind.ImportDeclaration,
    moduleSpecifier: "mmb/runtime",
    namedImports: [
      ...[...env.used].sort(),
      ...["Forward", ...([plan, ...(plan.stages ?? [])].some((p) => p.epoch) ? ["EpochContext", "EpochResult"] : []), ...(model.fuse ? ["FusionInputs"] : []), "ModelSpec", "StepContext", "StepResult", "Tensor", "TrainerDefinition"].map((name) => ({ name, isTypeOnly: true })),
    ],
  });
  const header = [
    `// Generated by mmb ${generatorVersion} from ${commentText(sourceName)}. Edit the spec, not this file.`,
    "// Rule values are computed from this step's raw gradients; actions apply in spec order.",
  ];
  const file = project.createSourceFile("trainer.ts", { statements: module }, { overwrite: true });
  return `${header.join("\n")}\n${file.getFullText()}`;
}
