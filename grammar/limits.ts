import type { IToken } from "chevrotain";
import { error, type Diagnostic, type Span } from "../diagnostics/index.js";
import type { Expr, Program } from "./ast.js";

/**
 * How deep a spec may nest, so that every phase (a recursive-descent parser, a recursive checker
 * and code generator, prettier) stays far inside the JavaScript stack: brackets inside brackets,
 * prefix operators in a row, and levels of one expression's tree (a chain `a + b + ...` of n
 * terms is n levels). Beyond them the spec gets MMB032 instead of a crash.
 */
export const limits = { brackets: 64, prefixOperators: 64, expressionDepth: 256 } as const;

const help = (what: string) => `${what}; give parts of it names of their own (\`x = ...\`) and combine those`;

export const isStackOverflow = (e: unknown): boolean => e instanceof RangeError && /call stack/i.test(e.message);

/** What a phase that overflowed the stack reports, beyond the limits below. */
export function nestedTooDeeply(text: string): Diagnostic {
  return error("MMB032", "the spec nests too deeply to be compiled", { start: 0, end: Math.min(text.length, 1) }, {
    help: "give parts of the deepest expression names of their own (`x = ...`) and combine those",
  });
}

/** Nesting visible in the tokens, checked before parsing: brackets, and prefix operators in a row. */
export function tokenNestingError(tokens: IToken[]): Diagnostic | undefined {
  let depth = 0;
  let prefixRun = 0;
  for (const token of tokens) {
    const type = token.tokenType.name;
    const span: Span = { start: token.startOffset, end: token.endOffset! + 1 };
    if (type === "LParen" || type === "LBracket" || type === "LBrace") {
      if (++depth > limits.brackets) {
        return error("MMB032", `more than ${limits.brackets} brackets inside one another`, span, { label: `bracket ${depth}`, help: help(`at most ${limits.brackets} levels of brackets`) });
      }
    } else if (type === "RParen" || type === "RBracket" || type === "RBrace") depth = Math.max(0, depth - 1);
    const prefix = type === "Not" || type === "Minus";
    prefixRun = prefix ? prefixRun + 1 : 0;
    if (prefixRun > limits.prefixOperators) {
      return error("MMB032", `more than ${limits.prefixOperators} operators in a row`, span, { help: help(`at most ${limits.prefixOperators} prefix operators in a row`) });
    }
  }
  return undefined;
}

/** The expressions of a program whose tree is deeper than the limit, each reported once (the outermost). */
export function expressionDepthErrors(program: Program): Diagnostic[] {
  const errors: Diagnostic[] = [];
  const visit = (root: Expr) => {
    const depth = expressionDepth(root);
    if (depth > limits.expressionDepth) {
      errors.push(error("MMB032", `this expression is ${depth} levels deep, more than ${limits.expressionDepth}`, root.span, { help: help(`at most ${limits.expressionDepth} levels, a chain of n terms counting n`) }));
    }
  };
  forEachExpression(program, visit);
  return errors;
}

/** The depth of an expression tree, without recursion (the tree may be deeper than the stack). */
function expressionDepth(root: Expr): number {
  let deepest = 0;
  const stack: [Expr, number][] = [[root, 1]];
  while (stack.length) {
    const [e, depth] = stack.pop()!;
    deepest = Math.max(deepest, depth);
    for (const child of children(e)) stack.push([child, depth + 1]);
  }
  return deepest;
}

function children(e: Expr): Expr[] {
  switch (e.kind) {
    case "List":
      return e.items;
    case "Index":
      return [e.base, ...e.indices];
    case "Member":
      return [e.object];
    case "Call":
      return [e.callee, ...e.args.map((a) => a.value)];
    case "Unary":
      return [e.operand];
    case "Binary":
      return [e.left, e.right];
    case "If":
      return [e.condition, e.then, e.otherwise];
    default:
      return [];
  }
}

/** Every top-level expression of the program: declarations' values and statements' parts. */
function forEachExpression(program: Program, visit: (e: Expr) => void): void {
  const fromObject = (node: object) => {
    for (const value of Object.values(node)) {
      if (value && typeof value === "object" && "kind" in value && "span" in value && isExpr(value as { kind: string })) visit(value as Expr);
    }
  };
  const statements = (stmts: Extract<Program["decls"][number], { kind: "BalanceBlock" }>["body"]): void => {
    for (const stmt of stmts) {
      fromObject(stmt);
      if (stmt.kind === "When") statements(stmt.body);
    }
  };
  for (const decl of program.decls) {
    fromObject(decl);
    if (decl.kind === "TrainDecl") decl.settings.forEach((s) => visit(s.value));
    if (decl.kind === "BalanceBlock") statements(decl.body);
  }
}

const expressionKinds = new Set(["Number", "String", "Name", "List", "Index", "Member", "Call", "Unary", "Binary", "If", "Missing"]);
const isExpr = (node: { kind: string }) => expressionKinds.has(node.kind);
