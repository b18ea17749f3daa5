import { CompletionItemKind, type CompletionItem } from "vscode-languageserver";
import { describeKind } from "../compiler/1-check/kinds.js";
import { builtins, values } from "../compiler/builtins/index.js";
import { renderSignature } from "../compiler/builtins/reference.js";
import { trainSettings, type ComponentSpec } from "../compiler/components.js";
import type { Program } from "../grammar/ast.js";
import { stageAt, tables, visibleSymbols, type SpecSymbol, type SymbolIndex } from "./symbols.js";

/**
 * Completion at a cursor, from the text before it: option names inside a component's call, a
 * component after the keyword that takes one (`encoder audio = `, `optimizer `, `-> `), train
 * settings after `train`, keywords at the start of a line, and elsewhere every name an
 * expression can read (builtins, built-in values, the spec's own names).
 */
export function complete(text: string, offset: number, program: Program, index: SymbolIndex): CompletionItem[] {
  const before = text.slice(0, offset);
  const word = /[A-Za-z_][A-Za-z0-9_]*$/.exec(before)?.[0] ?? "";
  const head = before.slice(0, before.length - word.length);
  const line = head.slice(head.lastIndexOf("\n") + 1);

  const call = openCall(head);
  if (call) {
    const options = componentsNamed(call).flatMap((spec) => Object.entries(spec.options));
    if (options.length > 0) return options.map(([name, o]) => ({ label: name, kind: CompletionItemKind.Property, detail: o.type, documentation: o.doc, insertText: `${name}: ` }));
  }
  const components = componentsAfter(line);
  if (components) return Object.entries(components).map(([name, spec]) => ({ label: name, kind: CompletionItemKind.Class, documentation: spec.doc }));
  const train = /^\s*train\b(.*)$/.exec(line);
  if (train) {
    const settings = train[1]!.trim().split(/\s+/).filter(Boolean);
    const choices = settings.length % 2 === 1 ? trainSettings[settings[settings.length - 1]!]?.choices : undefined;
    if (choices) return choices.map((c) => ({ label: c, kind: CompletionItemKind.EnumMember }));
    if (settings.length % 2 === 0) return Object.entries(trainSettings).map(([name, o]) => ({ label: name, kind: CompletionItemKind.Property, detail: o.type, documentation: o.doc }));
    return [];
  }
  if (/^\s*$/.test(line)) return keywordsAt(program, offset).map((k) => ({ label: k, kind: CompletionItemKind.Keyword }));
  return expressionNames(index, stageAt(program, offset));
}

/** The callee of the innermost call still open before the cursor, when the cursor is where an option's name goes (after `(` or `,`). */
function openCall(head: string): string | undefined {
  const text = head.trimEnd();
  if (!text.endsWith("(") && !text.endsWith(",")) return undefined;
  let depth = 0;
  for (let i = text.length - 1; i >= 0; i--) {
    const c = text[i]!;
    if (c === ")" || c === "]") depth++;
    else if (c === "(" || c === "[") {
      if (depth > 0) depth--;
      else return c === "(" ? /([A-Za-z_][A-Za-z0-9_]*)\s*$/.exec(text.slice(0, i))?.[1] : undefined;
    } else if (c === "{" || c === "}") return undefined;
  }
  return undefined;
}

function componentsNamed(name: string): ComponentSpec[] {
  return Object.values(tables).flatMap(({ entries }) => (Object.hasOwn(entries, name) ? [entries[name]!] : []));
}

/** The component table a line's text before the cursor asks for, if any. */
function componentsAfter(line: string): Record<string, ComponentSpec> | undefined {
  if (/^\s*data\s+$/.test(line)) return tables.data.entries;
  if (/^\s*encoder\b[^=]*=\s*$/.test(line)) return tables.encoder.entries;
  if (/^\s*head\s*\[[^\]]*\]\s*=\s*$/.test(line)) return tables.auxHead.entries;
  if (/^\s*fusion\s+$/.test(line)) return tables.fusion.entries;
  if (/->\s*$/.test(line)) return tables.head.entries;
  if (/^\s*optimizer\s+$/.test(line) || /\busing\s+$/.test(line)) return tables.optimizer.entries;
  if (/^\s*schedule\s+$/.test(line)) return tables.schedule.entries;
  return undefined;
}

const declarationKeywords = ["model", "data", "modality", "target", "encoder", "head", "fusion", "loss", "optimizer", "schedule", "train", "learnable", "predict", "balance", "every epoch", "stage", "freeze"];
const stageKeywords = ["loss", "optimizer", "schedule", "train", "balance", "every epoch", "freeze"];
const statementKeywords = ["param", "when", "scale grad", "scale lr", "noise grad", "replace grad", "drop", "set", "add loss", "minimize"];
const epochKeywords = ["param", "when", "set"];

/** The keywords that may start a line where the cursor is: declarations, a stage's, or a rule block's statements. */
function keywordsAt(program: Program, offset: number): string[] {
  const inside = (span: { start: number; end: number }) => span.start < offset && offset < span.end;
  for (const decl of program.decls) {
    if (!inside(decl.span)) continue;
    if (decl.kind === "BalanceBlock") return statementKeywords;
    if (decl.kind === "EpochBlock") return epochKeywords;
    if (decl.kind === "StageDecl") {
      const block = decl.body.find((d) => inside(d.span));
      return block?.kind === "BalanceBlock" ? statementKeywords : block?.kind === "EpochBlock" ? epochKeywords : stageKeywords;
    }
  }
  return declarationKeywords;
}

const symbolKinds: Record<SpecSymbol["kind"], CompletionItemKind> = {
  modality: CompletionItemKind.EnumMember,
  target: CompletionItemKind.Variable,
  learnable: CompletionItemKind.Field,
  stage: CompletionItemKind.Module,
  param: CompletionItemKind.Constant,
  value: CompletionItemKind.Variable,
};

function expressionNames(index: SymbolIndex, stage: string): CompletionItem[] {
  return [
    ...visibleSymbols(index, stage).map((s) => ({ label: s.name, kind: symbolKinds[s.kind], detail: s.index ? `${s.kind} ${s.name}[${s.index}]` : s.kind })),
    ...values.map((v) => ({ label: v.name, kind: CompletionItemKind.Variable, detail: v.usage, documentation: v.kind === "index" ? v.doc : `${v.doc} (${describeKind(v.kind)})` })),
    ...builtins.filter((b) => !b.misuse).map((b) => ({
      label: b.name,
      kind: CompletionItemKind.Function,
      detail: b.signatures[0] ? renderSignature(b, b.signatures[0]) : b.usage,
      documentation: b.doc,
    })),
    ...["if", "then", "else", "and", "or", "not"].map((k) => ({ label: k, kind: CompletionItemKind.Keyword })),
  ];
}
