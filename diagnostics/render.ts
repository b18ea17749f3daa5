import type { DiagnosticCode } from "./codes.js";
import type { Diagnostic } from "./diagnostic.js";
import type { Position, SourceText } from "./source.js";

/** rustc-style rendering: header, location, code frame with carets, help line. */
export function renderDiagnostic(diagnostic: Diagnostic, source: SourceText): string {
  const start = source.position(diagnostic.span.start);
  const frames = [{ span: diagnostic.span, message: diagnostic.label ?? "", primary: true }, ...diagnostic.related.map((r) => ({ ...r, primary: false }))]
    .map((f) => ({ ...f, start: source.position(f.span.start), end: source.position(Math.max(f.span.start, f.span.end - 1)) }))
    .sort((a, b) => a.start.line - b.start.line || Number(b.primary) - Number(a.primary));
  const gutter = String(Math.max(...frames.map((f) => f.start.line))).length;
  const pad = " ".repeat(gutter);
  const lines = [
    `${diagnostic.severity}[${diagnostic.code}]: ${diagnostic.message}`,
    `${pad}--> ${source.fileName}:${start.line}:${start.column}`,
    `${pad} |`,
  ];
  let previousLine = -1;
  for (const frame of frames) {
    const text = source.lineText(frame.start.line);
    if (frame.start.line !== previousLine) {
      if (previousLine !== -1 && frame.start.line > previousLine + 1) lines.push(`${pad} |`);
      lines.push(`${String(frame.start.line).padStart(gutter)} | ${text}`);
    }
    previousLine = frame.start.line;
    const lastColumn = frame.end.line === frame.start.line ? frame.end.column : text.length;
    const width = Math.max(1, lastColumn - frame.start.column + 1);
    const marker = (frame.primary ? "^" : "-").repeat(width);
    lines.push(`${pad} | ${" ".repeat(frame.start.column - 1)}${marker}${frame.message ? " " + frame.message : ""}`.trimEnd());
  }
  lines.push(`${pad} |`);
  if (diagnostic.help) lines.push(`${pad} = help: ${diagnostic.help}`);
  return lines.join("\n");
}

export interface DiagnosticJson {
  code: DiagnosticCode;
  severity: string;
  message: string;
  file: string;
  start: Position;
  end: Position;
  label?: string;
  labels: { message: string; start: Position; end: Position }[];
  help?: string;
}

export function diagnosticToJson(diagnostic: Diagnostic, source: SourceText): DiagnosticJson {
  return {
    code: diagnostic.code,
    severity: diagnostic.severity,
    message: diagnostic.message,
    file: source.fileName,
    start: source.position(diagnostic.span.start),
    end: source.position(diagnostic.span.end),
    ...(diagnostic.label !== undefined ? { label: diagnostic.label } : {}),
    labels: diagnostic.related.map((r) => ({ message: r.message, start: source.position(r.span.start), end: source.position(r.span.end) })),
    ...(diagnostic.help !== undefined ? { help: diagnostic.help } : {}),
  };
}

/** Every diagnostic of one spec, rendered, separated by blank lines. */
export function renderAll(diagnostics: Diagnostic[], source: SourceText): string {
  return diagnostics.map((d) => renderDiagnostic(d, source)).join("\n\n");
}

export function diagnosticsJson(diagnostics: Diagnostic[], source: SourceText): string {
  return JSON.stringify(diagnostics.map((d) => diagnosticToJson(d, source)), null, 2);
}
