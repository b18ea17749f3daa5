/**
 * The operators of rule expressions. `tensor` is the runtime function for tensors, `host` the
 * JavaScript operator for plain numbers; `gradient` the runtime function when a number scales a
 * gradient (`e * g`, `g / e`) or two of one group add (`g1 + g2`); `elementwise` when both are
 * gradient-shaped, or a number meets one in any other way (`g * g`, `g / weights(G)`, `g + 1e-8`).
 */
export interface Operator {
  symbol: string;
  usage: string;
  doc: string;
  /** `host`: the JavaScript operator, or the code of `a op b` where no operator says it. */
  tfjs: { tensor: string; host: string | ((a: string, b: string) => string); gradient?: string; elementwise?: string };
}

function binary(symbol: string, tensor: string, host: Operator["tfjs"]["host"], doc: string, gradient?: string, elementwise?: string): Operator {
  return { symbol, usage: `a ${symbol} b`, doc, tfjs: { tensor, host, ...(gradient ? { gradient } : {}), ...(elementwise ? { elementwise } : {}) } };
}

export const binaryOperators: Operator[] = [
  binary("+", "add", "+", "sum; of two gradient-shaped values of one group (or one and a number), or two head outputs, elementwise", "addGradients", "addGradients"),
  binary("-", "sub", "-", "difference, as `+`", "subGradients", "subGradients"),
  binary("*", "mul", "*", "product; a number times a gradient or head output scales it; two gradient-shaped values multiply elementwise", "scaleGradient", "mulGradients"),
  binary("/", "div", "/", "quotient; a gradient or head output divided by a number; gradient-shaped values elementwise (`g / weights(G)`)", "scaleGradient", "divGradients"),
  binary("%", "mod", (a, b) => `(((${a} % ${b}) + ${b}) % ${b})`, "remainder, as floor division leaves it (`step % 10`, 0 to 9; the sign of the divisor)"),
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
