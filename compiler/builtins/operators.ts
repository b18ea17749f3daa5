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
  /**
   * The torch trainer's: `tensor`, the runtime function (runtime/torch/ops.py), which takes numbers,
   * tensors and gradient-shaped lists alike; `host`, the Python operator on plain numbers.
   */
  torch: { tensor: string; host: string };
}

function binary(symbol: string, tensor: string, host: Operator["tfjs"]["host"], torch: Operator["torch"], doc: string, gradient?: string, elementwise?: string): Operator {
  return { symbol, usage: `a ${symbol} b`, doc, tfjs: { tensor, host, ...(gradient ? { gradient } : {}), ...(elementwise ? { elementwise } : {}) }, torch };
}

export const binaryOperators: Operator[] = [
  binary("+", "add", "+", { tensor: "add", host: "+" }, "sum; of two gradient-shaped values of one group (or one and a number), or two head outputs, elementwise", "addGradients", "addGradients"),
  binary("-", "sub", "-", { tensor: "sub", host: "-" }, "difference, as `+`", "subGradients", "subGradients"),
  binary("*", "mul", "*", { tensor: "mul", host: "*" }, "product; a number times a gradient or head output scales it; two gradient-shaped values multiply elementwise", "scaleGradient", "mulGradients"),
  binary("/", "div", "/", { tensor: "div", host: "/" }, "quotient; a gradient or head output divided by a number; gradient-shaped values elementwise (`g / weights(G)`)", "scaleGradient", "divGradients"),
  binary("%", "mod", (a, b) => `(((${a} % ${b}) + ${b}) % ${b})`, { tensor: "mod", host: "%" }, "remainder, as floor division leaves it (`step % 10`, 0 to 9; the sign of the divisor)"),
  binary("^", "pow", "**", { tensor: "power", host: "**" }, "power"),
  binary("<", "less", "<", { tensor: "less", host: "<" }, "comparison: a condition"),
  binary("<=", "lessEqual", "<=", { tensor: "less_equal", host: "<=" }, "comparison"),
  binary(">", "greater", ">", { tensor: "greater", host: ">" }, "comparison"),
  binary(">=", "greaterEqual", ">=", { tensor: "greater_equal", host: ">=" }, "comparison"),
  binary("==", "equal", "===", { tensor: "equal", host: "==" }, "comparison"),
  binary("!=", "notEqual", "!==", { tensor: "not_equal", host: "!=" }, "comparison"),
  binary("and", "and", "&&", { tensor: "logical_and", host: "and" }, "both conditions"),
  binary("or", "or", "||", { tensor: "logical_or", host: "or" }, "either condition"),
];

export const unaryOperators: Operator[] = [
  { symbol: "-", usage: "-x", doc: "negation (of a number, per-sample value, head output or gradient)", tfjs: { tensor: "neg", host: "-", gradient: "scaleGradient" }, torch: { tensor: "neg", host: "-" } },
  { symbol: "not", usage: "not c", doc: "negation of a condition", tfjs: { tensor: "not", host: "!" }, torch: { tensor: "logical_not", host: "not " } },
];

/** `if c then a else b`: per sample when the condition is, without a host sync otherwise. */
export const conditional = { usage: "if c then a else b", doc: "`a` where `c` holds, else `b`", tfjs: { tensor: "choose", gradient: "chooseGradient" }, torch: { tensor: "choose" } };
