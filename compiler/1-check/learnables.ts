import type { Decl } from "../../grammar/ast.js";
import { error } from "../../diagnostics/index.js";
import { constantNumber } from "./component-options.js";
import type { CheckContext } from "./context.js";

/** `learnable NAME = v` and `learnable NAME[m] = v`: scalar parameters the rule can read and minimise. */
export function collectLearnables(cx: CheckContext, decls: Decl[]): void {
  for (const decl of decls) {
    if (decl.kind !== "LearnableDecl") continue;
    const name = decl.target.name.name;
    if (cx.learnables.has(name) || cx.modalitySpans.has(name)) {
      cx.report(error("MMB020", `\`${name}\` is defined twice`, decl.target.name.span, { help: "give it another name" }));
      continue;
    }
    const init = constantNumber(cx, decl.value);
    if (init === undefined) continue;
    cx.learnables.set(name, { name, perModality: decl.target.index !== undefined, init, line: cx.line(decl.span), span: decl.target.name.span });
  }
}
