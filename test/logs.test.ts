import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadTrainer } from "../cli/load-trainer.js";
import { compile } from "../compiler/index.js";
import { logFields } from "../compiler/builtins/index.js";
import { train } from "../runtime/index.js";
import { compileOrThrow, logRecords, smallSpec } from "./helpers.js";

/** The logs researchers read: the step log's own fields, and what the actions did to each encoder's gradient. */
async function run(balance: string) {
  const out = mkdtempSync(join(tmpdir(), "mmb-logs-"));
  const trainer = await loadTrainer(await compileOrThrow(smallSpec(balance)), out);
  await train(trainer, { out, backend: "cpu", log: () => {} });
  return logRecords(out);
}

describe("the step log", () => {
  it("logs each encoder's gradient norm after the actions beside the raw one", async () => {
    const steps = (await run("  scale grad(encoder[a]) by 0.25")).filter((r) => r.type === "step");
    expect(steps.length).toBeGreaterThan(0);
    for (const step of steps) {
      const [raw, updated] = [step.grad_norm as number[], step.update_grad_norm as number[]];
      expect(Math.abs(updated[0]! - 0.25 * raw[0]!)).toBeLessThan(1e-6 * raw[0]!);
      expect(updated[1]).toBe(raw[1]);
    }
  });

  it("its own fields are the compiler's list, so a rule value of such a name is refused (MMB020), not overwritten", async () => {
    const steps = (await run("  s[m] = acc(contrib[m], y)")).filter((r) => r.type === "step");
    expect(Object.keys(steps[0]!).filter((k) => k !== "s").sort()).toEqual(logFields.filter((f) => f !== "stage").sort());
    for (const field of ["grad_norm", "update_grad_norm", "total_loss"]) {
      const { diagnostics } = await compile(smallSpec(`  ${field} = 1`));
      expect(diagnostics.map((d) => [d.code, d.message]), field).toEqual([["MMB020", `\`${field}\` is a field of the step log`]]);
    }
  });
});
