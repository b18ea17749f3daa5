import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { compile } from "../compiler/index.js";
import { readSpec, root, specFiles, updateGoldens } from "./helpers.js";

/**
 * The torch trainers' own part (everything before the embedded runtime, which is the same in
 * every trainer) against goldens, and every whole trainer through Python's compiler: a syntax
 * error in generated Python would otherwise show only when the trainer runs.
 */
const goldenDir = join(root, "test", "golden", "torch");
const runtimeMarker = "# ======== The mmb runtime for torch";

/** Any python3 compiles Python; torch is not needed to check syntax. */
const python = ["python3", "/usr/bin/python3"].find((p) => spawnSync(p, ["--version"]).status === 0);

describe("generated torch trainers", () => {
  const written: string[] = [];
  for (const spec of specFiles()) {
    it(`${spec} compiles to its golden torch trainer`, async () => {
      const result = await compile(readSpec(spec), { fileName: `specs/${spec}`, target: "torch" });
      expect(result.diagnostics).toEqual([]);
      const code = result.code!;
      const own = code.slice(0, code.indexOf(runtimeMarker));
      const path = join(goldenDir, spec.replace(/\.mmb$/, ".py"));
      mkdirSync(goldenDir, { recursive: true });
      if (updateGoldens || !existsSync(path)) writeFileSync(path, own);
      expect(own).toBe(readFileSync(path, "utf8"));
      const file = join(mkdtempSync(join(tmpdir(), "mmb-torch-trainer-")), `${spec.replace(/\.mmb$/, "")}.py`);
      writeFileSync(file, code);
      written.push(file);
    });
  }

  it.skipIf(!python)("every trainer is valid Python (py_compile)", () => {
    expect(written.length).toBe(specFiles().length);
    const check = spawnSync(python!, ["-m", "py_compile", ...written], { encoding: "utf8" });
    expect(check.stderr).toBe("");
    expect(check.status).toBe(0);
  });
});
