import { describeKind } from "../compiler/1-check/kinds.js";
import { builtinFacts, docWithExample, renderSignature, specialForm } from "../compiler/builtins/reference.js";
import type { ComponentSpec, OptionSpec } from "../compiler/components.js";
import type { ModelIR, RuleValue } from "../compiler/ir.js";
import { rangeText } from "../compiler/range.js";
import type { SourceText } from "../diagnostics/index.js";
import type { Occurrence, SpecSymbol } from "./symbols.js";

/**
 * Hover text, in Markdown: a builtin's signatures and doc from the builtin catalogue, a
 * component's or option's doc from the component tables, and for the spec's own names their
 * declaration and what they are: a rule value's kind comes from the checked IR, when the spec
 * checks.
 */
export function hoverText(occurrence: Occurrence, source: SourceText, ir: ModelIR | undefined): string {
  switch (occurrence.kind) {
    case "builtin": {
      const entry = occurrence.entry;
      const signatures = entry.signatures.map((s) => renderSignature(entry, s));
      const facts = builtinFacts(entry);
      return [
        code(signatures.length ? signatures.join("\n") : entry.usage),
        docWithExample(entry),
        ...(signatures.length === 0 && entry.form ? [specialForm(entry.form)] : []),
        ...(facts.length ? [facts.map((f) => `- ${f}`).join("\n")] : []),
      ].join("\n\n");
    }
    case "value":
      return [code(occurrence.entry.usage), occurrence.entry.doc, occurrence.entry.kind === "index" ? "" : `*${describeKind(occurrence.entry.kind)}*`].filter(Boolean).join("\n\n");
    case "component":
      return [code(componentUsage(occurrence.name, occurrence.spec)), `${occurrence.family}: ${occurrence.spec.doc}`, optionList(occurrence.spec)].filter(Boolean).join("\n\n");
    case "option":
      return [code(`${occurrence.component}(${optionUsage(occurrence.name, occurrence.spec)})`), occurrence.spec.doc, optionFacts(occurrence.spec)].filter(Boolean).join("\n\n");
    case "setting":
      return [code(`train ${occurrence.name} ${occurrence.spec.default ?? ""}`.trimEnd()), occurrence.spec.doc, optionFacts(occurrence.spec)].filter(Boolean).join("\n\n");
    case "symbol":
      return symbolText(occurrence.symbol, source, ir);
  }
}

function symbolText(symbol: SpecSymbol, source: SourceText, ir: ModelIR | undefined): string {
  const declared = source.lineText(source.position(symbol.declaration.start).line).trim();
  const what = describeSymbol(symbol, ir);
  return [code(declared), what].join("\n\n");
}

/** What a declared name is, in a line: a rule value's kind, a param's value, a stage's place. */
function describeSymbol(symbol: SpecSymbol, ir: ModelIR | undefined): string {
  const perModality = symbol.index ? `, one per modality (\`${symbol.name}[${symbol.index}]\`)` : "";
  switch (symbol.kind) {
    case "modality":
      return "modality: an input with its own encoder; its features are `z[" + symbol.name + "]`";
    case "target":
      return "the target: what the model predicts, read by losses and metrics";
    case "learnable":
      return `learnable${perModality}: a parameter the optimiser trains with the model`;
    case "stage":
      return "stage: trains the model with its own loss, optimiser and rules; later stages read its final weights as `" + symbol.name + ".out`";
    case "param": {
      const value = ir?.rule.params.find((p) => p.name === symbol.name)?.value;
      return `param${value !== undefined ? ` = ${value}` : ""}: a number known before training; \`--set ${symbol.name}=...\` changes it for a run`;
    }
    case "value": {
      const checked = ruleValue(ir, symbol);
      const kind = checked ? `: ${describeKind(checked.value.value.kind)}` : "";
      return `rule value${perModality}${kind}, computed ${checked?.epoch ? "at the start of each epoch" : "each step"} and logged`;
    }
  }
}

/** The checked rule value a symbol declares (of its stage's rule, or the spec's), and whether the `every epoch` block computes it. */
function ruleValue(ir: ModelIR | undefined, symbol: SpecSymbol): { value: RuleValue; epoch: boolean } | undefined {
  const rule = symbol.stage ? ir?.stages?.find((s) => s.name === symbol.stage)?.rule : ir?.rule;
  const named = (values: RuleValue[] | undefined) => values?.find((v) => v.name === symbol.name);
  const step = named(rule?.values);
  if (step) return { value: step, epoch: false };
  const epoch = named(rule?.epoch?.values);
  return epoch && { value: epoch, epoch: true };
}

const code = (text: string) => "```mmb\n" + text + "\n```";

function componentUsage(name: string, spec: ComponentSpec): string {
  return `${name}(${Object.entries(spec.options).map(([option, o]) => optionUsage(option, o)).join(", ")})`;
}

function optionUsage(name: string, spec: OptionSpec): string {
  return spec.default === undefined ? `${name}: ${spec.type}` : `${name}: ${spec.type} = ${JSON.stringify(spec.default)}`;
}

function optionList(spec: ComponentSpec): string {
  return Object.entries(spec.options).map(([name, o]) => `- \`${name}\`: ${o.doc}`).join("\n");
}

function optionFacts(spec: OptionSpec): string {
  return [spec.range ? `must be ${rangeText(spec.range)}` : "", spec.choices ? `one of ${spec.choices.map((c) => `\`${c}\``).join(", ")}` : ""].filter(Boolean).join("; ");
}
