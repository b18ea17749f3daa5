/**
 * Compile-time benchmark: parse, check, schedule, codegen and format, per spec, plus a
 * 300-line spec. Prints medians of warm runs and the ratio to the targets of issue 2
 * (parse+check ≤ 20 ms for 300 lines; full compile ≤ 300 ms); then the command line's start-up,
 * whole processes of the built CLI. Run: npm run bench
 */
import { spawnSync } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { parse } from "../grammar/index.js";
import { check } from "../compiler/1-check/index.js";
import { generate } from "../compiler/3-codegen/tfjs/index.js";
import { SourceText } from "../diagnostics/index.js";
import { format } from "../compiler/index.js";
import { schedule } from "../compiler/2-schedule/index.js";
import { median } from "./median.js";
import { repositoryRoot } from "./paths.js";

const specsDir = join(repositoryRoot, "specs");

/** A 300-line spec: the baseline plus many per-modality rule values. */
function longSpec(): string {
  const head = readFileSync(join(specsDir, "ogm_ge.mmb"), "utf8").replace(/balance \{[\s\S]*$/, "");
  const lines = Array.from({ length: 300 - head.split("\n").length - 2 }, (_, i) =>
    i === 0 ? "  v0[m] = norm(grad(encoder[m]))" : `  v${i}[m] = v${i - 1}[m] * 0.5 + sum(batch, prob(contrib[m], y)) / (1 + v${i - 1}[other(m)])`,
  );
  return `${head}balance {\n${lines.join("\n")}\n}\n`;
}

async function measure(name: string, text: string, runs = 15) {
  const times = { parse: [] as number[], check: [] as number[], schedule: [] as number[], codegen: [] as number[], format: [] as number[] };
  for (let i = 0; i < runs + 3; i++) {
    let t = performance.now();
    const parsed = parse(text);
    const t1 = performance.now();
    const source = new SourceText(text, name);
    const checked = check(parsed.program, source);
    const t2 = performance.now();
    const plan = schedule(checked.model!);
    const t3 = performance.now();
    const code = generate(checked.model!, plan, source);
    const t4 = performance.now();
    await format(code);
    const t5 = performance.now();
    if (i < 3) continue; // warm-up
    times.parse.push(t1 - t);
    times.check.push(t2 - t1);
    times.schedule.push(t3 - t2);
    times.codegen.push(t4 - t3);
    times.format.push(t5 - t4);
    t = t5;
  }
  const m = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)])) as Record<keyof typeof times, number>;
  const total = m.parse + m.check + m.schedule + m.codegen + m.format;
  const lines = text.split("\n").length;
  console.log(
    `${name.padEnd(16)} ${String(lines).padStart(4)} lines  parse ${m.parse.toFixed(2)}  check ${m.check.toFixed(2)}  schedule ${m.schedule.toFixed(2)}  codegen ${m.codegen.toFixed(1)}  format ${m.format.toFixed(1)}  total ${total.toFixed(1)} ms  (parse+check ${((m.parse + m.check) / 20).toFixed(2)}× of 20 ms, total ${(total / 300).toFixed(2)}× of 300 ms)`,
  );
}

console.log("compile time, median of 15 warm runs, milliseconds");
for (const file of readdirSync(specsDir).filter((f) => f.endsWith(".mmb")).sort()) await measure(file, readFileSync(join(specsDir, file), "utf8"));
await measure("300-line spec", longSpec());

/**
 * Whole `mmb` processes, as an editor's save hook or a script starts them: what the user waits for
 * is mostly loading modules, which the warm runs above never see. Alternated command by command,
 * so that a slow moment of the machine spreads over all of them.
 */
function startUp(runs = 9) {
  const cli = join(repositoryRoot, "dist", "cli", "main.js");
  const baseline = join(specsDir, "baseline.mmb");
  const commands: [string, string[]][] = [
    ["node alone", ["-e", "0"]],
    ["mmb --help", [cli, "--help"]],
    ["mmb check", [cli, "check", baseline]],
    ["mmb fmt --check", [cli, "fmt", "--check", baseline]],
    ["mmb compile --target torch", [cli, "compile", baseline, "--target", "torch"]],
    ["mmb compile", [cli, "compile", baseline]],
  ];
  const times = commands.map(() => [] as number[]);
  for (let i = 0; i < runs + 1; i++) {
    commands.forEach(([name, args], c) => {
      const t = performance.now();
      const run = spawnSync(process.execPath, args, { encoding: "utf8" });
      if (run.status !== 0) throw new Error(`${name} failed: ${run.stderr}`);
      if (i > 0) times[c]!.push(performance.now() - t);
    });
  }
  console.log(`\ncommand-line start-up, whole processes on specs/baseline.mmb, median of ${runs}, milliseconds`);
  commands.forEach(([name], c) => console.log(`${name.padEnd(28)} ${median(times[c]!).toFixed(0).padStart(5)}`));
}

startUp();
