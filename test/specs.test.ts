import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadTrainer } from "../cli/load-trainer.js";
import { train } from "../runtime/train.js";
import { compileOrThrow, readSpec, specFiles } from "./helpers.js";

describe("every spec trains two epochs on the embedded data", () => {
  for (const backend of ["wasm", "cpu"]) {
    for (const file of specFiles()) {
      it(`${file} on ${backend}`, async () => {
        const code = await compileOrThrow(readSpec(file), `specs/${file}`);
        const out = mkdtempSync(join(tmpdir(), `mmb-${file}-`));
        const trainer = await loadTrainer(code, out);
        const summary = await train(trainer, { out, backend, epochs: 2, log: () => {} });
        expect(summary.backend).toBe(backend);
        expect(summary.test).toBeGreaterThan(0.3); // six classes: chance is 0.167
        const steps = readFileSync(join(out, "log.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((l) => l.type === "step");
        const names = Object.keys(trainer.valueLines);
        for (const step of steps) for (const name of names) expect(step[name], `${name} at step ${step.step}`).toBeDefined();
        expect(steps.length).toBe(2 * Math.ceil(840 / 64));
      });
    }
  }
});
