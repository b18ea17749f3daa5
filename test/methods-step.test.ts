import * as tf from "@tensorflow/tfjs";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { selectBackend } from "../runtime/backend.js";
import { stopGradient } from "../runtime/ops.js";
import { specsDir } from "./helpers.js";
import {
  accuracy, batch, crossEntropy, dense, dot, encode, expectMatchesFiniteDifferences, expectUpdate, expectValues, fullGradient, gradient, lr, names, norm, oneStep, spec,
  type Name, type Params,
} from "./one-step.js";

/**
 * One step of the generated trainer for CGGM, AWF and AGM-CR against the papers' equations
 * (shared/methods.md), written here directly in tfjs without the compiler or the runtime's
 * step machinery. Every rule value and every parameter update must agree to 1e-5; the
 * second-order terms are also checked against central finite differences.
 */

beforeAll(async () => {
  await selectBackend("cpu");
});

describe("one step of each source method against its paper's equations", () => {
  it("CGGM: ε, Δε, B, the encoder scaling, L_gm (second order) and the classifiers' own update", async () => {
    const modalities: Name[] = ["a", "b", "c"];
    const rho = 1.2;
    const lambda = 0.5;
    const { init, after, record, x, y } = await oneStep(modalities, spec(modalities, `head[m] = linear(4)
fusion sum -> linear(4)
loss cross_entropy(out, y)
balance {
  param rho = ${rho}
  param lambda = ${lambda}
  eps[m] = acc(head[m], y)
  d[m]   = delta(eps[m])
  B[m]   = rho * (sum(k != m, d[k]) + 1e-8) / (sum(k, d[k]) + 1e-8)
  scale grad(encoder[m]) by B[m]
  add loss lambda * mean(k, abs(B[k]) - B[k] * cos(grad(head), grad(head[k], cross_entropy(head[k], y))))
  minimize cross_entropy(head[m], y) wrt head[m] using sgd(lr: ${lr})
}`));
    const features = (p: Params) => modalities.map((m, k) => encode(p, m, x[k]!));
    const taskLoss = (p: Params) => crossEntropy(dense(p, "head", tf.addN(features(p))), y);
    const auxLoss = (p: Params, k: number) => crossEntropy(dense(p, `aux.${modalities[k]}`, stopGradient(features(p)[k]!)), y);

    // ε_i: accuracy of classifier f_i; the first step's Δε_i is ε_i − 0.
    const z = features(init);
    const eps = modalities.map((m, k) => accuracy(dense(init, `aux.${m}`, z[k]!), y));
    const total = eps.reduce((s, v) => s + v, 0);
    // As the authors' code: 1e-8 in numerator and denominator (B = ρ when every Δε is 0).
    const B = eps.map((e) => (rho * (total - e + 1e-8)) / (total + 1e-8));
    expectValues(record.eps, eps);
    expectValues(record.d, eps);
    expectValues(record.B, B);

    // L_gm = (1/M) Σ_i (|B_i| − B_i·cos(∇_{θ_F} L, ∇_{θ_{f_i}} L_i)), B constant.
    const gm = (p: Params) => {
      const fused = gradient(taskLoss, p, "head");
      const terms = modalities.map((_, k) => {
        const own = gradient((q) => auxLoss(q, k), p, `aux.${modalities[k]}`);
        const cos = tf.div(dot(fused, own), tf.add(tf.mul(norm(fused), norm(own)), 1e-12));
        return tf.sub(Math.abs(B[k]!), tf.mul(B[k]!, cos));
      });
      return tf.div(tf.addN(terms), modalities.length);
    };
    const trained = Object.keys(init).filter((n) => !n.startsWith("aux."));
    const objective = fullGradient((p) => tf.add(taskLoss(p), tf.mul(lambda, gm(p))), init, trained);
    for (const name of trained) {
      const k = modalities.findIndex((m) => name.startsWith(`encoder.${m}.`));
      expectUpdate(init, after, name, tf.mul(objective.get(name)!, lr * (k >= 0 ? B[k]! : 1)));
    }
    // Each f_i is trained only by its own loss, with its own SGD.
    modalities.forEach((m, k) => {
      const own = fullGradient((p) => auxLoss(p, k), init, names(init, `aux.${m}`));
      for (const [name, g] of own) expectUpdate(init, after, name, tf.mul(g, lr));
    });
    const gmGradient = fullGradient(gm, init, trained);
    // Along the fused head's parameters (a shift of an encoder would also move the classifiers'
    // detached inputs, which finite differences cannot hold still).
    expectMatchesFiniteDifferences(gm, init, trained.filter((n) => n.startsWith("head")), gmGradient);
  });

  it("CGGM as shipped reads B as the authors' code: when every Δε is 0, B = ρ, not 0 (which would freeze the encoders)", async () => {
    const modalities: Name[] = ["a", "b", "c"];
    const line = readFileSync(join(specsDir, "cggm.mmb"), "utf8").split("\n").find((l) => l.trim().startsWith("B[m]"))!;
    const { record } = await oneStep(modalities, spec(modalities, `head[m] = linear(4)
fusion sum -> linear(4)
loss cross_entropy(out, y)
balance {
  param rho = 1.2
  d[m] = 0 * acc(head[m], y)
${line}
}`));
    expectValues(record.B, [1.2, 1.2, 1.2]);
  });

  it("AWF: g, ḡ, r, the fusion weights ω learnt only through L_ω (second order), the rest by the task loss", async () => {
    const modalities: Name[] = ["a", "b", "c"];
    const lrOmega = 0.5;
    const { init, after, record, x, y } = await oneStep(modalities, spec(modalities, `learnable w[m] = 1
fusion (concat(j, w[j] * z[j]) + attention) / 2 -> linear(4)
loss cross_entropy(out, y)
balance {
  g[m] = mean(abs(grad(encoder[m].last.weight)))
  gbar = mean(k, g[k])
  r[m] = max(k, g[k]) / g[m]
  minimize sum(k, abs(g[k] - detach(gbar * r[k]))) wrt w using sgd(lr: ${lrOmega})
}`));
    // Z = ([ω_i Z_i] + [α_i Z_i]) / 2 with α = sigmoid(ReLU(avgpool(Z)·W1)·W2).
    const taskLoss = (p: Params) => {
      const z = modalities.map((m, k) => encode(p, m, x[k]!));
      const pooled = tf.stack(z.map((zi) => tf.mean(zi, 1)), 1);
      const alpha = tf.sigmoid(tf.matMul(tf.relu(tf.matMul(pooled as tf.Tensor2D, p["fusion.0.w1"] as tf.Tensor2D)), p["fusion.0.w2"] as tf.Tensor2D));
      const weighted = tf.concat(z.map((zi, k) => tf.mul(p[`learnable.w.${modalities[k]}`]!, zi)), 1);
      const attended = tf.concat(z.map((zi, k) => tf.mul(tf.slice(alpha, [0, k], [-1, 1]), zi)), 1);
      return crossEntropy(dense(p, "head", tf.div(tf.add(weighted, attended), 2)), y);
    };
    // g_i = mean |∂L/∂W_i| over the last layer, ḡ = mean g, r_i = max g / g_i, L_ω = Σ |g_i − T_i| with
    // the target T_i = ḡ·r_i held constant at this step's value (GradNorm's reading), or, without
    // `targets`, differentiated too.
    const rule = (p: Params, targets?: number[]) => {
      const g = modalities.map((m) => {
        const [kernel] = gradient(taskLoss, p, `encoder.${m}.last.kernel`);
        return tf.mean(tf.abs(kernel!));
      });
      const gbar = tf.div(tf.addN(g), g.length);
      const r = g.map((gi) => tf.div(tf.max(tf.stack(g)), gi));
      const target = (k: number) => (targets ? targets[k]! : tf.mul(gbar, r[k]!));
      return { g, gbar, r, loss: tf.addN(g.map((gi, k) => tf.abs(tf.sub(gi, target(k))))) };
    };
    const values = rule(init);
    expectValues(record.g, values.g.map((t) => t.dataSync()[0]!));
    expectValues(record.gbar, [values.gbar.dataSync()[0]!]);
    expectValues(record.r, values.r.map((t) => t.dataSync()[0]!));

    const omega = modalities.map((m) => `learnable.w.${m}`);
    const targets = values.r.map((r) => tf.mul(values.gbar, r).dataSync()[0]!);
    const fixedTarget = (p: Params) => rule(p, targets).loss;
    const omegaGradient = fullGradient(fixedTarget, init, omega);
    omega.forEach((name) => expectUpdate(init, after, name, tf.mul(omegaGradient.get(name)!, lrOmega)));
    expect(omega.some((name) => Math.abs(after.get(name)![0]! - 1) > 1e-4)).toBe(true); // ω moved
    // As the paper describes its threshold: the weakest modality's ω grows, the strongest's shrinks.
    const g = values.g.map((t) => t.dataSync()[0]!);
    const weakest = g.indexOf(Math.min(...g));
    const strongest = g.indexOf(Math.max(...g));
    expect(after.get(omega[weakest]!)![0]!).toBeGreaterThan(1);
    expect(after.get(omega[strongest]!)![0]!).toBeLessThan(1);
    // Differentiated through r_i = max g / g_i as well, the weakest modality's step carries a
    // 1/g_i² term: here more than 5 times the fixed-target one (the drift GradNorm's constant target avoids).
    const through = fullGradient((p) => rule(p).loss, init, omega);
    const weakStep = (gradients: Map<string, tf.Tensor>) => Math.abs(gradients.get(omega[weakest]!)!.dataSync()[0]!);
    expect(weakStep(through) / weakStep(omegaGradient)).toBeGreaterThan(5);
    const rest = Object.keys(init).filter((n) => !omega.includes(n));
    const task = fullGradient(taskLoss, init, rest);
    for (const name of rest) expectUpdate(init, after, name, tf.mul(task.get(name)!, lr));
    expectMatchesFiniteDifferences(fixedTarget, init, omega, omegaGradient);
  });

  it("AGM-CR: g, k and the regularised loss r·Σ|g_u − ḡ| differentiated through the gradient norms", async () => {
    const modalities: Name[] = ["a", "b"];
    const alpha = 1e-5;
    const r = 1;
    const { init, after, record, x, y } = await oneStep(modalities, spec(modalities, `fusion concat -> linear(4)
loss cross_entropy(out, y)
balance {
  param alpha = ${alpha}
  param r = ${r}
  g[m] = norm(grad(encoder[m].last.weight))
  gbar = mean(j, g[j])
  k[m] = g[other(m)] / g[m] + alpha
  scale grad(encoder[m]) by k[m]
  add loss r * sum(j, abs(g[j] - gbar))
}`));
    const taskLoss = (p: Params) => crossEntropy(dense(p, "head", tf.concat(modalities.map((m, k) => encode(p, m, x[k]!)), 1)), y);
    const norms = (p: Params) => modalities.map((m) => norm(gradient(taskLoss, p, `encoder.${m}.last.kernel`)));
    const regulariser = (p: Params) => {
      const g = norms(p);
      const gbar = tf.div(tf.addN(g), g.length);
      return tf.mul(r, tf.addN(g.map((gu) => tf.abs(tf.sub(gu, gbar)))));
    };
    const g = norms(init).map((t) => t.dataSync()[0]!);
    const k = [g[1]! / g[0]! + alpha, g[0]! / g[1]! + alpha];
    expectValues(record.g, g);
    expectValues(record.gbar, [(g[0]! + g[1]!) / 2]);
    expectValues(record.k, k);

    const all = Object.keys(init);
    const objective = fullGradient((p) => tf.add(taskLoss(p), regulariser(p)), init, all);
    for (const name of all) {
      const m = modalities.findIndex((u) => name.startsWith(`encoder.${u}.`));
      expectUpdate(init, after, name, tf.mul(objective.get(name)!, lr * (m >= 0 ? k[m]! : 1)));
    }
    const second = fullGradient(regulariser, init, all);
    expectMatchesFiniteDifferences(regulariser, init, all.filter((n) => n.startsWith("encoder.a") || n === "head.kernel"), second);
  });

  it("AGM-CR, per-sample reading: k_u = Σ_i g_i^other / g_i^u + α with g_i of each sample's own loss", async () => {
    const modalities: Name[] = ["a", "b"];
    const alpha = 1e-5;
    const { init, after, record, x, y } = await oneStep(modalities, spec(modalities, `fusion concat -> linear(4)
loss cross_entropy(out, y)
balance {
  gs[m] = per_sample(norm(grad(encoder[m].last)))
  k[m]  = sum(batch, gs[other(m)] / gs[m]) + ${alpha}
  scale grad(encoder[m]) by k[m]
}`));
    const sampleNorms = (i: number) =>
      modalities.map((m) => {
        const loss = (p: Params) => crossEntropy(dense(p, "head", tf.concat(modalities.map((u, k) => encode(p, u, tf.slice(x[k]!, [i], [1]))), 1)), tf.slice(y, [i], [1]));
        return norm(gradient(loss, init, `encoder.${m}.last`)).dataSync()[0]!;
      });
    const perSample = Array.from({ length: batch }, (_, i) => sampleNorms(i));
    const k = [0, 1].map((u) => perSample.reduce((s, g) => s + g[1 - u]! / g[u]!, 0) + alpha);
    // The log keeps a per-sample value's mean over the batch.
    expectValues(record.gs as number[], [0, 1].map((u) => perSample.reduce((s, g) => s + g[u]!, 0) / batch));
    expectValues(record.k, k);
    const taskLoss = (p: Params) => crossEntropy(dense(p, "head", tf.concat(modalities.map((m, j) => encode(p, m, x[j]!)), 1)), y);
    const task = fullGradient(taskLoss, init, Object.keys(init));
    for (const [name, g] of task) {
      const m = modalities.findIndex((u) => name.startsWith(`encoder.${u}.`));
      expectUpdate(init, after, name, tf.mul(g, lr * (m >= 0 ? k[m]! : 1)));
    }
  });

  it("PMR: class prototypes, prototypical logits, the rebalancing coefficients and the prototype loss", async () => {
    const modalities: Name[] = ["a", "b"];
    const alpha = 0.7;
    const { init, after, record, x, y } = await oneStep(modalities, spec(modalities, `fusion concat -> linear(4)
loss cross_entropy(out, y)
balance {
  P[m]   = class_mean(z[m], y, 0.9)
  sim[m] = -distance(z[m], P[m])
  s[m]   = sum(batch, prob(sim[m], y))
  c[m]   = min(max(s[other(m)] / s[m] - 1, 0), 1)
  add loss ${alpha} * sum(k, detach(c[k]) * cross_entropy(sim[k], y))
}`));
    // First step: each prototype is its class's mean feature in the batch (constants).
    const labels = Array.from(y.dataSync());
    const prototypes = modalities.map((m, k) => {
      const z = encode(init, m, x[k]!).arraySync() as number[][];
      return tf.tensor2d(Array.from({ length: 4 }, (_, c) => {
        const rows = z.filter((_, i) => labels[i] === c);
        return z[0]!.map((_, j) => rows.reduce((sum, r) => sum + r[j]!, 0) / Math.max(1, rows.length));
      }));
    });
    const sim = (p: Params, k: number) => {
      const z = encode(p, modalities[k]!, x[k]!);
      const squared = tf.sum(tf.square(tf.sub(tf.expandDims(z, 1), tf.expandDims(prototypes[k]!, 0))), 2);
      return tf.neg(tf.sqrt(tf.add(squared, 1e-12)));
    };
    const s = modalities.map((_, k) => {
      const probs = tf.softmax(sim(init, k)).arraySync() as number[][];
      return labels.reduce((sum, label, i) => sum + probs[i]![label]!, 0);
    });
    const c = [0, 1].map((k) => Math.min(Math.max(s[1 - k]! / s[k]! - 1, 0), 1));
    expectValues(record.s, s);
    expectValues(record.c, c);
    expect(Math.max(...c)).toBeGreaterThan(0); // the rule acts on this batch
    const taskLoss = (p: Params) => crossEntropy(dense(p, "head", tf.concat(modalities.map((m, k) => encode(p, m, x[k]!)), 1)), y);
    const total = (p: Params) => tf.add(taskLoss(p), tf.mul(alpha, tf.addN(modalities.map((_, k) => tf.mul(c[k]!, crossEntropy(sim(p, k), y))))));
    for (const [name, g] of fullGradient(total, init, Object.keys(init))) expectUpdate(init, after, name, tf.mul(g, lr));
  });
});
