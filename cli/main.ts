#!/usr/bin/env node
import { mkdir, readFile, realpath, writeFile } from "node:fs/promises";
import { basename, dirname, extname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { analyze, compile, diagnosticsJson, renderAll, targets, type CompileResult, type ModelIR, type Target } from "../compiler/index.js";
import { SourceText } from "../diagnostics/index.js";
import { parse as parseSpec } from "../grammar/index.js";
import { formatSpec } from "../grammar/print.js";
import { writeAtomically } from "../runtime/checkpoint.js";
import { logFormats, type LogFormat } from "../runtime/log-export.js";
import { trainerFiles } from "../runtime/run-folder.js";
import { bench, specName } from "./bench.js";
import { report as writeReport } from "./report.js";
import { commandHelp, commands, flags, overview, type Command, type FlagValues } from "./help.js";
import { mmbVersion } from "../runtime/version.js";
// TensorFlow.js, its backends and ts-morph are imported where a command uses them (training,
// `doctor`, `export`, `data`, the tfjs code generator): they are most of the start-up that
// `mmb check`, `mmb fmt`, `mmb compile --target torch` and `--help` would otherwise wait for.

/** Wrong usage: the message, and the command whose usage line follows it (the overview without one). */
class UsageError extends Error {
  constructor(
    message: string,
    readonly command?: Command,
  ) {
    super(message);
  }
}

/** The command's options; a flag the command does not take is a usage error, not silently ignored. */
function parse(command: Command, args: string[]) {
  const options = Object.fromEntries(
    [...command.flags, "help" as const].map((name) => {
      const flag: { type: "string" | "boolean"; short?: string; multiple?: boolean } = flags[name];
      return [name, { type: flag.type, ...(flag.short ? { short: flag.short } : {}), ...(flag.multiple ? { multiple: flag.multiple } : {}) }];
    }),
  );
  try {
    return parseArgs({ args, allowPositionals: true, strict: true, options });
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/\. To specify a positional argument.*$/s, ""), command);
  }
}

/** `--log csv,tensorboard`: the extra forms of the log. */
function logFormatsOf(value: string | undefined): LogFormat[] {
  const asked = (value ?? "").split(",").map((f) => f.trim()).filter(Boolean);
  const unknown = asked.find((f) => !(logFormats as readonly string[]).includes(f));
  if (unknown) throw new UsageError(`--log takes ${logFormats.join(", ")} (comma-separated), got "${unknown}"`);
  return asked as LogFormat[];
}

function wholeNumber(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw new UsageError(`${flag} needs a whole number, got "${value}"`);
  return Number(value);
}

/** `--set name=value` pairs; built with Object.fromEntries, so that any name (`__proto__`) is a property. */
function parseSets(sets: string[] | undefined): Record<string, number> {
  return Object.fromEntries(
    (sets ?? []).map((item) => {
      const match = /^([A-Za-z_][A-Za-z0-9_]*)=(.+)$/.exec(item);
      if (!match || !Number.isFinite(Number(match[2]))) throw new UsageError(`--set takes name=number, got "${item}"`);
      return [match[1]!, Number(match[2])];
    }),
  );
}

/** `--target`: tfjs (the default) or torch; `--device` and `--rng` are torch's, `--backend` tfjs's. */
function targetOf(values: FlagValues): Target {
  const target = (values.target ?? "tfjs") as Target;
  if (!targets.includes(target)) throw new UsageError(`--target is ${targets.join(" or ")}, got "${values.target}"`);
  if (values.device !== undefined && target !== "torch") throw new UsageError("--device places a torch trainer's tensors: add --target torch (tfjs picks its device with --backend)");
  if (values.device !== undefined && !["cpu", "cuda"].includes(values.device)) throw new UsageError(`--device is cpu or cuda, got "${values.device}"`);
  if (values.rng !== undefined && target !== "torch") throw new UsageError("--rng chooses a torch trainer's generator: add --target torch (a tfjs trainer's draws are always the shared ones)");
  if (values.rng !== undefined && !["shared", "torch"].includes(values.rng)) throw new UsageError(`--rng is shared or torch, got "${values.rng}"`);
  if (values.backend !== undefined && target === "torch") throw new UsageError("--backend chooses a tfjs backend; a torch trainer takes --device cpu|cuda");
  return target;
}

async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch {
    throw new UsageError(`cannot read ${path}`);
  }
}

async function readSpec(path: string, data?: string): Promise<string> {
  const text = await readText(path);
  return data === undefined ? text : withData(text, data);
}

/** `--data FILE.npz`: samples that `mmb data export` wrote, which the torch trainer reads as they are. */
function exportedFile(data: string | undefined): string | undefined {
  return data !== undefined && /^[^()]*\.npz$/i.test(data.trim()) ? data.trim() : undefined;
}

/**
 * `--data` of a command that trains with torch: an export (its path, which the trainer reads) or
 * a clause (spliced into the spec). An export holds one fold's splits, from whatever root.
 */
function torchData(values: FlagValues): { file?: string; clause?: string } {
  const file = exportedFile(values.data);
  if (file === undefined) return values.data === undefined ? {} : { clause: values.data };
  if (values.fold !== undefined || values.folds !== undefined || values["data-root"] !== undefined) {
    throw new UsageError(`--fold, --folds and --data-root choose the spec's own data; an export already holds its splits (${file})`);
  }
  return { file: resolve(file) };
}

/** The spec with its `data` declaration replaced (or added) by `--data`. */
function withData(text: string, data: string): string {
  // A file name is not a clause: spliced into the spec it became a syntax error at a line of the spec that is not there.
  if (exportedFile(data) !== undefined) {
    throw new UsageError(`--data ${data}: an export is read by the torch trainer (--target torch); this command reads a data clause such as \`synthetic(seed: 4)\` or \`files(...)\``);
  }
  if (/^[^()]*\.(npy|csv|jsonl?)$/i.test(data.trim())) {
    throw new UsageError(`--data takes a data clause such as \`synthetic(seed: 4)\` or \`files(...)\`, not a file (${data}): \`files(...)\` names the spec's files`);
  }
  const declaration = parseSpec(text).program.decls.find((d) => d.kind === "DataDecl");
  const line = `data ${data.replace(/[\r\n]+/g, " ")}`;
  if (!declaration) return `${text}\n${line}\n`;
  return text.slice(0, declaration.span.start) + line + text.slice(declaration.span.end);
}

function report(result: { diagnostics: CompileResult["diagnostics"]; source: SourceText }, format: string): void {
  if (result.diagnostics.length === 0) return;
  if (format === "json") console.log(diagnosticsJson(result.diagnostics, result.source));
  else console.error(renderAll(result.diagnostics, result.source) + "\n");
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    const about = name === "help" && rest[0] ? commands.find((c) => c.name === rest[0]) : undefined;
    if (name === "help" && rest[0] && !about) throw new UsageError(`unknown command "${rest[0]}"`);
    console.log(about ? commandHelp(about) : overview);
    return name ? 0 : 2;
  }
  if (name === "--version" || name === "-v") {
    console.log(`mmb ${mmbVersion}`);
    return 0;
  }
  const command = commands.find((c) => c.name === name);
  if (!command) throw new UsageError(`unknown command "${name}"`);
  try {
    return await runCommand(command, rest);
  } catch (e) {
    // A usage error inside a command is followed by that command's usage line.
    throw e instanceof UsageError && !e.command ? new UsageError(e.message, command) : e;
  }
}

async function runCommand(command: Command, rest: string[]): Promise<number> {
  const parsed = parse(command, rest);
  const positionals = parsed.positionals;
  const values = parsed.values as FlagValues;
  if (values.help) {
    console.log(commandHelp(command));
    return 0;
  }
  const format = values.format ?? "text";
  if (!["text", "json"].includes(format)) throw new UsageError(`--format is text or json, got "${format}"`);
  if (values.resume && values.overwrite) throw new UsageError("--resume continues the run in --out, --overwrite replaces it: give one");
  switch (command.name) {
    case "check": {
      if (positionals.length === 0) throw new UsageError("mmb check needs at least one spec");
      let failed = false;
      const all: unknown[] = [];
      for (const path of positionals) {
        const analysis = analyze(await readSpec(path), { fileName: path });
        failed ||= analysis.diagnostics.some((d) => d.severity === "error");
        if (format === "json") all.push(...JSON.parse(diagnosticsJson(analysis.diagnostics, analysis.source)));
        else if (analysis.diagnostics.length) console.error(renderAll(analysis.diagnostics, analysis.source) + "\n");
      }
      if (format === "json") console.log(JSON.stringify(all, null, 2));
      else if (!failed) console.error(`mmb: ${positionals.length} spec${positionals.length === 1 ? "" : "s"} checked, no errors`);
      return failed ? 1 : 0;
    }
    case "fmt": {
      if (positionals.length === 0) throw new UsageError("mmb fmt needs at least one spec, or - for standard input");
      if (positionals.includes("-") && positionals.length > 1) throw new UsageError("mmb fmt - formats standard input alone: give it no other spec");
      const unformatted: string[] = [];
      let failed = false;
      for (const path of positionals) {
        const outcome = await formatFile(path, values.check ?? false);
        if (outcome === "syntax errors") failed = true;
        if (outcome === "not formatted") unformatted.push(path);
      }
      if (unformatted.length > 0) console.error(`mmb: ${unformatted.length} spec${unformatted.length === 1 ? " is" : "s are"} not formatted; \`mmb fmt\` rewrites ${unformatted.length === 1 ? "it" : "them"}`);
      return failed || unformatted.length > 0 ? 1 : 0;
    }
    case "compile": {
      if (positionals.length !== 1) throw new UsageError("mmb compile takes one spec");
      const path = positionals[0]!;
      const result = await compile(await readSpec(path), { fileName: path, target: targetOf(values) });
      report(result, format);
      if (!result.code) return 1;
      if (values["dump-ir"]) console.log(dumpIr(result));
      if (values.output) {
        await mkdir(dirname(resolve(values.output)), { recursive: true });
        await writeFile(values.output, result.code);
        console.error(`mmb: wrote ${values.output}`);
      } else if (!values["dump-ir"]) process.stdout.write(result.code);
      return 0;
    }
    case "train": {
      if (positionals.length !== 1) throw new UsageError("mmb train takes one spec");
      const path = positionals[0]!;
      const sets = parseSets(values.set);
      const target = targetOf(values);
      const data = target === "torch" ? torchData(values) : { clause: values.data };
      const text = await readSpec(path, data.clause);
      const result = await compile(text, { fileName: path, set: sets, target });
      report(result, format);
      if (!result.code) return 1;
      const out = values.out ?? join("runs", specName(path));
      if (target === "torch") return trainWithTorch(result, path, text, out, values, sets, data.file);
      await trainInFolder(result.code, out, values, sets);
      return 0;
    }
    case "run": {
      if (positionals.length !== 1) throw new UsageError("mmb run takes one trainer, a .ts file that `mmb compile` wrote");
      const path = positionals[0]!;
      if (extname(path).toLowerCase() === ".py") throw new UsageError(`${path} is a Python trainer (\`mmb compile --target torch\`): run it with python3 ${path} --data DATA.npz --out DIR, or train its spec with \`mmb train SPEC --target torch\``);
      const code = await readText(path);
      if (!/^export default trainer;$/m.test(code)) throw new UsageError(`${path} is not a trainer that \`mmb compile\` wrote (it exports no \`trainer\`)`);
      await trainInFolder(code, values.out ?? join("runs", basename(path, extname(path))), values, parseSets(values.set));
      return 0;
    }
    case "bench": {
      if (positionals.length === 0) throw new UsageError("mmb bench needs at least one spec");
      const sets = parseSets(values.set);
      const target = targetOf(values);
      const data = target === "torch" ? torchData(values) : { clause: values.data };
      // Each spec as checked (after --data): its data clause for --folds, its samples for a shared export.
      const checked = new Map<string, { text: string; ir: ModelIR }>();
      for (const path of positionals) {
        const text = await readSpec(path, data.clause);
        const result = await compile(text, { fileName: path, set: sets, target });
        report(result, format);
        if (!result.code) return 1;
        checked.set(path, { text, ir: result.ir! });
      }
      // Torch runs of a spec's data share one export of it (of each fold), not one each: `--data` and `--data-root` go into it.
      const shareExports = target === "torch" && data.file === undefined;
      const dataRoot = values["data-root"] ? { dataRoot: resolve(values["data-root"]) } : {};
      const trainArgs = [
        ...(target !== "tfjs" ? ["--target", target] : []),
        ...(values.device ? ["--device", values.device] : []),
        ...(values.rng ? ["--rng", values.rng] : []),
        ...(values.epochs !== undefined ? ["--epochs", String(wholeNumber(values.epochs, "--epochs"))] : []),
        ...(values.backend ? ["--backend", values.backend] : []),
        ...(data.file ? ["--data", data.file] : data.clause && !shareExports ? ["--data", data.clause] : []),
        ...(dataRoot.dataRoot && !shareExports ? ["--data-root", dataRoot.dataRoot] : []),
        ...(values.log ? ["--log", logFormatsOf(values.log).join(",")] : []),
        ...(values.set ?? []).flatMap((item) => ["--set", item]),
      ];
      const jobs = wholeNumber(values.jobs, "--jobs");
      const out = values.out ?? join("runs", "bench");
      const seeds = wholeNumber(values.seeds, "--seeds") ?? 3;
      const folds = wholeNumber(values.folds, "--folds");
      if (folds !== undefined && folds < 2) throw new UsageError(`--folds needs at least 2, got ${folds}`);
      // Folds deal out the groups of files(group: ...) data: a spec without them would fail every run it starts.
      for (const spec of folds ? positionals : []) {
        const declared = checked.get(spec)!.ir.data;
        if (!(declared.kind === "files" && declared.options.group !== undefined)) {
          throw new UsageError(`--folds: ${spec} reads ${declared.kind === "files" ? "files() without `group`" : `${declared.kind}(...)`}; folds deal out the groups of \`files(group: "file:field", ...)\` data (e.g. actors), which --data can give`);
        }
      }
      const select = values.select ?? "best";
      if (select !== "best" && select !== "last") throw new UsageError(`--select is best or last, got "${select}"`);
      const exportData = async (spec: string, fold: number | undefined, file: string) => {
        const { text, ir } = checked.get(spec)!;
        const { exportData: write } = await import("./data-export.js");
        await write(ir, spec, file, { text, ...dataRoot, ...(fold !== undefined && folds ? { fold: { fold, folds } } : {}) });
      };
      const { rows, runs } = await bench({ specs: positionals, seeds, out, trainArgs, overwrite: values.overwrite ?? false, select, ...(jobs ? { jobs } : {}), ...(folds ? { folds } : {}), ...(shareExports ? { exportData } : {}) });
      const count = (n: number, what: string) => `${n} ${what}${n === 1 ? "" : "s"}`;
      console.log(`mmb: ${count(rows.length, "spec")} × ${count(seeds, "seed")}${folds ? ` × ${count(folds, "fold")}` : ""}; results in ${join(out, "results.md")} (.json, .csv)`);
      return runs.some((r) => r.error) ? 1 : 0;
    }
    case "doctor": {
      if (positionals.length > 0) throw new UsageError("mmb doctor takes no arguments");
      return doctor();
    }
    case "lsp": {
      if (positionals.length > 0) throw new UsageError("mmb lsp takes no files: the editor sends them");
      // Loaded here: the other commands do not need the protocol's modules.
      const { serveStdio } = await import("../lsp/index.js");
      return serveStdio();
    }
    case "export": {
      if (positionals.length !== 1) throw new UsageError("mmb export takes one run folder");
      if (!values.output) throw new UsageError("mmb export needs -o FILE: a .pt (a PyTorch state_dict) or a .npz (weights by tfjs names and layouts)");
      const { exportWeights, weightsFormat } = await import("./export.js");
      if (!weightsFormat(values.output)) throw new UsageError(`-o names a .pt (a PyTorch state_dict) or a .npz (weights by tfjs names and layouts), got "${values.output}"`);
      const done = await exportWeights(positionals[0]!, values.output, { best: values.best ?? false });
      const form = done.format === "pt" ? "a PyTorch state_dict, torch names and layouts" : "tfjs names and layouts";
      console.error(`mmb: wrote ${values.output}: ${done.parameters} parameters of ${done.model || "the model"} (${form}) from the ${done.run} run's epoch ${done.epoch + 1} (${done.checkpoint})`);
      return 0;
    }
    case "report": {
      if (positionals.length !== 1) throw new UsageError("mmb report takes one run or bench directory");
      const file = await writeReport(positionals[0]!, values.output);
      console.log(`mmb: wrote ${file}`);
      return 0;
    }
    case "data": {
      if (positionals[0] !== "export") throw new UsageError(positionals[0] ? `mmb data has one subcommand, export, got "${positionals[0]}"` : "mmb data needs a subcommand: export");
      if (positionals.length !== 2) throw new UsageError("mmb data export takes one spec");
      if (!values.output) throw new UsageError("mmb data export needs -o FILE, the .npz to write");
      if (extname(values.output).toLowerCase() !== ".npz") throw new UsageError(`-o names the .npz to write, got "${values.output}"`);
      const path = positionals[1]!;
      const fold = wholeNumber(values.fold, "--fold");
      const folds = wholeNumber(values.folds, "--folds");
      if ((fold === undefined) !== (folds === undefined)) throw new UsageError("--fold and --folds come together: test on fold F of K");
      const sets = parseSets(values.set);
      const text = await readSpec(path, values.data);
      const analysis = analyze(text, { fileName: path, set: sets });
      report(analysis, format);
      if (!analysis.ir || analysis.diagnostics.some((d) => d.severity === "error")) return 1;
      const { exportData } = await import("./data-export.js");
      const dataRoot = values["data-root"] ? { dataRoot: resolve(values["data-root"]) } : {};
      const meta = await exportData(analysis.ir, path, values.output, { text, ...dataRoot, ...(fold !== undefined && folds !== undefined ? { fold: { fold, folds } } : {}) });
      const { train: nTrain, valid: nValid, test: nTest } = meta.splits;
      console.error(`mmb: wrote ${values.output}: ${nTrain} train, ${nValid} valid and ${nTest} test samples of ${[...meta.modalities.map((m) => m.name), meta.target.name].join(", ")}`);
      return 0;
    }
    default:
      throw new UsageError(`unknown command "${command.name}"`);
  }
}

/** `mmb doctor`: every backend probed in the order a run tries them, the versions, and whether a hardware GPU is usable. */
async function doctor(): Promise<number> {
  const { packageVersion, probeBackends } = await import("../runtime/backend.js");
  const probes = await probeBackends();
  const width = Math.max(...probes.map((p) => p.name.length));
  console.log(`mmb ${mmbVersion}, node ${process.version}, @tensorflow/tfjs ${packageVersion("@tensorflow/tfjs") ?? "-"}`);
  console.log("backends, in the order a run tries them:");
  for (const p of probes) console.log(`  ${p.name.padEnd(width)}  ${p.available ? "yes" : "no "}  ${p.detail}`);
  const first = probes.find((p) => p.preferred);
  const gpu = probes.find((p) => p.gpu);
  console.log(`a run without --backend uses ${first?.name ?? "none"}; ${gpu ? `a hardware GPU is usable through ${gpu.name}` : "no backend computes on a hardware GPU"}`);
  return gpu ? 0 : 1;
}

/**
 * `mmb fmt` of one spec: rewritten in place (atomically, through a symbolic link to its target)
 * when the layout changes it, and its name printed; `-` is standard input, printed formatted.
 * With `check`, nothing is written and an unformatted spec's name is printed.
 */
async function formatFile(path: string, check: boolean): Promise<"formatted" | "not formatted" | "syntax errors"> {
  const fromStdin = path === "-";
  const name = fromStdin ? "<stdin>" : path;
  const text = fromStdin ? await readStdin() : await readText(path);
  const result = formatSpec(text);
  if ("diagnostics" in result) {
    console.error(renderAll(result.diagnostics, new SourceText(text, name)) + "\n");
    return "syntax errors";
  }
  const changed = result.text !== text;
  if (check) {
    if (changed) console.log(name);
    return changed ? "not formatted" : "formatted";
  }
  if (fromStdin) process.stdout.write(result.text);
  else if (changed) {
    await writeAtomically(await realpath(path), result.text);
    console.log(path);
  }
  return "formatted";
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/**
 * The settings of a run both targets take from the command line, checked: the seed, the epochs,
 * the cross-validation fold, the data root, and `--init FILE.npz` (a fresh run's weights, by
 * tfjs names and layouts).
 */
function runSettings(values: FlagValues) {
  const fold = wholeNumber(values.fold, "--fold");
  const folds = wholeNumber(values.folds, "--folds");
  if ((fold === undefined) !== (folds === undefined)) throw new UsageError("--fold and --folds come together: test on fold F of K");
  if (values.init !== undefined && values.resume) throw new UsageError("--init sets a fresh run's weights, --resume continues from its checkpoint's: give one");
  if (values.init !== undefined && extname(values.init).toLowerCase() !== ".npz") throw new UsageError(`--init takes a .npz of weights by tfjs names and layouts (\`mmb export RUN -o FILE.npz\` writes one), got "${values.init}"`);
  const seed = wholeNumber(values.seed, "--seed");
  const epochs = wholeNumber(values.epochs, "--epochs");
  return {
    ...(seed !== undefined ? { seed } : {}),
    ...(epochs !== undefined ? { epochs } : {}),
    ...(values["data-root"] ? { dataRoot: resolve(values["data-root"]) } : {}),
    ...(fold !== undefined && folds !== undefined ? { fold: { fold, folds } } : {}),
    ...(values.init !== undefined ? { init: resolve(values.init) } : {}),
  };
}

/** `mmb train --target torch`: the Python trainer and the spec's data in `out`, run by a Python with torch. */
async function trainWithTorch(result: CompileResult, path: string, text: string, out: string, values: FlagValues, sets: Record<string, number>, dataFile?: string): Promise<number> {
  const settings = runSettings(values);
  await mkdir(out, { recursive: true });
  const { trainTorch } = await import("./train-torch.js");
  return trainTorch({
    code: result.code!,
    ir: result.ir!,
    path,
    text,
    out,
    sets,
    resume: values.resume ?? false,
    overwrite: values.overwrite ?? false,
    logFormats: logFormatsOf(values.log),
    ...(dataFile ? { dataFile } : {}),
    ...(values.device ? { device: values.device } : {}),
    ...(values.rng ? { rng: values.rng } : {}),
    ...settings,
  });
}

/**
 * Trains a trainer's code in `out`: the folder is claimed (locked, and checked for another run's
 * state) before the trainer is written into it.
 */
async function trainInFolder(code: string, out: string, values: FlagValues, sets: Record<string, number>): Promise<void> {
  const formats = logFormatsOf(values.log);
  const settings = runSettings(values);
  await mkdir(out, { recursive: true });
  const [{ claimRunFolder, train }, { loadTrainer }] = await Promise.all([import("../runtime/index.js"), import("./load-trainer.js")]);
  const folder = await claimRunFolder(out, { resume: values.resume ?? false, overwrite: values.overwrite ?? false });
  const files = await trainerFiles(out, values.resume ?? false);
  try {
    const definition = await loadTrainer(code, files.dir);
    const summary = await train(definition, {
      out,
      folder,
      ...(values.backend ? { backend: values.backend } : {}),
      ...settings,
      set: sets,
      resume: values.resume ?? false,
      ...(formats.length ? { logFormats: formats } : {}),
    });
    console.log(`mmb: test ${summary.metric} ${summary.test.toFixed(4)} on ${summary.kernels}; log, summary and checkpoints in ${out}`);
  } finally {
    await files.remove();
    await folder.release();
  }
}

function dumpIr(result: CompileResult): string {
  return [
    "== ast (phase 1: parse) ==",
    JSON.stringify(result.program, null, 2),
    "== ir (phase 2: check) ==",
    JSON.stringify(result.ir, null, 2),
    "== step plan (phase 3: schedule) ==",
    JSON.stringify(result.plan, null, 2),
  ].join("\n");
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    if (e instanceof UsageError) {
      console.error(e.command ? `mmb: ${e.message}\n${commandHelp(e.command).split("\n")[0]}\n(mmb ${e.command.name} --help lists its options)` : `mmb: ${e.message}\n\n${overview}`);
      process.exit(2);
    }
    console.error(`mmb: ${(e as Error).message ?? String(e)}`);
    process.exit(1);
  },
);
