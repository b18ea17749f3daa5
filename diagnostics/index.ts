/**
 * Diagnostics, below both the grammar and the compiler: source positions, the catalogue of
 * codes, the diagnostic record, its rustc-style rendering and "did you mean" suggestions.
 */
export { codes, type DiagnosticCode } from "./codes.js";
export { error, warning, type Diagnostic, type DiagnosticExtra, type Label } from "./diagnostic.js";
export { diagnosticToJson, diagnosticsJson, renderAll, renderDiagnostic, type DiagnosticJson } from "./render.js";
export { SourceText, type Position, type Span } from "./source.js";
export { editDistance, nearest } from "./suggest.js";
