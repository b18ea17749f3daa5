import { Project, StructureKind, VariableDeclarationKind, type CodeBlockWriter, type StatementStructures, type WriterFunction } from "ts-morph";
import type { ActionIR, FExpr, GroupRef, IndexRef, ModelIR, RExpr, RuleValue } from "./ir.js";
import type { StepPlan } from "./schedule.js";
import { reads, readsTaskGradient } from "./schedule.js";

export const generatorVersion = "0.1.0";

/** Names the generated module defines or imports; spec names that collide get a `_` suffix. */
const taken = new Set([
  "ctx", "p", "f", "grad", "grads", "loss", "raw", "spec", "params", "trainer", "trainStep", "taskLoss", "Params",
  "Tensor", "Forward", "StepContext", "StepResult", "TrainerDefinition", "ModelSpec", "GradientOf",
  "add", "sub", "mul", "div", "pow", "neg", "less", "lessEqual", "greater", "greaterEqual", "equal", "notEqual",
  "and", "or", "not", "abs", "exp", "log", "sqrt", "tanh", "sigmoid", "relu", "sign", "square", "minimum", "maximum",
  "detach", "choose", "sumBatch", "meanBatch", "sumOf", "meanOf", "maxOf", "minOf", "absGradient", "gradNorm",
  "gradNorm1", "gradMean", "gradMeanAbs", "gradStd", "gradCos", "accuracy", "trueClassProb", "crossEntropy",
  "meanAbsoluteError", "meanSquaredError", "gradDot", "addGradients", "subGradients", "scaleGradient", "concatOf", "distance", "dice", "diceLoss",
  "fuse", "inputs", "FusionInputs", "sample",
]);
const reservedWords = new Set(
  ("break case catch class const continue debugger default delete do else enum export extends false finally for function if " +
    "import in instanceof new null return super switch this throw true try typeof var void while with yield let static " +
    "implements interface package private protected public await async of undefined NaN Infinity arguments eval")
    .split(" "),
);

export function safeName(name: string): string {
  return taken.has(name) || reservedWords.has(name) ? `${name}_` : name;
}

/** A comment line from spec text: one line, no comment terminators. */
function commentText(text: string): string {
  return text.replace(/\s+/g, " ").replace(/\*\//g, "* /").trim();
}

function numberLiteral(value: number): string {
  return Object.is(value, -0) ? "0" : String(value);
}

interface Env {
  /** Modality index variables in scope. */
  bound: string[];
  model: ModelIR;
  used: Set<string>;
  /** What ranges over modalities: the step context, or the forward pass inside `taskLoss`. */
  scope: "ctx" | "f";
  /** Inside `per_sample(...)`: the variable holding the sample index. */
  sample?: string;
}

function indexCode(ref: IndexRef, env: Env): string {
  switch (ref.kind) {
    case "var":
      return safeName(ref.name);
    case "fixed":
      return `${ref.modality} /* ${env.model.modalities[ref.modality]!.name} */`;
    case "other":
      return `${env.scope}.other(${indexCode(ref.of, env)})`;
  }
}

function groupCode(group: GroupRef, env: Env): string {
  if (group.weights) return `ctx.group.weights(${groupCode({ ...group, weights: false }, env)})`;
  switch (group.kind) {
    case "encoder":
      if (group.part === "all" || group.part === "last") return `ctx.group.${group.part === "last" ? "encoderLast" : "encoder"}(${indexCode(group.modality, env)})`;
      return `ctx.group.encoderLayers(${indexCode(group.modality, env)}, ${JSON.stringify(group.part)})`;
    case "head":
      return "ctx.group.head";
    case "fusion":
      return "ctx.group.fusion";
    case "auxHead":
      return `ctx.group.aux(${indexCode(group.modality, env)})`;
    case "learnable":
      return `ctx.group.learnable(${JSON.stringify(group.name)}${group.modality ? `, ${indexCode(group.modality, env)}` : ""})`;
  }
}

const tensorOps: Record<string, string> = {
  "+": "add", "-": "sub", "*": "mul", "/": "div", "^": "pow", "<": "less", "<=": "lessEqual", ">": "greater",
  ">=": "greaterEqual", "==": "equal", "!=": "notEqual", and: "and", or: "or", max: "maximum", min: "minimum",
};
const hostOps: Record<string, string> = { "+": "+", "-": "-", "*": "*", "/": "/", "^": "**", "<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "===", "!=": "!==", and: "&&", or: "||" };

function historyKey(env: Env): string {
  return env.bound.length === 0 ? `""` : `\`${env.bound.map((b) => `\${${safeName(b)}}`).join(",")}\``;
}

/** The TypeScript for a rule expression. Host values (step, epoch, params, literals) stay plain numbers. */
export function expression(e: RExpr, env: Env): string {
  const call = (fn: string, ...args: string[]) => emitCall(env, fn, ...args);
  const sub = (x: RExpr) => expression(x, env);
  switch (e.op) {
    case "number":
      return numberLiteral(e.value);
    case "param":
      return `p.${e.name}`;
    case "time":
      return `ctx.${e.which}`;
    case "value":
      return e.index ? `${safeName(e.name)}[${indexCode(e.index, env)}]!` : safeName(e.name);
    case "learnable":
      return `f.param(${groupCode({ kind: "learnable", name: e.name, ...(e.index ? { modality: e.index } : {}) }, env)})`;
    case "unary":
      if (e.fn === "neg" && e.kind === "grad") return call("scaleGradient", sub(e.arg), "-1");
      if (e.fn === "neg") return e.host ? `-(${sub(e.arg)})` : call("neg", sub(e.arg));
      if (e.fn === "not") return e.host ? `!(${sub(e.arg)})` : call("not", sub(e.arg));
      if (e.kind === "grad") return call("absGradient", sub(e.arg));
      return e.host ? `Math.${e.fn === "relu" ? "max(0, " + sub(e.arg) + ")" : `${e.fn}(${sub(e.arg)})`}` : call(e.fn, sub(e.arg));
    case "binary":
      if (e.kind === "grad") {
        if (e.fn === "+" || e.fn === "-") return call(e.fn === "+" ? "addGradients" : "subGradients", sub(e.left), sub(e.right));
        const [vector, factor] = e.left.kind === "grad" ? [e.left, e.right] : [e.right, e.left];
        return call("scaleGradient", sub(vector), e.fn === "/" ? call("div", "1", sub(factor)) : sub(factor));
      }
      if (e.host) {
        if (e.fn === "max" || e.fn === "min") return `Math.${e.fn}(${sub(e.left)}, ${sub(e.right)})`;
        return `(${sub(e.left)} ${hostOps[e.fn]} ${sub(e.right)})`;
      }
      return call(tensorOps[e.fn]!, sub(e.left), sub(e.right));
    case "if":
      return e.host ? `(${sub(e.condition)} ? ${sub(e.then)} : ${sub(e.otherwise)})` : call("choose", sub(e.condition), sub(e.then), sub(e.otherwise));
    case "reduceModalities": {
      const variable = safeName(e.variable);
      const range = e.exclude ? `${env.scope}.except(${indexCode(e.exclude, env)})` : `${env.scope}.modalities`;
      const body = expression(e.body, { ...env, bound: [...env.bound, e.variable] });
      return call(`${e.fn}Of`, `${range}.map((${variable}) => ${body})`);
    }
    case "reduceBatch":
      return call(e.fn === "sum" ? "sumBatch" : "meanBatch", sub(e.body));
    case "grad":
      if (e.loss) return `grad(${groupCode(e.group, env)}, (f) => ${sub(e.loss)})`;
      return env.sample ? `grad(${groupCode(e.group, env)}, undefined, ${env.sample})` : `grad(${groupCode(e.group, env)})`;
    case "classMean":
      return `ctx.history.classMean(${e.id}, ${historyKey(env)}, ${sub(e.features)}, ${sub(e.target)}, ${numberLiteral(e.momentum)}, ${env.model.target.classes})`;
    case "distance":
      return call("distance", sub(e.features), sub(e.prototypes));
    case "perSample":
      return `ctx.perSample((sample) => ${expression(e.arg, { ...env, sample: "sample" })})`;
    case "gradDot":
      return call("gradDot", sub(e.a), sub(e.b));
    case "gradStat": {
      const fn = { norm: "gradNorm", norm1: "gradNorm1", std: "gradStd", mean: "gradMean", meanAbs: "gradMeanAbs" }[e.stat];
      return call(fn, sub(e.arg));
    }
    case "gradCos":
      return call("gradCos", sub(e.a), sub(e.b));
    case "output":
      if (e.which === "out") return "f.out";
      if (e.which === "z") return `f.z[${indexCode(e.modality!, env)}]!`;
      return `f.${e.which}(${indexCode(e.modality!, env)})`;
    case "target":
      return "f.target";
    case "metric": {
      const classes = env.model.target.kind !== "real";
      const fn = {
        acc: "accuracy",
        prob: "trueClassProb",
        loss: classes ? "crossEntropy" : "meanSquaredError",
        cross_entropy: "crossEntropy",
        mae: "meanAbsoluteError",
        l1: "meanAbsoluteError",
        mse: "meanSquaredError",
        dice: "dice",
        dice_loss: "diceLoss",
      }[e.fn];
      return call(fn, sub(e.output), sub(e.target));
    }
    case "history":
      if (e.fn === "prev") return `ctx.history.read(${e.id}, ${historyKey(env)}, ${numberLiteral(e.init)})`;
      if (e.fn === "delta") return `ctx.history.delta(${e.id}, ${historyKey(env)}, ${sub(e.arg)}, ${numberLiteral(e.init)})`;
      return `ctx.history.ema(${e.id}, ${historyKey(env)}, ${sub(e.arg)}, ${numberLiteral(e.beta ?? 0)})`;
    case "detach":
      return e.host ? sub(e.arg) : call("detach", sub(e.arg));
  }
}

function valueStatement(v: RuleValue, env: Env): string {
  const comment = `// ${commentText(v.text)}  (line ${v.line})`;
  if (!v.index) return `${comment}\nconst ${safeName(v.name)} = ${expression(v.value, env)};`;
  const index = safeName(v.index);
  return `${comment}\nconst ${safeName(v.name)} = ctx.perModality((${index}) => ${expression(v.value, { ...env, bound: [v.index] })});`;
}

/** A call of a runtime function, which the module then imports. */
function emitCall(env: Env, fn: string, ...args: string[]): string {
  env.used.add(fn);
  return `${fn}(${args.join(", ")})`;
}

/** Rule values an objective needs, recomputed inside it so that they are differentiated. */
function dependencies(expressions: RExpr[], plan: StepPlan): RuleValue[] {
  const needed = new Set<string>();
  const visit = (name: string) => {
    if (needed.has(name)) return;
    needed.add(name);
    const v = plan.values.find((x) => x.name === name);
    if (v) reads(v.value).forEach(visit);
  };
  for (const e of expressions) reads(e).forEach(visit);
  return plan.values.filter((v) => needed.has(v.name));
}

function conditionCode(conditions: RExpr[], env: Env): { host: string[]; masks: string[] } {
  return {
    host: conditions.filter((c) => c.host).map((c) => expression(c, env)),
    masks: conditions.filter((c) => !c.host).map((c) => expression(c, env)),
  };
}

/** `factor` where every tensor condition holds, `otherwise` elsewhere. */
function masked(value: string, masks: string[], otherwise: string, env: Env): string {
  if (masks.length === 0) return value;
  const condition = masks.reduce((a, b) => emitCall(env, "and", a, b));
  return emitCall(env, "choose", condition, value, otherwise);
}

function objectiveBody(plan: StepPlan, expressions: RExpr[], env: Env, finalExpression: (env: Env) => string): string {
  const lines = dependencies(expressions, plan).map((v) => valueStatement(v, env));
  return [...lines, `return ${finalExpression(env)};`].join("\n");
}

function actionStatement(action: Exclude<ActionIR, { kind: "addLoss" }>, plan: StepPlan, env: Env): string {
  const inner: Env = { ...env, bound: [...env.bound, ...action.loop] };
  const { host, masks } = conditionCode(action.when, inner);
  let body: string;
  switch (action.kind) {
    case "scale":
      body = `grads.scale(${groupCode(action.group, inner)}, ${masked(expression(action.factor, inner), masks, "1", inner)});`;
      break;
    case "scaleLr":
      body = `grads.scaleLearningRate(${groupCode(action.group, inner)}, ${masked(expression(action.factor, inner), masks, "1", inner)});`;
      break;
    case "replace":
      body = `grads.replace(${groupCode(action.group, inner)}, ${[expression(action.value, inner), ...(masks.length ? [masks.reduce((a, b) => emitCall(inner, "and", a, b))] : [])].join(", ")});`;
      break;
    case "drop":
      body = `ctx.drop(${indexCode(action.modality, inner)}, ${expression(action.probability, inner)});`;
      break;
    case "noise":
      body = `grads.addNoise(${groupCode(action.group, inner)}, ${masked(expression(action.mean, inner), masks, "0", inner)}, ${masked(expression(action.std, inner), masks, "0", inner)});`;
      break;
    case "minimize": {
      const objective = objectiveBody(plan, [action.value, ...action.when], inner, (e) => masked(expression(action.value, e), masks, "0", e));
      const optimizer = JSON.stringify({ kind: action.optimizer.kind, options: action.optimizer.options });
      const secondOrder = [action.value, ...action.when].some((e) => readsTaskGradient(e, plan.values));
      body = `ctx.minimize(${groupCode(action.group, inner)}, ${optimizer}, (f, grad) => {\n${objective}\n}${secondOrder ? "" : ", { readsTaskGradient: false }"});`;
      break;
    }
  }
  for (const variable of [...action.loop].reverse()) body = `for (const ${safeName(variable)} of ctx.modalities) {\n${body}\n}`;
  if (host.length > 0) body = `if (${host.join(" && ")}) {\n${body}\n}`;
  return `// ${commentText(action.text)}  (line ${action.line})\n${body}`;
}

function specLiteral(model: ModelIR, sourceName: string): string {
  const component = (c: { kind: string; options: Record<string, unknown> }) => ({ kind: c.kind, options: c.options });
  const spec = {
    name: model.name,
    source: sourceName,
    data: component(model.data),
    modalities: model.modalities.map((m) => ({ name: m.name, shape: m.shape, ...(m.source ? { source: m.source } : {}) })),
    target: { name: model.target.name, kind: model.target.kind, classes: model.target.classes, ...(model.target.shape ? { shape: model.target.shape } : {}), ...(model.target.source ? { source: model.target.source } : {}) },
    encoders: model.encoders.map(component),
    fusion: component(model.fusion),
    ...(model.fuse ? { fusionParts: model.fuse.parts.map(component) } : {}),
    head: component(model.head),
    ...(model.auxHead ? { auxHead: component(model.auxHead) } : {}),
    learnables: model.learnables.map((l) => ({ name: l.name, perModality: l.perModality, init: l.init })),
    optimizer: component(model.optimizer),
    schedule: component(model.schedule),
    train: model.train,
  };
  const literal = JSON.stringify(spec, null, 2);
  // The fusion expression is code, not data: the spec refers to the generated `fuse`.
  return model.fuse ? `${literal.slice(0, -2)},\n  fuse,\n}` : literal;
}

/** The TypeScript of a fusion expression over `inputs` (see runtime `FusionInputs`). */
function fusionCode(e: FExpr, env: Env): string {
  const sub = (x: FExpr) => fusionCode(x, env);
  const index = (ref: IndexRef): string =>
    ref.kind === "var" ? safeName(ref.name) : ref.kind === "fixed" ? `${ref.modality} /* ${env.model.modalities[ref.modality]!.name} */` : `inputs.other(${index(ref.of)})`;
  switch (e.op) {
    case "features":
      return `inputs.z[${index(e.modality)}]!`;
    case "part":
      return `inputs.part(${e.index}) /* ${env.model.fuse!.parts[e.index]!.kind} */`;
    case "number":
      return numberLiteral(e.value);
    case "learnable":
      return `inputs.learnable(${JSON.stringify(e.name)}${e.index ? `, ${index(e.index)}` : ""})`;
    case "unary":
      return emitCall(env, e.fn, sub(e.arg));
    case "binary":
      return emitCall(env, tensorOps[e.fn]!, sub(e.left), sub(e.right));
    case "reduce":
      return emitCall(env, `${e.fn}Of`, `inputs.modalities.map((${safeName(e.variable)}) => ${sub(e.body)})`);
  }
}

/** One in-memory project for every call: creating a project costs more than printing a small trainer. */
const project = new Project({ useInMemoryFileSystem: true });

/** Phase 5: IR + step plan → the trainer module's TypeScript (unformatted). */
export function generate(model: ModelIR, plan: StepPlan, sourceName: string): string {
  const env: Env = { bound: [], model, used: new Set(), scope: "ctx" };
  const statements = (lines: string[]): WriterFunction => (w: CodeBlockWriter) => {
    for (const line of lines) w.writeLine(line);
  };

  const taskLoss = expression(model.loss.value, { ...env, scope: "f" });
  const rule = model.rule;
  const values = plan.values.map((v) => valueStatement(v, env));
  const prevWrites = plan.prevWrites.map((w) => {
    const inner: Env = { ...env, bound: w.bound };
    let body = `ctx.history.write(${w.id}, ${historyKey(inner)}, ${expression(w.arg, inner)});`;
    for (const variable of [...w.bound].reverse()) body = `for (const ${safeName(variable)} of ctx.modalities) {\n${body}\n}`;
    return body;
  });
  const actions = plan.actions.map((a) => actionStatement(a, plan, env));
  const drops = plan.drops.map((a) => actionStatement(a, plan, env));
  let backward = "const { loss, grads, raw: grad, forward: f } = ctx.backward(taskLoss);";
  if (plan.addedLosses.length > 0) {
    const expressions = plan.addedLosses.flatMap((a) => [a.value, ...a.when]);
    const body = objectiveBody(plan, expressions, env, (e) =>
      plan.addedLosses
        .map((a) => {
          const { host, masks } = conditionCode(a.when, e);
          const value = masked(expression(a.value, e), masks, "0", e);
          return host.length > 0 ? `(${host.join(" && ")} ? ${value} : 0)` : value;
        })
        .reduce((a, b) => emitCall(e, "add", a, b)),
    );
    const lines = plan.addedLosses.map((a) => `// ${commentText(a.text)}  (line ${a.line})`).join("\n");
    backward = `${lines}\nconst { loss, grads, raw: grad, forward: f } = ctx.backward(taskLoss, (f, grad) => {\n${body}\n}${plan.secondOrder ? "" : ", { readsTaskGradient: false }"});`;
  }
  // Gradients, head outputs and prototypes are intermediate values: the step log keeps numbers.
  const numeric = plan.values.filter((v) => !["grad", "logits", "prototypes"].includes(v.value.kind));
  const logged = numeric.map((v) => (safeName(v.name) === v.name ? v.name : `${JSON.stringify(v.name)}: ${safeName(v.name)}`));

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
    leadingTrivia: `\n/** The model (spec lines ${model.modalities[0]?.line ?? 1}-${model.loss.line}): architecture, data, optimiser, training settings. */\n`,
  });
  module.push({
    kind: StructureKind.VariableStatement,
    isExported: true,
    declarationKind: VariableDeclarationKind.Const,
    declarations: [{ name: "params", initializer: `{ ${rule.params.map((x) => `${x.name}: ${numberLiteral(x.value)}`).join(", ")} }` }],
    leadingTrivia: "/** The spec's `param` values; `mmb train --set name=value` overrides them. */\n",
  });
  module.push({ kind: StructureKind.TypeAlias, name: "Params", type: "Record<keyof typeof params, number>", leadingTrivia: "\n" });
  module.push({
    kind: StructureKind.Function,
    name: "taskLoss",
    parameters: [{ name: "f", type: "Forward" }],
    returnType: "Tensor",
    statements: [`return ${taskLoss};`],
    leadingTrivia: `// ${commentText(model.loss.text)}  (line ${model.loss.line})\n`,
  });
  const body: string[] = [];
  if (drops.length) body.push("// Modality drops, drawn before the forward pass.", ...drops, "");
  body.push(
    `// Forward pass, task loss and backward pass${plan.secondOrder ? " (second order: the added loss reads gradients)" : plan.addedLosses.length ? " (with the added loss)" : ""}.`,
    backward,
  );
  if (values.length) body.push("", "// Rule values, in dependency order, from this step's raw gradients.", ...values);
  if (actions.length) body.push("", "// Actions, in spec order.", ...actions);
  body.push("", "// Optimiser step on the (modulated) gradients.", "ctx.update(grads);");
  if (prevWrites.length) body.push("", "// History: values that `prev(...)` reads on the next step.", ...prevWrites);
  body.push(`return { loss, values: { ${logged.join(", ")} }, raw: grad };`);
  module.push({
    kind: StructureKind.Function,
    isExported: true,
    name: "trainStep",
    parameters: [
      { name: "ctx", type: "StepContext" },
      { name: "p", type: "Params" },
    ],
    returnType: "StepResult",
    statements: statements(body),
    leadingTrivia: "/** One training step, phase by phase. */\n",
  });
  const valueLines = Object.fromEntries(numeric.map((v) => [v.name, v.line]));
  module.push({
    kind: StructureKind.VariableStatement,
    isExported: true,
    declarationKind: VariableDeclarationKind.Const,
    declarations: [
      {
        name: "trainer",
        type: "TrainerDefinition",
        initializer: `{ spec, params, trainedSeparately: ${JSON.stringify(plan.trainedSeparately)}, valueLines: ${JSON.stringify(valueLines)}, trainStep }`,
      },
    ],
  });
  module.push({ kind: StructureKind.ExportAssignment, isExportEquals: false, expression: "trainer", leadingTrivia: "\n" });
  module.unshift({
    kind: StructureKind.ImportDeclaration,
    moduleSpecifier: "mmb/runtime",
    namedImports: [
      ...[...env.used].sort(),
      ...["Forward", ...(model.fuse ? ["FusionInputs"] : []), "ModelSpec", "StepContext", "StepResult", "Tensor", "TrainerDefinition"].map((name) => ({ name, isTypeOnly: true })),
    ],
  });
  const header = [
    `// Generated by mmb ${generatorVersion} from ${commentText(sourceName)}. Edit the spec, not this file.`,
    "// Rule values are computed from this step's raw gradients; actions apply in spec order.",
  ];
  const file = project.createSourceFile("trainer.ts", { statements: module }, { overwrite: true });
  return `${header.join("\n")}\n${file.getFullText()}`;
}
