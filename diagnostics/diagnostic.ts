import type { DiagnosticCode } from "./codes.js";
import type { Span } from "./source.js";

export interface Label {
  span: Span;
  message: string;
}

export interface Diagnostic {
  code: DiagnosticCode;
  severity: "error" | "warning";
  message: string;
  span: Span;
  /** Text under the caret of the primary span. */
  label?: string;
  /** Secondary spans that explain the error (`-----` in the frame). */
  related: Label[];
  help?: string;
}

export interface DiagnosticExtra {
  label?: string;
  related?: Label[];
  help?: string;
}

export function error(code: DiagnosticCode, message: string, span: Span, extra: DiagnosticExtra = {}): Diagnostic {
  return diagnostic("error", code, message, span, extra);
}

export function warning(code: DiagnosticCode, message: string, span: Span, extra: DiagnosticExtra = {}): Diagnostic {
  return diagnostic("warning", code, message, span, extra);
}

function diagnostic(severity: Diagnostic["severity"], code: DiagnosticCode, message: string, span: Span, extra: DiagnosticExtra): Diagnostic {
  return {
    code,
    severity,
    message,
    span,
    related: extra.related ?? [],
    ...(extra.label !== undefined ? { label: extra.label } : {}),
    ...(extra.help !== undefined ? { help: extra.help } : {}),
  };
}
