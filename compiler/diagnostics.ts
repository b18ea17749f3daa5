import type { Span } from "../grammar/ast.js";

/**
 * The catalogue of diagnostic codes. Codes are stable: a code is never reused for another
 * meaning. `docs/diagnostics.md` is generated from this table and the fixtures in
 * `test/fixtures/` (one per code).
 */
export const catalogue = {
  MMB001: "unexpected character",
  MMB002: "syntax error",
  MMB003: "duplicate declaration",
  MMB004: "missing declaration",
  MMB005: "unknown name",
  MMB006: "unknown function",
  MMB007: "wrong arguments",
  MMB008: "wrong kind of value",
  MMB009: "modality index not bound",
  MMB010: "modality without an encoder",
  MMB011: "unknown component",
  MMB012: "unknown or invalid option",
  MMB013: "invalid modality or target type",
  MMB014: "`other(m)` needs exactly two modalities",
  MMB015: "`contrib[m]` needs a head linear in the features",
  MMB016: "gradients of different shapes",
  MMB017: "cyclic definition",
  MMB018: "invalid action target",
  MMB019: "parameter value is not a number",
  MMB020: "name defined twice",
  MMB021: "condition is not a boolean",
  MMB022: "group minimised by two objectives",
  MMB023: "per-sample value where a scalar is needed",
  MMB024: "encoder does not fit the modality's shape",
  MMB025: "parameter group does not exist",
  MMB026: "unknown parameter on the command line",
  MMB027: "drop decided by a value of the step",
  MMB028: "`from` needs a file",
  MMB029: "data files and `from` clauses disagree",
} as const;

export type DiagnosticCode = keyof typeof catalogue;

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

export function error(
  code: DiagnosticCode,
  message: string,
  span: Span,
  extra: { label?: string; related?: Label[]; help?: string } = {},
): Diagnostic {
  return {
    code,
    severity: "error",
    message,
    span,
    related: extra.related ?? [],
    ...(extra.label !== undefined ? { label: extra.label } : {}),
    ...(extra.help !== undefined ? { help: extra.help } : {}),
  };
}

export interface Position {
  line: number;
  column: number;
}

/** Maps byte offsets to 1-based line and column. */
export class SourceText {
  private readonly lineStarts: number[] = [0];

  constructor(
    readonly text: string,
    readonly fileName: string,
  ) {
    for (let i = 0; i < text.length; i++) if (text[i] === "\n") this.lineStarts.push(i + 1);
  }

  position(offset: number): Position {
    const clamped = Math.max(0, Math.min(offset, this.text.length));
    let low = 0;
    let high = this.lineStarts.length - 1;
    while (low < high) {
      const mid = (low + high + 1) >> 1;
      if (this.lineStarts[mid]! <= clamped) low = mid;
      else high = mid - 1;
    }
    return { line: low + 1, column: clamped - this.lineStarts[low]! + 1 };
  }

  lineText(line: number): string {
    const start = this.lineStarts[line - 1] ?? this.text.length;
    const next = this.lineStarts[line];
    return this.text.slice(start, next === undefined ? this.text.length : next - 1).replace(/\r$/, "");
  }
}

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

/** Levenshtein distance, for "did you mean" help. */
export function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}

export function nearest(name: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const distance = editDistance(name.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined;
}
