import type { Expr } from "../../grammar/ast.js";
import { error, nearest, type Span } from "../../diagnostics/index.js";
import { values as builtinValues } from "../builtins/index.js";
import type { IndexRef, RExpr, ValueKind } from "../ir.js";
import { make, type CheckContext, type Definition, type Env } from "./context.js";
import { checkDefinition } from "./definitions.js";
import { invisible } from "./epoch.js";
import { earlierStage } from "./stages.js";
import { fusionIsLinear } from "./fusion.js";

/** Built-in values indexed by a modality (`z[m]`, `contrib[m]`, ...). */
const perModalityValues = new Set(builtinValues.filter((v) => v.perModality).map((v) => v.name));

/** A plain name in a rule expression: time, the fused output, the target, a param, a rule value or a learnable. */
export function name(cx: CheckContext, name: string, span: Span, env: Env): RExpr | undefined {
  if (name === "step" || name === "epoch") return make({ op: "time", which: name }, "scalar", [], { host: true });
  if (name === "progress") {
    if (env.epoch) return cx.report(error("MMB033", "an epoch rule runs before the epoch's first step: it has no `progress`", span, { help: "read `progress` in a step rule; an epoch rule counts `epoch`" }));
    return make({ op: "time", which: "progress" }, "scalar", [], { host: true });
  }
  if (name === "out") return invisible(cx, env, span, "outputs") ? undefined : make({ op: "output", which: "out" }, "logits", [], { host: false });
  if (name === cx.targetName) return invisible(cx, env, span, "outputs") ? undefined : make({ op: "target" }, "label", [], { host: false });
  if (cx.params.has(name)) return make({ op: "param", name }, "scalar", [], { host: true });
  const definition = cx.definitions.get(name);
  if (definition) {
    if (definition.perModality) {
      return cx.report(error("MMB009", `\`${name}\` has one value per modality: say which`, span, { help: `index it, e.g. \`${name}[m]\` inside a per-modality definition, or \`mean(k, ${name}[k])\`` }));
    }
    if (!env.underHistory) env.reads?.set(name, span);
    return valueRef(cx, definition, undefined, env, span);
  }
  const learnable = cx.learnables.get(name);
  if (learnable) {
    if (learnable.perModality) return cx.report(error("MMB009", `learnable \`${name}\` has one value per modality: say which`, span, { help: `write \`${name}[m]\`` }));
    return make({ op: "learnable", name }, "scalar", [], { host: false });
  }
  if (env.bound.has(name) || env.loops?.has(name)) {
    return cx.report(error("MMB008", `\`${name}\` is a modality index, not a number`, span, { help: `use it inside brackets, e.g. \`x[${name}]\`` }));
  }
  if (perModalityValues.has(name)) {
    return cx.report(error("MMB009", `\`${name}\` has one value per modality: say which`, span, { help: `write \`${name}[m]\`` }));
  }
  if (name === "encoder" || name === "fusion") {
    return cx.report(error("MMB008", `\`${name}\` names a parameter group, which is not a number`, span, { help: `use it inside \`grad(...)\`` }));
  }
  const known = [...cx.params.keys(), ...cx.definitions.keys(), ...cx.learnables.keys(), "step", "epoch", "progress", "out", cx.targetName];
  return cx.unknownName(name, span, known, "name");
}

/** A read of a rule value; its kind is known once its definition is checked. An epoch rule reads only epoch values. */
function valueRef(cx: CheckContext, definition: Definition, index: IndexRef | undefined, env: Env, span: Span): RExpr | undefined {
  // An epoch rule reads a step value only as it was at the last step before the epoch: `prev(x, init)`.
  if (env.epoch && definition.scope === "step" && !env.underHistory) {
    return cx.report(error("MMB033", `\`${definition.name}\` is a step value, which an epoch rule cannot read`, span, {
      help: `read its value at the last step before the epoch, \`prev(${definition.name}, 0)\`, or measure what it needs over a split (\`over(valid, ...)\`)`,
    }));
  }
  const epoch = definition.scope === "epoch" ? { epoch: true } : {};
  // Under `prev` a definition may be one still being checked (a cycle that `prev` breaks): its kind
  // is taken as a number, what `prev` reads, and confirmed once every definition is checked.
  if (env.underHistory && definition.state !== "done") {
    cx.lastStepReads.push({ definition, span: definition.stmt.target.name.span });
    return make({ op: "value", name: definition.name, ...(index ? { index } : {}), ...epoch }, "scalar", [], { host: false, secondOrder: false });
  }
  checkDefinition(cx, definition);
  const value = definition.checked;
  // A definition with an error (reported there), or one of a cycle (reported once all are checked):
  // its readers have no kind to check, and a guess would report them too.
  if (!value) return undefined;
  const kind: ValueKind = value.kind;
  const host = value.host;
  // An epoch value is a constant of the step: its gradients' second order stays in the epoch rule.
  const secondOrder = definition.scope === "step" && !env.underHistory && (value.secondOrder ?? false);
  return make({ op: "value", name: definition.name, ...(index ? { index } : {}), ...epoch }, kind, [], { host, secondOrder });
}

/** `x[i]`: a per-modality rule value, learnable, feature or head output at modality index i. */
export function indexed(cx: CheckContext, e: Extract<Expr, { kind: "Index" }>, env: Env): RExpr | undefined {
  const member = e.base;
  if (member.kind === "Member" && member.object.kind === "Name" && cx.stages.includes(member.object.name) && e.indices.length === 1) {
    return stageOutput(cx, member.object.name, member.object.span, member.property.name, e.indices[0]!, env, e.span);
  }
  if (e.base.kind !== "Name") return cx.report(error("MMB008", "only names can be indexed by a modality", e.span, { help: "write e.g. `s[m]`" }));
  const base = e.base.name;
  if (e.indices.length !== 1) return cx.report(error("MMB007", `\`${base}\` takes one modality index`, e.span, { help: `write \`${base}[m]\`` }));
  const definition = cx.definitions.get(base);
  const learnable = cx.learnables.get(base);
  const perModality = definition?.perModality ?? learnable?.perModality ?? perModalityValues.has(base);
  if (!perModality) {
    if (definition || learnable || cx.params.has(base)) {
      return cx.report(error("MMB008", `\`${base}\` is one value, not one per modality`, e.span, { help: `drop the index: \`${base}\`` }));
    }
    if (base === "encoder") return cx.report(error("MMB008", "`encoder[...]` names a parameter group, which is not a number", e.span, { help: `use it inside \`grad(...)\`, e.g. \`norm(grad(${cx.text(e.span)}))\`` }));
    return name(cx, base, e.base.span, env);
  }
  const modality = index(cx, e.indices[0]!, env);
  if (!modality) return undefined;
  if (definition) {
    if (!env.underHistory) env.reads?.set(base, e.base.span);
    return valueRef(cx, definition, modality, env, e.base.span);
  }
  if (!learnable && invisible(cx, env, e.span, "outputs")) return undefined;
  if (learnable) return make({ op: "learnable", name: base, index: modality }, "scalar", [], { host: false });
  if (base === "z") return make({ op: "output", which: "z", modality }, "features", [], { host: false });
  if (base === "head") {
    if (!cx.auxHead) return cx.report(error("MMB025", "`head[m]` needs auxiliary heads", e.span, { help: "declare them: `head[m] = linear(<classes>)`" }));
    return make({ op: "output", which: "aux", modality }, "logits", [], { host: false });
  }
  if (base === "alone" || base === "without") return make({ op: "output", which: base, modality }, "logits", [], { host: false });
  const linearHead = cx.head?.kind === "linear" && fusionIsLinear(cx);
  // A cosine head's logits split into one sum of cosines per modality only over `concat`.
  const cosineHead = cx.head?.kind === "cosine" && !cx.fuse && cx.fusion?.kind === "concat";
  if (!(linearHead || cosineHead) || cx.targetKind === "mask") {
    return cx.report(error("MMB015", "`contrib[m]` needs a head that is linear in the features", e.span, {
      help: "use a fusion linear in the features (`concat`, `sum`, or an expression of them with numbers and learnables, e.g. `concat(j, w[j] * z[j])`) and a `linear(N)` head, or score a modality with an auxiliary head `head[m]`",
    }));
  }
  return make({ op: "output", which: "contrib", modality }, "logits", [], { host: false });
}

/**
 * `NAME.out`, `NAME.z[m]`, `NAME.head[m]`, ...: the outputs of the model with the weights stage NAME
 * ended with, on this step's inputs, constants (a teacher's). The stage must have run before.
 */
export function stageOutput(cx: CheckContext, stage: string, stageSpan: Span, property: string, indexExpr: Expr | undefined, env: Env, span: Span): RExpr | undefined {
  const known = earlierStage(cx, stage, stageSpan);
  if (known === undefined || known === "") return undefined;
  if (invisible(cx, env, span, "outputs")) return undefined;
  const indexedOutputs: Record<string, "z" | "aux" | "contrib" | "alone" | "without"> = { z: "z", head: "aux", contrib: "contrib", alone: "alone", without: "without" };
  if (property === "out" && !indexExpr) return make({ op: "output", which: "out", stage }, "logits", [], { host: false });
  const which = Object.hasOwn(indexedOutputs, property) ? indexedOutputs[property] : undefined;
  if (!which || !indexExpr) {
    return cx.report(error("MMB008", `\`${stage}.${property}${indexExpr ? "[...]" : ""}\` is not an output of stage \`${stage}\``, span, {
      help: `a stage's weights give \`${stage}.out\`, \`${stage}.z[m]\`, \`${stage}.head[m]\`, \`${stage}.contrib[m]\`, \`${stage}.alone[m]\`, \`${stage}.without[m]\``,
    }));
  }
  if (which === "aux" && !cx.auxHead) return cx.report(error("MMB025", "`head[m]` needs auxiliary heads", span, { help: "declare them: `head[m] = linear(<classes>)`" }));
  const modality = index(cx, indexExpr, env);
  return modality && make({ op: "output", which, modality, stage }, which === "z" ? "features" : "logits", [], { host: false });
}

/** The free index of an action: `scale grad(encoder[m]) by k[m]` runs for each modality m. */
export const actionIndex = "m";

/**
 * A modality index: a bound index variable, a modality's name, `other(m)`, or in an action the
 * free index `m`. Any other name is a mistake, never a new index: an unknown name in brackets
 * would otherwise range over every modality.
 */
export function index(cx: CheckContext, e: Expr, env: Env): IndexRef | undefined {
  if (e.kind === "Name") {
    if (env.bound.has(e.name) || env.loops?.has(e.name)) return { kind: "var", name: e.name };
    const fixed = cx.modalities.findIndex((m) => m.name === e.name);
    if (fixed >= 0) return { kind: "fixed", modality: fixed };
    if (env.loops && e.name === actionIndex && !cx.definitions.has(e.name) && !cx.params.has(e.name)) {
      env.loops.add(e.name);
      return { kind: "var", name: e.name };
    }
    const modalities = cx.modalities.map((m) => m.name);
    // A short name was meant as an index; a longer one as a modality, perhaps abbreviated (`vis`).
    const guess = e.name.length <= 2 ? undefined : (modalities.find((m) => m.startsWith(e.name)) ?? nearest(e.name, modalities));
    const indices = [...env.bound, ...(env.loops ? [actionIndex] : [])];
    return cx.report(error(guess ? "MMB005" : "MMB009", guess ? `unknown modality \`${e.name}\`` : `\`${e.name}\` is not a modality index here`, e.span, {
      label: "not a modality or an index in scope",
      help: guess
        ? `did you mean \`${guess}\`?`
        : `name a modality (${modalities.join(", ")})${indices.length ? `, use ${indices.map((i) => `\`${i}\``).join(" or ")}` : ""}, or bind an index on the left (\`x[${e.name}] = ...\`) or in a reduction (\`sum(${e.name}, ...)\`)${env.loops ? "; in an action, `m` stands for each modality" : ""}`,
    }));
  }
  if (e.kind === "Call" && e.callee.kind === "Name" && e.callee.name === "other" && e.args.length === 1) {
    const of = index(cx, e.args[0]!.value, env);
    if (!of) return undefined;
    if (cx.modalities.length !== 2) {
      const third = cx.modalities[2];
      return cx.report(error("MMB014", `\`other(m)\` needs exactly two modalities, but this model has ${cx.modalities.length}`, e.span, {
        label: cx.modalities.length > 2 ? `ambiguous with ${cx.modalities.map((m) => m.name).join(", ")}` : "there is no other modality",
        related: third ? [{ span: cx.modalitySpans.get(third.name)!, message: "third modality declared here" }] : [],
        help: `compare against the others' mean instead: \`mean(k != ${cx.text(e.args[0]!.value.span)}, ...)\``,
      }));
    }
    return { kind: "other", of };
  }
  return cx.report(error("MMB009", "a modality index must be an index variable, a modality name or `other(m)`", e.span, { help: "e.g. `s[m]`, `s[audio]`, `s[other(m)]`" }));
}
