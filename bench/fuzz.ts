/**
 * Front-end fuzzing: every spec in specs/ and every fixture, mutated at random (tokens deleted,
 * duplicated, swapped or inserted; bytes inserted; truncation; extreme numbers), plus rule
 * statements drawn from a small grammar. The checker must never throw; every diagnostic must
 * carry a catalogued code, a span inside the file, a message and a help line; specs that still
 * check must compile to code that TypeScript parses, and to a torch trainer without a crash. Specs that still parse must format to a
 * layout that formats to itself and parses to the same AST (`mmb fmt`), and the language
 * server's index, hovers and completion must answer every input without throwing.
 *   node dist/bench/fuzz.js [--cases 100000] [--seed 1]
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ts } from "ts-morph";
import { analyze, codes } from "../compiler/index.js";
import { generate } from "../compiler/3-codegen/tfjs/index.js";
import { generateTorch } from "../compiler/3-codegen/torch/index.js";
import { isDeepStrictEqual } from "node:util";
import { parse } from "../grammar/index.js";
import { formatSpec } from "../grammar/print.js";
import { mmbLexer } from "../grammar/tokens.js";
import { complete } from "../lsp/completion.js";
import { hoverText } from "../lsp/hover.js";
import { indexSymbols } from "../lsp/symbols.js";
import { Random } from "../runtime/random.js";
import { repositoryRoot } from "./paths.js";


export function corpus(): string[] {
  const specs = readdirSync(join(repositoryRoot, "specs")).filter((f) => f.endsWith(".mmb")).map((f) => readFileSync(join(repositoryRoot, "specs", f), "utf8"));
  const fixturesDir = join(repositoryRoot, "test", "fixtures");
  const fixtures = readdirSync(fixturesDir).map((d) => join(fixturesDir, d, "input.mmb")).flatMap((f) => {
    try {
      return [readFileSync(f, "utf8")];
    } catch {
      return [];
    }
  });
  return [...specs, ...fixtures];
}

const words = [
  "model", "data", "modality", "target", "encoder", "fusion", "head", "loss", "optimizer", "schedule", "train", "learnable",
  "balance", "param", "when", "scale", "noise", "replace", "drop", "with", "by", "add", "minimize", "wrt", "using", "if", "then",
  "else", "and", "or", "not", "grad", "norm", "cos", "dot", "prev", "delta", "ema", "sum", "mean", "max", "min", "other", "z",
  "contrib", "alone", "without", "out", "y", "m", "k", "batch", "step", "epoch", "per_sample", "class_mean", "distance", "concat",
  "attention", "(", ")", "[", "]", "{", "}", ",", ":", "=", "==", "->", "~", "+", "-", "*", "/", "^", "<", ">", "!=", ".",
  "0", "1", "1e308", "-1e-308", "1e999", "0.5", "\"x\"", "\"${a}`*/\"", "é", "\u202e", "#", "//",
];
const oddChars = ["\u0000", "\"", "'", "`", "$", "{", "}", "\\", "\n", "\t", "\u00a0", "☃", "\ud83d\ude00", "*/", "/*", "${"];

/** A random rule statement from a small grammar of the language. */
export function randomStatement(random: Random): string {
  const pick = <T>(xs: T[]) => xs[Math.floor(random.uniform() * xs.length)]!;
  const expr = (depth: number): string => {
    if (depth <= 0) return pick(["1", "0.5", "step", "epoch", "m", "k", "x[m]", "s[other(m)]", "norm(grad(encoder[m]))", "acc(out, y)", "prob(contrib[m], y)", "z[m]", "grad(head)", "y", "out"]);
    switch (Math.floor(random.uniform() * 7)) {
      case 0:
        return `${expr(depth - 1)} ${pick(["+", "-", "*", "/", "^", "<", "==", "and"])} ${expr(depth - 1)}`;
      case 1:
        return `${pick(["abs", "exp", "log", "tanh", "relu", "norm", "std", "detach", "per_sample", "mean"])}(${expr(depth - 1)})`;
      case 2:
        return `${pick(["sum", "mean", "max", "min"])}(${pick(["k", "k != m", "batch", "m"])}, ${expr(depth - 1)})`;
      case 3:
        return `if ${expr(depth - 1)} then ${expr(depth - 1)} else ${expr(depth - 1)}`;
      case 4:
        return `${pick(["prev", "ema", "cos", "dot", "grad", "distance", "class_mean"])}(${expr(depth - 1)}, ${expr(depth - 1)})`;
      case 5:
        return `(${expr(depth - 1)})`;
      default:
        return `-${expr(depth - 1)}`;
    }
  };
  const target = pick(["x[m]", "v", "s[m]", "grad", "m", "out"]);
  switch (Math.floor(random.uniform() * 8)) {
    case 0:
      return `param ${pick(["alpha", "p", "step"])} = ${expr(0)}`;
    case 1:
      return `when ${expr(2)} { scale grad(encoder[m]) by ${expr(2)} }`;
    case 2:
      return `noise grad(${pick(["encoder[m]", "head", "fusion", "w"])}) ~ normal(0, ${expr(2)})`;
    case 3:
      return `add loss ${expr(3)}`;
    case 4:
      return `minimize ${expr(2)} wrt ${pick(["w", "head[m]", "encoder[m]"])} using sgd(lr: ${expr(0)})`;
    case 5:
      return `replace grad(encoder[m]) by ${expr(2)}`;
    case 6:
      return `drop z[${pick(["m", "audio", "k"])}] with ${expr(1)}`;
    default:
      return `${target} = ${expr(3)}`;
  }
}

/** One mutation of `text`. */
export function mutate(text: string, random: Random): string {
  const pick = <T>(xs: T[]) => xs[Math.floor(random.uniform() * xs.length)]!;
  const tokens = mmbLexer.tokenize(text).tokens;
  const at = (i: number) => tokens[Math.min(i, tokens.length - 1)];
  const i = Math.floor(random.uniform() * Math.max(1, tokens.length));
  const token = at(i);
  const splice = (start: number, end: number, insert: string) => text.slice(0, start) + insert + text.slice(end);
  switch (Math.floor(random.uniform() * 9)) {
    case 0: // delete a token
      return token ? splice(token.startOffset, token.endOffset! + 1, "") : text;
    case 1: // duplicate a token
      return token ? splice(token.endOffset! + 1, token.endOffset! + 1, ` ${token.image}`) : text;
    case 2: {
      // swap two adjacent tokens
      const next = at(i + 1);
      if (!token || !next || next === token) return text;
      return text.slice(0, token.startOffset) + next.image + text.slice(token.endOffset! + 1, next.startOffset) + token.image + text.slice(next.endOffset! + 1);
    }
    case 3: // insert a word of the language
      return token ? splice(token.startOffset, token.startOffset, `${pick(words)} `) : pick(words);
    case 4: {
      // insert odd characters anywhere
      const position = Math.floor(random.uniform() * (text.length + 1));
      return splice(position, position, pick(oddChars));
    }
    case 5: // truncate
      return text.slice(0, Math.floor(random.uniform() * text.length));
    case 6: // an extreme or malformed number
      return token ? splice(token.startOffset, token.endOffset! + 1, pick(["1e999", "-0", "0.0000000001", "99999999999999999999", "1e-400", "NaN", "-1"])) : text;
    case 7: {
      // a random statement inside the balance block (or a new block)
      const brace = text.lastIndexOf("}");
      const stmt = randomStatement(random);
      return brace >= 0 ? splice(brace, brace, `  ${stmt}\n`) : `${text}\nbalance {\n  ${stmt}\n}\n`;
    }
    default: // replace a name with a near-miss
      return token && /^[A-Za-z_]/.test(token.image) ? splice(token.startOffset, token.endOffset! + 1, token.image.slice(0, -1) + pick(["x", "_", "0", ""])) : text;
  }
}

/** An AST without its spans: what a layout must keep. */
function withoutSpans(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(withoutSpans);
  if (node === null || typeof node !== "object") return node;
  return Object.fromEntries(Object.entries(node).filter(([key]) => key !== "span").map(([key, value]) => [key, withoutSpans(value)]));
}

/** What formatting `text` breaks, if anything: idempotence, the AST, the comments (text and order). */
export function layoutProblem(text: string): string | undefined {
  const once = formatSpec(text);
  if ("diagnostics" in once) return `refused: ${once.diagnostics.map((d) => d.code).join(", ")}`;
  const twice = formatSpec(once.text);
  if ("diagnostics" in twice) return `its own output is refused: ${twice.diagnostics.map((d) => d.message).join("; ")}\n${once.text}`;
  if (twice.text !== once.text) return `formatting twice changes it:\n${once.text}\n---\n${twice.text}`;
  const before = parse(text);
  const after = parse(once.text);
  if (!isDeepStrictEqual(withoutSpans(after.program), withoutSpans(before.program))) return `the AST changed:\n${once.text}`;
  if (!isDeepStrictEqual(after.comments.map((c) => c.text), before.comments.map((c) => c.text.trimEnd()))) return `the comments changed:\n${once.text}`;
  return undefined;
}

export interface FuzzReport {
  cases: number;
  crashes: { input: string; error: string }[];
  invalidDiagnostics: { input: string; problem: string }[];
  clean: number;
  compiled: number;
  /** Clean specs the torch target wrote a trainer for. */
  torchCompiled: number;
  /** Inputs that parsed, each formatted; those whose layout broke. */
  formatted: number;
  layoutBroken: { input: string; problem: string }[];
  /** Hovers the language server answered. */
  hovers: number;
  codesHit: Record<string, number>;
}

/** Checks one input; returns a problem description or undefined. */
function checkOne(text: string, report: FuzzReport): void {
  let analysis: ReturnType<typeof analyze>;
  try {
    analysis = analyze(text, { fileName: "fuzz.mmb" });
  } catch (e) {
    report.crashes.push({ input: text, error: String((e as Error).stack ?? e) });
    return;
  }
  for (const d of analysis.diagnostics) {
    report.codesHit[d.code] = (report.codesHit[d.code] ?? 0) + 1;
    const problem =
      !(d.code in codes) ? `unknown code ${d.code}`
      : !(d.span.start >= 0 && d.span.start <= d.span.end && d.span.end <= text.length) ? `span ${d.span.start}-${d.span.end} outside 0-${text.length}`
      : !d.message ? "empty message"
      : !d.help ? `${d.code} without help`
      : undefined;
    if (problem) report.invalidDiagnostics.push({ input: text, problem });
  }
  try {
    const index = indexSymbols(analysis.program);
    for (const occurrence of index.occurrences) {
      if (!(occurrence.span.start <= occurrence.span.end && occurrence.span.end <= text.length) || !hoverText(occurrence, analysis.source, analysis.ir)) {
        report.crashes.push({ input: text, error: `lsp: an empty hover, or a span outside the file, for ${occurrence.kind}` });
      }
      report.hovers++;
    }
    for (const offset of [0, text.length >> 1, text.length]) complete(text, offset, analysis.program, index);
  } catch (e) {
    report.crashes.push({ input: text, error: `lsp: ${String((e as Error).stack ?? e)}` });
  }
  if (parse(text).diagnostics.length === 0) {
    report.formatted++;
    try {
      const problem = layoutProblem(text);
      if (problem) report.layoutBroken.push({ input: text, problem });
    } catch (e) {
      report.crashes.push({ input: text, error: `fmt: ${String((e as Error).stack ?? e)}` });
    }
  }
  if (analysis.diagnostics.length > 0 || !analysis.ir || !analysis.plan) return;
  report.clean++;
  try {
    const code = generate(analysis.ir, analysis.plan, analysis.source);
    const parsed = ts.createSourceFile("trainer.ts", code, ts.ScriptTarget.ES2022, true);
    const syntax = (parsed as unknown as { parseDiagnostics: unknown[] }).parseDiagnostics;
    if (syntax.length > 0) report.crashes.push({ input: text, error: "generated code does not parse" });
    else report.compiled++;
  } catch (e) {
    report.crashes.push({ input: text, error: `codegen: ${String((e as Error).stack ?? e)}` });
  }
  try {
    if (generateTorch(analysis.ir, analysis.plan, analysis.source).includes("def train_step")) report.torchCompiled++;
  } catch (e) {
    report.crashes.push({ input: text, error: `torch codegen: ${String((e as Error).stack ?? e)}` });
  }
}

export function fuzz(cases: number, seed: number): FuzzReport {
  const random = new Random(seed);
  const inputs = corpus();
  const report: FuzzReport = { cases, crashes: [], invalidDiagnostics: [], clean: 0, compiled: 0, torchCompiled: 0, formatted: 0, layoutBroken: [], hovers: 0, codesHit: {} };
  for (let n = 0; n < cases; n++) {
    let text = inputs[Math.floor(random.uniform() * inputs.length)]!;
    const rounds = 1 + Math.floor(random.uniform() * 4);
    for (let r = 0; r < rounds; r++) text = mutate(text, random);
    checkOne(text, report);
  }
  return report;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (name: string, fallback: number) => {
    const i = process.argv.indexOf(name);
    return i >= 0 ? Number(process.argv[i + 1]) : fallback;
  };
  const cases = arg("--cases", 100_000);
  const seed = arg("--seed", 1);
  const started = performance.now();
  const report = fuzz(cases, seed);
  const seconds = (performance.now() - started) / 1000;
  console.log(`fuzz: ${report.cases} cases (seed ${seed}) in ${seconds.toFixed(1)} s`);
  console.log(`  crashes (checker threw, or codegen failed): ${report.crashes.length}`);
  console.log(`  diagnostics without a valid code, span, message or help: ${report.invalidDiagnostics.length}`);
  console.log(`  specs that still checked clean: ${report.clean}, compiled to parseable TypeScript: ${report.compiled}, to a torch trainer: ${report.torchCompiled}`);
  console.log(`  specs that still parsed, formatted: ${report.formatted}, layout broken (not idempotent, AST or comments changed): ${report.layoutBroken.length}`);
  console.log(`  language-server hovers answered: ${report.hovers}`);
  console.log(`  distinct diagnostic codes hit: ${Object.keys(report.codesHit).length} (${Object.keys(report.codesHit).sort().join(", ")})`);
  for (const c of report.crashes.slice(0, 3)) console.log(`--- crash ---\n${c.error}\n--- input ---\n${c.input}`);
  for (const c of report.invalidDiagnostics.slice(0, 3)) console.log(`--- invalid diagnostic: ${c.problem} ---\n${c.input}`);
  for (const c of report.layoutBroken.slice(0, 3)) console.log(`--- layout broken: ${c.problem} ---\n${c.input}`);
  process.exitCode = report.crashes.length + report.invalidDiagnostics.length + report.layoutBroken.length > 0 ? 1 : 0;
}
