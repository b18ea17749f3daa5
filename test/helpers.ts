import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { analyze, compile } from "../compiler/index.js";

export const root = join(import.meta.dirname, "..");
export const specsDir = join(root, "specs");
export const fixturesDir = join(import.meta.dirname, "fixtures");
export const updateGoldens = process.env.UPDATE_GOLDEN === "1";

export function specFiles(): string[] {
  return readdirSync(specsDir).filter((f) => f.endsWith(".mmb")).sort();
}

export function readSpec(name: string): string {
  return readFileSync(join(specsDir, name), "utf8");
}

/** Diagnostics of a source as `CODE line:col-line:col` strings, in report order. */
export function diagnose(source: string): string[] {
  const analysis = analyze(source, { fileName: "test.mmb" });
  return analysis.diagnostics.map((d) => {
    const a = analysis.source.position(d.span.start);
    const b = analysis.source.position(d.span.end);
    return `${d.code} ${a.line}:${a.column}-${b.line}:${b.column}`;
  });
}

/** The exact text under each diagnostic's primary span. */
export function spannedText(source: string): string[] {
  return analyze(source).diagnostics.map((d) => source.slice(d.span.start, d.span.end));
}

export async function compileOrThrow(source: string, fileName = "test.mmb"): Promise<string> {
  const result = await compile(source, { fileName });
  if (!result.code) throw new Error(result.diagnostics.map((d) => `${d.code} ${d.message}`).join("\n"));
  return result.code;
}

/** A small, fast two-modality spec used by runtime tests; `balance` replaces the rule. */
export function smallSpec(balance = "", extra = ""): string {
  return `model small
data synthetic(classes: 4, samples: 160, dominant: a, seed: 3)
modality a : float[8]
modality b : float[6]
target y : class(4)
encoder[m] = mlp(hidden: [10], out: 5)
fusion concat -> linear(4)
loss cross_entropy(out, y)
optimizer sgd(lr: 0.1)
train epochs 2 batch 16 seed 2
${extra}
balance {
${balance}
}
`;
}
