import * as tf from "@tensorflow/tfjs";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { loadTrainer } from "../cli/load-trainer.js";
import { selectBackend } from "../runtime/backend.js";
import { loadCheckpoint } from "../runtime/checkpoint.js";
import { initialParameters } from "../runtime/model.js";
import { train } from "../runtime/train.js";
import { compileOrThrow, convSpec, fixedData as convData, specsDir } from "./helpers.js";
import { batch, crossEntropy, dropDraws, expectUpdate, expectValues, features, fullGradient, fused, lr, oneStep, pair, param, scalar, share, shipped, spec, trueProb, type Params } from "./one-step.js";

/**
 * One step (or a few) of the shipped OPM, AMCo, Greedy and AMSS specs against their equations,
 * written here from the model's parameters. These rules draw at random or act across steps: the
 * draws are the runtime's documented streams (a drop's per-position draws of the step and
 * modality; the epoch's shuffle), reproduced here, and multi-step rules are followed step by step.
 */
beforeAll(async () => {
  await selectBackend("cpu");
});

describe("one step of the value-driven BalanceMM methods against their equations", () => {
  it("OPM: q from this step's scores before the drop, the dominant modality dropped per sample and rescaled by 1/(1 − q)", async () => {
    // Warm-up off and the drop always executed, so that the first step shows it.
    const body = shipped("opm").replace("param p_exe  = 0.7", "param p_exe  = 1").replace("param warmup = 5", "param warmup = -1");
    const { init, after, record, x, y } = await oneStep(pair, spec(pair, body));
    const [qBase, lambda] = [param(body, "q_base"), param(body, "lambda")];
    const z = features(init, x);
    const s = pair.map((_, k) => scalar(tf.sum(trueProb(share(init, z, k), y))));
    const t = s.map((sk, k) => Math.tanh(Math.max(0, sk / s[1 - k]! - 1)));
    const q = t.map((tk) => (tk > 0 ? Math.min(Math.max(qBase * (1 + lambda * tk), 0), 1) : 0));
    expect(Math.max(...q)).toBeGreaterThan(0); // one modality dominates this batch
    expect(Math.min(...q)).toBe(0);
    const keep = pair.map((_, k) => dropDraws(k).map((u) => (u < q[k]! ? 0 : 1 / (1 - q[k]!))));
    expect(new Set(keep[q.indexOf(Math.max(...q))]).size).toBe(2); // some samples dropped, some kept
    const loss = (p: Params) => {
      const zp = features(p, x).map((zk, k) => tf.mul(zk, tf.tensor2d(keep[k]!, [batch, 1])));
      return crossEntropy(fused(p, zp), y);
    };
    const g = fullGradient(loss, init, Object.keys(init));
    for (const name of Object.keys(init)) expectUpdate(init, after, name, tf.mul(g.get(name)!, lr));
    // The logged scores are those of the step's own forward pass, after the drop.
    const dropped = features(init, x).map((zk, k) => tf.mul(zk, tf.tensor2d(keep[k]!, [batch, 1])));
    expectValues(record.s, pair.map((_, k) => scalar(tf.sum(trueProb(share(init, dropped, k), y)))));
  });

  it("AMCo: D from a softmax over both pair' logits; at the first step nothing is dependent and L = CE(u_a + u_b) + Σ CE(u_m)", async () => {
    const { init, after, record, x, y } = await oneStep(pair, spec(pair, shipped("amco")));
    const z = features(init, x);
    const u = pair.map((_, k) => share(init, z, k));
    const lse = (o: tf.Tensor) => tf.logSumExp(o, -1);
    expectValues(record.D, [0, 1].map((k) => scalar(tf.mean(tf.sigmoid(tf.sub(lse(u[k]!), lse(u[1 - k]!)))))));
    expectValues(record.dep, [0, 0]);
    expectValues(record.l, [0]);
    expectValues(record.pt, [0]);
    const loss = (p: Params) => {
      const zp = features(p, x);
      const up = pair.map((_, k) => share(p, zp, k));
      return tf.add(crossEntropy(tf.add(up[0]!, up[1]!), y), tf.add(crossEntropy(up[0]!, y), crossEntropy(up[1]!, y)));
    };
    const g = fullGradient(loss, init, Object.keys(init));
    for (const name of Object.keys(init)) expectUpdate(init, after, name, tf.mul(g.get(name)!, lr));
  });

  it("AMCo across steps: l grows by epoch/10 per step within an epoch and restarts at the next; p_t = sin(π/2·min(ε, l)/ε)", async () => {
    // Batches of 4: four steps per epoch, three epochs.
    const { records } = await oneStep(pair, spec(pair, shipped("amco")).replace("batch 16", "batch 4"), 3);
    const eps = param(shipped("amco"), "eps");
    const expectedL: number[] = [];
    for (let epoch = 0; epoch < 3; epoch++) for (let i = 0; i < 4; i++) expectedL.push(i * (epoch / 10));
    expectValues(records.map((r) => r.l as number), expectedL);
    expectValues(records.map((r) => r.pt as number), expectedL.map((l) => Math.sin((Math.PI / 2) * (Math.min(eps, l) / eps))));
    // dep uses the previous step's D: dependent exactly where that D exceeded σ.
    const sigma = param(shipped("amco"), "sigma");
    records.slice(1).forEach((r, i) => expectValues(r.dep as number[], (records[i]!.D as number[]).map((d) => (d > sigma ? 1 : 0))));
  });

  it("Greedy: speeds ‖g‖²/‖θ‖² summed over the run, d = log10 of their ratio, a Q-step window after the first epoch, the faster modality dropped in it", async () => {
    const body = shipped("greedy");
    const Q = param(body, "Q");
    const { init, records, x, y } = await oneStep(pair, spec(pair, body), 4);
    // Step 0 from the initial parameters.
    const loss = (p: Params) => crossEntropy(fused(p, features(p, x)), y);
    const g = fullGradient(loss, init, Object.keys(init));
    const sq = (ts: tf.Tensor[]) => ts.reduce((sum, t) => sum + scalar(tf.sum(tf.square(t))), 0);
    const of = (m: string) => Object.keys(init).filter((n) => n.startsWith(`encoder.${m}.`));
    const r0 = pair.map((m) => sq(of(m).map((n) => g.get(n)!)) / sq(of(m).map((n) => init[n]!)));
    expectValues(records[0]!.r, r0);
    expectValues(records[0]!.M, r0);
    expectValues(records[0]!.d, [Math.log10(r0[0]! / r0[1]!)]);
    // The running sums and the window, step by step (one step per epoch).
    let until = 0;
    let M = [0, 0];
    records.forEach((rec, step) => {
      const window = step < until;
      expect(rec.window, `window at step ${step}`).toBe(window ? 1 : 0);
      M = M.map((sum, k) => sum + (window ? 0 : (rec.r as number[])[k]!));
      expectValues(rec.M, M);
      const d = Math.log10(M[0]! / M[1]!);
      expectValues(rec.d, [d]);
      if (!window && step >= 1 && Math.abs(d) > param(body, "eps")) until = step + 1 + Q;
      expectValues(rec.until, [until]);
    });
    expect(records.some((rec) => rec.window === 1)).toBe(true); // the rule acted in these steps
    // The drop acts exactly in the window: the same run without it has the same losses up to the
    // window's first step, and a different one there (the faster modality's features were zeros).
    const without = await oneStep(pair, spec(pair, body.replace(/^\s*drop z\[m\].*$/m, "")), 4);
    const first = records.findIndex((rec) => rec.window === 1);
    records.slice(0, first).forEach((rec, step) => expect(rec.loss, `step ${step}`).toBe(without.records[step]!.loss));
    expect(records[first]!.loss).not.toBeCloseTo(without.records[first]!.loss as number, 4);
  });

  it("AMSS: k from the pair' scores and feature entropies; each kernel element's gradient kept whole or dropped, kept with probability k·F/mean(F)", async () => {
    const text = readFileSync(join(specsDir, "amss.mmb"), "utf8");
    const balance = text.slice(text.indexOf("balance {")).replace(/\baudio\b/g, "a").replace(/\bvisual\b/g, "b");
    const run = async (body: string) => {
      const out = mkdtempSync(join(tmpdir(), "mmb-amss-"));
      const trainer = await loadTrainer(await compileOrThrow(convSpec(body, 1)), out);
      await train(trainer, { out, backend: "cpu", data: convData([16, 32]), log: () => {} });
      const checkpoint = (await loadCheckpoint(join(out, "checkpoints")))!;
      const record = JSON.parse(readFileSync(join(out, "log.jsonl"), "utf8").split("\n").find((l) => l.includes('"type":"step"'))!) as Record<string, number[]>;
      return { trainer, record, after: new Map(checkpoint.state.manifest.map((m, i) => [m.name, checkpoint.weights[i]!])) };
    };
    const plain = await run("");
    const masked = await run(balance);
    const { record } = masked;
    // t_m = (score_m + H_Y + 0.5)/H_m/T; k_m = e^{t_other}/Σe^t in [0.1, 0.9], from the logged score and H.
    const [T, hy] = [param(balance, "T"), param(balance, "hy")];
    const t = [0, 1].map((k) => (record.score![k]! + hy + 0.5) / record.H![k]! / T);
    expectValues(record.t, t);
    const k = [0, 1].map((m) => (Math.min(...record.score!) + hy + 0.5 <= 0 ? 0.5 : Math.min(Math.max(Math.exp(t[1 - m]!) / (Math.exp(t[0]!) + Math.exp(t[1]!)), 0.1), 0.9)));
    expectValues(record.k, k);
    // The plain step's kernel updates are the gradients (lr 1): each masked element moved by all of it or not at all.
    const variables = initialParameters(plain.trainer.spec, 2);
    const init = new Map([...variables].map(([n, v]) => [n, v.dataSync() as Float32Array]));
    variables.forEach((v) => v.dispose());
    for (const [m, modality] of ["a", "b"].entries()) {
      const kernels = [...init.keys()].filter((n) => n.startsWith(`encoder.${modality}.conv`) && n.endsWith(".kernel"));
      const gradient = kernels.flatMap((n) => Array.from(init.get(n)!, (v, i) => v - plain.after.get(n)![i]!));
      const moved = kernels.flatMap((n) => Array.from(init.get(n)!, (v, i) => v - masked.after.get(n)![i]!));
      const F = gradient.map((g) => g * g);
      const meanF = F.reduce((a, b) => a + b, 0) / F.length;
      const probability = F.map((f) => Math.min(Math.max((k[m]! * f) / meanF, 0), 1));
      let kept = 0;
      moved.forEach((d, i) => {
        const whole = Math.abs(d - gradient[i]!) <= 1e-5 + 1e-3 * Math.abs(gradient[i]!);
        const none = Math.abs(d) <= 1e-6;
        expect(whole || none, `${modality} element ${i}`).toBe(true);
        if (whole && !none) kept++;
        if (probability[i] === 0) expect(none).toBe(true);
      });
      // Kept on average with the summed probability: within 4 standard deviations of the Bernoulli draws.
      const expected = probability.reduce((a, b) => a + b, 0);
      const spread = Math.sqrt(probability.reduce((a, p) => a + p * (1 - p), 0));
      expect(Math.abs(kept - expected), modality).toBeLessThan(4 * spread + 1);
    }
  });
});
