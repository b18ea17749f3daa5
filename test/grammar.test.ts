import { describe, expect, it } from "vitest";
import type { Expr } from "../grammar/ast.js";
import { parse } from "../grammar/index.js";

/** An expression as an s-expression, spans checked against the source on the way. */
function sexpr(e: Expr, source: string): string {
  const text = source.slice(e.span.start, e.span.end);
  switch (e.kind) {
    case "Name":
      expect(text).toBe(e.name);
      return e.name;
    case "Number":
      return e.text;
    case "Unary":
      return `(${e.op} ${sexpr(e.operand, source)})`;
    case "Binary":
      return `(${e.op} ${sexpr(e.left, source)} ${sexpr(e.right, source)})`;
    case "Call":
      return `(${sexpr(e.callee, source)} ${e.args.map((a) => sexpr(a.value, source)).join(" ")})`;
    case "Index":
      return `${sexpr(e.base, source)}[${e.indices.map((i) => sexpr(i, source)).join(",")}]`;
    default:
      return e.kind;
  }
}

function value(expression: string): string {
  const source = `balance {\n  x = ${expression}\n}\n`;
  const { program, diagnostics } = parse(source);
  expect(diagnostics).toEqual([]);
  const block = program.decls[0]!;
  if (block.kind !== "BalanceBlock" || block.body[0]?.kind !== "Define") throw new Error("no definition");
  const e = block.body[0].value;
  expect(source.slice(e.span.start, e.span.end)).toBe(expression);
  return sexpr(e, source);
}

describe("operator precedence and associativity", () => {
  it.each([
    ["a + b * c", "(+ a (* b c))"],
    ["a - b - c", "(- (- a b) c)"],
    ["a / b * c", "(* (/ a b) c)"],
    ["a ^ b ^ c", "(^ a (^ b c))"],
    ["-a ^ b", "(- (^ a b))"],
    ["-a * b", "(* (- a) b)"],
    ["2 ^ -x", "(^ 2 (- x))"],
    ["a < b + 1", "(< a (+ b 1))"],
    ["not a < b and c", "(and (not (< a b)) c)"],
    ["a or b and c", "(or a (and b c))"],
    ["not not a", "(not (not a))"],
    ["f(a + b, -c)[m] * 2", "(* (f (+ a b) (- c))[m] 2)"],
  ])("%s", (expression, expected) => {
    expect(value(expression)).toBe(expected);
  });
});
