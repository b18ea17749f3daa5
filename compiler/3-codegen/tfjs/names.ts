import { runtimeNames } from "../../builtins/index.js";

/**
 * Names the generated module defines or imports: its own structure, and every runtime function a
 * lowering of the builtin catalogue may call. Spec names that collide get a `_` suffix.
 */
const taken = new Set([
  "ctx", "p", "f", "grad", "grads", "loss", "raw", "spec", "params", "trainer", "trainStep", "taskLoss", "predict", "turns", "Params",
  "Tensor", "Forward", "StepContext", "StepResult", "TrainerDefinition", "ModelSpec", "GradientOf",
  "fuse", "inputs", "FusionInputs", "sample", "tensor",
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

/**
 * A spec name as the key of an object literal. `__proto__: v` would set the object's prototype
 * instead of a property (a param or rule value of that name would vanish), so it is computed.
 */
export function propertyKey(name: string): string {
  return name === "__proto__" ? `[${JSON.stringify(name)}]` : /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(name) ? name : JSON.stringify(name);
}

/** Reading a spec name off an object: `.name`, or `["__proto__"]`, the one name a literal's key (propertyKey) computes. */
export function memberAccess(name: string): string {
  const key = propertyKey(name);
  return key === name ? `.${name}` : `[${JSON.stringify(name)}]`;
}

/** An object literal from spec names and the code of their values. */
export function objectLiteral(entries: [name: string, code: string][]): string {
  return `{ ${entries.map(([name, code]) => (propertyKey(name) === name && code === name ? name : `${propertyKey(name)}: ${code}`)).join(", ")} }`;
}
