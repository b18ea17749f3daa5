import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { root, smallSpec } from "./helpers.js";

function mmb(...args: string[]) {
  const result = spawnSync(process.execPath, ["--import", "tsx", join(root, "cli", "main.ts"), ...args], { cwd: root, encoding: "utf8" });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

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
    const run = mmb("train", good, "--set", "alpha=0.25", "--epochs", "1", "--backend", "cpu", "--out", join(dir, "run1"));
    expect(run.status).toBe(0);
    const summary = JSON.parse(readFileSync(join(dir, "run1", "summary.json"), "utf8"));
    expect(summary).toMatchObject({ backend: "cpu", params: { alpha: 0.25 }, epochs: 1 });
    expect(mmb("train", good, "--backend", "quantum").stderr).toContain('unknown backend "quantum"');
  });

  it("train --data replaces the spec's data declaration", () => {
    const run = mmb("train", good, "--data", "synthetic(samples: 320, seed: 4)", "--epochs", "1", "--out", join(dir, "run2"));
    expect(run.status).toBe(0);
    const steps = readFileSync(join(dir, "run2", "log.jsonl"), "utf8").trim().split("\n").filter((l) => l.includes('"type":"step"'));
    expect(steps).toHaveLength(Math.ceil((320 - 48 - 48) / 16)); // 15% valid, 15% test, batch 16
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
    const tests = results.runs.filter((r: { spec: string }) => r.spec === "good").map((r: { summary: { test: number } }) => r.summary.test);
    const mean = (tests[0] + tests[1]) / 2;
    expect(ok.test.mean).toBeCloseTo(mean, 10);
    expect(ok.test.std).toBeCloseTo(Math.abs(tests[0] - tests[1]) / Math.SQRT2, 10);
    expect(bad).toMatchObject({ spec: "failing", runs: 2, failed: 2 });
    const markdown = readFileSync(join(out, "results.md"), "utf8");
    expect(markdown).toContain("| failing | acc — | — | — | — | 0/2 (2 failed) |");
    expect(markdown).toMatch(/- failing, seed 1: non-finite value of `bad` \(spec line \d+\)/);
    expect(readFileSync(join(out, "results.csv"), "utf8").split("\n")[0]).toBe("spec,seed,status,metric,test,valid,unimodal_a,unimodal_b,test_acc,test_macro_f1,seconds_per_epoch,backend,error");
  });

  it("train: a second run into the same --out is refused unless --overwrite; --resume with --overwrite is a usage error", () => {
    const out = join(dir, "twice");
    expect(mmb("train", good, "--epochs", "1", "--out", out).status).toBe(0);
    const again = mmb("train", good, "--epochs", "1", "--out", out);
    expect(again.status).toBe(1);
    expect(again.stderr).toContain(`mmb: ${out} holds another run (log.jsonl, summary.json, checkpoints); choose another --out, add --resume to continue that run, or --overwrite to replace it`);
    expect(mmb("train", good, "--epochs", "1", "--out", out, "--overwrite").status).toBe(0);
    expect(mmb("train", good, "--out", out, "--overwrite", "--resume").status).toBe(2);
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

async function waitFor<T>(probe: () => T | undefined, seconds = 60): Promise<T> {
  for (let i = 0; i < seconds * 10; i++) {
    const value = probe();
    if (value !== undefined) return value;
    await new Promise((done) => setTimeout(done, 100));
  }
  throw new Error("timed out");
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
