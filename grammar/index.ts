import type { ILexingResult, IToken } from "chevrotain";
import { error, type Diagnostic } from "../diagnostics/index.js";
import type { Comment, Program } from "./ast.js";
import { cstToAst } from "./cst-to-ast.js";
import { expressionDepthErrors, isStackOverflow, nestedTooDeeply, tokenNestingError } from "./limits.js";
import { parseCst } from "./parser.js";
import { mmbLexer } from "./tokens.js";

export type * from "./ast.js";

/** Phase 1: source text → AST, syntax diagnostics, and the comments (which the AST leaves out). Never throws. */
export function parse(source: string): { program: Program; diagnostics: Diagnostic[]; comments: Comment[] } {
  const lexed = mmbLexer.tokenize(source);
  const comments = (lexed.groups.comments ?? []).map((token) => ({ text: token.image, span: { start: token.startOffset, end: token.endOffset! + 1 } }));
  const unparsed = { decls: [], span: { start: 0, end: source.length } };
  // Nesting beyond the limits would overflow the parser's stack: reported before parsing.
  const tooDeep = tokenNestingError(lexed.tokens);
  if (tooDeep) return { program: unparsed, diagnostics: [tooDeep], comments };
  try {
    return { ...parseTokens(source, lexed), comments };
  } catch (e) {
    // The limits bound the documented shapes of nesting; a chain of thousands of `if ... else if` still overflows.
    if (!isStackOverflow(e)) throw e;
    return { program: unparsed, diagnostics: [nestedTooDeeply(source)], comments };
  }
}

function parseTokens(source: string, lexed: ILexingResult): { program: Program; diagnostics: Diagnostic[] } {
  const { cst, lexErrors, parseErrors } = parseCst(lexed);
  const diagnostics: Diagnostic[] = lexErrors.map((e) => {
    const character = source.slice(e.offset, e.offset + e.length);
    return error("MMB001", `unexpected character \`${printable(character)}\``, { start: e.offset, end: e.offset + Math.max(1, e.length) }, {
      help: "names use letters, digits and `_`; strings use double quotes; comments start with `#` or `//`",
    });
  });
  for (const e of parseErrors) diagnostics.push(syntaxError(e.token, e.previousToken, e.message, source.length));
  const program = cstToAst(cst, source.length);
  return { program, diagnostics: [...diagnostics, ...expressionDepthErrors(program)] };
}

function printable(text: string): string {
  return JSON.stringify(text).slice(1, -1).replace(/`/g, "\\`");
}

function syntaxError(token: IToken, previous: IToken | undefined, chevrotainMessage: string, length: number): Diagnostic {
  const atEnd = token.tokenType.name === "EOF" || isNaN(token.startOffset);
  const expected = describeExpected(chevrotainMessage);
  if (atEnd) {
    const anchor = previous && !isNaN(previous.startOffset) ? previous.endOffset! + 1 : length;
    return error("MMB002", `unexpected end of file${expected ? `, expected ${expected}` : ""}`, { start: Math.max(0, anchor - 1), end: anchor }, {
      label: "the spec ends here",
      help: "close every `{`, `(` and `[` and finish the last declaration",
    });
  }
  return error("MMB002", `unexpected \`${printable(token.image)}\`${expected ? `, expected ${expected}` : ""}`, { start: token.startOffset, end: token.endOffset! + 1 }, {
    label: "not expected here",
    help: "see the language reference in README.md for the form of each declaration and statement",
  });
}

/** Chevrotain lists expected tokens as `--> Name <--` or `[Name]`; we name at most a few. */
function describeExpected(message: string): string | undefined {
  const names = new Set<string>();
  for (const match of message.matchAll(/-->\s*([^<]+?)\s*<--|\[([A-Za-z]+)\]/g)) names.add((match[1] ?? match[2])!.trim());
  const spelled = [...names].map(tokenDisplay).filter((n): n is string => n !== undefined);
  if (spelled.length === 0 || spelled.length > 4) return undefined;
  return spelled.join(" or ");
}

const display: Record<string, string> = {
  Identifier: "a name", NumberLiteral: "a number", StringLiteral: "a string", Arrow: "`->`", Equals: "`=`",
  Colon: "`:`", Comma: "`,`", LParen: "`(`", RParen: "`)`", LBracket: "`[`", RBracket: "`]`", LBrace: "`{`",
  RBrace: "`}`", Tilde: "`~`", Dot: "`.`",
};

function tokenDisplay(name: string): string | undefined {
  if (display[name]) return display[name];
  if (/^[A-Z][a-z]+$/.test(name)) return `\`${name.toLowerCase()}\``;
  return undefined;
}
