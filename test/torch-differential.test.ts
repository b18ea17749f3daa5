import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { exportData, exportedData } from "../cli/data-export.js";
import { loadTrainer } from "../cli/load-trainer.js";
import { findTorchPython } from "../cli/python.js";
import { analyze, compile, type ModelIR } from "../compiler/index.js";
import { loadCheckpoint } from "../runtime/checkpoint.js";
import type { Dataset, Split } from "../runtime/data/index.js";
import { train } from "../runtime/train.js";
import { logRecords, readSpec, specFiles, specsDir, withBatchNorm, withDrawnLoss, withDropout, withOneEpochStages } from "./helpers.js";

/**
 * The two targets against each other, spec by spec: from the same initial weights (both draw them
 * from the seed alike) and the same batches (the same samples, exported once, in the same shuffled
 * order), the tfjs trainer (cpu backend) and the torch trainer log the same rule values, losses and
 * gradient norms at every step, measure the same epochs, and end with the same weights, to 1e-5.
 */
const { python, tried } = findTorchPython();
const required = process.env.MMB_REQUIRE_TORCH === "1";
if (!python && required) throw new Error(`MMB_REQUIRE_TORCH=1 but no Python imports torch and numpy (${tried.join("; ")})`);


const tolerance = 1e-5;
/**
 * Specs whose values are quotients of differences of nearly equal numbers, which amplify float32
 * rounding past the tolerance: each with the tolerance it gets, and why (docs/torch.md).
 */
const amplified: Record<string, { tolerance: number; why: string }> = {
  "gblending.mmb": { tolerance: 1e-4, why: "r[m] divides a difference of split losses by the square of another (O/G²), about 100× the rounding of each loss" },
};
/**
 * Specs run again with every encoder's hidden layers batch-normalised (`norm: "batch"`): a first-order
 * rule with noise, a second-order one, turns, frozen encoders, and a teacher read in evaluation mode
 * with its stage's running statistics.
 */
const batchNormalized = ["ogm_ge.mmb", "agm_cr.mmb", "mla.mmb", "linear_probe.mmb", "umt.mmb"];
/**
 * Specs run again with their mlp encoders' hidden layers dropping out (`dropout: 0.3`), which both
 * targets draw from the step's streams: a first-order rule, a second-order one (several passes of a
 * step drop the same units), per-sample passes (each its own row of the batch's draw), and turns.
 */
const droppingOut = ["ogm_ge.mmb", "agm_cr.mmb", "agm_cr_per_sample.mmb", "mla.mmb"];

/** Steps per epoch and epochs: every spec takes several steps, across an epoch boundary. */
const steps = 2;
const epochs = 2;

/** The first `n` rows of a split. */
function head(split: Split, n: number): Split {
  const size = Math.min(n, split.size);
  const widthOf = (values: Float32Array) => values.length / split.size;
  return { size, inputs: split.inputs.map((x) => x.slice(0, size * widthOf(x))), labels: split.labels.slice(0, size * widthOf(split.labels)) };
}

/**
 * Adam and AdamW divide each update by √v + ε. Where a gradient element is a near-cancelling sum
 * close to ε (1e-8), its float32 rounding (some per cent of its value, in either target) moves
 * that element's update by some per cent of the learning rate: weights of such runs are compared
 * with that much allowed per step, on top of the tolerance (the logged values keep the tolerance).
 */
function adaptiveAllowance(ir: ModelIR): number {
  const optimizers = [ir.optimizer, ...ir.rule.actions.flatMap((a) => (a.kind === "minimize" ? [a.optimizer] : []))];
  const rates = optimizers.filter((o) => o.kind === "adam" || o.kind === "adamw").map((o) => Number(o.options.lr));
  return rates.length ? 0.05 * Math.max(...rates) * steps * epochs : 0;
}

function compare(a: unknown, b: unknown, path: string, worst: { error: number; where: string }, allowance = 0): void {
  if (typeof a === "number" && typeof b === "number") {
    const error = Math.max(0, Math.abs(a - b) - allowance) / Math.max(1, Math.abs(a));
    if (!(error <= worst.error)) Object.assign(worst, { error: Number.isNaN(error) ? Infinity : error, where: `${path}: tfjs ${a}, torch ${b}` });
    return;
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    expect(b.length, path).toBe(a.length);
    a.forEach((x, i) => compare(x, b[i], `${path}[${i}]`, worst, allowance));
    return;
  }
  if (a && typeof a === "object" && b && typeof b === "object") {
    expect(Object.keys(b as object), path).toEqual(Object.keys(a as object));
    for (const key of Object.keys(a as object)) compare((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key], `${path}.${key}`, worst, allowance);
    return;
  }
  expect(b, path).toEqual(a);
}

/**
 * `python3 trainer.py ARGS` as a user runs it, then, in the same process, the last checkpoint's
 * weights by tfjs names and layouts (read back through the trainer's own runtime) written to a
 * JSON file: one start of Python and torch a spec, not two. argv: trainer, weights file, ARGS.
 */
const runThenRead = [
  "import json, runpy, sys",
  "trainer, weights, args = sys.argv[1], sys.argv[2], sys.argv[3:]",
  "sys.argv = [trainer, *args]",
  "runpy.run_path(trainer, run_name='__main__')",
  "ns = runpy.run_path(trainer)",
  "model = ns['Model'](ns['SPEC'], 0, ns['TRAINER']['fuse'])",
  "state, saved = ns['load_checkpoint'](args[args.index('--out') + 1] + '/checkpoints', 'cpu')",
  "model.load_state_dict({k: v for k, v in saved.items() if not k.startswith('stage:')})",
  "with open(weights, 'w') as handle:",
  "    json.dump({k: v.reshape(-1).tolist() for k, v in ns['tfjs_weights'](model).items()}, handle)",
].join("\n");

/** The fields that measure the run's machine, not its computation. */
const machine = new Set(["seconds", "step_seconds", "tensors", "tensor_mb", "rss_mb"]);

describe.skipIf(!python)("the torch target agrees with the tfjs target", () => {
  // A staged spec's earlier stages train one epoch (of `steps` steps) each: every stage and its hand-over, quickly.
  const spec = (file: string) => withOneEpochStages(readSpec(file));
  const cases = [
    ...specFiles().map((file) => ({ file, name: file, text: spec(file) })),
    ...batchNormalized.map((file) => ({ file, name: `${file} with batch-normalised encoders`, text: withBatchNorm(spec(file)) })),
    ...droppingOut.map((file) => ({ file, name: `${file} with dropout in its mlp encoders`, text: withDropout(spec(file), 0.3) })),
    // Per-sample passes of a task loss that draws: each sample's pass draws its row of the batch's.
    { file: "agm_cr_per_sample.mmb", name: "agm_cr_per_sample.mmb with dropout(out, 0.3) in its task loss", text: withDrawnLoss(spec("agm_cr_per_sample.mmb"), 0.3) },
  ];

  for (const { file, name, text } of cases) {
    it(`${name}: every step's values, every epoch's metrics and the last weights`, async () => {
      const path = join(specsDir, file);
      const analysis = analyze(text, { fileName: path });
      const ir = analysis.ir!;
      const batch = Number(ir.train.batch);
      const full = exportedData(ir, path).data;
      const data: Dataset = { ...full, train: head(full.train, steps * batch), valid: head(full.valid, 48), test: head(full.test, 48) };
      const dir = mkdtempSync(join(tmpdir(), `mmb-differential-${file.replace(".mmb", "")}-`));

      const tfjs = join(dir, "tfjs");
      const trainer = await loadTrainer((await compile(text, { fileName: path })).code!, join(dir, "tfjs-code"));
      await train(trainer, { out: tfjs, backend: "cpu", data, epochs, log: () => {} });

      const torch = join(dir, "torch");
      writeFileSync(join(dir, "trainer.py"), (await compile(text, { fileName: path, target: "torch" })).code!);
      await exportData(ir, path, join(dir, "data.npz"), { text, data });
      const torchWeights = join(dir, "torch-weights.json");
      const run = spawnSync(python!.command, ["-c", runThenRead, join(dir, "trainer.py"), torchWeights, "--data", join(dir, "data.npz"), "--out", torch, "--epochs", String(epochs), "--quiet"], { encoding: "utf8" });
      expect(run.stderr, run.stdout).toBe("");
      expect(run.status).toBe(0);

      const strip = (records: Record<string, unknown>[]) => records.map((r) => Object.fromEntries(Object.entries(r).filter(([k]) => !machine.has(k))));
      const [a, b] = [strip(logRecords(tfjs)), strip(logRecords(torch))];
      expect(b.map((r) => `${r.type} ${r.step ?? r.epoch}`)).toEqual(a.map((r) => `${r.type} ${r.step ?? r.epoch}`));
      const worst = { error: 0, where: "" };
      a.forEach((record, i) => compare(record, b[i], `log record ${i}`, worst));

      // The last weights, by tfjs name and layout: the torch checkpoint read back through the trainer's own runtime.
      const checkpoint = (await loadCheckpoint(join(tfjs, "checkpoints")))!;
      // The model's weights; a finished stage's (`stage:NAME:...`) were read by the later stages' logged values.
      const expected = Object.fromEntries(checkpoint.state.manifest.flatMap((m, i) => (m.name.startsWith("stage:") ? [] : [[m.name, Array.from(checkpoint.weights[i]!)]])));
      writeFileSync(join(dir, "tfjs-weights.json"), JSON.stringify(expected));
      const weights = JSON.parse(readFileSync(torchWeights, "utf8")) as Record<string, number[]>;
      expect(Object.keys(weights).sort()).toEqual(Object.keys(expected).sort());
      for (const [name, values] of Object.entries(expected)) compare(values, weights[name], `weights ${name}`, worst, adaptiveAllowance(ir));
      expect(worst.error, `${worst.where}${amplified[file] ? ` (${amplified[file]!.why})` : ""}`).toBeLessThanOrEqual(amplified[file]?.tolerance ?? tolerance);
      writeFileSync(join(dir, "worst.json"), JSON.stringify(worst));
      console.log(`${name}: worst relative difference ${worst.error.toExponential(2)} (${worst.where || "none"})`);
    }, 300_000);
  }
});

