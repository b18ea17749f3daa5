/**
 * `mmb fmt`: a spec in one canonical layout, printed from its AST and its comments, so that the
 * layout never changes what the spec says (the printed text parses to the same AST) and
 * formatting twice changes nothing. The layout:
 *
 * - one declaration or statement per line, never wrapped; a block (`balance`, `every epoch`,
 *   `stage NAME`, `when COND`) opens on its header line, its body indented two spaces, and `}`
 *   on a line of its own, an empty block's too;
 * - one space around infix operators, `->`, `~` and `=`; `, ` between arguments, list items and
 *   indices; `name: value` options; none inside brackets; parentheses only where the operators'
 *   binding (cst-to-ast.ts) needs them, and around an `if` that is an operator's operand;
 *   numbers and strings as they are written;
 * - one blank line where the source had one or more between two lines of a block, none at its
 *   start or end; the file ends with one newline (and has `\n` line ends);
 * - a run of consecutive lines of one kind (no blank or comment line between) is aligned as a
 *   table: the `=` of `param`s, of rule definitions, of `set`s, of `encoder`s, of `learnable`s,
 *   of `head[m]`s; the name, the `:` and the `from` of `modality` and `target` declarations
 *   (`target   y      : class(6)`);
 * - every comment keeps its text (less trailing whitespace) and its order. One on a line of its
 *   own stays so, indented as the line after it. One at the end of a line stays at the end of
 *   that item's printed line, one space after it: after a block's header if it followed the
 *   `{`, after the `}` if it followed that. Comments inside an item that prints on one line
 *   follow it: the first at the end of its line, the others on lines of their own below it.
 */
import type { Diagnostic } from "../diagnostics/index.js";
import type { Comment, Decl, Expr, IndexedName, Stmt } from "./ast.js";
import { infixPower, prefixPower } from "./cst-to-ast.js";
import { parse } from "./index.js";

/** The spec in the canonical layout; a spec with syntax errors is refused with them (one that only fails its checks is formatted). */
export function formatSpec(text: string): { text: string } | { diagnostics: Diagnostic[] } {
  const { program, diagnostics, comments } = parse(text);
  if (diagnostics.length > 0) return { diagnostics };
  const lines: string[] = [];
  render(new Layout(text).elements(program.decls, comments, 0), "", lines);
  return { text: lines.length > 0 ? `${lines.join("\n")}\n` : "" };
}

/** The kinds of line whose runs are aligned. */
type AlignKind = "typed" | "encoder" | "head" | "learnable" | "param" | "define" | "set";

/** An item's line: its cells joined by single spaces; in an aligned run, every cell but a line's last is padded to the run's widest. */
interface Line {
  cells: string[];
  align?: AlignKind;
}

/** One line of a block as printed, with what comes with it: its comments, and a block's body. */
type Element =
  | { type: "comment"; text: string; blankBefore: boolean }
  | { type: "item"; line: Line; comment?: string; blankBefore: boolean; block?: { body: Element[]; closingComment?: string } };

type Item = Decl | Stmt;

/** A block item: its header line, where its header's last part ends (its `{` follows), and its body. */
interface BlockShape {
  header: string;
  headerEnd: number;
  body: Item[];
}

/** No infix operator follows the expression being printed (every operator's binding power is above it). */
const nothingFollows = 0;

class Layout {
  constructor(private readonly source: string) {}

  /**
   * A block's items with the comments among them (in source order), each comment placed by
   * where it stands; `previousEnd` is where the block's text starts, after its `{`.
   */
  elements(items: Item[], comments: Comment[], previousEnd: number): Element[] {
    const out: Element[] = [];
    let next = 0;
    const ownLine = (comment: Comment) => {
      out.push({ type: "comment", text: commentText(comment), blankBefore: this.lineBreaks(previousEnd, comment.span.start) > 1 });
      previousEnd = comment.span.end;
    };
    for (const item of items) {
      while (next < comments.length && comments[next]!.span.start < item.span.start) ownLine(comments[next++]!);
      const inside: Comment[] = [];
      while (next < comments.length && comments[next]!.span.start < item.span.end) inside.push(comments[next++]!);
      const following = comments[next];
      const trailing = following && this.lineBreaks(item.span.end, following.span.start) === 0 ? comments[next++] : undefined;
      out.push(...this.item(item, inside, trailing, this.lineBreaks(previousEnd, item.span.start) > 1));
      previousEnd = (trailing ?? item).span.end;
    }
    while (next < comments.length) ownLine(comments[next++]!);
    return out;
  }

  private item(item: Item, inside: Comment[], trailing: Comment | undefined, blankBefore: boolean): Element[] {
    const shape = this.shape(item);
    if ("line" in shape) {
      const [first, ...rest] = trailing ? [...inside, trailing] : inside;
      return [{ type: "item", line: shape.line, ...withComment(first), blankBefore }, ...rest.map(movedComment)];
    }
    const open = this.openingBrace(shape.headerEnd);
    const header = inside.filter((c) => c.span.start < open);
    const body = inside.filter((c) => c.span.start > open);
    // A comment after the `{` on its line, before the body's first item, is the header line's.
    const bodyStart = shape.body[0]?.span.start ?? item.span.end;
    const onBraceLine = body[0] && body[0].span.start < bodyStart && this.lineBreaks(open, body[0].span.start) === 0 ? body.shift() : undefined;
    const [first, ...rest] = onBraceLine ? [...header, onBraceLine] : header;
    const elements = [...rest.map(movedComment), ...this.elements(shape.body, body, onBraceLine?.span.end ?? open + 1)];
    return [{ type: "item", line: { cells: [shape.header] }, ...withComment(first), blankBefore, block: { body: elements, ...(trailing ? { closingComment: commentText(trailing) } : {}) } }];
  }

  /** How an item prints: one line, or a block's header and body. */
  private shape(item: Item): { line: Line } | BlockShape {
    const e = (expression: Expr) => this.expression(expression);
    const line = (cells: string[], align?: AlignKind) => ({ line: { cells, ...(align ? { align } : {}) } });
    switch (item.kind) {
      case "BalanceBlock":
        return { header: "balance {", headerEnd: item.span.start + "balance".length, body: item.body };
      case "EpochBlock":
        return { header: `every ${item.unit.name} {`, headerEnd: item.unit.span.end, body: item.body };
      case "StageDecl":
        return { header: `stage ${item.name.name} {`, headerEnd: item.name.span.end, body: item.body };
      case "When":
        return { header: `when ${e(item.condition)} {`, headerEnd: item.condition.span.end, body: item.body };
      case "ModelDecl":
        return line([`model ${item.name.name}`]);
      case "DataDecl":
        return line([`data ${e(item.value)}`]);
      case "ModalityDecl":
      case "TargetDecl": {
        const keyword = item.kind === "ModalityDecl" ? "modality" : "target";
        return line([keyword, item.name.name, `: ${e(item.type)}`, ...(item.source ? [`from ${e(item.source)}`] : [])], "typed");
      }
      case "EncoderDecl":
        // The AST holds a target (`encoder audio`) or an index (`encoder[m]`).
        return line([item.target ? `encoder ${item.target.name}` : `encoder[${item.index!.name}]`, `= ${e(item.value)}`], "encoder");
      case "HeadDecl":
        return line([`head[${item.index.name}]`, `= ${e(item.value)}`], "head");
      case "FusionDecl":
        return line([`fusion ${e(item.value)} -> ${e(item.head)}`]);
      case "LossDecl":
        return line([`loss${item.index ? `[${item.index.name}]` : ""} ${e(item.value)}`]);
      case "OptimizerDecl":
        return line([`optimizer ${e(item.value)}`]);
      case "PredictDecl":
        return line([`predict ${e(item.value)}`]);
      case "ScheduleDecl":
        return line([`schedule ${e(item.value)}`]);
      case "TrainDecl":
        return line([`train ${item.settings.map((s) => `${s.key.name} ${this.operand(s.value)}`).join(" ")}`]);
      case "LearnableDecl":
        return line([`learnable ${indexedName(item.target)}`, `= ${e(item.value)}`], "learnable");
      case "FreezeDecl":
        return line([`freeze ${item.groups.map(e).join(", ")}`]);
      case "Param":
        return line([`param ${item.name.name}`, `= ${e(item.value)}`], "param");
      case "Define":
        return line([indexedName(item.target), `= ${e(item.value)}`], "define");
      case "Scale":
        return line([`scale ${e(item.target)} by ${e(item.factor)}`]);
      case "Noise":
        return line([`noise ${e(item.target)} ~ ${e(item.distribution)}`]);
      case "Replace":
        return line([`replace ${e(item.target)} by ${e(item.value)}`]);
      case "Drop":
        return line([`drop ${e(item.target)} with ${e(item.probability)}${item.rescaled ? " rescaled" : ""}`]);
      case "Set":
        return line([`set ${e(item.target)}`, `= ${e(item.value)}`], "set");
      case "AddLoss":
        return line([`add loss ${e(item.value)}`]);
      case "Minimize":
        return line([`minimize ${e(item.value)} wrt ${e(item.group)} using ${e(item.optimizer)}`]);
    }
  }

  /**
   * An expression where the parser folds from binding power `minimum` on and, after it, an
   * infix operator of left power `follower` comes (`nothingFollows`: none). It is parenthesised
   * when printed bare it would not come back as itself: a binary operator the fold would not
   * take here, or whose right operand would take the following operator; a prefix operator
   * whose operand would take it. An `if` is, anywhere but at an expression's top.
   */
  private expression(e: Expr, minimum = 0, follower = nothingFollows): string {
    switch (e.kind) {
      case "Number":
        return e.text;
      case "String":
        return this.source.slice(e.span.start, e.span.end);
      case "Name":
        return e.name;
      case "List":
        return `[${e.items.map((item) => this.expression(item)).join(", ")}]`;
      case "Index":
        return `${this.suffixed(e.base)}[${e.indices.map((index) => this.expression(index)).join(", ")}]`;
      case "Member":
        return `${this.suffixed(e.object, true)}.${e.property.name}`;
      case "Call":
        return `${this.suffixed(e.callee)}(${e.args.map((a) => `${a.name ? `${a.name.name}: ` : ""}${this.expression(a.value)}`).join(", ")})`;
      case "Unary": {
        const power = prefixPower[e.op];
        const parenthesised = follower >= power;
        const text = prefixed(e.op, this.expression(e.operand, power, parenthesised ? nothingFollows : follower));
        return parenthesised ? `(${text})` : text;
      }
      case "Binary": {
        const [left, right] = infixPower[e.op];
        const parenthesised = left < minimum || follower >= right;
        const outer = parenthesised ? { minimum: 0, follower: nothingFollows } : { minimum, follower };
        const text = `${this.expression(e.left, outer.minimum, left)} ${e.op} ${this.expression(e.right, right, outer.follower)}`;
        return parenthesised ? `(${text})` : text;
      }
      case "If": {
        // As an operator's operand (any place but an expression's top) it is parenthesised even
        // last (`a + (if c then x else y)`): its `else` would take the rest of the line.
        const operand = minimum > 0 || follower !== nothingFollows;
        const text = `if ${this.expression(e.condition)} then ${this.expression(e.then)} else ${this.expression(e.otherwise)}`;
        return operand ? `(${text})` : text;
      }
      case "Missing":
        throw new Error("a spec with syntax errors has no layout");
    }
  }

  /**
   * What a call, an index or a member access applies to: an operator or an `if` in parentheses
   * (`(a + b)[m]`), and a whole number before `.` too, which would read as a decimal point (`(1).x`).
   */
  private suffixed(e: Expr, member = false): string {
    const text = this.expression(e);
    const parenthesised = e.kind === "Unary" || e.kind === "Binary" || e.kind === "If" || (member && e.kind === "Number" && /^\d+$/.test(e.text));
    return parenthesised ? `(${text})` : text;
  }

  /** A `train` setting's value, an operand: prefix operators on a value; an infix operator, and an `if` under a prefix, in parentheses. */
  private operand(e: Expr): string {
    switch (e.kind) {
      case "Unary":
        return prefixed(e.op, e.operand.kind === "If" ? `(${this.expression(e.operand)})` : this.operand(e.operand));
      case "Binary":
        return `(${this.expression(e)})`;
      default:
        return this.expression(e);
    }
  }

  /** The first `{` after `from`, past the whitespace and comments between a block's header and its body. */
  private openingBrace(from: number): number {
    const gap = /(?:\s|(?:#|\/\/)[^\n\r]*)*/y;
    gap.lastIndex = from;
    gap.exec(this.source);
    return gap.lastIndex;
  }

  /** How many line ends lie between two offsets. */
  private lineBreaks(from: number, to: number): number {
    return this.source.slice(from, to).match(/\r\n|\r|\n/g)?.length ?? 0;
  }
}

/** `-x`, `not x`; `- -x` rather than `--x`, which reads as a decrement. */
function prefixed(op: "-" | "not", operand: string): string {
  return op === "not" ? `not ${operand}` : operand.startsWith("-") ? `- ${operand}` : `-${operand}`;
}

function indexedName(target: IndexedName): string {
  return target.index ? `${target.name.name}[${target.index.name}]` : target.name.name;
}

function commentText(comment: Comment): string {
  return comment.text.trimEnd();
}

function withComment(comment: Comment | undefined): { comment?: string } {
  return comment ? { comment: commentText(comment) } : {};
}

/** A comment from inside an item, on a line of its own right after it. */
function movedComment(comment: Comment): Element {
  return { type: "comment", text: commentText(comment), blankBefore: false };
}

function render(elements: Element[], indent: string, out: string[]): void {
  const widths = runWidths(elements);
  elements.forEach((element, i) => {
    if (element.blankBefore && i > 0) out.push("");
    if (element.type === "comment") {
      out.push(indent + element.text);
      return;
    }
    const cells = element.line.cells.map((cell, c, all) => (c < all.length - 1 ? cell.padEnd(widths[i]?.[c] ?? 0) : cell));
    out.push(indent + withTrailing(cells.join(" "), element.comment));
    if (element.block) {
      render(element.block.body, `${indent}  `, out);
      out.push(indent + withTrailing("}", element.block.closingComment));
    }
  });
}

function withTrailing(line: string, comment: string | undefined): string {
  return comment === undefined ? line : `${line} ${comment}`;
}

/** For each element of an aligned run (consecutive lines of one kind, no blank line between), the widths of the run's columns. */
function runWidths(elements: Element[]): (number[] | undefined)[] {
  const widths: (number[] | undefined)[] = [];
  for (let start = 0; start < elements.length; ) {
    const first = elements[start]!;
    const kind = first.type === "item" ? first.line.align : undefined;
    let end = start + 1;
    const continues = (e: Element) => e.type === "item" && e.line.align === kind && !e.blankBefore;
    if (kind) while (end < elements.length && continues(elements[end]!)) end++;
    const columns: number[] = [];
    for (const e of elements.slice(start, end)) {
      if (e.type === "item" && kind) e.line.cells.forEach((cell, c) => (columns[c] = Math.max(columns[c] ?? 0, cell.length)));
    }
    widths.push(...elements.slice(start, end).map(() => (kind ? columns : undefined)));
    start = end;
  }
  return widths;
}
