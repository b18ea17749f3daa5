import type { Decl, Expr } from "../../grammar/ast.js";
import { error } from "../../diagnostics/index.js";
import { reservedNames } from "../builtins/index.js";
import type { ModelIR } from "../ir.js";
import type { CheckContext } from "./context.js";

/** `modality NAME : float[...] [from "file"]`, in declaration order. */
export function collectModalities(cx: CheckContext, decls: Decl[]): void {
  for (const decl of decls) {
    if (decl.kind !== "ModalityDecl") continue;
    const name = decl.name.name;
    const previous = cx.modalitySpans.get(name);
    if (previous) {
      cx.report(error("MMB003", `modality \`${name}\` is declared twice`, decl.name.span, {
        label: "second declaration",
        related: [{ span: previous, message: "first declared here" }],
        help: "give each modality its own name",
      }));
      continue;
    }
    if (reservedNames.has(name)) {
      cx.report(error("MMB020", `\`${name}\` is a built-in name and cannot name a modality`, decl.name.span, { help: `rename it, e.g. \`${name}_data\`` }));
      continue;
    }
    cx.modalitySpans.set(name, decl.name.span);
    const shape = tensorType(cx, decl.type);
    // An invalid `from` is reported once: "" stands for "declared", so MMB029 does not follow.
    const source = decl.source && (fileSource(cx, decl.source) ?? "");
    cx.modalities.push({ name, shape: shape ?? [1], line: cx.line(decl.span), ...(source !== undefined ? { source } : {}) });
  }
}

function tensorType(cx: CheckContext, type: Expr): number[] | undefined {
  const help = "write the per-sample shape, e.g. `float[64]` or `float[3, 32, 32]`";
  if (type.kind !== "Index" || type.base.kind !== "Name" || type.base.name !== "float") {
    return cx.report(error("MMB013", "a modality's type must be `float[...]`", type.span, { help }));
  }
  const dims: number[] = [];
  for (const dim of type.indices) {
    if (dim.kind !== "Number" || !Number.isInteger(dim.value) || dim.value < 1) {
      return cx.report(error("MMB013", "each dimension must be a positive whole number", dim.span, { help }));
    }
    dims.push(dim.value);
  }
  return dims;
}

/** `from "file[:field]"`: a path relative to the spec, and the field of a table or archive. */
function fileSource(cx: CheckContext, expr: Expr): string | undefined {
  if (expr.kind === "String" && expr.value.trim()) return expr.value;
  if (expr.kind === "Missing") return undefined;
  return cx.report(error("MMB028", "`from` takes a file, as a string", expr.span, {
    help: 'e.g. `from "data/audio.npy"`, `from "data/feats.npz:audio"` or `from "data/meta.csv:label"`',
  }));
}

/** `target NAME : class(N) | class(["name", ...]) | real | mask(N, H, W) [from "file"]`. */
export function checkTarget(cx: CheckContext, decl: Extract<Decl, { kind: "TargetDecl" }> | undefined): ModelIR["target"] | undefined {
  if (!decl) {
    return cx.report(error("MMB004", "the spec declares no target", { start: 0, end: 0 }, { help: "declare what the model predicts, e.g. `target y : class(6)`" }));
  }
  cx.targetName = decl.name.name;
  const source = decl.source && (fileSource(cx, decl.source) ?? "");
  const from = source !== undefined ? { source } : {};
  const type = decl.type;
  const typeName = type.kind === "Name" ? type.name : type.kind === "Call" && type.callee.kind === "Name" ? type.callee.name : "";
  cx.targetKind = typeName === "real" ? "real" : typeName === "mask" && type.kind === "Call" ? "mask" : "class";
  const help = "use `class(N)` for N classes (or `class([\"a\", \"b\", ...])` by name), `real` for regression or `mask(N, H, W)` for segmentation";
  const line = cx.line(decl.span);
  if (type.kind === "Name" && type.name === "real") return { name: cx.targetName, kind: "real", classes: 1, line, ...from };
  if (type.kind === "Call" && typeName === "class") {
    const n = type.args[0]?.value;
    if (type.args.length === 1 && n?.kind === "Number" && Number.isInteger(n.value) && n.value >= 2) {
      return { name: cx.targetName, kind: "class", classes: n.value, line, ...from };
    }
    // `class(["anger", "disgust", ...])`: the classes by name, in the order of their indices.
    if (type.args.length === 1 && n?.kind === "List") {
      const names = n.items.map((item) => (item.kind === "String" && item.value.trim() ? item.value : undefined));
      const bad = n.items.find((_, i) => names[i] === undefined);
      if (bad) return cx.report(error("MMB013", "a class name is a non-empty string", bad.span, { help: 'e.g. `class(["anger", "disgust", "fear"])`' }));
      const twice = n.items.find((_, i) => names.indexOf(names[i]) !== i);
      if (twice) return cx.report(error("MMB013", `the class ${twice.kind === "String" ? `"${twice.value}"` : ""} is named twice`, twice.span, { help: "give each class one name" }));
      if (names.length < 2) return cx.report(error("MMB013", "`class([...])` needs at least 2 class names", type.span, { help }));
      return { name: cx.targetName, kind: "class", classes: names.length, names: names as string[], line, ...from };
    }
    return cx.report(error("MMB013", "`class(N)` needs a whole number of classes, at least 2, or a list of their names", type.span, { help }));
  }
  if (type.kind === "Call" && typeName === "mask") {
    const dims = type.args.map((a) => a.value);
    if (dims.length === 3 && dims.every((d) => d.kind === "Number" && Number.isInteger(d.value) && d.value >= 1) && (dims[0] as { value: number }).value >= 2) {
      const [classes, height, width] = dims.map((d) => (d as { value: number }).value);
      return { name: cx.targetName, kind: "mask", classes: classes!, shape: [height!, width!], line, ...from };
    }
    return cx.report(error("MMB013", "`mask(N, H, W)` needs whole numbers: at least 2 classes, a height and a width", type.span, { help }));
  }
  return cx.report(error("MMB013", "unknown target type", type.span, { help }));
}
