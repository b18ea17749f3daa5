import type { ValueKind } from "../ir.js";
import { actions } from "./actions.js";
import { builtins } from "./index.js";
import { binaryOperators, conditional, unaryOperators } from "./operators.js";
import type { Builtin, Family, Signature } from "./types.js";
import { values } from "./values.js";

/**
 * The language reference, printed from the catalogue: README.md's tables of rule expressions and
 * actions, and docs/builtins.md with every signature. A test regenerates both and fails when the
 * committed text drifts from the catalogue.
 */

const kindNames: Record<ValueKind, string> = {
  scalar: "number",
  bool: "condition",
  batch: "per-sample",
  batchBool: "per-sample condition",
  logits: "head output",
  features: "features",
  grad: "gradient",
  label: "target",
  prototypes: "class means",
};

const familyTitles: Record<Family, string> = {
  math: "Elementwise math",
  distributions: "Outputs as distributions, per sample",
  random: "Random draws",
  reductions: "Reductions",
  gradients: "Gradients",
  metrics: "Metrics of a head's outputs",
  history: "History",
  prototypes: "Class means",
  epochs: "Epoch rules",
  places: "Names of one place",
};

const cell = (text: string) => text.replace(/\|/g, "\\|");

/** `clamp(x: number, lo: number, hi: number) → number`, one line per overload. */
export function renderSignature(entry: Builtin, signature: Signature): string {
  const params = signature.params.map((p) => `${p.name}: ${"constant" in p ? "constant" : p.kinds.map((k) => kindNames[k]).join(" | ")}`);
  const result = signature.result === "lift" ? "number, or per-sample if an argument is" : kindNames[signature.result];
  return `${entry.name}(${params.join(", ")}) → ${result}`;
}

/** README.md's table of what a rule expression can say. */
export function expressionTable(): string {
  const rows = [
    ...values.map((v) => [v.usage, v.doc]),
    ...builtins.map((b) => [b.usage, b.doc]),
    [[...binaryOperators.map((o) => o.symbol), "not", "-x"].join(" "), "arithmetic, comparison and logic; gradients of one group and head outputs combine like vectors (`g1 + g2`, `e * g`, `g / e`)"],
    [conditional.usage, conditional.doc],
  ];
  return table(["expression", "meaning"], rows.map(([usage, doc]) => [`\`${usage}\``, doc!]));
}

/** README.md's table of actions. */
export function actionTable(): string {
  return table(["action", "meaning"], actions.map((a) => [`\`${a.usage}\``, a.doc]));
}

/** docs/builtins.md: every function with its signatures, properties and where it may stand. */
export function builtinsReference(): string {
  const sections: string[] = [];
  for (const family of Object.keys(familyTitles) as Family[]) {
    const entries = builtins.filter((b) => b.family === family);
    if (entries.length === 0) continue;
    sections.push(`## ${familyTitles[family]}\n`);
    for (const entry of entries) {
      const facts = builtinFacts(entry);
      const signatures = entry.signatures.map((s) => `    ${renderSignature(entry, s)}`);
      sections.push(
        [
          `### \`${entry.usage}\``,
          "",
          docWithExample(entry),
          ...(signatures.length ? ["", ...signatures] : entry.form ? ["", specialForm(entry.form)] : []),
          ...(facts.length ? ["", facts.map((f) => `- ${f}`).join("\n")] : []),
          "",
        ].join("\n"),
      );
    }
  }
  const operators = table(["operator", "meaning", "tfjs"], [...binaryOperators, ...unaryOperators].map((o) => [`\`${o.usage}\``, o.doc, `\`${o.tfjs.tensor}\``]));
  return [
    "# Builtins",
    "",
    "Every function of the rule language, printed from the builtin catalogue (`compiler/builtins/`):",
    "its signatures (argument kinds → result kind, overloads tried in order), and what the checker",
    "and code generator know of it. `UPDATE_GOLDEN=1 npm test` regenerates this page.",
    "",
    sections.join("\n"),
    "## Operators",
    "",
    operators,
    "",
    "## Actions",
    "",
    actionTable(),
    "",
  ].join("\n");
}

/** The entry's doc, then its example as a sentence of its own. */
export function docWithExample(entry: Builtin): string {
  if (!entry.example) return entry.doc;
  return `${entry.doc}${/[.!?]$/.test(entry.doc) ? "" : "."} Example: \`${entry.example}\`.`;
}

/** What the checker and code generator know of a function, a line each: for the reference and the language server's hover. */
export function builtinFacts(entry: Builtin): string[] {
  return [
    entry.host ? "computed on the host when its arguments are numbers known before the step" : "",
    entry.stateful ? "keeps state between steps (checkpointed)" : "",
    entry.random ? "draws at random, seeded by the run's seed, the step and the call" : "",
    entry.readsLastStep ? "its first argument is last step's: no dependency of this step" : "",
    entry.cutsGradient ? "a constant for differentiation" : "",
    entry.fusion ? `allowed in a fusion expression (${entry.fusion})` : "",
    entry.misuse ? `elsewhere: ${entry.misuse.code}` : "",
  ].filter(Boolean);
}

/** A special form's one line: what its arguments are. */
export function specialForm(form: NonNullable<Builtin["form"]>): string {
  return `A special form: ${formText[form]}.`;
}

const formText: Record<NonNullable<Builtin["form"]>, string> = {
  grad: "its first argument is a parameter group, its second (optional) a loss",
  reduction: "its first argument is an index (`k`, `k != m`) or `batch`",
  perSample: "its argument is evaluated once per sample",
  perTensor: "its argument, a number from one gradient, is evaluated once per parameter tensor of that gradient's group",
  index: "its argument is a modality index",
  parameters: "its argument is a parameter group",
  split: "its first argument is a split (`train`, `valid`), its second a value evaluated on its samples",
};

function table(header: string[], rows: string[][]): string {
  return [`| ${header.join(" | ")} |`, `|${header.map(() => "---").join("|")}|`, ...rows.map((r) => `| ${r.map(cell).join(" | ")} |`)].join("\n");
}
