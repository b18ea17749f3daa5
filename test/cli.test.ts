import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { commands, flags } from "../cli/help.js";
import { alive, groupedProject, mmb, root, smallSpec, waitFor } from "./helpers.js";

describe("mmb command line", () => {
  const dir = mkdtempSync(join(tmpdir(), "mmb-cli-"));
  const good = join(dir, "good.mmb");
  const bad = join(dir, "bad.mmb");
  writeFileSync(good, smallSpec("  param alpha = 0.5\n  g[m] = norm(grad(encoder[m]))"));
  writeFileSync(bad, smallSpec("  k[m] = tanhh(1)"));

  it("check: 0 when clean, 1 with errors (rendered with a caret), 2 on usage", () => {
    expect(mmb("check", good).status).toBe(0);
    const failed = mmb("check", bad);
    expect(failed.status).toBe(1);
    expect(failed.stderr).toContain("error[MMB006]: unknown function `tanhh`");
    expect(failed.stderr).toContain("^^^^^ not a built-in function");
    expect(failed.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(mmb("check").status).toBe(2);
    expect(mmb("frobnicate").status).toBe(2);
  });

  it("check --format json gives code, span and help as data", () => {
    const result = mmb("check", bad, "--format", "json");
    const [d] = JSON.parse(result.stdout);
    expect(d).toMatchObject({ code: "MMB006", severity: "error", start: { line: 13, column: 10 }, end: { line: 13, column: 15 }, help: "did you mean `tanh`?" });
  });

  it("compile -o writes the trainer; --dump-ir prints the AST, the IR and the step plan", () => {
    const out = join(dir, "trainer.ts");
    expect(mmb("compile", good, "-o", out).status).toBe(0);
    expect(readFileSync(out, "utf8")).toContain("export function trainStep(ctx: StepContext, p: Params): StepResult");
    const dump = mmb("compile", good, "--dump-ir");
    expect(dump.stdout).toContain("== ast (phase 1: parse) ==");
    expect(dump.stdout).toContain("== ir (phase 2: check) ==");
    expect(dump.stdout).toContain("== step plan (phase 3: schedule) ==");
  });

  it("train --set rejects a name the spec does not declare (MMB026) and accepts a declared one", () => {
    const rejected = mmb("train", good, "--set", "beta=1", "--out", join(dir, "run0"));
    expect(rejected.status).toBe(1);
    expect(rejected.stderr).toContain("error[MMB026]");
    expect(rejected.stderr).toContain("params: alpha");
    // The caret is under the spec's param of the nearest name, not at the file's first character.
    const typo = mmb("train", good, "--set", "alpah=1", "--out", join(dir, "run-typo"));
    const line = readFileSync(good, "utf8").split("\n").findIndex((l) => l.includes("param alpha")) + 1;
    expect(typo.stderr).toContain(`--> ${good}:${line}:9`);
    expect(typo.stderr).toContain("= help: did you mean `--set alpha=1`? params: alpha");
    const run = mmb("train", good, "--set", "alpha=0.25", "--epochs", "1", "--backend", "cpu", "--out", join(dir, "run1"));
    expect(run.status).toBe(0);
    const summary = JSON.parse(readFileSync(join(dir, "run1", "summary.json"), "utf8"));
    expect(summary).toMatchObject({ backend: "cpu", params: { alpha: 0.25 }, epochs: 1 });
    expect(mmb("train", good, "--backend", "quantum").stderr).toContain('unknown backend "quantum"');
  });

  it("train --data replaces the spec's data declaration; the first and last lines name the same kernels", () => {
    const run = mmb("train", good, "--data", "synthetic(samples: 320, seed: 4)", "--epochs", "1", "--out", join(dir, "run2"));
    expect(run.status).toBe(0);
    const steps = readFileSync(join(dir, "run2", "log.jsonl"), "utf8").trim().split("\n").filter((l) => l.includes('"type":"step"'));
    expect(steps).toHaveLength(Math.ceil((320 - 48 - 48) / 16)); // 15% valid, 15% test, batch 16
    // A file is not a clause: a usage error that says where an exported .npz goes, not a syntax error at a line of the spec.
    const file = mmb("train", good, "--data", "exported.npz", "--out", join(dir, "run-file"));
    expect(file.status).toBe(2);
    expect(file.stderr).toContain("--data exported.npz: an export is read by the torch trainer (--target torch); this command reads a data clause such as `synthetic(seed: 4)` or `files(...)`");
    expect(file.stderr).not.toContain("MMB0");
    // The first and the last line name the kernels alike (`wasm + OpenBLAS` where they were built), as the summary does.
    const { kernels } = JSON.parse(readFileSync(join(dir, "run2", "summary.json"), "utf8"));
    expect(run.stdout).toContain(`on backend ${kernels}, seed`);
    expect(run.stdout).toContain(` on ${kernels}; log, summary and checkpoints in `);
  });

  it("bench: every spec × seed in its own process; mean ± std per spec; a failing run is reported, not hidden", () => {
    const failing = join(dir, "failing.mmb");
    writeFileSync(failing, smallSpec("  bad = log(0 * acc(out, y))"));
    const out = join(dir, "bench");
    const run = mmb("bench", good, failing, "--seeds", "2", "--epochs", "1", "--out", out);
    expect(run.status).toBe(1);
    const results = JSON.parse(readFileSync(join(out, "results.json"), "utf8"));
    const [ok, bad] = results.rows;
    expect(ok).toMatchObject({ spec: "good", runs: 2, failed: 0, backends: ["wasm"] });
    // The table's figures are each run's at its best validation epoch (one epoch here: the last).
    const tests = results.runs.filter((r: { spec: string }) => r.spec === "good").map((r: { summary: { best: { test: number } } }) => r.summary.best.test);
    const mean = (tests[0] + tests[1]) / 2;
    expect(ok.test.mean).toBeCloseTo(mean, 10);
    expect(ok.test.std).toBeCloseTo(Math.abs(tests[0] - tests[1]) / Math.SQRT2, 10);
    expect(bad).toMatchObject({ spec: "failing", runs: 2, failed: 2 });
    const markdown = readFileSync(join(out, "results.md"), "utf8");
    expect(markdown).toContain("| failing | acc — | — | — | — | — | 0/2 (2 failed) |");
    expect(markdown).toMatch(/- failing, seed 1: non-finite value of `bad` \(spec line \d+\)/);
    expect(readFileSync(join(out, "results.csv"), "utf8").split("\n")[0]).toBe("spec,seed,status,metric,test,valid,best_epoch,best_test,best_valid,unimodal_a,unimodal_b,test_acc,test_macro_f1,seconds_per_epoch,backend,error");
  });

  it("train: a second run into the same --out is refused unless --overwrite; --resume with --overwrite is a usage error", () => {
    const out = join(dir, "twice");
    expect(mmb("train", good, "--epochs", "1", "--out", out).status).toBe(0);
    const again = mmb("train", good, "--epochs", "1", "--out", out);
    expect(again.status).toBe(1);
    expect(again.stderr).toContain(`mmb: ${out} holds another run (log.jsonl, summary.json, checkpoints, best); choose another --out, add --resume to continue that run, or --overwrite to replace it`);
    expect(mmb("train", good, "--epochs", "1", "--out", out, "--overwrite").status).toBe(0);
    expect(mmb("train", good, "--out", out, "--overwrite", "--resume").status).toBe(2);
  });

  it("train --resume: a refused resume leaves the folder as it was; a damaged checkpoint, or one `latest` names that is gone, is refused naming it; with no checkpoint yet the run starts, and says so", () => {
    const out = join(dir, "refused-resume");
    expect(mmb("train", good, "--epochs", "1", "--out", out).status).toBe(0);
    const other = join(dir, "other.mmb");
    writeFileSync(other, smallSpec("  param alpha = 0.7\n  g[m] = norm(grad(encoder[m]))"));
    const folder = () => Object.fromEntries(readdirSync(out, { recursive: true, encoding: "utf8" }).sort().map((f) => [f, statSync(join(out, f)).isFile() ? readFileSync(join(out, f), "utf8") : "(folder)"]));
    const before = folder();
    const refused = mmb("train", other, "--resume", "--out", out);
    expect(refused.status).toBe(1);
    expect(refused.stderr).toContain(`mmb: cannot resume ${out}: the spec changed`);
    // Its trainer was the other spec's: the folder's trainer.ts, which the report reads, is still the run's.
    expect(folder()).toEqual(before);
    // Fewer epochs than the run has trained would end it before its checkpoint: refused, not a summary of "0 epochs" over a trained run.
    const fewer = mmb("train", good, "--resume", "--epochs", "0", "--out", out);
    expect(fewer.status).toBe(1);
    expect(fewer.stderr).toContain(`mmb: cannot resume ${out}: it has trained 1 epoch, more than the 0 this run trains; give --epochs 1 or more, or start a new run with another --out`);
    expect(folder()).toEqual(before);

    const checkpoints = join(out, "checkpoints");
    const checkpoint = join(checkpoints, readFileSync(join(checkpoints, "latest"), "utf8").trim());
    const state = readFileSync(join(checkpoint, "state.json"), "utf8");
    writeFileSync(join(checkpoint, "state.json"), state.slice(0, 200));
    const cut = mmb("train", good, "--resume", "--out", out);
    expect(cut.status).toBe(1);
    expect(cut.stderr).toContain(`mmb: checkpoint ${checkpoint} is damaged (its state.json is not whole JSON: `);
    writeFileSync(join(checkpoint, "state.json"), state);
    writeFileSync(join(checkpoint, "model.json"), "{");
    expect(mmb("train", good, "--resume", "--out", out).stderr).toContain(`mmb: checkpoint ${checkpoint} is damaged (its model.json is not whole JSON: `);
    writeFileSync(join(checkpoints, "latest"), "checkpoint-9");
    const gone = mmb("train", good, "--resume", "--out", out);
    expect(gone.status).toBe(1);
    expect(gone.stderr).toContain(`mmb: ${join(checkpoints, "latest")} names checkpoint-9, which is missing: the run cannot be continued`);

    const fresh = mmb("train", good, "--epochs", "1", "--resume", "--out", join(dir, "not-yet"));
    expect(fresh.status).toBe(0);
    expect(fresh.stdout).toContain(`mmb: --resume: ${join(dir, "not-yet")} holds no checkpoint yet; the run starts from the beginning`);
    expect(fresh.stdout).toMatch(/seed \d+, 1 epoch\n/);
  });

  it("bench refuses what would merge or misplace results: one name for two specs, a name of dots, no seeds, an earlier bench", () => {
    const other = mkdtempSync(join(tmpdir(), "mmb-cli-other-"));
    writeFileSync(join(other, "good.mmb"), smallSpec());
    writeFileSync(join(other, "...mmb"), smallSpec());
    const out = join(dir, "refused-bench");
    const cases: [string[], string][] = [
      [[good, join(other, "good.mmb")], `${good} and ${join(other, "good.mmb")} are both named good: their runs and rows would merge; rename one`],
      [[join(other, "...mmb")], `${join(other, "...mmb")}: its file name gives no folder name for its runs; rename the spec`],
      [[good, "--seeds", "0"], "--seeds must be at least 1, got 0"],
    ];
    for (const [args, message] of cases) {
      const run = mmb("bench", ...args, "--out", out);
      expect(run.status, message).toBe(1);
      expect(run.stderr).toContain(`mmb: ${message}`);
    }
    writeFileSync(join(dir, "earlier-bench.json"), "{}");
    const earlier = join(dir, "earlier");
    mmb("bench", good, "--seeds", "1", "--epochs", "1", "--out", earlier);
    const again = mmb("bench", good, "--seeds", "1", "--epochs", "1", "--out", earlier);
    expect(again.stderr).toContain(`mmb: ${earlier} holds an earlier bench (results.json, results.md, results.csv, good); choose another --out, or --overwrite to replace it`);
    expect(mmb("bench", good, "--seeds", "1", "--epochs", "1", "--out", earlier, "--overwrite").status).toBe(0);
  });

  it("bench passes --data-root to its runs", () => {
    // The spec's files are named relative to --data-root, a folder apart from the spec's.
    const data = mkdtempSync(join(tmpdir(), "mmb-cli-data-"));
    const rows = Array.from({ length: 60 }, (_, i) => `${i % 2},${Math.sin(i)},${Math.cos(i)}`);
    writeFileSync(join(data, "table.csv"), `label,u,w\n${rows.join("\n")}\n`);
    const spec = join(dir, "files.mmb");
    writeFileSync(spec, `model files
data files()
modality u : float[1] from "table.csv:u"
modality w : float[1] from "table.csv:w"
target y : class(2) from "table.csv:label"
encoder[m] = mlp(hidden: [4], out: 2)
fusion concat -> linear(2)
loss cross_entropy(out, y)
optimizer sgd(lr: 0.1)
train epochs 1 batch 8
`);
    const run = mmb("bench", spec, "--seeds", "1", "--out", join(dir, "bench-root"), "--data-root", data);
    expect(run.stderr).not.toContain("FAILED");
    expect(run.status).toBe(0);
  });

  // One test per command: each spawns the command line twice, and all of them in one test came within
  // seconds of the test timeout on a loaded 2-core machine.
  for (const command of commands) {
    it(`${command.name} --help lists exactly the options it takes, as \`mmb help ${command.name}\` does`, () => {
      const help = mmb(command.name, "--help");
      expect(help.status, command.name).toBe(0);
      expect(help.stdout).toContain(`usage: mmb ${[command.name, command.args].filter(Boolean).join(" ")}`);
      const options = help.stdout.split("options:\n")[1]!.split("\n\n")[0]!;
      const listed = [...options.matchAll(/^ +(?:-\w, )?--([a-z-]+)/gm)].map((m) => m[1]);
      expect(listed.sort(), command.name).toEqual([...command.flags, "help"].sort());
      expect(listed.every((flag) => flag! in flags)).toBe(true);
      expect(mmb("help", command.name).stdout).toBe(help.stdout);
    });
  }

  it("a flag of another command is a usage error; --help lists every command; --version is package.json's", () => {
    // `--seed` for `--seeds` used to be ignored: the bench ran three seeds.
    const wrong = mmb("bench", good, "--seed", "5");
    expect(wrong.status).toBe(2);
    expect(wrong.stderr).toContain("Unknown option '--seed'");
    expect(wrong.stderr).toContain("usage: mmb bench <spec.mmb...> [options]");
    expect(mmb("check", good, "--epochs", "3").status).toBe(2);
    const overview = mmb("--help");
    expect(overview.status).toBe(0);
    for (const command of commands) expect(overview.stdout).toContain(`mmb ${command.name} ${command.args}`);
    expect(mmb("--version").stdout.trim()).toBe(`mmb ${JSON.parse(readFileSync(join(root, "package.json"), "utf8")).version}`);
  });

  it("run trains a hand-edited generated trainer as it is on disk; a file that is not a trainer is a usage error", () => {
    const trainer = join(dir, "edited.ts");
    expect(mmb("compile", good, "-o", trainer).status).toBe(0);
    // The edit: the param's default, which the spec says is 0.5.
    writeFileSync(trainer, readFileSync(trainer, "utf8").replace("export const params = { alpha: 0.5 };", "export const params = { alpha: 0.125 };"));
    const run = mmb("run", trainer, "--epochs", "1", "--backend", "cpu", "--out", join(dir, "run-edited"));
    expect(run.status, run.stderr).toBe(0);
    expect(JSON.parse(readFileSync(join(dir, "run-edited", "summary.json"), "utf8"))).toMatchObject({ params: { alpha: 0.125 }, epochs: 1 });
    // Resumed as it is, the run goes on; edited again (a step that differs, here only a comment), it is refused: one run, one trainer.
    // A killed resume's folder of trainer files goes with the next resume.
    mkdirSync(join(dir, "run-edited", ".mmb-resume-killed"));
    writeFileSync(join(dir, "run-edited", ".mmb-resume-killed", "trainer.ts"), "");
    expect(mmb("run", trainer, "--epochs", "2", "--backend", "cpu", "--out", join(dir, "run-edited"), "--resume").status).toBe(0);
    expect(readdirSync(join(dir, "run-edited")).filter((f) => f.startsWith(".mmb-resume-"))).toEqual([]);
    writeFileSync(trainer, readFileSync(trainer, "utf8") + "// edited again\n");
    const edited = mmb("run", trainer, "--epochs", "3", "--backend", "cpu", "--out", join(dir, "run-edited"), "--resume");
    expect(edited.status).toBe(1);
    expect(edited.stderr).toContain(`mmb: cannot resume ${join(dir, "run-edited")}: the trainer's code changed (it was edited since the run began)`);
    expect(mmb("run", good).status).toBe(2);
    const python = mmb("run", join(dir, "trainer.py"));
    expect(python.status).toBe(2);
    expect(python.stderr).toContain(`mmb: ${join(dir, "trainer.py")} is a Python trainer (\`mmb compile --target torch\`): run it with python3`);
    expect(mmb("run", trainer, "--data", "mnist()").stderr).toContain("Unknown option '--data'");
  });

  it("run --set: a param outside the range of a call that takes it is refused, as train --set refuses it with the spec", () => {
    const text = smallSpec("  param beta = 0.9\n  g[m] = ema(norm(grad(encoder[m])), beta)\n  P[m] = class_mean(z[m], y, beta)");
    const spec = join(dir, "ranged.mmb");
    writeFileSync(spec, text);
    const line = text.split("\n").findIndex((l) => l.includes("ema(")) + 1;
    const trainer = join(dir, "ranged.ts");
    expect(mmb("compile", spec, "-o", trainer).status).toBe(0);
    const train = mmb("train", spec, "--set", "beta=1.5", "--out", join(dir, "ranged-train"));
    expect(train.status).toBe(1);
    expect(train.stderr).toContain("error[MMB019]: `ema`'s beta must be in [0, 1), found 1.5 (`--set beta=1.5`)");
    const run = mmb("run", trainer, "--set", "beta=1.5", "--out", join(dir, "ranged-run"));
    expect(run.status).toBe(1);
    // Every call the value breaks, before any backend starts (nothing else is printed).
    expect(run.stderr).toBe(`mmb: --set beta=1.5: \`ema\`'s beta (spec line ${line}) must be in [0, 1); \`class_mean\`'s momentum (spec line ${line + 1}) must be in [0, 1)\n`);
    expect(run.stdout).toBe("");
    expect(existsSync(join(dir, "ranged-run", "log.jsonl"))).toBe(false);
    // Inside the range, the trainer runs with the value.
    const inside = mmb("run", trainer, "--set", "beta=0", "--epochs", "1", "--backend", "cpu", "--out", join(dir, "ranged-run"));
    expect(inside.status).toBe(0);
    expect(JSON.parse(readFileSync(join(dir, "ranged-run", "summary.json"), "utf8")).params).toEqual({ beta: 0 });
  });

  it("the packed package installs globally and puts `mmb` on the PATH", () => {
    const prefix = mkdtempSync(join(tmpdir(), "mmb-global-"));
    // A fresh checkout (`npm ci && npm test`) is built first, as prepack would; --ignore-scripts keeps pack's output to its JSON.
    if (!existsSync(join(root, "dist", "cli", "main.js"))) expect(spawnSync("npm", ["run", "build"], { cwd: root, encoding: "utf8" }).status).toBe(0);
    const pack = spawnSync("npm", ["pack", "--ignore-scripts", "--pack-destination", prefix, "--json"], { cwd: root, encoding: "utf8" });
    expect(pack.status, pack.stderr).toBe(0);
    const [{ filename, files }] = JSON.parse(pack.stdout) as { filename: string; files: { path: string }[] }[];
    expect(files.map((f) => f.path)).toEqual(expect.arrayContaining(["dist/cli/main.js", "dist/runtime/index.js", "specs/baseline.mmb", "README.md"]));
    expect(files.some((f) => f.path.startsWith("test/"))).toBe(false);
    const install = spawnSync("npm", ["install", "-g", "--prefix", prefix, "--prefer-offline", "--no-audit", "--no-fund", join(prefix, filename)], { encoding: "utf8" });
    expect(install.status, install.stderr).toBe(0);
    const env = { ...process.env, PATH: `${join(prefix, "bin")}:${process.env.PATH}` };
    const version = spawnSync("mmb", ["--version"], { env, encoding: "utf8", cwd: prefix });
    expect(version.stdout.trim()).toBe("mmb 0.1.0");
    const check = spawnSync("mmb", ["check", join(prefix, "lib", "node_modules", "mmb", "specs", "mla.mmb")], { env, encoding: "utf8", cwd: prefix });
    expect(check.status, check.stderr).toBe(0);
  }, 300_000);

  it("bench --folds: every spec × seed × fold on grouped data; groups never cross splits; mean ± std over seeds and folds", () => {
    const { dir: data, spec } = groupedProject();
    const out = join(data, "bench");
    const run = mmb("bench", spec, "--seeds", "2", "--folds", "3", "--epochs", "1", "--backend", "cpu", "--out", out);
    expect(run.status, run.stderr).toBe(0);
    const results = JSON.parse(readFileSync(join(out, "results.json"), "utf8"));
    expect(results.runs.map((r: { seed: number; fold: number }) => `${r.seed}/${r.fold}`).sort()).toEqual(["1/0", "1/1", "1/2", "2/0", "2/1", "2/2"]);
    const best = results.runs.map((r: { summary: { best: { test: number } } }) => r.summary.best.test);
    expect(results.rows[0].test.mean).toBeCloseTo(best.reduce((a: number, b: number) => a + b, 0) / 6, 10);
    const folds = JSON.parse(readFileSync(join(out, "folds.json"), "utf8")).grouped;
    const actors = Array.from({ length: 6 }, (_, i) => `actor${i}`);
    // Each actor is tested in exactly one fold, and a fold's validation groups are the next fold's test groups.
    expect(Object.values(folds).flatMap((f) => (f as { test: string[] }).test).sort()).toEqual(actors);
    for (let f = 0; f < 3; f++) {
      const { train, valid, test } = folds[`fold-${f}`];
      expect([...train, ...valid, ...test].sort()).toEqual(actors);
      expect(valid).toEqual(folds[`fold-${(f + 1) % 3}`].test);
    }
    expect(readFileSync(join(out, "results.md"), "utf8")).toContain("over seeds and folds");
    expect(run.stdout).toContain("mmb: 1 spec × 2 seeds × 3 folds; results in ");
    // A bench of folds over a spec whose data has no groups is refused before any run starts.
    const noGroups = mmb("bench", spec, good, "--seeds", "1", "--folds", "3", "--out", join(data, "bench-no-groups"));
    expect(noGroups.status).toBe(2);
    expect(noGroups.stderr).toContain(`--folds: ${good} reads synthetic(...); folds deal out the groups of \`files(group: "file:field", ...)\` data`);
    expect(existsSync(join(data, "bench-no-groups"))).toBe(false);
    // A fold without the number of folds, and folds of data without groups, are refused.
    expect(mmb("train", spec, "--fold", "1").status).toBe(2);
    const ungrouped = mmb("train", good, "--fold", "0", "--folds", "3", "--out", join(dir, "ungrouped"));
    expect(ungrouped.status).toBe(1);
    expect(ungrouped.stderr).toContain("`files(group: \"file:field\", ...)`");
  }, 180_000);

  it("bench: SIGTERM to the bench ends the runs it started", async () => {
    const out = join(dir, "bench-signal");
    const child = spawn(process.execPath, ["--import", "tsx", join(root, "cli", "main.ts"), "bench", good, "--seeds", "1", "--epochs", "500", "--out", out], { cwd: root, stdio: "ignore" });
    const lock = join(out, "good", "seed-1", ".mmb-lock");
    const pid = await waitFor(() => (existsSync(lock) ? Number(readFileSync(lock, "utf8")) || undefined : undefined));
    child.kill("SIGTERM");
    await new Promise((done) => child.on("exit", done));
    expect(await waitFor(() => (alive(pid) ? undefined : true))).toBe(true);
  });
});
