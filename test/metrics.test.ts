import { describe, expect, it } from "vitest";
import { classificationMetrics, regressionMetrics } from "../runtime/metrics.js";

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
});
