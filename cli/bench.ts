import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { copyFile, link, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { basename, join } from "node:path";
import type { Summary } from "../runtime/index.js";

/**
 * `mmb bench`: every spec with every seed, each run in a process of its own (`mmb train`), then
 * one table per benchmark: mean ± standard deviation of the test metric and of each modality's
 * unimodal metric at each run's best validation epoch (or its last), that epoch, seconds per
 * epoch, the backend. Failed runs are listed with their error.
 */
export interface BenchOptions {
  specs: string[];
  seeds: number;
  out: string;
  /** Extra `mmb train` arguments passed to every run (`--epochs`, `--set`, `--backend`, `--data`). */
  trainArgs: string[];
  jobs?: number;
  /** Replace the results of an earlier bench in `out` (each run gets `--overwrite`). */
  overwrite?: boolean;
  /** Which epoch's figures the table reports: the best validation epoch (default) or the last. */
  select?: Selection;
  /** Cross-validation: every spec × seed × fold 0..folds − 1 of its `files(group: ...)` data. */
  folds?: number;
  /**
   * Writes a spec's data (of one fold) as `mmb data export` does (`--target torch`): made once,
   * before the spec's first run of that fold, in the spec's folder, and given to each of those runs
   * as `--data FILE.npz` (a hard link in its folder) instead of being exported again by each.
   */
  exportData?: (spec: string, fold: number | undefined, file: string) => Promise<void>;
  log?: (line: string) => void;
}

/** A bench that cannot start: names that collide or escape `--out`, no seeds, an earlier bench in the way. */
export class BenchError extends Error {}

export interface RunResult {
  spec: string;
  seed: number;
  /** With --folds: the fold the run tested on. */
  fold?: number;
  dir: string;
  summary?: Summary;
  error?: string;
}

/** Model selection: a run's figures at its best validation epoch, or at its last. */
export type Selection = "best" | "last";

/** A run's test metric and unimodal metrics at the selected epoch. */
function selected(summary: Summary, select: Selection): { test: number; unimodal: Record<string, number>; epoch: number } {
  return select === "best" ? summary.best : { test: summary.test, unimodal: summary.unimodal, epoch: summary.epochs - 1 };
}

export interface MethodRow {
  spec: string;
  metric: string;
  /** Whose figures `test` and `unimodal` are: each run's best validation epoch, or its last. */
  select: Selection;
  /** The selected epoch (counted from 0), over the seeds. */
  epoch: Stat;
  runs: number;
  failed: number;
  test: Stat;
  unimodal: Record<string, Stat>;
  secondsPerEpoch: Stat;
  backends: string[];
}

export interface Stat {
  mean: number;
  std: number;
}

export function stat(values: number[]): Stat {
  if (values.length === 0) return { mean: NaN, std: NaN };
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  // Sample standard deviation (n − 1); one run has none.
  const std = values.length > 1 ? Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (values.length - 1)) : 0;
  return { mean, std };
}

/** Rows of the comparison, one per spec, in the order the specs were given. */
export function aggregate(runs: RunResult[], select: Selection = "best"): MethodRow[] {
  const specs = [...new Set(runs.map((r) => r.spec))];
  return specs.map((spec) => {
    const mine = runs.filter((r) => r.spec === spec);
    const ok = mine.flatMap((r) => (r.summary ? [r.summary] : []));
    const figures = ok.map((s) => selected(s, select));
    const modalities = [...new Set(figures.flatMap((f) => Object.keys(f.unimodal)))];
    return {
      spec,
      metric: ok[0]?.metric ?? "accuracy",
      select,
      epoch: stat(figures.map((f) => f.epoch)),
      runs: mine.length,
      failed: mine.length - ok.length,
      test: stat(figures.map((f) => f.test)),
      unimodal: Object.fromEntries(modalities.map((m) => [m, stat(figures.map((f) => f.unimodal[m]!))])),
      secondsPerEpoch: stat(ok.map((s) => s.secondsPerEpoch)),
      // A torch run with torch's own draws says so: its figures are not those of the shared draws.
      backends: [...new Set(ok.map((s) => (s.rng ? `${s.backend} (draws: ${s.rng})` : s.backend)))],
    };
  });
}

const metricLabels: Record<string, string> = { accuracy: "acc", mae: "MAE", dice: "Dice" };
/**
 * A figure over `n` runs, as the table and the report print it: mean ± sample standard deviation;
 * one run has no spread to show, so none is printed; none (or a bench of an earlier mmb without it), "—".
 */
export const formatFigure = (s: Stat | undefined, n: number, digits = 3) => (!s || !Number.isFinite(s.mean) ? "—" : n > 1 ? `${s.mean.toFixed(digits)} ± ${s.std.toFixed(digits)}` : s.mean.toFixed(digits));

/**
 * The selected epoch as the tables print it: counted from 1, as the console's `epoch 3/10` and
 * "at the best validation epoch, 3" count; results.json, the CSV and summary.json count from 0, as log.jsonl does.
 * No run (a mean that results.json holds as null) is "—", not epoch 1.
 */
export const formatEpoch = (s: Stat | undefined, n: number) => formatFigure(s && Number.isFinite(s.mean) ? { mean: s.mean + 1, std: s.std } : undefined, n, 1);

/** What the table's figures are, for its heading. */
const selectionText: Record<Selection, string> = {
  best: "each run's figures at its best validation epoch (the `epoch` column, counted from 1; `--select last` for the last epoch's)",
  last: "each run's figures at its last epoch (`--select best` for the best validation epoch's)",
};

export function markdown(rows: MethodRow[], runs: RunResult[], command: string): string {
  const select = rows[0]?.select ?? "best";
  const lines = [
    "| spec | test metric | unimodal (per modality) | epoch | s/epoch | backend | runs |",
    "|---|---|---|---|---|---|---|",
    ...rows.map((r) => {
      const n = r.runs - r.failed;
      const unimodal = Object.entries(r.unimodal).map(([m, s]) => `${m} ${formatFigure(s, n)}`).join("<br>");
      const runs = r.failed ? `${n}/${r.runs} (${r.failed} failed)` : `${r.runs}`;
      return `| ${r.spec} | ${metricLabels[r.metric] ?? r.metric} ${formatFigure(r.test, n)} | ${unimodal || "—"} | ${formatEpoch(r.epoch, n)} | ${formatFigure(r.secondsPerEpoch, n, 2)} | ${r.backends.join(", ") || "—"} | ${runs} |`;
    }),
  ];
  const failures = runs.filter((r) => r.error);
  if (failures.length) lines.push("", "Failed runs:", "", ...failures.map((r) => `- ${r.spec}, seed ${r.seed}${r.fold === undefined ? "" : `, fold ${r.fold}`}: ${r.error!.split("\n")[0]}`));
  const over = runs.some((r) => r.fold !== undefined) ? "seeds and folds (each fold's test split once per seed; folds.json says which groups each held)" : "seeds";
  return `# Benchmark results\n\n\`${command}\`\n\nMean ± sample standard deviation over ${over} of ${selectionText[select]}; unimodal: each modality alone (see each run's summary.json for how).\n\n${lines.join("\n")}\n`;
}

/** Which groups each spec's folds put in each split, from its runs' summaries (the same for every seed). */
export function foldGroups(runs: RunResult[]): Record<string, Record<string, { train: string[]; valid: string[]; test: string[] }>> {
  const out: Record<string, Record<string, { train: string[]; valid: string[]; test: string[] }>> = {};
  for (const r of runs) {
    const folds = r.summary?.folds;
    if (!folds) continue;
    out[r.spec] ??= {};
    out[r.spec]![`fold-${folds.fold}`] ??= folds.groups;
  }
  return out;
}

export function csv(runs: RunResult[]): string {
  const modalities = [...new Set(runs.flatMap((r) => Object.keys(r.summary?.unimodal ?? {})))];
  const metrics = [...new Set(runs.flatMap((r) => Object.keys(r.summary?.metrics?.test ?? {})))];
  // `test`, `valid` and the unimodal columns are the last epoch's; `best_*` the best validation epoch's.
  const folded = runs.some((r) => r.fold !== undefined);
  const header = ["spec", "seed", ...(folded ? ["fold"] : []), "status", "metric", "test", "valid", "best_epoch", "best_test", "best_valid", ...modalities.map((m) => `unimodal_${m}`), ...metrics.map((k) => `test_${k}`), "seconds_per_epoch", "backend", "error"];
  const quote = (v: string) => (/[",\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);
  const rows = runs.map((r) => {
    const s = r.summary;
    return [r.spec, String(r.seed), ...(folded ? [String(r.fold ?? "")] : []), s ? "ok" : "failed", s?.metric ?? "", s ? String(s.test) : "", s ? String(s.valid) : "", s ? String(s.best.epoch) : "", s ? String(s.best.test) : "", s ? String(s.best.valid) : "", ...modalities.map((m) => (s?.unimodal[m] !== undefined ? String(s.unimodal[m]) : "")), ...metrics.map((k) => (s?.metrics?.test[k] !== undefined ? String(s.metrics.test[k]) : "")), s ? String(s.secondsPerEpoch) : "", s?.backend ?? "", (r.error ?? "").split("\n")[0]!]
      .map(quote)
      .join(",");
  });
  return [header.join(","), ...rows].join("\n") + "\n";
}

/** A spec's name in results: its file name without `.mmb`. */
export const specName = (path: string): string => basename(path).replace(/\.mmb$/, "");

/** The bench's runs, each a child process; a signal to the bench ends them too. */
const children = new Set<ChildProcess>();

/** One `mmb train` in a child process running this same CLI; its summary or its error. */
function trainInProcess(spec: string, seed: number, dir: string, trainArgs: string[]): Promise<RunResult> {
  const args = [...process.execArgv, process.argv[1]!, "train", spec, "--seed", String(seed), "--out", dir, ...trainArgs];
  return new Promise((done) => {
    const child = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"] });
    children.add(child);
    let stderr = "";
    child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("close", async (code) => {
      children.delete(child);
      const name = specName(spec);
      const summaryPath = join(dir, "summary.json");
      if (code === 0 && existsSync(summaryPath)) {
        done({ spec: name, seed, dir, summary: JSON.parse(await readFile(summaryPath, "utf8")) as Summary });
      } else {
        const message = stderr.split("\n").filter((l) => l.startsWith("mmb:") || l.startsWith("error")).join("\n") || stderr.trim() || `exit ${code}`;
        done({ spec: name, seed, dir, error: message.replace(/^mmb: /, "") });
      }
    });
  });
}

/**
 * The bench's export of a spec's data, hard-linked into a run folder as its data.npz (copied where
 * links fail), and the run's `--data` that names it there. A link is safe: mmb replaces an export
 * whole, never writes into it, so every run folder keeps the samples it trained on.
 */
async function linkedInto(file: string, dir: string): Promise<string[]> {
  const own = join(dir, "data.npz");
  await mkdir(dir, { recursive: true });
  await rm(own, { force: true });
  await link(file, own).catch(() => copyFile(file, own));
  return ["--data", own];
}

/** Checks what would make the bench's results wrong before any run starts. */
async function checkBench(options: BenchOptions): Promise<void> {
  if (!Number.isInteger(options.seeds) || options.seeds < 1) throw new BenchError(`--seeds must be at least 1, got ${options.seeds}`);
  const byName = new Map<string, string>();
  for (const spec of options.specs) {
    const name = specName(spec);
    // A name of dots would put the runs outside --out (`...mmb` is `..`).
    if (/^\.*$/.test(name)) throw new BenchError(`${spec}: its file name gives no folder name for its runs; rename the spec`);
    const other = byName.get(name);
    if (other !== undefined) throw new BenchError(`${other} and ${spec} are both named ${name}: their runs and rows would merge; rename one`);
    byName.set(name, spec);
  }
  const earlier = ["results.json", "results.md", "results.csv", ...byName.keys()].filter((entry) => existsSync(join(options.out, entry)));
  if (earlier.length && !options.overwrite) {
    throw new BenchError(`${options.out} holds an earlier bench (${earlier.join(", ")}); choose another --out, or --overwrite to replace it`);
  }
}

/** While the bench runs, SIGINT or SIGTERM ends every run it started, then the bench itself. */
function endRunsOnSignal(): () => void {
  const handlers = (["SIGINT", "SIGTERM"] as const).map((signal) => {
    const handler = () => {
      for (const child of children) child.kill("SIGTERM");
      process.exit(signal === "SIGINT" ? 130 : 143);
    };
    process.once(signal, handler);
    return () => process.removeListener(signal, handler);
  });
  return () => handlers.forEach((remove) => remove());
}

export async function bench(options: BenchOptions): Promise<{ runs: RunResult[]; rows: MethodRow[] }> {
  const say = options.log ?? ((line: string) => console.error(line));
  await checkBench(options);
  await mkdir(options.out, { recursive: true });
  const trainArgs = [...options.trainArgs, ...(options.overwrite ? ["--overwrite"] : [])];
  const stopOnSignal = endRunsOnSignal();
  const folds = options.folds ? Array.from({ length: options.folds }, (_, f) => f) : [undefined];
  const tasks = options.specs.flatMap((spec) => Array.from({ length: options.seeds }, (_, i) => folds.map((fold) => ({ spec, seed: i + 1, fold }))).flat());
  const jobs = Math.max(1, Math.min(options.jobs ?? availableParallelism(), tasks.length));
  const runs: RunResult[] = new Array(tasks.length);
  // Each spec's export of each fold, made once (runs that start together wait for the same one).
  const exports = new Map<string, Promise<string>>();
  const exported = (spec: string, fold: number | undefined): Promise<string> => {
    const file = join(options.out, specName(spec), fold === undefined ? "data.npz" : `data-fold-${fold}.npz`);
    if (!exports.has(file)) exports.set(file, options.exportData!(spec, fold, file).then(() => file));
    return exports.get(file)!;
  };
  let next = 0;
  const worker = async () => {
    while (next < tasks.length) {
      const index = next++;
      const { spec, seed, fold } = tasks[index]!;
      const dir = join(options.out, specName(spec), `seed-${seed}`, ...(fold === undefined ? [] : [`fold-${fold}`]));
      // The export holds its fold's splits (and says which groups they hold); otherwise each run chooses its fold.
      const dataArgs = options.exportData
        ? await exported(spec, fold).then((file) => linkedInto(file, dir), (e: unknown) => e as Error)
        : fold === undefined ? [] : ["--fold", String(fold), "--folds", String(options.folds)];
      const trained = dataArgs instanceof Error ? { spec: specName(spec), seed, dir, error: dataArgs.message } : await trainInProcess(spec, seed, dir, [...trainArgs, ...dataArgs]);
      const result = { ...trained, ...(fold === undefined ? {} : { fold }) };
      runs[index] = result;
      const name = `${result.spec} seed ${seed}${fold === undefined ? "" : ` fold ${fold}`}`;
      say(result.summary ? `mmb bench: ${name}: test ${result.summary.metric} ${result.summary.test.toFixed(4)} (at the best validation epoch, ${result.summary.best.epoch + 1}: test ${result.summary.best.test.toFixed(4)})` : `mmb bench: ${name} FAILED: ${result.error}`);
    }
  };
  await Promise.all(Array.from({ length: jobs }, worker)).finally(stopOnSignal);
  const select = options.select ?? "best";
  const rows = aggregate(runs, select);
  const command = ["mmb bench", ...options.specs, "--seeds", String(options.seeds), ...(options.folds ? ["--folds", String(options.folds)] : []), ...options.trainArgs, ...(select === "last" ? ["--select", "last"] : [])].join(" ");
  await writeFile(join(options.out, "results.md"), markdown(rows, runs, command));
  if (options.folds) await writeFile(join(options.out, "folds.json"), JSON.stringify(foldGroups(runs), null, 2) + "\n");
  await writeFile(join(options.out, "results.csv"), csv(runs));
  await writeFile(join(options.out, "results.json"), JSON.stringify({ command, rows, runs }, null, 2) + "\n");
  return { runs, rows };
}
