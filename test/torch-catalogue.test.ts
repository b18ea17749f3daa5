import { describe, expect, it } from "vitest";
import { actions, binaryOperators, builtins, conditional, isReduction, unaryOperators } from "../compiler/builtins/index.js";
import type { LoweringContext } from "../compiler/builtins/index.js";
import { torchRuntimeSource } from "../compiler/3-codegen/torch/runtime-source.js";

/**
 * The torch half of the catalogue against the Python it emits calls to: every function a torch
 * lowering, an operator or a reduction names is defined at the top level of runtime/torch/, and
 * every method it calls on the step's history or random streams exists. A lowering that names a
 * function the runtime lacks would fail only when a spec first calls it.
 */
const source = torchRuntimeSource();
const topLevel = new Set([...source.matchAll(/^(?:def|class) ([A-Za-z_]\w*)|^([A-Za-z_]\w*)\s*=/gm)].map((m) => m[1] ?? m[2]!));
const methods = new Set([...source.matchAll(/^ {4}def ([A-Za-z_]\w*)/gm)].map((m) => m[1]!));

/** What a lowering emits for placeholder arguments, to find the `ctx.history.x(`/`ctx.random.x(` it calls. */
function emitted(emit: (cx: LoweringContext) => string, arity: number, kinds: LoweringContext["kinds"]): string {
  const calls: string[] = [];
  const code = emit({
    args: Array.from({ length: arity }, (_, i) => `a${i}`),
    kinds,
    result: kinds[0] ?? "scalar",
    host: false,
    call: (fn, ...args) => (calls.push(fn), `${fn}(${args.join(", ")})`),
    ref: (fn) => (calls.push(fn), fn),
    state: { id: 0, key: '""' },
    scope: "ctx",
    target: { kind: "class", classes: 3 },
  });
  return `${code} ${calls.join(" ")}`;
}

describe("the torch lowerings and the Python runtime", () => {
  it("every function a torch lowering names is defined in runtime/torch/", () => {
    const named = builtins.flatMap((b) => b.lower?.torch?.runtime ?? []);
    expect(named.length).toBeGreaterThan(30);
    expect(named.filter((n) => !topLevel.has(n))).toEqual([]);
  });

  it("every operator, reduction and the conditional has its Python function", () => {
    const names = [
      ...[...binaryOperators, ...unaryOperators].map((o) => o.torch.tensor),
      conditional.torch.tensor,
      ...builtins.filter(isReduction).flatMap((r) => [r.reduce.torch.modalities, ...(r.reduce.torch.batch ? [r.reduce.torch.batch] : [])]),
    ];
    expect(names.filter((n) => !topLevel.has(n))).toEqual([]);
  });

  it("the history and random methods the lowerings call exist, for every overload's kinds", () => {
    for (const b of builtins) {
      const emit = b.lower?.torch?.emit;
      if (!emit) continue;
      for (const signature of b.signatures) {
        const code = emitted(emit, signature.params.length, signature.params.map((p) => ("kinds" in p ? p.kinds[0]! : "scalar")));
        for (const [, method] of code.matchAll(/ctx\.(?:history|random)\.(\w+)\(/g)) expect(methods.has(method!), `${b.name}: ${method}`).toBe(true);
        for (const [, fn] of code.matchAll(/(?:^|[^.\w])([a-z_]\w*)\(/g)) expect(topLevel.has(fn!), `${b.name} calls ${fn}`).toBe(true);
      }
    }
  });

  it("every action has a Python statement", () => {
    for (const a of actions) expect(typeof a.lower.torch, a.keyword).toBe("function");
  });

  it("functions without a torch lowering are named here: a new builtin gets one, or is refused on purpose", () => {
    const missing = builtins.filter((b) => !b.form && !b.misuse && !b.lower?.torch).map((b) => b.name);
    expect(missing).toEqual([]);
  });
});
