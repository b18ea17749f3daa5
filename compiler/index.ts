import * as prettier from "prettier";
import { parse, type Program } from "../grammar/index.js";
import { check } from "./check.js";
import { generate } from "./codegen.js";
import { diagnosticToJson, renderDiagnostic, SourceText, type Diagnostic } from "./diagnostics.js";
import type { ModelIR } from "./ir.js";
import { schedule, type StepPlan } from "./schedule.js";

export { catalogue, renderDiagnostic, diagnosticToJson, SourceText, type Diagnostic, type DiagnosticCode } from "./diagnostics.js";
export type { ModelIR } from "./ir.js";
export type { StepPlan } from "./schedule.js";

export interface CompileOptions {
  /** The spec's file name, for diagnostics and the generated header. */
  fileName?: string;
  /** `param` overrides, checked against the spec's declared params. */
  set?: Record<string, number>;
}

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
  const parsed = parse(text);
  // With syntax errors the AST is partial; checking it would report spurious follow-on errors.
  if (parsed.diagnostics.length > 0) return { source, program: parsed.program, diagnostics: parsed.diagnostics };
  const checked = check(parsed.program, source);
  const diagnostics = [...checked.diagnostics];
  if (!checked.model) return { source, program: parsed.program, diagnostics };
  const ir = checked.model;
  return { source, program: parsed.program, diagnostics, ir, plan: schedule(ir) };
}

export interface CompileResult {
  program?: Program;
  code?: string;
  diagnostics: Diagnostic[];
  ir?: ModelIR;
  plan?: StepPlan;
  source: SourceText;
}

/** Source text → formatted TypeScript trainer, or diagnostics. */
export async function compile(text: string, options: CompileOptions = {}): Promise<CompileResult> {
  const analysis = analyze(text, options);
  if (!analysis.ir || !analysis.plan) return { program: analysis.program, diagnostics: analysis.diagnostics, source: analysis.source };
  const raw = generate(analysis.ir, analysis.plan, analysis.source.fileName);
  const code = await format(raw);
  return { program: analysis.program, code, diagnostics: analysis.diagnostics, ir: analysis.ir, plan: analysis.plan, source: analysis.source };
}

export function format(code: string): Promise<string> {
  return prettier.format(code, { parser: "babel-ts", printWidth: 110 });
}

export function renderAll(diagnostics: Diagnostic[], source: SourceText): string {
  return diagnostics.map((d) => renderDiagnostic(d, source)).join("\n\n");
}

export function diagnosticsJson(diagnostics: Diagnostic[], source: SourceText): string {
  return JSON.stringify(diagnostics.map((d) => diagnosticToJson(d, source)), null, 2);
}
