import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { exportData, exportedData } from "../cli/data-export.js";
import { findTorchPython } from "../cli/python.js";
import { analyze, compile } from "../compiler/index.js";
import type { Split } from "../runtime/data/index.js";
import { logRecords, readSpec, specsDir, withBatchNorm, withDrawnLoss, withDropout } from "./helpers.js";

/**
 * Data-parallel training under torchrun (runtime/torch/ops.py, "the batch, shared by processes"):
 * a spec trained by 2 CPU processes (gloo), each on its part of every global batch, logs the
 * step values and epoch metrics and ends with the weights that one process computes from the
 * whole batches, to 1e-5. The training data is two global batches and a last one of 11 rows (6
 * and 5 per process); with a global batch of 5 on 11 rows, the parts are 3 and 2 rows, and the
 * last batch's 1 and 0 (a process with no rows still takes part in every step).
 */
const { python, tried } = findTorchPython();
const required = process.env.MMB_REQUIRE_TORCH === "1";
if (!python && required) throw new Error(`MMB_REQUIRE_TORCH=1 but no Python imports torch and numpy (${tried.join("; ")})`);

const tolerance = 1e-5;
const epochs = 2;

/** The first `n` rows of a split. */
function head(split: Split, n: number): Split {
  const size = Math.min(n, split.size);
  const widthOf = (values: Float32Array) => values.length / split.size;
  return { size, inputs: split.inputs.map((x) => x.slice(0, size * widthOf(x))), labels: split.labels.slice(0, size * widthOf(split.labels)) };
}

/**
 * The spec's trainer and a few batches of its data (`train` rows), in a new folder; `batch` replaces
 * the spec's global batch, `change` rewrites its text.
 */
async function prepare(file: string, train: (batch: number) => number, batch?: number, change: (text: string) => string = (text) => text): Promise<{ dir: string; trainer: string; data: string }> {
  const path = join(specsDir, file);
  const text = change(batch ? readSpec(file).replace(/\bbatch \d+/, `batch ${batch}`) : readSpec(file));
  const ir = analyze(text, { fileName: path }).ir!;
  const full = exportedData(ir, path).data;
  const dir = mkdtempSync(join(tmpdir(), `mmb-distributed-${file.replace(".mmb", "")}-`));
  const trainer = join(dir, "trainer.py");
  writeFileSync(trainer, (await compile(text, { fileName: path, target: "torch" })).code!);
  const data = join(dir, "data.npz");
  await exportData(ir, path, data, { text, data: { ...full, train: head(full.train, train(Number(ir.train.batch))), valid: head(full.valid, 40), test: head(full.test, 40) } });
  return { dir, trainer, data };
}

/** `python3 trainer.py ...`: one process, the whole batch. */
function alone(trainer: string, args: string[]) {
  return spawnSync(python!.command, [trainer, ...args], { encoding: "utf8" });
}

/**
 * The trainer on 2 processes, as `torchrun --nproc_per_node 2 --standalone` starts them. Debian's
 * torch 1.13 under Python 3.11 reads the launcher's default `--redirects 0` and `--tee 0` as no
 * setting at all (an IntFlag's 0 is not among its members there) and fails; a mapping for a
 * local rank that does not exist (9) leaves every process's output on the console, in any version.
 */
function torchrun(trainer: string, args: string[]) {
  const launcher = ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", "--redirects", "9:1", "--tee", "9:1"];
  return spawnSync(python!.command, [...launcher, trainer, ...args], { encoding: "utf8" });
}

/** The launcher's note that it set OMP_NUM_THREADS for each process (torch 1.13's lines, and torch 2's with their log prefix). */
const launcherNote = /^(WARNING:\S+:|W\d{4} [^\]\n]*\].*|\*+|Setting OMP_NUM_THREADS.*)\n/gm;

function succeeded(run: ReturnType<typeof spawnSync>, what: string): string {
  expect(run.status, `${what}:\n${run.stderr}`).toBe(0);
  expect(String(run.stderr).replace(launcherNote, ""), what).toBe("");
  return String(run.stdout);
}

/** The fields that measure the run's machine, not its computation. */
const machine = new Set(["seconds", "step_seconds", "tensors", "tensor_mb", "rss_mb"]);
const computed = (records: Record<string, unknown>[]) => records.map((r) => Object.fromEntries(Object.entries(r).filter(([k]) => !machine.has(k))));

function compare(a: unknown, b: unknown, path: string, worst: { error: number; where: string }): void {
  if (typeof a === "number" && typeof b === "number") {
    const error = Math.abs(a - b) / Math.max(1, Math.abs(a));
    if (!(error <= worst.error)) Object.assign(worst, { error: Number.isNaN(error) ? Infinity : error, where: `${path}: 1 process ${a}, 2 processes ${b}` });
    return;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    expect(b.length, path).toBe(a.length);
    a.forEach((x, i) => compare(x, b[i], `${path}[${i}]`, worst));
    return;
  }
  if (a && typeof a === "object" && b && typeof b === "object") {
    expect(Object.keys(b as object), path).toEqual(Object.keys(a as object));
    for (const key of Object.keys(a as object)) compare((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key], `${path}.${key}`, worst);
    return;
  }
  expect(b, path).toEqual(a);
}

/** The weights of each run's last checkpoint, by torch name, read back through the trainer's own runtime (one Python for all). */
function weights(trainer: string, ...outs: string[]): Record<string, number[]>[] {
  const code = [
    "import json, sys, runpy",
    "ns = runpy.run_path(sys.argv[1])",
    "print(json.dumps([{k: v.reshape(-1).tolist() for k, v in ns['load_checkpoint'](out + '/checkpoints', 'cpu')[1].items()} for out in sys.argv[2:]]))",
  ].join("\n");
  const read = spawnSync(python!.command, ["-c", code, trainer, ...outs], { encoding: "utf8", maxBuffer: 1 << 30 });
  expect(read.stderr).toBe("");
  return JSON.parse(read.stdout) as Record<string, number[]>[];
}

/** Trains the spec on 1 and on 2 processes (each with `args`); expects the same logs and last weights, and a run folder only rank 0 wrote. */
async function agree(file: string, train: (batch: number) => number, batch?: number, change?: (text: string) => string, args: string[] = []): Promise<{ dir: string; trainer: string; data: string; two: string }> {
  const prepared = await prepare(file, train, batch, change);
  const { dir, trainer, data } = prepared;
  const [one, two] = [join(dir, "one"), join(dir, "two")];
  succeeded(alone(trainer, ["--data", data, "--out", one, "--epochs", String(epochs), "--quiet", ...args]), "1 process");
  const stdout = succeeded(torchrun(trainer, ["--data", data, "--out", two, "--epochs", String(epochs), ...args]), "2 processes");
  // Rank 0 speaks for both, and names them.
  expect(stdout.match(/^mmb: training .* on backend torch \S+ cpu × 2 processes, seed \d+, 2 epochs(, draws from torch)?$/gm)).toHaveLength(1);
  expect(stdout.match(/^epoch 2\/2 /gm)).toHaveLength(1);
  expect(readdirSync(two).sort()).toEqual(["best", "checkpoints", "log.jsonl", "summary.json"]);
  const summary = (out: string) => JSON.parse(readFileSync(join(out, "summary.json"), "utf8"));
  expect(summary(two).kernels).toMatch(/^torch \S+ cpu × 2 processes$/);

  const [a, b] = [computed(logRecords(one)), computed(logRecords(two))];
  expect(b.map((r) => `${r.type} ${r.step ?? r.epoch}`)).toEqual(a.map((r) => `${r.type} ${r.step ?? r.epoch}`));
  const worst = { error: 0, where: "" };
  a.forEach((record, i) => compare(record, b[i], `log record ${i}`, worst));
  const { kernels: _k, wallSeconds: _w, secondsPerEpoch: _s, ...rest } = summary(one);
  compare(rest, Object.fromEntries(Object.keys(rest).map((k) => [k, summary(two)[k]])), "summary", worst);
  const [expected, actual] = weights(trainer, one, two) as [Record<string, number[]>, Record<string, number[]>];
  expect(Object.keys(actual).sort()).toEqual(Object.keys(expected).sort());
  for (const [name, values] of Object.entries(expected)) compare(values, actual[name], `weights ${name}`, worst);
  expect(worst.error, worst.where).toBeLessThanOrEqual(tolerance);
  console.log(`${file}${change ? " (changed)" : ""}${batch ? ` (global batch ${batch})` : ""}${args.length ? ` (${args.join(" ")})` : ""}: worst relative difference ${worst.error.toExponential(2)} (${worst.where || "none"})`);
  return { ...prepared, two };
}

describe.skipIf(!python)("the torch trainer on 2 processes (torchrun, gloo) computes what it computes on one", () => {
  // Two global batches and a last one of 11 rows, split 6 and 5.
  const batches = (batch: number) => 2 * batch + 11;
  const specs: [file: string, what: string][] = [
    ["baseline.mmb", "the task loss, batch sums, gradient norms"],
    ["ogm_ge.mmb", "rule values from global batch sums, scaled gradients and their noise"],
    ["cggm.mmb", "an added loss of gradients (second order), minimize, batch accuracies and their delta"],
    ["cggm_segmentation.mmb", "per-pixel means, Dice and the soft Dice loss over the global batch"],
    ["agm_cr_per_sample.mmb", "per_sample gradients of each sample's own loss"],
    ["modality_dropout.mmb", "drops drawn per sample of the global batch"],
    ["amco.mmb", "dropout drawn per element of the global batch's outputs"],
  ];
  for (const [file, what] of specs) it(`${file}: ${what}`, async () => void (await agree(file, batches)), 300_000);

  // Batch norms normalise with the global batch's statistics (as SyncBatchNorm), through the second order too.
  for (const file of ["ogm_ge.mmb", "cggm.mmb"]) {
    it(`${file} with batch-normalised encoders: the global batch's statistics, and the running ones`, async () => void (await agree(file, batches, undefined, withBatchNorm)), 300_000);
  }

  // An encoder's dropout is drawn for the global batch, each process keeping its rows' (per-sample passes their one row).
  for (const file of ["ogm_ge.mmb", "agm_cr_per_sample.mmb"]) {
    it(`${file} with dropout in its mlp encoders: the global batch's draws`, async () => void (await agree(file, batches, undefined, (text) => withDropout(text, 0.3))), 300_000);
  }

  // torch's generator: every process draws what one process draws, each keeping its rows of the global batch's.
  it("ogm_ge.mmb with dropout in its mlp encoders, --rng torch: torch's draws of the noise and the dropout, the global batch's", async () => void (await agree("ogm_ge.mmb", batches, undefined, (text) => withDropout(text, 0.3), ["--rng", "torch"])), 300_000);
  it("modality_dropout.mmb, --rng torch: torch's draws per sample of the global batch", async () => void (await agree("modality_dropout.mmb", batches, undefined, undefined, ["--rng", "torch"])), 300_000);

  it("--rng torch: refuses to train, before any step, where torch's generator draws differently in the processes (GPUs of different kinds)", async () => {
    const { dir, trainer, data } = await prepare("ogm_ge.mmb", batches);
    // The trainer, with process 1's torch drawing other numbers, as a GPU of another kind would.
    const wrapper = join(dir, "other_draws.py");
    writeFileSync(
      wrapper,
      ["import os, runpy, sys, torch", "if os.environ['RANK'] == '1':", "    rand = torch.rand", "    torch.rand = lambda *a, **k: rand(*a, **k) * 0.5", "runpy.run_path(sys.argv.pop(1), run_name='__main__')"].join("\n"),
    );
    const out = join(dir, "refused");
    const run = torchrun(wrapper, [trainer, "--data", data, "--out", out, "--rng", "torch"]);
    expect(run.status).not.toBe(0);
    expect(run.stderr.match(/^mmb: .*$/gm)).toEqual(["mmb: --rng torch: torch's generator draws differently in these processes (on cpu); train with --rng shared, whose draws are the same everywhere"]);
    expect(readdirSync(out)).toEqual([]);
  }, 300_000);

  it("agm_cr_per_sample.mmb with dropout(out, 0.3) in its task loss: each process's per-sample passes draw their rows of the global batch's", async () => void (await agree("agm_cr_per_sample.mmb", batches, undefined, (text) => withDrawnLoss(text, 0.3))), 300_000);

  // A global batch of 5 on 11 rows: parts of 3 and 2 rows, and the last batch's 1 and 0.
  for (const file of ["cggm.mmb", "agm_cr_per_sample.mmb", "modality_dropout.mmb", "amco.mmb"]) {
    it(`${file}: a global batch of 5, odd, and a last one of 1 row, which leaves a process none`, async () => void (await agree(file, () => 11, 5)), 300_000);
  }

  it("resumes under torchrun where a straight run is; refuses, once, a folder that holds another run", async () => {
    const { dir, trainer, data, two } = await agree("baseline.mmb", batches);
    const resumed = join(dir, "resumed");
    succeeded(torchrun(trainer, ["--data", data, "--out", resumed, "--epochs", "1", "--quiet"]), "first epoch");
    const stdout = succeeded(torchrun(trainer, ["--data", data, "--out", resumed, "--epochs", String(epochs), "--resume"]), "resumed");
    expect(stdout.match(/^mmb: resumed from epoch 1$/gm)).toHaveLength(1);
    expect(computed(logRecords(resumed))).toEqual(computed(logRecords(two)));
    const [resumedWeights, straight] = weights(trainer, resumed, two);
    expect(resumedWeights).toEqual(straight);

    const refused = torchrun(trainer, ["--data", data, "--out", resumed]);
    expect(refused.status).not.toBe(0);
    expect(refused.stderr.match(/^mmb: .*$/gm)).toEqual([`mmb: ${resumed} holds another run (log.jsonl, summary.json, checkpoints, best); choose another --out, add --resume to continue that run, or --overwrite to replace it`]);
    expect(readdirSync(resumed).sort()).toEqual(["best", "checkpoints", "log.jsonl", "summary.json"]);
  }, 300_000);
});
