/** Half-open byte range [start, end) in the spec source. */
export interface Span {
  start: number;
  end: number;
}

export interface Position {
  line: number;
  column: number;
}

/** A spec's text with its file name; maps byte offsets to 1-based line and column. */
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

  /** A line's text without its indentation and trailing spaces, as a span: for what the IR knows only by line. */
  lineSpan(line: number): Span {
    const text = this.lineText(line);
    const start = (this.lineStarts[line - 1] ?? this.text.length) + (text.length - text.trimStart().length);
    return { start, end: start + text.trim().length };
  }

  /** The source text under a span. */
  slice(span: Span): string {
    return this.text.slice(span.start, span.end);
  }
}
