import { torchRuntime } from "./runtime-source.js";

/** Python's keywords, and the builtins the generated code and its runtime call. */
const reserved = new Set(
  ("False None True and as assert async await break class continue def del elif else except finally for from global if import in is " +
    "lambda nonlocal not or pass raise return try while with yield match case _ " +
    "abs all any bool dict enumerate float int isinstance len list map max min object print range round set sorted str sum tuple type zip")
    .split(" "),
);

/** Names the generated module itself defines, or binds in its functions. */
const generated = ["ctx", "p", "f", "grad", "grads", "loss", "SPEC", "PARAMS", "TRAINER", "train_step", "task_loss", "added_loss", "predict", "fuse", "inputs", "sample", "tensor", "turns", "np", "torch", "nn", "F", "math", "json", "os", "sys"];

let taken: Set<string> | undefined;

/** Every module-level name of the embedded runtime (its functions, classes and constants). */
function runtimeNames(): Set<string> {
  if (taken) return taken;
  const { body } = torchRuntime();
  taken = new Set([...reserved, ...generated, ...[...body.matchAll(/^(?:def|class) ([A-Za-z_]\w*)|^([A-Za-z_]\w*)\s*(?::[^=]*)?=/gm)].map((match) => match[1] ?? match[2]!)]);
  return taken;
}

/** A spec name as a Python identifier: one that collides with a keyword or a runtime name gets a `_` suffix. */
export function pythonName(name: string): string {
  return runtimeNames().has(name) ? `${name}_` : name;
}

/** A Python string literal: JSON's escapes are Python's. */
export function pythonString(text: string): string {
  return JSON.stringify(text);
}

/** A number as Python writes it (JSON's `1e-8` is Python's too; no `-0`). */
export function pythonNumber(value: number): string {
  if (Object.is(value, -0)) return "0";
  if (!Number.isFinite(value)) return Number.isNaN(value) ? 'float("nan")' : value > 0 ? 'float("inf")' : '-float("inf")';
  return String(value);
}

/** A JSON-like value as a Python literal, one key per line when it does not fit `width`. */
export function pythonLiteral(value: unknown, indent = "", width = 100): string {
  if (value === null || value === undefined) return "None";
  if (typeof value === "boolean") return value ? "True" : "False";
  if (typeof value === "number") return pythonNumber(value);
  if (typeof value === "string") return pythonString(value);
  const inner = indent + "    ";
  if (Array.isArray(value)) {
    const flat = `[${value.map((v) => pythonLiteral(v, inner, Infinity)).join(", ")}]`;
    if (flat.length + indent.length <= width) return flat;
    return `[\n${value.map((v) => `${inner}${pythonLiteral(v, inner, width)},`).join("\n")}\n${indent}]`;
  }
  const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
  const flat = `{${entries.map(([k, v]) => `${pythonString(k)}: ${pythonLiteral(v, inner, Infinity)}`).join(", ")}}`;
  if (flat.length + indent.length <= width) return flat;
  return `{\n${entries.map(([k, v]) => `${inner}${pythonString(k)}: ${pythonLiteral(v, inner, width)},`).join("\n")}\n${indent}}`;
}

/** A `#` comment's text from spec text: one line. */
export function commentLine(text: string): string {
  return text.replace(/\s+/g, " ").trim();
}

/** Each line of `code` indented by one level (four spaces), blank lines left blank. */
export function indent(code: string, levels = 1): string {
  const pad = "    ".repeat(levels);
  return code
    .split("\n")
    .map((line) => (line.trim() === "" ? "" : pad + line))
    .join("\n");
}
