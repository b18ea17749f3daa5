/**
 * The operators of rule expressions. `tensor` is the runtime function for tensors, `host` the
 * JavaScript operator for plain numbers; `gradient` the runtime function when the operands are
 * gradients of one group (`g1 + g2`) or a gradient and a number (`e * g`, `g / e`).
 */
export interface Operator {
  symbol: string;
  usage: string;
  doc: string;
  tfjs: { tensor: string; host: string; gradient?: string };
}

function binary(symbol: string, tensor: string, host: string, doc: string, gradient?: string): Operator {
  return { symbol, usage: `a ${symbol} b`, doc, tfjs: { tensor, host, ...(gradient ? { gradient } : {}) } };
}

export const binaryOperators: Operator[] = [
  binary("+", "add", "+", "sum; of two gradients of one group, or two head outputs, elementwise", "addGradients"),
  binary("-", "sub", "-", "difference, as `+`", "subGradients"),
  binary("*", "mul", "*", "product; a number times a gradient or head output scales it", "scaleGradient"),
  binary("/", "div", "/", "quotient; a gradient or head output divided by a number", "scaleGradient"),
  binary("^", "pow", "**", "power"),
  binary("<", "less", "<", "comparison: a condition"),
  binary("<=", "lessEqual", "<=", "comparison"),
  binary(">", "greater", ">", "comparison"),
  binary(">=", "greaterEqual", ">=", "comparison"),
  binary("==", "equal", "===", "comparison"),
  binary("!=", "notEqual", "!==", "comparison"),
  binary("and", "and", "&&", "both conditions"),
  binary("or", "or", "||", "either condition"),
];

export const unaryOperators: Operator[] = [
  { symbol: "-", usage: "-x", doc: "negation (of a number, per-sample value, head output or gradient)", tfjs: { tensor: "neg", host: "-", gradient: "scaleGradient" } },
  { symbol: "not", usage: "not c", doc: "negation of a condition", tfjs: { tensor: "not", host: "!" } },
];

/** `if c then a else b`: per sample when the condition is, without a host sync otherwise. */
export const conditional = { usage: "if c then a else b", doc: "`a` where `c` holds, else `b`", tfjs: { tensor: "choose", gradient: "chooseGradient" } };
