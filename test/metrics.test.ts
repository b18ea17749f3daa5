import { describe, expect, it } from "vitest";
import { classificationMetrics, maskDice, regressionMetrics } from "../runtime/metrics.js";

describe("evaluation metrics against hand computation", () => {
  it("accuracy and macro-F1", () => {
    // Class 0: tp 2, predicted 3, actual 2 → F1 = 2·2/(3+2) = 4/5. Class 1: tp 1, predicted 2,
    // actual 2 → 2/4. Class 2: never predicted, actual 1 → 0. Macro-F1 = (0.8 + 0.5 + 0) / 3.
    const m = classificationMetrics([0, 0, 0, 1, 1], [0, 0, 1, 1, 2], 3);
    expect(m.acc).toBeCloseTo(3 / 5, 12);
    expect(m.macro_f1).toBeCloseTo((4 / 5 + 1 / 2 + 0) / 3, 12);
  });

  it("MAE, Pearson's r, Acc-2 (negative vs non-negative) and Acc-7 (rounded to −3…3)", () => {
    const predicted = [-2.6, -0.2, 0.4, 1.4, 3.9];
    const labels = [-3, 0.3, 0, 2, 2.4];
    const m = regressionMetrics(predicted, labels);
    expect(m.mae).toBeCloseTo((0.4 + 0.5 + 0.4 + 0.6 + 1.5) / 5, 12);
    // Signs: (−,−) (−,+) (+,+) (+,+) (+,+) → 4 of 5 agree. Levels: (−3,−3) (0,0) (0,0) (1,2) (3,2) → 3 of 5.
    expect(m.acc2).toBeCloseTo(4 / 5, 12);
    expect(m.acc7).toBeCloseTo(3 / 5, 12);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const [mp, my] = [mean(predicted), mean(labels)];
    const cov = predicted.reduce((a, p, i) => a + (p - mp) * (labels[i]! - my), 0);
    const r = cov / Math.sqrt(predicted.reduce((a, p) => a + (p - mp) ** 2, 0) * labels.reduce((a, y) => a + (y - my) ** 2, 0));
    expect(m.pearson).toBeCloseTo(r, 12);
    expect(r).toBeGreaterThan(0.9);
  });

  it("Dice of a mask: the host metric, the batch metric and the soft Dice loss", async () => {
    const { selectBackend } = await import("../runtime/backend.js");
    const tf = await import("@tensorflow/tfjs");
    const { dice, diceLoss } = await import("../runtime/ops.js");
    await selectBackend("cpu");
    // Truth and prediction over 6 pixels, classes 0..2. Class 0: P {0,1,2}, T {0,1} → 2·2/5.
    // Class 1: P {3}, T {2,3} → 2·1/3. Class 2: P {4,5}, T {4,5} → 1. Mean 0.6888...
    const truth = [0, 0, 1, 1, 2, 2];
    const predicted = [0, 0, 0, 1, 2, 2];
    const expected = (4 / 5 + 2 / 3 + 1) / 3;
    expect(maskDice(predicted, truth, 3)).toBeCloseTo(expected, 12);
    const logits = tf.tensor4d(predicted.flatMap((c) => [0, 1, 2].map((k) => (k === c ? 5 : 0))), [1, 2, 3, 3]);
    const target = tf.tensor3d(truth, [1, 2, 3]);
    expect(dice(logits, target).dataSync()[0]!).toBeCloseTo(expected, 6);
    // Soft Dice: softmax probabilities p; 1 − mean_k (2 Σ p_k t_k + 1) / (Σ p_k + Σ t_k + 1).
    const p = tf.softmax(logits).arraySync() as number[][][][];
    const pixels = p[0]!.flat();
    const soft = [0, 1, 2].map((k) => {
      const both = pixels.reduce((s, q, i) => s + (truth[i] === k ? q[k]! : 0), 0);
      const sumP = pixels.reduce((s, q) => s + q[k]!, 0);
      const sumT = truth.filter((t) => t === k).length;
      return (2 * both + 1) / (sumP + sumT + 1);
    });
    expect(diceLoss(logits, target).dataSync()[0]!).toBeCloseTo(1 - soft.reduce((a, b) => a + b, 0) / 3, 5);
  });
});
