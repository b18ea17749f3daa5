import type { CstElement, CstNode, IToken } from "chevrotain";
import type { Arg, BinaryOp, Decl, Expr, Ident, IndexedName, Program, Span, Stmt } from "./ast.js";

/**
 * Turns Chevrotain's CST into the typed AST. The parser recovers from errors, so any child may
 * be absent: absent expressions become `Missing` nodes (their error is already reported) and
 * absent declarations or statements are dropped.
 */
export function cstToAst(root: CstNode, sourceLength: number): Program {
  const decls: Decl[] = [];
  for (const node of nodes(root, "declaration")) {
    const decl = toDecl(firstChildNode(node));
    if (decl) decls.push(decl);
  }
  return { decls, span: { start: 0, end: sourceLength } };
}

function isToken(element: CstElement): element is IToken {
  return (element as IToken).image !== undefined;
}

const none: never[] = [];

/** A label holds either nodes or tokens, never both: the grammar gives each label one kind. */
function nodes(node: CstNode, label: string): CstNode[] {
  return (node.children[label] as CstNode[] | undefined) ?? none;
}

/** Tokens under a label, without those the parser inserted while recovering (they have no place in the source). */
function tokens(node: CstNode, label: string): IToken[] {
  const found = (node.children[label] as IToken[] | undefined) ?? none;
  return found.some((token) => isNaN(token.startOffset)) ? found.filter((token) => !isNaN(token.startOffset)) : found;
}

function node1(node: CstNode, label: string): CstNode | undefined {
  return node.children[label]?.[0] as CstNode | undefined;
}

function token1(node: CstNode, label: string): IToken | undefined {
  return tokens(node, label)[0];
}

function firstChildNode(node: CstNode): CstNode | undefined {
  for (const children of Object.values(node.children)) {
    for (const child of children) if (!isToken(child)) return child;
  }
  return undefined;
}

function tokenSpan(token: IToken): Span {
  return { start: token.startOffset, end: (token.endOffset ?? token.startOffset) + 1 };
}

function nodeSpan(node: CstNode): Span {
  const loc = node.location;
  if (!loc || isNaN(loc.startOffset)) return { start: 0, end: 0 };
  const end = loc.endOffset === undefined || isNaN(loc.endOffset) ? loc.startOffset : loc.endOffset;
  return { start: loc.startOffset, end: end + 1 };
}

function ident(token: IToken | undefined): Ident | undefined {
  return token ? { kind: "Ident", name: token.image, span: tokenSpan(token) } : undefined;
}

function expr(node: CstNode | undefined, parent: CstNode): Expr {
  return node ? toExpr(node) : { kind: "Missing", span: nodeSpan(parent) };
}

function toDecl(node: CstNode | undefined): Decl | undefined {
  if (!node) return undefined;
  const span = nodeSpan(node);
  const value = (label = "value") => expr(node1(node, label), node);
  switch (node.name) {
    case "modelDecl": {
      const name = ident(token1(node, "name"));
      return name && { kind: "ModelDecl", name, span };
    }
    case "dataDecl":
      return { kind: "DataDecl", value: value(), span };
    case "modalityDecl":
    case "targetDecl": {
      const name = ident(token1(node, "name"));
      const source = node1(node, "source");
      if (!name) return undefined;
      const kind = node.name === "modalityDecl" ? "ModalityDecl" : "TargetDecl";
      return { kind, name, type: value("type"), ...(source ? { source: toExpr(source) } : {}), span };
    }
    case "encoderDecl": {
      const target = ident(token1(node, "name"));
      const index = ident(token1(node, "index"));
      if (!target && !index) return undefined;
      return { kind: "EncoderDecl", ...(target ? { target } : {}), ...(index ? { index } : {}), value: value(), span };
    }
    case "headDecl": {
      const index = ident(token1(node, "index"));
      return index && { kind: "HeadDecl", index, value: value(), span };
    }
    case "fusionDecl":
      return { kind: "FusionDecl", value: value(), head: value("head"), span };
    case "lossDecl": {
      const index = ident(token1(node, "index"));
      return { kind: "LossDecl", ...(index ? { index } : {}), value: value(), span };
    }
    case "predictDecl":
      return { kind: "PredictDecl", value: value(), span };
    case "optimizerDecl":
      return { kind: "OptimizerDecl", value: value(), span };
    case "scheduleDecl":
      return { kind: "ScheduleDecl", value: value(), span };
    case "trainDecl": {
      const keys = tokens(node, "key");
      const values = nodes(node, "value");
      const settings = keys.map((key, i) => ({ key: ident(key)!, value: expr(values[i], node) }));
      return { kind: "TrainDecl", settings, span };
    }
    case "learnableDecl": {
      const target = node1(node, "target");
      return target && { kind: "LearnableDecl", target: indexedName(target), value: value(), span };
    }
    case "balanceBlock":
      return { kind: "BalanceBlock", body: statements(node), span };
    case "stageDecl": {
      const name = ident(token1(node, "name")) ?? { kind: "Ident", name: "", span };
      const body = nodes(node, "declaration").flatMap((d) => toDecl(firstChildNode(d)) ?? []);
      return { kind: "StageDecl", name, body, span };
    }
    case "freezeDecl":
      return { kind: "FreezeDecl", groups: nodes(node, "groups").map((g) => expr(g, node)), span };
    case "epochBlock":
      return { kind: "EpochBlock", unit: ident(token1(node, "unit")) ?? { kind: "Ident", name: "", span }, body: statements(node), span };
    default:
      return undefined;
  }
}

function indexedName(node: CstNode): IndexedName {
  const name = ident(token1(node, "name")) ?? { kind: "Ident", name: "", span: nodeSpan(node) };
  const index = ident(token1(node, "index"));
  return { name, ...(index ? { index } : {}), span: nodeSpan(node) };
}

function statements(node: CstNode): Stmt[] {
  const out: Stmt[] = [];
  for (const child of nodes(node, "statement")) {
    const stmt = toStmt(firstChildNode(child));
    if (stmt) out.push(stmt);
  }
  return out;
}

function toStmt(node: CstNode | undefined): Stmt | undefined {
  if (!node) return undefined;
  const span = nodeSpan(node);
  const part = (label: string) => expr(node1(node, label), node);
  switch (node.name) {
    case "paramStmt": {
      const name = ident(token1(node, "name"));
      return name && { kind: "Param", name, value: part("value"), span };
    }
    case "defineStmt": {
      const target = node1(node, "target");
      return target && { kind: "Define", target: indexedName(target), value: part("value"), span };
    }
    case "whenStmt":
      return { kind: "When", condition: part("condition"), body: statements(node), span };
    case "scaleStmt":
      return { kind: "Scale", target: part("target"), factor: part("factor"), span };
    case "noiseStmt":
      return { kind: "Noise", target: part("target"), distribution: part("distribution"), span };
    case "replaceStmt":
      return { kind: "Replace", target: part("target"), value: part("value"), span };
    case "dropStmt":
      return { kind: "Drop", target: part("target"), probability: part("probability"), rescaled: token1(node, "rescaled") !== undefined, span };
    case "setStmt":
      return { kind: "Set", target: part("target"), value: part("value"), span };
    case "addLossStmt":
      return { kind: "AddLoss", value: part("value"), span };
    case "minimizeStmt":
      return { kind: "Minimize", value: part("value"), group: part("group"), optimizer: part("optimizer"), span };
    default:
      return undefined;
  }
}

function joinSpans(a: Span, b: Span): Span {
  return { start: Math.min(a.start, b.start), end: Math.max(a.end, b.end) };
}

/**
 * Binding powers of the infix operators (left, right): higher binds tighter; `^` is right-associative.
 * The formatter (print.ts) parenthesises by the same table.
 */
export const infixPower: Record<BinaryOp, [number, number]> = {
  or: [1, 2],
  and: [3, 4],
  "<": [7, 8], "<=": [7, 8], ">": [7, 8], ">=": [7, 8], "==": [7, 8], "!=": [7, 8],
  "+": [9, 10], "-": [9, 10],
  "*": [11, 12], "/": [11, 12], "%": [11, 12],
  "^": [16, 15],
};
/** Prefix operators: `not a < b` is `not (a < b)`; `-a ^ b` is `-(a ^ b)`, `-a * b` is `(-a) * b`. */
export const prefixPower: Record<"not" | "-", number> = { not: 5, "-": 13 };

type Piece = { type: "prefix"; op: "not" | "-"; span: Span } | { type: "value"; expr: Expr } | { type: "infix"; op: BinaryOp };

/** An `expression` node: its operands and operators, in source order, folded by precedence. */
function expression(node: CstNode): Expr {
  const operators = tokens(node, "operator");
  const pieces: Piece[] = [];
  nodes(node, "operand").forEach((operand, i) => {
    pieces.push(...operandPieces(operand));
    if (operators[i]) pieces.push({ type: "infix", op: operators[i]!.image as BinaryOp });
  });
  return fold(pieces, node);
}

function operandPieces(operand: CstNode): Piece[] {
  const pieces: Piece[] = tokens(operand, "prefix").map((token) => ({ type: "prefix", op: token.image === "not" ? "not" : "-", span: tokenSpan(token) }));
  pieces.push({ type: "value", expr: operandValue(operand) });
  return pieces;
}

/** Pratt's fold of prefix operators, values and infix operators into one expression tree. */
function fold(pieces: Piece[], node: CstNode): Expr {
  let at = 0;
  const parse = (minimum: number): Expr => {
    const piece = pieces[at++];
    let left: Expr;
    if (piece?.type === "prefix") {
      const operand = parse(prefixPower[piece.op]);
      left = { kind: "Unary", op: piece.op, operand, span: joinSpans(piece.span, operand.span) };
    } else if (piece?.type === "value") left = piece.expr;
    else return { kind: "Missing", span: nodeSpan(node) };
    for (let next = pieces[at]; next?.type === "infix"; next = pieces[at]) {
      const [leftPower, rightPower] = infixPower[next.op];
      if (leftPower < minimum) break;
      at++;
      const right = parse(rightPower);
      left = { kind: "Binary", op: next.op, left, right, span: joinSpans(left.span, right.span) };
    }
    return left;
  };
  return parse(0);
}

function toExpr(node: CstNode): Expr {
  switch (node.name) {
    case "expression":
      return expression(node);
    case "operand":
      return fold(operandPieces(node), node);
    case "ifExpr":
      return {
        kind: "If",
        condition: expr(node1(node, "condition"), node),
        then: expr(node1(node, "then"), node),
        otherwise: expr(node1(node, "otherwise"), node),
        span: nodeSpan(node),
      };
    default:
      return { kind: "Missing", span: nodeSpan(node) };
  }
}

/** An operand without its prefix operators: the primary, then its calls, indices and members. */
function operandValue(node: CstNode): Expr {
  let result = primary(node);
  for (const suffix of nodes(node, "suffix")) {
    const span = joinSpans(result.span, nodeSpan(suffix));
    if (suffix.name === "callSuffix") {
      const args: Arg[] = nodes(suffix, "argument").map((arg) => {
        const name = ident(token1(arg, "name"));
        return { ...(name ? { name } : {}), value: expr(node1(arg, "value"), arg), span: nodeSpan(arg) };
      });
      result = { kind: "Call", callee: result, args, span };
    } else if (suffix.name === "indexSuffix") {
      result = { kind: "Index", base: result, indices: nodes(suffix, "index").map(toExpr), span };
    } else {
      const property = ident(token1(suffix, "property")) ?? { kind: "Ident", name: "", span };
      result = { kind: "Member", object: result, property, span };
    }
  }
  return result;
}

function primary(node: CstNode): Expr {
  const number = token1(node, "number");
  if (number) return { kind: "Number", value: Number(number.image), text: number.image, span: tokenSpan(number) };
  const string = token1(node, "string");
  if (string) return { kind: "String", value: unquote(string.image), span: tokenSpan(string) };
  const name = token1(node, "name");
  if (name) return { kind: "Name", name: name.image, span: tokenSpan(name) };
  const list = node1(node, "list");
  if (list) return { kind: "List", items: nodes(list, "item").map(toExpr), span: nodeSpan(list) };
  const conditional = node1(node, "conditional");
  if (conditional) return toExpr(conditional);
  return expr(node1(node, "inner"), node);
}

function unquote(literal: string): string {
  return literal.slice(1, -1).replace(/\\(.)/g, (_, c: string) => ({ n: "\n", t: "\t", r: "\r" })[c] ?? c);
}
