import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadTrainer } from "../cli/load-trainer.js";
import { analyze } from "../compiler/index.js";
import { loadCheckpoint } from "../runtime/checkpoint.js";
import { initialParameters } from "../runtime/model.js";
import { train } from "../runtime/train.js";
import { compileOrThrow, convSpec, diagnose, fixedData, smallSpec } from "./helpers.js";

/** The logged rule values of every step of one epoch on the fixed 16 samples, `batch` a step. */
async function steps(balance: string, options: { batch?: number; set?: Record<string, number> } = {}): Promise<Record<string, number | number[]>[]> {
  const spec = smallSpec(balance).replace("train epochs 2 batch 16 seed 2", `train epochs 1 batch ${options.batch ?? 16} seed 2`);
  const code = await compileOrThrow(spec);
  const out = mkdtempSync(join(tmpdir(), "mmb-builtins-"));
  const trainer = await loadTrainer(code, out);
  await train(trainer, { out, backend: "cpu", data: fixedData(), log: () => {}, ...(options.set ? { set: options.set } : {}) });
  return readFileSync(join(out, "log.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l)).filter((l) => l.type === "step");
}

describe("functions on numbers known before the step (plain JavaScript in the trainer)", () => {
  it("sigmoid, square, sqrt, clamp and max of a param give the values of their definitions", async () => {
    // Before the catalogue, host sigmoid and square were emitted as Math.sigmoid and Math.square, which do not exist.
    const [step] = await steps(`
      param t = 0.64
      s = sigmoid(t)
      q = square(t)
      r = sqrt(t)
      c = clamp(t, 0, 0.5)
      x = max(t, 0.7)`);
    expect(step!.s).toBeCloseTo(1 / (1 + Math.exp(-0.64)), 6);
    expect(step!.q).toBeCloseTo(0.4096, 6);
    expect(step!.r).toBeCloseTo(0.8, 6);
    expect(step!.c).toBeCloseTo(0.5, 6);
    expect(step!.x).toBeCloseTo(0.7, 6);
  });
});

describe("functions on tensors", () => {
  it("sqrt applies to each element of a gradient: ‖√|g|‖₂ = √‖g‖₁; clamp limits a tensor to its bounds", async () => {
    const [step] = await steps(`
      n[m]  = norm(sqrt(abs(grad(encoder[m]))))
      n1[m] = norm1(grad(encoder[m]))
      c[m]  = clamp(n1[m], 0.5, 1)`);
    const n = step!.n as number[];
    const n1 = step!.n1 as number[];
    n1.forEach((v, m) => {
      expect(n[m]! / Math.sqrt(v)).toBeCloseTo(1, 5);
      expect((step!.c as number[])[m]).toBeCloseTo(Math.min(Math.max(v, 0.5), 1), 6);
    });
    expect(Math.min(...n1)).toBeGreaterThan(0);
  });

  it("per_tensor(std(grad(G))) holds each parameter tensor's own std: scaling by it multiplies each kernel's update by its std", async () => {
    const conv = (rule: string) => convSpec(`balance {\n${rule}\n}`, 1);
    const update = async (rule: string) => {
      const out = mkdtempSync(join(tmpdir(), "mmb-per-tensor-"));
      const trainer = await loadTrainer(await compileOrThrow(conv(rule)), out);
      const init = initialParameters(trainer.spec, 2);
      const before = new Map([...init].map(([n, v]) => [n, v.dataSync() as Float32Array]));
      init.forEach((v) => v.dispose());
      await train(trainer, { out, backend: "cpu", data: fixedData([16, 32]), log: () => {} });
      const checkpoint = (await loadCheckpoint(join(out, "checkpoints")))!;
      return new Map(checkpoint.state.manifest.map((m, i) => [m.name, Array.from(before.get(m.name)!, (v, j) => v - checkpoint.weights[i]![j]!)]));
    };
    const plain = await update("");
    const scaled = await update("scale grad(encoder[m].conv.weight) by per_tensor(std(grad(encoder[m].conv.weight)))");
    const std = (xs: number[]) => {
      const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
      return Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (xs.length - 1));
    };
    const stds = new Map<string, number>();
    for (const [name, g] of plain) {
      const factor = /^encoder\.\w+\.conv\d+\.kernel$/.test(name) ? std(g) : 1;
      if (factor !== 1) stds.set(name, factor);
      const expected = g.map((v) => factor * v);
      const error = Math.hypot(...scaled.get(name)!.map((d, i) => d - expected[i]!)) / Math.hypot(...expected);
      expect(error, name).toBeLessThan(2e-3);
    }
    // Four kernels, each scaled by its own std; encoder a's two kernels have unlike stds, so one std
    // over its kernels would miss the bound above by far.
    expect(stds.size).toBe(4);
    expect(stds.get("encoder.a.conv0.kernel")! / stds.get("encoder.a.conv1.kernel")!).not.toBeCloseTo(1, 1);
  });

  it("ema's beta may be a param, and --set changes it: e_t = β·e_{t−1} + (1 − β)·x_t, e_0 = x_0", async () => {
    const rule = "param beta = 0.5\n x = acc(out, y) + 0.1 * step\n e = ema(x, beta)";
    for (const [beta, set] of [[0.5, undefined], [0.9, { beta: 0.9 }]] as const) {
      const log = await steps(rule, { batch: 4, ...(set ? { set } : {}) });
      expect(log.length).toBe(4);
      let expected = log[0]!.x as number;
      log.forEach((s, t) => {
        if (t > 0) expected = beta * expected + (1 - beta) * (s.x as number);
        expect(s.e, `step ${t}, beta ${beta}`).toBeCloseTo(expected, 6);
      });
    }
  });
});

describe("checks the catalogue's signatures make", () => {
  it("a constant argument outside its range is MMB019, whether the spec or --set puts it there", () => {
    const spec = smallSpec("param beta = 1\n e = ema(acc(out, y), beta)");
    expect(diagnose(spec)).toEqual(["MMB019 14:23-14:27"]);
    const viaSet = analyze(smallSpec("param beta = 0.5\n e = ema(acc(out, y), beta)"), { set: { beta: 1.5 } });
    expect(viaSet.diagnostics.map((d) => d.message)).toEqual(["`ema`'s beta must be in [0, 1), found 1.5 (`--set beta=1.5`)"]);
    expect(diagnose(smallSpec("e = ema(acc(out, y), step)"))).toEqual(["MMB019 13:22-13:26"]);
  });

  it("a definition that reads itself through ema is a cycle (MMB017); through prev it is last step's value", () => {
    // Before, reads under ema were not counted: `u = ema(u, 0.9)` checked clean and failed at run time.
    expect(diagnose(smallSpec("u = ema(u, 0.9)"))).toEqual(["MMB017 13:9-13:10"]);
    expect(diagnose(smallSpec("u = prev(u, 0) + 1"))).toEqual([]);
  });

  it("a gradient is not a per-sample value: sum(batch, grad(G)) is MMB008, not a silent mean of its elements", () => {
    expect(diagnose(smallSpec("s = sum(batch, grad(encoder[a]))"))).toEqual(["MMB008 13:16-13:32"]);
    expect(diagnose(smallSpec("s = mean(grad(encoder[a]))"))).toEqual([]);
  });

  it("per_tensor reads exactly one gradient, and a gradient-shaped operand must be of the group it acts on", () => {
    expect(analyze(smallSpec("v = per_tensor(acc(out, y))")).diagnostics.map((d) => [d.code, d.message])).toEqual([
      ["MMB008", "`per_tensor` evaluates a number for each tensor of one gradient, but this reads no gradient"],
    ]);
    expect(analyze(smallSpec("v = per_tensor(std(grad(encoder[a])) / std(grad(encoder[b])))")).diagnostics.map((d) => d.code)).toEqual(["MMB008"]);
    expect(diagnose(smallSpec("scale grad(encoder[a]) by per_tensor(std(grad(encoder[b])))"))).toEqual(["MMB016 13:27-13:60"]);
    expect(diagnose(smallSpec("scale grad(encoder[m]) by per_tensor(std(grad(encoder[m])))"))).toEqual([]);
    expect(diagnose(smallSpec("scale lr(encoder[m]) by per_tensor(std(grad(encoder[m])))"))).toEqual(["MMB008 13:25-13:58"]);
  });

  it("clamp: wrong kinds and arity name the argument and the usage", () => {
    const kind = analyze(smallSpec("c = clamp(out, 0, 1)")).diagnostics;
    expect(kind.map((d) => [d.code, d.message])).toEqual([["MMB008", "`clamp` needs a number or one number per sample or a gradient, found a head's outputs"]]);
    const arity = analyze(smallSpec("c = clamp(1, 2)")).diagnostics;
    expect(arity.map((d) => [d.code, d.message])).toEqual([["MMB007", "`clamp` takes 3 arguments: `clamp(x, lo, hi)`"]]);
    expect(diagnose(smallSpec("clamp = 1"))).toEqual(["MMB020 13:1-13:6"]);
  });
});
