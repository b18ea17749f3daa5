/**
 * The compiler's pipeline, phase by phase: parse (grammar/) → check (1-check/: AST → IR and
 * diagnostics) → schedule (2-schedule/: the order of one training step) → codegen (3-codegen/:
 * the trainer's source, one folder per target). The builtin catalogue (builtins/) and the
 * components (components.ts) are the tables the phases read; diagnostics live below them all.
 */
import { SourceText, type Diagnostic } from "../diagnostics/index.js";
import { parse, type Program } from "../grammar/index.js";
import { isStackOverflow, nestedTooDeeply } from "../grammar/limits.js";
import { check } from "./1-check/index.js";
import { schedule, type StepPlan } from "./2-schedule/index.js";
import { generateTorch } from "./3-codegen/torch/index.js";
import type { ModelIR } from "./ir.js";

export { codes, diagnosticToJson, diagnosticsJson, renderAll, renderDiagnostic, SourceText, type Diagnostic, type DiagnosticCode } from "../diagnostics/index.js";
export type { ModelIR } from "./ir.js";
export type { StepPlan } from "./2-schedule/index.js";

export interface CompileOptions {
  /** The spec's file name, for diagnostics and the generated header. */
  fileName?: string;
  /** `param` overrides (`--set`): checked against the spec's params (MMB026) and used by every check. */
  set?: Record<string, number>;
  /** What the trainer is written for: TypeScript on TensorFlow.js (the default), or Python on PyTorch. */
  target?: Target;
}

export type Target = "tfjs" | "torch";
export const targets: readonly Target[] = ["tfjs", "torch"];

export interface Analysis {
  source: SourceText;
  program: Program;
  diagnostics: Diagnostic[];
  ir?: ModelIR;
  plan?: StepPlan;
}

/** Parse, check and schedule: everything but code generation. Never throws. */
export function analyze(text: string, options: CompileOptions = {}): Analysis {
  const source = new SourceText(text, options.fileName ?? "spec.mmb");
  try {
    return analyzeSource(source, options);
  } catch (e) {
    // grammar/limits.ts keeps the documented shapes of nesting inside the stack, and parse() answers
    // its own overflows; this catches the later phases', which none may answer with a crash.
    if (!isStackOverflow(e)) throw e;
    return { source, program: { decls: [], span: { start: 0, end: text.length } }, diagnostics: [nestedTooDeeply(text)] };
  }
}

function analyzeSource(source: SourceText, options: CompileOptions): Analysis {
  const text = source.text;
  const parsed = parse(text);
  // With syntax errors the AST is partial; checking it would report spurious follow-on errors.
  if (parsed.diagnostics.length > 0) return { source, program: parsed.program, diagnostics: parsed.diagnostics };
  const checked = check(parsed.program, source, options.set ? { set: options.set } : {});
  if (!checked.model) return { source, program: parsed.program, diagnostics: checked.diagnostics };
  return { source, program: parsed.program, diagnostics: checked.diagnostics, ir: checked.model, plan: schedule(checked.model) };
}

export interface CompileResult {
  program?: Program;
  code?: string;
  diagnostics: Diagnostic[];
  ir?: ModelIR;
  plan?: StepPlan;
  source: SourceText;
}

/** Source text → the trainer's source (formatted TypeScript, or Python for `target: "torch"`), or diagnostics. */
export async function compile(text: string, options: CompileOptions = {}): Promise<CompileResult> {
  const analysis = analyze(text, options);
  if (!analysis.ir || !analysis.plan) return { program: analysis.program, diagnostics: analysis.diagnostics, source: analysis.source };
  let code: string;
  try {
    code = options.target === "torch" ? generateTorch(analysis.ir, analysis.plan, analysis.source) : await generateTfjs(analysis.ir, analysis.plan, analysis.source);
  } catch (e) {
    if (!isStackOverflow(e)) throw e;
    return { program: analysis.program, diagnostics: [nestedTooDeeply(text)], source: analysis.source };
  }
  return { program: analysis.program, code, diagnostics: analysis.diagnostics, ir: analysis.ir, plan: analysis.plan, source: analysis.source };
}

/**
 * The TypeScript trainer, formatted. ts-morph and prettier are loaded on the first call, not with
 * the compiler: they are most of its start-up, which `mmb check`, `mmb fmt` and the language
 * server (analysis only) would otherwise pay on every start.
 */
async function generateTfjs(ir: ModelIR, plan: StepPlan, source: SourceText): Promise<string> {
  const { generate } = await import("./3-codegen/tfjs/index.js");
  return format(generate(ir, plan, source));
}

export async function format(code: string): Promise<string> {
  const prettier = await import("prettier");
  return prettier.format(code, { parser: "babel-ts", printWidth: 110 });
}
