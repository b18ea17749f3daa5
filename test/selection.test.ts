import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { aggregate, markdown, type RunResult } from "../cli/bench.js";
import { loadCheckpoint } from "../runtime/checkpoint.js";
import type { Summary } from "../runtime/index.js";
import { logRecords, smallSpec, straightAndResumed } from "./helpers.js";

/**
 * Model selection: a run keeps its best-validation checkpoint beside its last, the summary gives
 * the test metrics at both and names the chosen epoch, and a bench reports the best by default.
 * The run here peaks early on purpose: at its fourth epoch the model is drawn anew, and from
 * then on it learns nothing.
 */
const peaksEarly = smallSpec(
  "  when epoch >= 3 {\n    scale grad(encoder[m]) by 0\n    scale grad(head) by 0\n  }",
  "every epoch {\n  when epoch == 3 {\n    set weights(encoder[m]) = fresh(encoder[m])\n    set weights(head) = fresh(head)\n  }\n}",
).replace("train epochs 2", "train epochs 6");

describe("model selection", () => {
  it("the best validation epoch's weights are kept in best/, and the summary reports its figures beside the last epoch's", async () => {
    // Straight through, and stopped after the best epoch and resumed: one result.
    const { straight, resumed } = await straightAndResumed(peaksEarly, 4, 6);
    const epochs = logRecords(straight).filter((r) => r.type === "epoch");
    expect(epochs).toHaveLength(6);
    const valid = epochs.map((e) => e.valid.acc as number);
    const best = valid.indexOf(Math.max(...valid)); // the first of the best, as a later tie does not replace it
    expect(best).toBeLessThan(3); // the setup peaks before the head is re-drawn
    expect(valid[5]).toBeLessThan(valid[best]!);
    for (const out of [straight, resumed]) {
      const summary = JSON.parse(readFileSync(join(out, "summary.json"), "utf8")) as Summary;
      expect(summary.bestEpoch).toBe(best);
      expect(summary.best).toEqual({ epoch: best, test: epochs[best].test.acc, valid: epochs[best].valid.acc, metrics: { valid: epochs[best].valid, test: epochs[best].test }, unimodal: epochs[best].unimodal });
      expect(summary.test).toBe(epochs[5].test.acc); // the last epoch's, as before
    }
    const [a, b] = [(await loadCheckpoint(join(straight, "best")))!, (await loadCheckpoint(join(resumed, "best")))!];
    expect(a.state.epoch).toBe(best);
    a.weights.forEach((w, i) => expect(Buffer.from(b.weights[i]!.buffer).equals(Buffer.from(w.buffer))).toBe(true));
    // Not the last checkpoint: the head was re-drawn since.
    const last = (await loadCheckpoint(join(straight, "checkpoints")))!;
    expect(Buffer.from(last.weights.at(-1)!.buffer).equals(Buffer.from(a.weights.at(-1)!.buffer))).toBe(false);
  }, 120_000);

  it("a checkpoint of an earlier mmb, without the best epoch's figures, resumes with them read from the log", async () => {
    // The stopped run's checkpoint loses the figures, as an earlier mmb wrote it, before the resume.
    const { straight, resumed } = await straightAndResumed(peaksEarly, 4, 6, (dir) => {
      const file = join(dir, "checkpoints", readFileSync(join(dir, "checkpoints", "latest"), "utf8"), "state.json");
      const state = JSON.parse(readFileSync(file, "utf8"));
      expect(state.best.measured).toBeDefined();
      delete state.best.measured;
      writeFileSync(file, JSON.stringify(state));
    });
    const summary = (dir: string) => JSON.parse(readFileSync(join(dir, "summary.json"), "utf8")) as Summary;
    expect(summary(resumed).best).toEqual(summary(straight).best);
    expect(summary(resumed).bestEpoch).toBeLessThan(3);
  }, 120_000);

  it("a bench reports each run's best validation epoch by default, and says so; --select last the last epoch's", () => {
    const summary = (test: number, best: number, epoch: number): Summary => ({ metric: "accuracy", test, valid: 0, epochs: 10, unimodal: { a: 0.1 }, best: { epoch, test: best, valid: 0, metrics: { valid: {}, test: {} }, unimodal: { a: 0.2 } }, secondsPerEpoch: 1, backend: "cpu" }) as unknown as Summary;
    const runs: RunResult[] = [
      { spec: "s", seed: 1, dir: "", summary: summary(0.5, 0.7, 2) },
      { spec: "s", seed: 2, dir: "", summary: summary(0.6, 0.8, 4) },
    ];
    const [best] = aggregate(runs);
    expect(best).toMatchObject({ select: "best", test: { mean: 0.75 }, epoch: { mean: 3 }, unimodal: { a: { mean: 0.2 } } });
    expect(markdown([best!], runs, "mmb bench")).toContain("at its best validation epoch");
    const [last] = aggregate(runs, "last");
    expect(last).toMatchObject({ select: "last", test: { mean: 0.55 }, epoch: { mean: 9 }, unimodal: { a: { mean: 0.1 } } });
    expect(markdown([last!], runs, "mmb bench")).toContain("at its last epoch");
    // Two seeds: mean ± std. One seed has no spread: its figures alone, not "± 0.000". The table
    // counts epochs from 1, as the console's "at the best validation epoch, 3" does; results.json from 0, as the log.
    expect(markdown([best!], runs, "mmb bench")).toContain("| s | acc 0.750 ± 0.071 | a 0.200 ± 0.000 | 4.0 ± 1.4 | 1.00 ± 0.00 | cpu | 2 |");
    expect(markdown([best!], runs, "mmb bench")).toContain("the `epoch` column, counted from 1");
    const [one] = aggregate(runs.slice(0, 1));
    expect(markdown([one!], runs.slice(0, 1), "mmb bench")).toContain("| s | acc 0.700 | a 0.200 | 3.0 | 1.00 | cpu | 1 |");
    expect(markdown([last!], runs, "mmb bench")).toContain("| s | acc 0.550 ± 0.071 | a 0.100 ± 0.000 | 10.0 ± 0.0 | 1.00 ± 0.00 | cpu | 2 |");
    // A failed run of a fold is listed with its fold: the seed alone names several runs.
    const failed: RunResult[] = [...runs, { spec: "s", seed: 1, fold: 2, dir: "", error: "no such file" }];
    expect(markdown(aggregate(failed), failed, "mmb bench")).toContain("- s, seed 1, fold 2: no such file");
  });
});
