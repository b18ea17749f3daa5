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
