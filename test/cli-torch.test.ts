import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { findTorchPython } from "../cli/python.js";
import { mmb, root } from "./helpers.js";

/** `mmb compile|train|bench --target torch` as a user runs them. */
const { python } = findTorchPython();

/** `mmb` with extra environment variables. */
function mmbWith(env: Record<string, string>, ...args: string[]) {
  const result = spawnSync(process.execPath, ["--import", "tsx", join(root, "cli", "main.ts"), ...args], { cwd: root, encoding: "utf8", env: { ...process.env, ...env } });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe("the command line's torch target", () => {
  it("compile --target torch prints the Python trainer", () => {
    const ok = mmb("compile", "specs/ogm_ge.mmb", "--target", "torch");
    expect(ok.status).toBe(0);
    expect(ok.stdout).toMatch(/^#!\/usr\/bin\/env python3\n/);
    expect(ok.stdout).toContain("def train_step(ctx, p):");
  });

  it("refuses a target it does not know, --device or --rng without torch, a generator it does not know, and --backend with torch (exit 2)", () => {
    expect(mmb("compile", "specs/baseline.mmb", "--target", "jax").stderr).toContain('--target is tfjs or torch, got "jax"');
    const device = mmb("train", "specs/baseline.mmb", "--device", "cuda");
    expect(device.status).toBe(2);
    expect(device.stderr).toContain("--device places a torch trainer's tensors: add --target torch");
    const rng = mmb("train", "specs/baseline.mmb", "--rng", "torch");
    expect(rng.status).toBe(2);
    expect(rng.stderr).toContain("--rng chooses a torch trainer's generator: add --target torch");
    const unknown = mmb("bench", "specs/baseline.mmb", "--target", "torch", "--rng", "philox");
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain('--rng is shared or torch, got "philox"');
    const backend = mmb("train", "specs/baseline.mmb", "--target", "torch", "--backend", "wasm");
    expect(backend.status).toBe(2);
    expect(backend.stderr).toContain("--backend chooses a tfjs backend");
  });

  it("train --target torch without a Python that imports torch says what it tried and how to get one", () => {
    const out = mkdtempSync(join(tmpdir(), "mmb-no-torch-"));
    const run = mmbWith({ MMB_PYTHON: "/nonexistent/python3" }, "train", "specs/baseline.mmb", "--target", "torch", "--out", out);
    expect(run.status).toBe(1);
    expect(run.stderr).toContain("no Python with torch and numpy (tried /nonexistent/python3: not found)");
    expect(run.stderr).toContain("apt-get install python3-torch");
    expect(existsSync(join(out, "trainer.py"))).toBe(false);
  });

  it.skipIf(!python)("train --target torch: trainer.py and data.npz in the run folder, tfjs's log schema, csv logs; a second run is refused", () => {
    const out = join(mkdtempSync(join(tmpdir(), "mmb-torch-cli-")), "run");
    const run = mmb("train", "specs/baseline.mmb", "--target", "torch", "--epochs", "1", "--out", out, "--log", "csv");
    expect(run.stderr).toBe("");
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/mmb: training baseline on backend torch .* cpu, seed 1, 1 epochs/);
    for (const file of ["trainer.py", "data.npz", "log.jsonl", "summary.json", "log-steps.csv", "log-epochs.csv"]) expect(existsSync(join(out, file)), file).toBe(true);
    const summary = JSON.parse(readFileSync(join(out, "summary.json"), "utf8"));
    expect(summary.backend).toBe("torch");
    expect(summary.modalities).toEqual(["audio", "visual"]);
    const again = mmb("train", "specs/baseline.mmb", "--target", "torch", "--epochs", "1", "--out", out);
    expect(again.status).toBe(1);
    expect(again.stderr).toContain("holds another run (log.jsonl, summary.json, checkpoints, best, log-steps.csv, log-epochs.csv); choose another --out");
    const resumed = mmb("train", "specs/baseline.mmb", "--target", "torch", "--epochs", "2", "--out", out, "--resume");
    expect(resumed.status).toBe(0);
    expect(resumed.stdout).toContain("mmb: resumed from epoch 1");
    // The trained weights, exported, start another torch run: its first loss is the trained model's, not the seed's.
    const weights = join(out, "..", "weights.npz");
    expect(mmb("export", out, "-o", weights).status).toBe(0);
    const started = join(out, "..", "from-weights");
    expect(mmb("train", "specs/baseline.mmb", "--target", "torch", "--epochs", "1", "--init", weights, "--out", started).status).toBe(0);
    const firstLoss = (dir: string) => JSON.parse(readFileSync(join(dir, "log.jsonl"), "utf8").split("\n")[1]!).loss as number;
    expect(firstLoss(started)).toBeLessThan(firstLoss(out) - 0.1);
  }, 120_000);

  it.skipIf(!python)("bench --target torch --rng torch: every run draws from torch, and the table says so", () => {
    const out = join(mkdtempSync(join(tmpdir(), "mmb-torch-bench-")), "bench");
    const run = mmb("bench", "specs/ogm_ge.mmb", "--target", "torch", "--rng", "torch", "--seeds", "2", "--epochs", "1", "--jobs", "1", "--out", out);
    expect(run.status, run.stderr).toBe(0);
    for (const seed of [1, 2]) expect(JSON.parse(readFileSync(join(out, "ogm_ge", `seed-${seed}`, "summary.json"), "utf8")).rng, `seed ${seed}`).toBe("torch on cpu");
    expect(readFileSync(join(out, "results.md"), "utf8")).toContain("| torch (draws: torch on cpu) |");
  }, 120_000);

  it.skipIf(!python)("train --target torch --resume refuses a checkpoint without the model's running statistics (an mmb's before batch norm), naming one", () => {
    const dir = mkdtempSync(join(tmpdir(), "mmb-torch-bn-"));
    const spec = join(dir, "bn.mmb");
    writeFileSync(
      spec,
      'model bn\ndata synthetic(classes: 4, samples: 120, dominant: a, seed: 3)\nmodality a : float[8]\nmodality b : float[6]\ntarget y : class(4)\nencoder[m] = mlp(hidden: [10], out: 5, norm: "batch")\nfusion concat -> linear(4)\nloss cross_entropy(out, y)\noptimizer sgd(lr: 0.1)\ntrain epochs 2 batch 16 seed 2\n',
    );
    const out = join(dir, "run");
    expect(mmb("train", spec, "--target", "torch", "--epochs", "1", "--out", out).status).toBe(0);
    // The checkpoint rewritten without the running statistics, whole and checksummed, as an earlier mmb wrote it.
    const rewrite = [
      "import runpy, sys",
      "ns = runpy.run_path(sys.argv[1])",
      "state, weights = ns['load_checkpoint'](sys.argv[2], 'cpu')",
      "ns['save_checkpoint'](sys.argv[2], state, {k: v for k, v in weights.items() if 'running_' not in k})",
    ].join("\n");
    const rewritten = spawnSync(python!.command, ["-c", rewrite, join(out, "trainer.py"), join(out, "checkpoints")], { encoding: "utf8" });
    expect(rewritten.stderr).toBe("");
    const resumed = mmb("train", spec, "--target", "torch", "--out", out, "--resume");
    expect(resumed.status).toBe(1);
    expect(resumed.stderr).toContain("its checkpoint has no encoder.a.dense0.norm.running_mean (written by an mmb whose model differs)");
  }, 120_000);
});
