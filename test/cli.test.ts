import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
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
});
