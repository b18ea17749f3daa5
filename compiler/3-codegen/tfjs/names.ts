import { runtimeNames } from "../../builtins/index.js";

/**
 * Names the generated module defines or imports: its own structure, and every runtime function a
 * lowering of the builtin catalogue may call. Spec names that collide get a `_` suffix.
 */
const taken = new Set([
  "ctx", "p", "f", "grad", "grads", "loss", "raw", "spec", "params", "trainer", "trainStep", "taskLoss", "Params",
  "Tensor", "Forward", "StepContext", "StepResult", "TrainerDefinition", "ModelSpec", "GradientOf",
  "fuse", "inputs", "FusionInputs", "sample",
  ...runtimeNames,
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
export function commentText(text: string): string {
  return text.replace(/\s+/g, " ").replace(/\*\//g, "* /").trim();
}

export function numberLiteral(value: number): string {
  return Object.is(value, -0) ? "0" : String(value);
}
