import { error, type Span } from "../../diagnostics/index.js";
import type { CheckContext } from "./context.js";

/** MMB017: a rule value that depends on itself within one step (a read under `prev` is of the last step). */
export function checkCycles(cx: CheckContext): void {
  const state = new Map<string, "visiting" | "done">();
  /** `path[i]` is the i-th name on the walk, with the span where the previous one reads it. */
  const visit = (path: { name: string; span: Span }[]): void => {
    const name = path[path.length - 1]!.name;
    if (state.get(name) === "done") return;
    if (state.get(name) === "visiting") {
      const cycle = path.slice(path.findIndex((p) => p.name === name));
      const closing = cycle[cycle.length - 1]!;
      cx.report(error("MMB017", `\`${name}\` depends on itself: ${cycle.map((c) => c.name).join(" → ")}`, closing.span, {
        label: "this use closes the cycle",
        related: cycle.slice(1, -1).map((r) => ({ span: r.span, message: `\`${r.name}\` is read here` })),
        help: `read last step's value with \`prev(${name}, 0)\`, or remove the dependency`,
      }));
      for (const c of cycle) state.set(c.name, "done");
      return;
    }
    state.set(name, "visiting");
    for (const [read, span] of cx.definitions.get(name)?.reads ?? []) {
      if (cx.definitions.has(read)) visit([...path, { name: read, span }]);
    }
    state.set(name, "done");
  };
  for (const [name, definition] of cx.definitions) visit([{ name, span: definition.stmt.target.name.span }]);
}
