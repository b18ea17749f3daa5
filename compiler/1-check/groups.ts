import type { Expr } from "../../grammar/ast.js";
import { error } from "../../diagnostics/index.js";
import { encoderLayerKinds, encoderLayerKindsOf, type LayerKind } from "../../runtime/parameter-groups.js";
import type { GroupRef, IndexRef, RExpr } from "../ir.js";
import { children } from "../walks.js";
import type { CheckContext, Env } from "./context.js";
import { index } from "./names.js";

const layerKinds = new Set<LayerKind>([...Object.values(encoderLayerKinds).flat(), "norm"]);

/** A parameter group: `encoder[m]`, `encoder[m].last`, `encoder[m].conv`, `fusion`, `head`, `head[m]`, a learnable, `G.weight`. */
export function group(cx: CheckContext, e: Expr, env: Env): GroupRef | undefined {
  const help = "groups: `encoder[m]`, `encoder[m].last`, `fusion`, `head`, `head[m]`, or a learnable";
  if (e.kind === "Name") {
    if (e.name === "head") return { kind: "head" };
    if (e.name === "fusion") {
      const kinds = cx.fuse ? cx.fuse.parts.map((p) => p.kind) : [cx.fusion?.kind ?? ""];
      if (!kinds.some((k) => ["gated", "film", "attention"].includes(k))) {
        return cx.report(error("MMB025", `\`${cx.text(e.span)}\` has no parameters: this fusion learns none`, e.span, { help: "only `gated`, `film` and `attention` fusion learn parameters" }));
      }
      return { kind: "fusion" };
    }
    if (cx.learnables.has(e.name)) return { kind: "learnable", name: e.name };
    if (e.name === "encoder") return cx.report(error("MMB009", "`encoder` has one group per modality: say which", e.span, { help: "write `encoder[m]`" }));
    return cx.report(error("MMB025", `\`${e.name}\` is not a parameter group`, e.span, { help }));
  }
  if (e.kind === "Member") {
    const base = group(cx, e.object, env);
    if (!base) return undefined;
    const property = e.property.name;
    if (property === "weight" && !base.weights) return { ...base, weights: true };
    if (base.kind === "encoder" && base.part === "all" && !base.weights && layerKinds.has(property as LayerKind)) {
      const part = property as LayerKind;
      const lacking = encodersLacking(cx, base.modality, part);
      if (lacking) {
        return cx.report(error("MMB025", `the ${lacking.kind} encoder of \`${lacking.modality}\` has no ${part} layers`, e.property.span, {
          help: `layers of each encoder: ${Object.entries(encoderLayerKinds).map(([k, v]) => `${k}: ${v.join(", ")}`).join("; ")}; and norm with \`norm: "batch"\``,
        }));
      }
      return { ...base, part };
    }
    return cx.report(error("MMB025", `no parameter group \`${cx.text(e.span)}\``, e.property.span, {
      help: "`encoder[m].last` is an encoder's last linear layer; `.conv`, `.dense`, `.rnn`, `.attention`, `.norm` its layers of a kind; `.weight` any group's weights without biases",
    }));
  }
  if (e.kind === "Index" && e.base.kind === "Name" && e.indices.length === 1) {
    const name = e.base.name;
    if (name === "encoder" || name === "head" || cx.learnables.get(name)?.perModality) {
      const modality = index(cx, e.indices[0]!, env);
      if (!modality) return undefined;
      if (name === "encoder") return { kind: "encoder", modality, part: "all" };
      if (name === "head") {
        if (!cx.auxHead) return cx.report(error("MMB025", "`head[m]` needs auxiliary heads", e.span, { help: "declare them: `head[m] = linear(<classes>)`" }));
        return { kind: "auxHead", modality };
      }
      return { kind: "learnable", name, modality };
    }
  }
  if (e.kind === "Missing") return undefined;
  return cx.report(error("MMB025", `\`${cx.text(e.span)}\` is not a parameter group`, e.span, { help }));
}

/** The first encoder (of those `ref` ranges over) that has no layers of kind `part`. */
function encodersLacking(cx: CheckContext, ref: IndexRef, part: LayerKind): { kind: string; modality: string } | undefined {
  const indices = ref.kind === "fixed" ? [ref.modality] : cx.encoders.map((_, i) => i);
  for (const i of indices) {
    const encoder = cx.encoders[i];
    if (encoder && !encoderLayerKindsOf(encoder).includes(part)) return { kind: encoder.kind, modality: cx.modalities[i]!.name };
  }
  return undefined;
}

/**
 * The shapes of a group's parameters where the checker can know them: `key` compares two groups,
 * `text` says it to the user. Undefined where they depend on what only the runtime builds.
 */
export function groupShape(cx: CheckContext, group: GroupRef): { key: string; text: string } | undefined {
  if (group.weights) {
    const whole = groupShape(cx, { ...group, weights: false });
    return whole && { key: `${whole.key} (weights)`, text: `${whole.text}, weights only` };
  }
  const modality = (ref: IndexRef): number | undefined => (ref.kind === "fixed" ? ref.modality : undefined);
  const classes = Number(cx.head?.options.out ?? 0);
  const matrix = (rows: unknown, columns: number, bias = true) => ({ key: `[${rows},${columns}]${bias ? "+b" : ""}`, text: `a ${rows}×${columns} weight matrix${bias ? ` and ${columns} biases` : ""}` });
  const fusedWidth = (): number | undefined => {
    if (cx.fuse) return cx.fuse.width;
    const outs = cx.encoders.map((e) => Number(e.options.out));
    if (["concat", "attention"].includes(cx.fusion?.kind ?? "")) return outs.reduce((a, b) => a + b, 0);
    return outs[0];
  };
  switch (group.kind) {
    case "head":
      if (cx.head?.kind === "cosine") return matrix(fusedWidth(), classes, false);
      return cx.head?.kind === "linear" ? matrix(fusedWidth(), classes) : undefined;
    case "auxHead": {
      if (cx.auxHead?.kind !== "linear" && cx.auxHead?.kind !== "cosine") return undefined;
      const bias = cx.auxHead.kind === "linear";
      const outs = new Set(cx.encoders.map((e) => Number(e.options.out)));
      const m = modality(group.modality);
      if (m !== undefined) return matrix(cx.encoders[m]?.options.out, classes, bias);
      return outs.size === 1 ? matrix([...outs][0], classes, bias) : undefined;
    }
    case "learnable":
      return { key: "[]", text: "one number" };
    case "encoder": {
      const m = modality(group.modality);
      const indices = m !== undefined ? [m] : cx.encoders.map((_, i) => i);
      const shapes = new Set(indices.map((i) => JSON.stringify([cx.encoders[i]?.kind, cx.encoders[i]?.options, group.part === "all" ? cx.modalities[i]?.shape : null])));
      if (shapes.size !== 1) return undefined;
      const i = indices[0]!;
      // An encoder whose declaration failed its check has no shape to compare (its error is reported).
      const encoder = cx.encoders[i];
      if (!encoder) return undefined;
      const options = Object.entries(encoder.options).map(([k, v]) => `${k}: ${Array.isArray(v) ? `[${v.join(", ")}]` : v}`).join(", ");
      const layers = group.part === "all" ? "" : group.part === "last" ? "the last layer of " : `the ${group.part} layers of `;
      return { key: [...shapes][0]!, text: `${layers}${encoder.kind}(${options})${group.part === "all" ? ` on float[${cx.modalities[i]!.shape.join(", ")}]` : ""}` };
    }
    case "fusion":
      return undefined;
  }
}

/** The groups of the `grad(...)` and `weights(...)` a gradient-shaped expression is built from, through definitions it reads. */
export function gradientGroups(cx: CheckContext, e: RExpr, renamed: Map<string, IndexRef>): GroupRef[] {
  const rename = (ref: IndexRef): IndexRef => (ref.kind === "var" ? (renamed.get(ref.name) ?? ref) : ref.kind === "other" ? { kind: "other", of: rename(ref.of) } : ref);
  if (e.op === "grad" || e.op === "parameters") return ["modality" in e.group && e.group.modality ? ({ ...e.group, modality: rename(e.group.modality) } as GroupRef) : e.group];
  if (e.op === "value") {
    const definition = cx.definitions.get(e.name);
    const index = definition?.stmt.target.index?.name;
    const inner = new Map(renamed);
    if (index && e.index) inner.set(index, rename(e.index));
    return definition?.checked ? gradientGroups(cx, definition.checked, inner) : [];
  }
  // Gradients combine by operators and elementwise functions: follow the operands that are gradients.
  return children(e).filter((c) => c.kind === "grad").flatMap((c) => gradientGroups(cx, c, renamed));
}
