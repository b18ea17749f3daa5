import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadTrainer } from "../cli/load-trainer.js";
import { loadCheckpoint } from "../runtime/checkpoint.js";
import type { ModelSpec } from "../runtime/index.js";
import { initialParameters } from "../runtime/model.js";
import { train } from "../runtime/train.js";
import { compileOrThrow, convSpec, fixedData, smallSpec, specsDir } from "./helpers.js";

async function oneStep(balance: string) {
  const code = await compileOrThrow(smallSpec(balance).replace("train epochs 2 batch 16 seed 2", "train epochs 1 batch 16 seed 2"));
  const out = mkdtempSync(join(tmpdir(), "mmb-step-"));
  const trainer = await loadTrainer(code, out);
  await train(trainer, { out, backend: "cpu", data: fixedData(), log: () => {} });
  const checkpoint = (await loadCheckpoint(join(out, "checkpoints")))!;
  return { trainer, weights: new Map(checkpoint.state.manifest.map((m, i) => [m.name, checkpoint.weights[i]!])) };
}

/** The seeded initial weights (seed 2), as plain arrays. */
function initialValues(spec: ModelSpec): Map<string, Float32Array> {
  const variables = initialParameters(spec, 2);
  const values = new Map([...variables].map(([n, v]) => [n, v.dataSync() as Float32Array]));
  variables.forEach((v) => v.dispose());
  return values;
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
    const init = initialValues(base.trainer.spec);
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

  it("OGM-GE: the update is k·g + h with h ~ N(0, std(g)²) drawn per encoder from the unscaled gradient", async () => {
    const rule = `
      s[m]   = sum(batch, prob(contrib[m], y))
      rho[m] = s[m] / s[other(m)]
      k[m]   = if rho[m] > 1 then 1 - tanh(0.5 * relu(rho[m])) else 1`;
    const lr = 0.1;
    const modulated = await oneStep(rule + "\n      scale grad(encoder[m]) by k[m]");
    const ge = await oneStep(rule + "\n      scale grad(encoder[m]) by k[m]\n      noise grad(encoder[m]) ~ normal(0, std(grad(encoder[m])) + 1e-8)");
    const base = await oneStep("");
    const init = initialValues(base.trainer.spec);
    for (const m of ["a", "b"]) {
      const names = [...init.keys()].filter((n) => n.startsWith(`encoder.${m}.`));
      const gradient = names.flatMap((n) => Array.from(init.get(n)!, (v, i) => (v - base.weights.get(n)![i]!) / lr));
      const noise = names.flatMap((n) => Array.from(init.get(n)!, (v, i) => (modulated.weights.get(n)![i]! - ge.weights.get(n)![i]!) / lr));
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      const std = (xs: number[]) => Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / (xs.length - 1));
      const sigma = std(gradient);
      expect(sigma).toBeGreaterThan(0);
      // A sample of a few hundred draws: its std within 20% of σ, its mean within 4 standard errors of 0.
      expect(Math.abs(std(noise) / sigma - 1)).toBeLessThan(0.2);
      expect(Math.abs(mean(noise))).toBeLessThan((4 * sigma) / Math.sqrt(noise.length));
    }
  });
});

describe("OGM-GE as its authors' code runs it (specs/ogm_ge_code.mmb)", () => {
  it("only convolution kernels are scaled by k and noised, with the std of each kernel tensor's unscaled gradient", async () => {
    const shipped = readFileSync(join(specsDir, "ogm_ge_code.mmb"), "utf8");
    const rule = shipped.slice(shipped.indexOf("balance {"));
    const conv = (body: string) => convSpec(body);
    const data = fixedData([16, 32]);
    const stepOf = async (text: string) => {
      const out = mkdtempSync(join(tmpdir(), "mmb-code-"));
      const trainer = await loadTrainer(await compileOrThrow(text), out);
      await train(trainer, { out, backend: "cpu", data, log: () => {} });
      const checkpoint = (await loadCheckpoint(join(out, "checkpoints")))!;
      const lines = readFileSync(join(out, "log.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((l) => l.type === "step");
      return { trainer, k: lines[0].k as number[], weights: new Map(checkpoint.state.manifest.map((m, i) => [m.name, checkpoint.weights[i]!])) };
    };
    const base = await stepOf(conv(""));
    const scaled = await stepOf(conv(rule.replace(/\n\s*noise .*\n/, "\n")));
    const noised = await stepOf(conv(rule));
    const init = initialValues(base.trainer.spec);
    expect(Math.min(...noised.k)).toBeLessThan(1); // the rule acts on this batch
    const update = (run: { weights: Map<string, Float32Array> }, name: string) => Array.from(init.get(name)!, (v, i) => (v - run.weights.get(name)![i]!) / 0.1);
    let kernels = 0;
    for (const name of init.keys()) {
      const plain = update(base, name);
      const m = ["a", "b"].findIndex((u) => name.startsWith(`encoder.${u}.`));
      const kernel = m >= 0 && /\.conv\d+\.kernel$/.test(name);
      // Without noise: k·g on the kernels, g on everything else (biases, the last layer, the head).
      update(scaled, name).forEach((d, i) => expect(d, name).toBeCloseTo((kernel ? noised.k[m]! : 1) * plain[i]!, 4));
      if (!kernel) {
        update(noised, name).forEach((d, i) => expect(d, name).toBeCloseTo(plain[i]!, 4));
        continue;
      }
      // The noise of this kernel: its std is that of this tensor's unscaled gradient, not the group's.
      kernels++;
      const noise = update(noised, name).map((d, i) => d - update(scaled, name)[i]!);
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      const std = (xs: number[]) => Math.sqrt(xs.reduce((a, x) => a + (x - mean(xs)) ** 2, 0) / (xs.length - 1));
      expect(Math.abs(std(noise) / (std(plain) + 1e-8) - 1), name).toBeLessThan(0.3);
    }
    // That the std is each tensor's own, exactly, is checked without noise in test/builtin-functions.test.ts.
    expect(kernels).toBe(4);
  });
});

describe("one step of the general actions", () => {
  const deltas = (run: { weights: Map<string, Float32Array> }, init: Map<string, Float32Array>, prefix: string) =>
    [...init].filter(([n]) => n.startsWith(prefix)).flatMap(([n, v]) => Array.from(v, (x, i) => x - run.weights.get(n)![i]!));

  it("replace grad(G) by an expression of grad(G, L): L = the task loss gives the plain update, 2·it twice that", async () => {
    const base = await oneStep("");
    const same = await oneStep("replace grad(encoder[m]) by grad(encoder[m], cross_entropy(out, y))");
    const double = await oneStep("g[m] = grad(encoder[m], cross_entropy(out, y))\n replace grad(encoder[m]) by g[m] + g[m]");
    const init = initialValues(base.trainer.spec);
    for (const prefix of ["encoder.a", "encoder.b", "head"]) {
      const plain = deltas(base, init, prefix);
      deltas(same, init, prefix).forEach((d, i) => expect(d).toBeCloseTo(plain[i]!, 6));
      const factor = prefix === "head" ? 1 : 2;
      deltas(double, init, prefix).forEach((d, i) => expect(d).toBeCloseTo(factor * plain[i]!, 6));
    }
  });

  it("drop z[m] with 1 silences modality a for the step: its encoder is not updated, b's is", async () => {
    const dropped = await oneStep("drop z[a] with 1");
    const init = initialValues(dropped.trainer.spec);
    expect(Math.max(...deltas(dropped, init, "encoder.a").map(Math.abs))).toBe(0);
    expect(Math.max(...deltas(dropped, init, "encoder.b").map(Math.abs))).toBeGreaterThan(1e-4);
  });

  it("layer-kind groups: scale grad(encoder[a].dense.weight) by 0 freezes exactly the hidden kernels", async () => {
    const run = await oneStep("scale grad(encoder[a].dense.weight) by 0");
    const init = initialValues(run.trainer.spec);
    const moved = (name: string) => Math.max(...Array.from(init.get(name)!, (v, i) => Math.abs(v - run.weights.get(name)![i]!)));
    expect(moved("encoder.a.dense0.kernel")).toBe(0);
    for (const name of ["encoder.a.dense0.bias", "encoder.a.last.kernel", "encoder.b.dense0.kernel", "head.kernel"]) expect(moved(name), name).toBeGreaterThan(1e-6);
  });
});
