import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { findTorchPython } from "../cli/python.js";
import { alive, groupedProject, mmb, root, smallSpec, waitFor } from "./helpers.js";

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
    expect(run.stdout).toMatch(/mmb: training baseline on backend torch .* cpu, seed 1, 1 epoch\n/);
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

  it.skipIf(!python)("train --target torch --data FILE.npz trains on an export as it is, to the run the spec's own data gives; the run folder's data.npz is that file; tfjs and --fold refuse it", () => {
    const dir = mkdtempSync(join(tmpdir(), "mmb-torch-exported-"));
    const exported = join(dir, "exported.npz");
    expect(mmb("data", "export", "specs/baseline.mmb", "-o", exported).status).toBe(0);
    const [own, given] = [join(dir, "own"), join(dir, "given")];
    expect(mmb("train", "specs/baseline.mmb", "--target", "torch", "--epochs", "1", "--out", own).status).toBe(0);
    const run = mmb("train", "specs/baseline.mmb", "--target", "torch", "--epochs", "1", "--data", exported, "--out", given);
    expect(run.stderr).toBe("");
    expect(run.status).toBe(0);
    expect(readFileSync(join(given, "data.npz"))).toEqual(readFileSync(exported));
    // A copy, not a link: the user's file may be rewritten in place; the run folder keeps what it trained on.
    expect(statSync(join(given, "data.npz")).ino).not.toBe(statSync(exported).ino);
    const losses = (out: string) => readFileSync(join(out, "log.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((r) => r.type === "step").map((r) => r.loss);
    expect(losses(given)).toEqual(losses(own));
    // --resume with the same export continues; the tfjs trainer reads the spec's data clause, not an export.
    expect(mmb("train", "specs/baseline.mmb", "--target", "torch", "--epochs", "2", "--data", exported, "--out", given, "--resume").status).toBe(0);
    const tfjs = mmb("train", "specs/baseline.mmb", "--data", exported, "--out", join(dir, "tfjs"));
    expect(tfjs.status).toBe(2);
    expect(tfjs.stderr).toContain(`--data ${exported}: an export is read by the torch trainer (--target torch)`);
    const fold = mmb("train", "specs/baseline.mmb", "--target", "torch", "--data", exported, "--fold", "0", "--folds", "3", "--out", join(dir, "fold"));
    expect(fold.status).toBe(2);
    expect(fold.stderr).toContain("--fold, --folds and --data-root choose the spec's own data; an export already holds its splits");
    const missing = mmb("train", "specs/baseline.mmb", "--target", "torch", "--data", join(dir, "nope.npz"), "--out", join(dir, "missing"));
    expect(missing.status).toBe(1);
    expect(missing.stderr).toContain(`mmb: ${join(dir, "nope.npz")}: file: expected a .npz that \`mmb data export\` wrote, found no such file`);
  });

  it.skipIf(!python)("train --target torch --resume: a refused resume leaves the folder as it was; the other target's checkpoint, a damaged one, or one `latest` names that is gone, is refused naming it", () => {
    const dir = mkdtempSync(join(tmpdir(), "mmb-torch-refused-"));
    const out = join(dir, "run");
    expect(mmb("train", "specs/baseline.mmb", "--target", "torch", "--epochs", "1", "--out", out).status).toBe(0);
    const folder = () => Object.fromEntries(readdirSync(out, { recursive: true, encoding: "utf8" }).sort().map((f) => [f, statSync(join(out, f)).isFile() ? createHash("sha256").update(readFileSync(join(out, f))).digest("hex") : "(folder)"]));
    const before = folder();
    // Another spec; other samples (the same spec's data clause, another seed): each refused, the folder's trainer.py and data.npz kept.
    const spec = mmb("train", "specs/ogm_ge.mmb", "--target", "torch", "--resume", "--out", out);
    expect(spec.status).toBe(1);
    expect(spec.stderr).toContain(`mmb: cannot resume ${out}: the spec changed`);
    // Its data clause is baseline's: the same samples, so the data is not named as a cause.
    expect(spec.stderr).not.toContain("the data changed");
    const data = mmb("train", "specs/baseline.mmb", "--target", "torch", "--resume", "--out", out, "--data", "synthetic(classes: 6, dominant: audio, seed: 8)");
    expect(data.status).toBe(1);
    expect(data.stderr).toContain("the data changed");
    expect(folder()).toEqual(before);
    const fewer = mmb("train", "specs/baseline.mmb", "--target", "torch", "--resume", "--epochs", "0", "--out", out);
    expect(fewer.status).toBe(1);
    expect(fewer.stderr).toContain(`mmb: cannot resume ${out}: it has trained 1 epoch, more than the 0 this run trains; give --epochs 1 or more, or start a new run with another --out`);
    expect(folder()).toEqual(before);
    // The trainer edited since (here only a comment) is refused too: one run, one trainer.
    writeFileSync(join(out, "trainer.py"), readFileSync(join(out, "trainer.py"), "utf8") + "# edited\n");
    const edited = spawnSync(python!.command, [join(out, "trainer.py"), "--data", join(out, "data.npz"), "--out", out, "--resume"], { encoding: "utf8" });
    expect(edited.status).toBe(1);
    expect(edited.stderr).toBe(`mmb: cannot resume ${out}: the trainer's code changed (it was edited since the run began); start a new run with another --out, or --overwrite\n`);
    // The tfjs trainer does not continue a torch run's checkpoint, and the torch trainer not a tfjs run's.
    const checkpoints = join(out, "checkpoints");
    const checkpoint = join(checkpoints, readFileSync(join(checkpoints, "latest"), "utf8").trim());
    const tfjs = mmb("train", "specs/baseline.mmb", "--resume", "--out", out);
    expect(tfjs.status).toBe(1);
    expect(tfjs.stderr).toContain(`mmb: checkpoint ${checkpoint} is a torch run's (weights.pt): continue it with --target torch`);
    const tfjsRun = join(dir, "tfjs");
    expect(mmb("train", "specs/baseline.mmb", "--epochs", "1", "--out", tfjsRun).status).toBe(0);
    const torch = mmb("train", "specs/baseline.mmb", "--target", "torch", "--resume", "--out", tfjsRun);
    expect(torch.status).toBe(1);
    expect(torch.stderr).toContain(`mmb: checkpoint ${join(tfjsRun, "checkpoints", "checkpoint-0")} is a tfjs run's (weights.bin): continue it with \`mmb train\` without --target torch`);
    // A fresh run into the other target's folder is refused with the way that continues that run, not a bare --resume.
    const fresh = (args: string[], folder: string) => mmb("train", "specs/baseline.mmb", "--epochs", "1", ...args, "--out", folder);
    expect(fresh([], out).stderr).toContain(`mmb: ${out} holds a torch run (log.jsonl, summary.json, checkpoints, best); choose another --out, or --overwrite to replace it (\`--target torch --resume\` continues it)`);
    const tfjsFolder = `${tfjsRun} holds a tfjs run (log.jsonl, summary.json, checkpoints, best); choose another --out, or --overwrite to replace it (\`--resume\` without \`--target torch\` continues it)`;
    expect(fresh(["--target", "torch"], tfjsRun).stderr).toContain(`mmb: ${tfjsFolder}`);
    const byHand = spawnSync(python!.command, [join(out, "trainer.py"), "--data", join(out, "data.npz"), "--out", tfjsRun], { encoding: "utf8" });
    expect(byHand.stderr).toBe(`mmb: ${tfjsFolder}\n`);
    // A cut state.json, a checkpoint that `latest` names but is gone: one line each, no traceback.
    const state = readFileSync(join(checkpoint, "state.json"), "utf8");
    writeFileSync(join(checkpoint, "state.json"), state.slice(0, 200));
    const cut = mmb("train", "specs/baseline.mmb", "--target", "torch", "--resume", "--out", out);
    expect(cut.status).toBe(1);
    expect(cut.stderr).toMatch(new RegExp(`^mmb: checkpoint ${checkpoint} is damaged \\(its state\\.json is not whole JSON: .*\\); delete it or train without --resume\n$`));
    writeFileSync(join(checkpoint, "state.json"), state);
    writeFileSync(join(checkpoints, "latest"), "checkpoint-9");
    const gone = mmb("train", "specs/baseline.mmb", "--target", "torch", "--resume", "--out", out);
    expect(gone.status).toBe(1);
    expect(gone.stderr).toBe(`mmb: ${join(checkpoints, "latest")} names checkpoint-9, which is missing: the run cannot be continued; choose another --out, or --overwrite to start it again\n`);
    expect(readdirSync(out).filter((f) => f.startsWith(".mmb-resume-"))).toEqual([]);
  }, 180_000);

  it.skipIf(!python)("stopping mmb train --target torch (SIGTERM, SIGINT) stops its trainer, which says where to resume; so does stopping mmb bench --target torch", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mmb-torch-signal-"));
    for (const [signal, status] of [["SIGTERM", 143], ["SIGINT", 130]] as const) {
      const out = join(dir, signal);
      const child = spawn(process.execPath, ["--import", "tsx", join(root, "cli", "main.ts"), "train", "specs/baseline.mmb", "--target", "torch", "--epochs", "500", "--out", out], { cwd: root, stdio: ["ignore", "ignore", "pipe"] });
      let stderr = "";
      child.stderr.on("data", (chunk) => (stderr += chunk));
      const trainer = await waitFor(() => trainerOf(out));
      expect(trainer).not.toBe(child.pid);
      const exited = new Promise<number | null>((done) => child.on("exit", (code) => done(code)));
      child.kill(signal);
      expect(await exited).toBe(status);
      expect(alive(trainer)).toBe(false);
      if (signal === "SIGINT") expect(stderr).toBe(`mmb: interrupted; --resume continues from the last checkpoint in ${out}\n`);
    }
    const bench = spawn(process.execPath, ["--import", "tsx", join(root, "cli", "main.ts"), "bench", "specs/baseline.mmb", "--target", "torch", "--seeds", "1", "--epochs", "500", "--out", join(dir, "bench")], { cwd: root, stdio: "ignore" });
    const trainer = await waitFor(() => trainerOf(join(dir, "bench", "baseline", "seed-1")));
    const exited = new Promise((done) => bench.on("exit", done));
    bench.kill("SIGTERM");
    await exited;
    expect(await waitFor(() => (alive(trainer) ? undefined : true))).toBe(true);
  }, 180_000);

  it.skipIf(!python)("trainer.py --set: a param outside the range of a call that takes it is refused, as mmb train --set refuses it", () => {
    const dir = mkdtempSync(join(tmpdir(), "mmb-torch-ranged-"));
    const text = smallSpec("  param beta = 0.9\n  g[m] = ema(norm(grad(encoder[m])), beta)");
    const spec = join(dir, "ranged.mmb");
    writeFileSync(spec, text);
    const line = text.split("\n").findIndex((l) => l.includes("ema(")) + 1;
    const trainer = join(dir, "trainer.py");
    const data = join(dir, "data.npz");
    expect(mmb("compile", spec, "--target", "torch", "-o", trainer).status).toBe(0);
    expect(mmb("data", "export", spec, "-o", data).status).toBe(0);
    const run = (value: string) => spawnSync(python!.command, [trainer, "--data", data, "--out", join(dir, "run"), "--quiet", "--epochs", "1", "--set", `beta=${value}`], { encoding: "utf8" });
    const outside = run("1.5");
    expect(outside.status).toBe(1);
    expect(outside.stderr).toBe(`mmb: --set beta=1.5: \`ema\`'s beta (spec line ${line}) must be in [0, 1)\n`);
    expect(existsSync(join(dir, "run", "log.jsonl"))).toBe(false);
    const inside = run("0");
    expect(inside.stderr).toBe("");
    expect(JSON.parse(readFileSync(join(dir, "run", "summary.json"), "utf8")).params).toEqual({ beta: 0 });
  });

  it.skipIf(!python)("a training batch of one sample under an MLP's batch norm: both targets stop with one line naming the layer, not a traceback", () => {
    const dir = mkdtempSync(join(tmpdir(), "mmb-torch-bn-one-"));
    // 160 samples, 15% each to valid and test: 112 to train, whose last batch of 111 holds one.
    const spec = join(dir, "bn.mmb");
    writeFileSync(spec, smallSpec().replace("mlp(hidden: [10], out: 5)", 'mlp(hidden: [10], out: 5, norm: "batch")').replace("batch 16", "batch 111"));
    const message = 'batch normalisation of encoder.a.dense0.norm needs more than one value per channel in training, found 1 (a training batch of one sample?); give the encoder `norm: "none"` or a larger batch';
    const tfjs = mmb("train", spec, "--epochs", "1", "--backend", "cpu", "--out", join(dir, "tfjs"));
    expect(tfjs.status).toBe(1);
    expect(tfjs.stderr).toContain(`mmb: ${message}`);
    const torch = mmb("train", spec, "--target", "torch", "--epochs", "1", "--out", join(dir, "torch"));
    expect(torch.status).toBe(1);
    expect(torch.stderr).toBe(`mmb: ${message}\n`);
  });

  it.skipIf(!python)("trainer.py run by a python3 without numpy or torch says so in one line, not a traceback", () => {
    const dir = mkdtempSync(join(tmpdir(), "mmb-torch-no-torch-"));
    const trainer = join(dir, "trainer.py");
    expect(mmb("compile", "specs/baseline.mmb", "--target", "torch", "-o", trainer).status).toBe(0);
    // -S: without site-packages, as a python3 that never had them installed.
    const bare = spawnSync(python!.command, ["-S", trainer, "--data", "data.npz", "--out", join(dir, "run")], { encoding: "utf8" });
    expect(bare.status).toBe(1);
    expect(bare.stderr).toMatch(/^mmb: trainer\.py needs torch and numpy: \S+ has no module numpy \(install them, e\.g\. `pip install torch numpy`, or run it with a python3 that has them\)\n$/);
  });

  it.skipIf(!python)("bench --target torch --rng torch: every run draws from torch, and the table says so; a spec's runs share one export of its data", () => {
    const out = join(mkdtempSync(join(tmpdir(), "mmb-torch-bench-")), "bench");
    const run = mmb("bench", "specs/ogm_ge.mmb", "--target", "torch", "--rng", "torch", "--seeds", "2", "--epochs", "1", "--jobs", "1", "--out", out);
    expect(run.status, run.stderr).toBe(0);
    for (const seed of [1, 2]) expect(JSON.parse(readFileSync(join(out, "ogm_ge", `seed-${seed}`, "summary.json"), "utf8")).rng, `seed ${seed}`).toBe("torch on cpu");
    expect(readFileSync(join(out, "results.md"), "utf8")).toContain("| torch (draws: torch on cpu) |");
    // The data is exported once per spec and linked into each run folder: one copy on disk, not one per run.
    const shared = statSync(join(out, "ogm_ge", "data.npz"));
    for (const seed of [1, 2]) expect(statSync(join(out, "ogm_ge", `seed-${seed}`, "data.npz")).ino, `seed ${seed}`).toBe(shared.ino);
  }, 120_000);

  it.skipIf(!python)("bench --target torch --folds: one export per fold, shared by its runs, dealing the groups as the tfjs bench deals them", () => {
    const { dir, spec } = groupedProject();
    const [torchOut, tfjsOut] = [join(dir, "torch"), join(dir, "tfjs")];
    const torch = mmb("bench", spec, "--target", "torch", "--seeds", "2", "--folds", "3", "--epochs", "1", "--out", torchOut);
    expect(torch.status, torch.stderr).toBe(0);
    expect(mmb("bench", spec, "--seeds", "1", "--folds", "3", "--epochs", "1", "--backend", "cpu", "--out", tfjsOut).status).toBe(0);
    expect(readFileSync(join(torchOut, "folds.json"), "utf8")).toBe(readFileSync(join(tfjsOut, "folds.json"), "utf8"));
    for (const fold of [0, 1, 2]) {
      const shared = statSync(join(torchOut, "grouped", `data-fold-${fold}.npz`)).ino;
      for (const seed of [1, 2]) expect(statSync(join(torchOut, "grouped", `seed-${seed}`, `fold-${fold}`, "data.npz")).ino, `seed ${seed} fold ${fold}`).toBe(shared);
    }
  }, 180_000);

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

/**
 * The Python trainer's process id, once it trains in `out`: it holds the folder's lock when it has
 * begun the log (mmb's own claim of the folder, before, writes no log).
 */
function trainerOf(out: string): number | undefined {
  const lock = join(out, ".mmb-lock");
  return existsSync(join(out, "log.jsonl")) && existsSync(lock) ? Number(readFileSync(lock, "utf8")) || undefined : undefined;
}
