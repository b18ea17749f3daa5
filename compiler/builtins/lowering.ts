import type { Lowering, LoweringContext } from "./types.js";

/**
 * Lowerings shared by families of entries. `tensor`: a runtime function called with the
 * arguments; `host`: the JavaScript for plain numbers, used when every argument is one.
 */
export function runtimeCall(tensor: string, host?: (args: string[]) => string): Lowering {
  return {
    runtime: [tensor],
    emit: (cx: LoweringContext) => (cx.host && host ? host(cx.args) : cx.call(tensor, ...cx.args)),
  };
}

/** An elementwise function: on numbers, per-sample values, and each element of a gradient. */
export function elementwise(tensor: string, host: (x: string) => string): Lowering {
  return {
    runtime: [tensor, "mapGradient"],
    emit: (cx) => {
      if (cx.host) return host(cx.args[0]!);
      if (cx.result === "grad") return cx.call("mapGradient", cx.args[0]!, cx.ref(tensor));
      return cx.call(tensor, cx.args[0]!);
    },
  };
}

/**
 * A call of a function of the torch trainer's runtime (runtime/torch/ops.py). Its functions take
 * plain numbers, tensors and gradient-shaped lists alike, so one lowering serves every kind.
 */
export function torchCall(fn: string): Lowering {
  return { runtime: [fn], emit: (cx) => cx.call(fn, ...cx.args) };
}

/** A torch call whose function depends on the arguments' kinds (`cos` of gradients or of outputs). */
export function torchCallBy(runtime: readonly string[], choose: (cx: LoweringContext) => string): Lowering {
  return { runtime, emit: (cx) => cx.call(choose(cx), ...cx.args) };
}
