import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadTrainer } from "../cli/load-trainer.js";
import { loadCheckpoint } from "../runtime/checkpoint.js";
import type { Dataset } from "../runtime/index.js";
import { initialParameters } from "../runtime/model.js";
import { train } from "../runtime/train.js";
import { compileOrThrow, smallSpec } from "./helpers.js";

/** 16 training samples: one batch of 16 is exactly one step. */
function fixedData(): Dataset {
  const rows = (n: number, width: number, salt: number) => Float32Array.from({ length: n * width }, (_, i) => Math.sin(i * 0.7 + salt));
  const split = (n: number, salt: number) => ({
    inputs: [rows(n, 8, salt), rows(n, 6, salt + 1)],
    labels: Float32Array.from({ length: n }, (_, i) => (i * 3 + salt) % 4),
    size: n,
  });
  return { train: split(16, 0), valid: split(8, 5), test: split(8, 9), description: "fixed test data" };
}

async function oneStep(balance: string) {
  const code = await compileOrThrow(smallSpec(balance).replace("train epochs 2 batch 16 seed 2", "train epochs 1 batch 16 seed 2"));
  const out = mkdtempSync(join(tmpdir(), "mmb-step-"));
  const trainer = await loadTrainer(code, out);
  await train(trainer, { out, backend: "cpu", data: fixedData(), log: () => {} });
  const checkpoint = (await loadCheckpoint(join(out, "checkpoints")))!;
  return { trainer, weights: new Map(checkpoint.state.manifest.map((m, i) => [m.name, checkpoint.weights[i]!])) };
}

// Plain-JS forward of the small spec: mlp(hidden: [10], out: 5) per modality, concat, linear(4).
function dense(x: number[][], w: Float32Array, b: Float32Array, outputs: number, act = false): number[][] {
  return x.map((row) => Array.from({ length: outputs }, (_, j) => {
    const v = row.reduce((s, xi, i) => s + xi * w[i * outputs + j]!, b[j]!);
    return act ? Math.max(0, v) : v;
  }));
}

describe("one step of a generated trainer against the equations", () => {
  it("OGM: s, rho, k from the paper's equations; encoder updates scaled by k, head untouched", async () => {
    const alpha = 0.5;
    const base = await oneStep("");
    const ogm = await oneStep(`
      param alpha = ${alpha}
      s[m]   = sum(batch, prob(contrib[m], y))
      rho[m] = s[m] / s[other(m)]
      k[m]   = if rho[m] > 1 then 1 - tanh(alpha * relu(rho[m])) else 1
      scale grad(encoder[m]) by k[m]`);

    // Independent computation of k from the initial weights (methods.md, OGM-GE).
    const init = new Map([...initialParameters(base.trainer.spec, 2)].map(([n, v]) => [n, v.dataSync() as Float32Array]));
    const data = fixedData().train;
    const widths = [8, 6];
    const z = ["a", "b"].map((m, mi) => {
      const x = Array.from({ length: 16 }, (_, i) => Array.from(data.inputs[mi]!.subarray(i * widths[mi]!, (i + 1) * widths[mi]!)));
      const h = dense(x, init.get(`encoder.${m}.dense0.kernel`)!, init.get(`encoder.${m}.dense0.bias`)!, 10, true);
      return dense(h, init.get(`encoder.${m}.last.kernel`)!, init.get(`encoder.${m}.last.bias`)!, 5);
    });
    const W = init.get("head.kernel")!;
    const b = init.get("head.bias")!;
    const s = z.map((zm, mi) => {
      let total = 0;
      zm.forEach((row, i) => {
        const logits = Array.from({ length: 4 }, (_, c) => row.reduce((acc, v, j) => acc + v * W[(mi * 5 + j) * 4 + c]!, b[c]! / 2));
        const max = Math.max(...logits);
        const exps = logits.map((l) => Math.exp(l - max));
        total += exps[data.labels[i]!]! / exps.reduce((x, y) => x + y, 0);
      });
      return total;
    });
    const rho = [s[0]! / s[1]!, s[1]! / s[0]!];
    const k = rho.map((r) => (r > 1 ? 1 - Math.tanh(alpha * Math.max(0, r)) : 1));
    expect(Math.min(...k)).toBeLessThan(1); // the rule acts on this batch

    for (const [name, before] of init) {
      const dBase = before.map((v, i) => v - base.weights.get(name)![i]!);
      const dOgm = before.map((v, i) => v - ogm.weights.get(name)![i]!);
      const factor = name.startsWith("encoder.a") ? k[0]! : name.startsWith("encoder.b") ? k[1]! : 1;
      dOgm.forEach((d, i) => expect(d).toBeCloseTo(factor * dBase[i]!, 5));
    }
  });
});
