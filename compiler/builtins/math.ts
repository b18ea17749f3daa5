import { elementwise, torchCall } from "./lowering.js";
import type { Builtin, Signature } from "./types.js";

/** Elementwise on a number, one number per sample, or a gradient (each of its elements). */
const sameKind: Signature[] = [
  { params: [{ name: "x", kinds: ["scalar"] }], result: "scalar" },
  { params: [{ name: "x", kinds: ["batch"] }], result: "batch" },
  { params: [{ name: "x", kinds: ["grad"] }], result: "grad" },
];

/** `torch`: the torch runtime's function, where the builtin's name is Python's own (`abs`). */
function unary(name: string, doc: string, host: (x: string) => string, torch = name): Builtin {
  return { name, family: "math", usage: `${name}(x)`, doc, signatures: sameKind, fusion: "elementwise", host: true, lower: { tfjs: elementwise(name, host), torch: torchCall(torch) } };
}

const numeric = ["scalar", "batch"] as const;

export const math: Builtin[] = [
  unary("abs", "|x|; on a gradient, elementwise: `mean(abs(grad(G)))`", (x) => `Math.abs(${x})`, "absolute"),
  unary("exp", "the exponential eˣ", (x) => `Math.exp(${x})`),
  unary("log", "natural logarithm", (x) => `Math.log(${x})`),
  unary("sqrt", "square root; on a gradient, elementwise", (x) => `Math.sqrt(${x})`),
  unary("tanh", "hyperbolic tangent", (x) => `Math.tanh(${x})`),
  unary("sigmoid", "1 / (1 + e⁻ˣ)", (x) => `1 / (1 + Math.exp(-(${x})))`),
  unary("relu", "max(x, 0)", (x) => `Math.max(0, ${x})`),
  unary("sign", "−1, 0 or 1 (gradient zero)", (x) => `Math.sign(${x})`),
  unary("square", "x²; on a gradient, elementwise", (x) => `(${x}) ** 2`),
  unary("floor", "the largest whole number ≤ x (gradient zero): `floor(step / 10)`", (x) => `Math.floor(${x})`),
  unary("sin", "sine (radians)", (x) => `Math.sin(${x})`),
  {
    name: "clamp",
    family: "math",
    usage: "clamp(x, lo, hi)",
    doc: "x limited to [lo, hi]: `clamp(k[m], 0.1, 1)`; of a gradient-shaped value, each element",
    signatures: [
      { params: [{ name: "x", kinds: numeric }, { name: "lo", kinds: numeric }, { name: "hi", kinds: numeric }], result: "lift" },
      { params: [{ name: "x", kinds: ["grad"] }, { name: "lo", kinds: ["scalar"] }, { name: "hi", kinds: ["scalar"] }], result: "grad" },
    ],
    host: true,
    lower: {
      tfjs: {
        runtime: ["clamp", "clampGradient"],
        emit: (cx) => (cx.host ? `Math.min(Math.max(${cx.args[0]}, ${cx.args[1]}), ${cx.args[2]})` : cx.call(cx.result === "grad" ? "clampGradient" : "clamp", ...cx.args)),
      },
      torch: torchCall("clamp"),
    },
  },
];
