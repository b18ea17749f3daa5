import type { Decl } from "../../grammar/ast.js";
import { error, type Span } from "../../diagnostics/index.js";
import * as components from "../components.js";
import type { Component } from "../ir.js";
import { component } from "./component-options.js";
import type { CheckContext } from "./context.js";

/** `encoder NAME = E(...)` per modality, or `encoder[m] = E(...)` for all: one encoder each, fitting its shape. */
export function checkEncoders(cx: CheckContext, decls: Decl[]): void {
  let shared: { component: Component | undefined; span: Span } | undefined;
  const specific = new Map<string, { component: Component | undefined; span: Span }>();
  for (const decl of decls) {
    if (decl.kind !== "EncoderDecl") continue;
    const checked = component(cx, decl.value, components.encoders, "encoder");
    if (decl.index) {
      if (shared) cx.report(error("MMB003", "`encoder[...]` is declared twice", decl.span, { related: [{ span: shared.span, message: "first declared here" }], help: "keep one shared encoder declaration" }));
      else shared = { component: checked, span: decl.span };
    } else if (decl.target) {
      const name = decl.target.name;
      if (!cx.modalitySpans.has(name)) {
        cx.unknownName(name, decl.target.span, [...cx.modalitySpans.keys()], "modality");
      } else if (specific.has(name)) {
        cx.report(error("MMB003", `the encoder of \`${name}\` is declared twice`, decl.target.span, { related: [{ span: specific.get(name)!.span, message: "first declared here" }], help: "keep one encoder per modality" }));
      } else specific.set(name, { component: checked, span: decl.value.span });
    }
  }
  for (const modality of cx.modalities) {
    const chosen = specific.get(modality.name) ?? shared;
    if (!chosen) {
      cx.report(error("MMB010", `modality \`${modality.name}\` has no encoder`, cx.modalitySpans.get(modality.name)!, {
        help: `add \`encoder ${modality.name} = mlp(hidden: [128])\`, or \`encoder[m] = ...\` for every modality`,
      }));
      continue;
    }
    const encoder = chosen.component;
    if (!encoder) continue;
    if (encoder.kind === "transformer" && Number(encoder.options.dim) % Number(encoder.options.heads) !== 0) {
      cx.report(error("MMB012", `\`transformer\` needs \`heads\` to divide \`dim\`, found ${encoder.options.heads} heads for ${encoder.options.dim}`, chosen.span, { help: "e.g. `transformer(dim: 32, heads: 4)`" }));
    }
    const rank = components.encoders[encoder.kind]?.inputRank;
    if (rank && !rank.includes(modality.shape.length)) {
      cx.report(error("MMB024", `\`${encoder.kind}\` needs ${rank.join(" or ")}-dimensional samples, but \`${modality.name}\` is ${modality.shape.length}-dimensional`, chosen.span, {
        related: [{ span: cx.modalitySpans.get(modality.name)!, message: `float[${modality.shape.join(", ")}]` }],
        help: "use `mlp(...)`, which flattens any shape, or an encoder made for this shape",
      }));
    }
    cx.encoders.push(encoder);
  }
}

/** `head[m] = linear(N)`: the auxiliary heads, declared once, with as many outputs as the target. */
export function checkAuxHeads(cx: CheckContext, decls: Decl[], classes: number | undefined): void {
  for (const decl of decls) {
    if (decl.kind !== "HeadDecl") continue;
    if (cx.auxHead) {
      cx.report(error("MMB003", "`head[...]` is declared twice", decl.span, { help: "declare the auxiliary heads once, with `head[m] = ...`" }));
      continue;
    }
    const head = component(cx, decl.value, components.auxHeads, "head");
    if (head && classes !== undefined && head.options.out !== classes) {
      cx.report(error("MMB012", `an auxiliary head must have as many outputs as the target (${classes})`, decl.value.span, { help: `use \`linear(${classes})\`` }));
    }
    if (head) cx.auxHead = head;
  }
}
