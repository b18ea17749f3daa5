/**
 * Evaluation metrics on a whole split, computed on the host from the model's outputs (one
 * download per batch). The first key of each result is the run's primary metric.
 */

/** Accuracy and macro-F1 (the unweighted mean of per-class F1; a class never predicted nor present counts 0). */
export function classificationMetrics(predicted: ArrayLike<number>, labels: ArrayLike<number>, classes: number): { acc: number; macro_f1: number } {
  const truePositive = new Array<number>(classes).fill(0);
  const predictedCount = new Array<number>(classes).fill(0);
  const actualCount = new Array<number>(classes).fill(0);
  let correct = 0;
  for (let i = 0; i < labels.length; i++) {
    const p = predicted[i]!;
    const y = labels[i]!;
    predictedCount[p]!++;
    actualCount[y]!++;
    if (p === y) {
      correct++;
      truePositive[y]!++;
    }
  }
  const f1 = truePositive.map((tp, c) => (predictedCount[c]! + actualCount[c]! === 0 ? 0 : (2 * tp) / (predictedCount[c]! + actualCount[c]!)));
  return { acc: correct / Math.max(1, labels.length), macro_f1: f1.reduce((a, b) => a + b, 0) / classes };
}

/**
 * MAE, Pearson's r, and the sentiment-analysis accuracies of CMU-MOSI papers: Acc-2, the sign
 * (negative vs non-negative) of prediction and label agreeing, and Acc-7, both rounded and
 * clipped to the integers −3…3 agreeing.
 */
export function regressionMetrics(predicted: ArrayLike<number>, labels: ArrayLike<number>): { mae: number; pearson: number; acc2: number; acc7: number } {
  const n = labels.length;
  let absolute = 0;
  let sign = 0;
  let seven = 0;
  let meanP = 0;
  let meanY = 0;
  for (let i = 0; i < n; i++) {
    absolute += Math.abs(predicted[i]! - labels[i]!);
    if (predicted[i]! >= 0 === labels[i]! >= 0) sign++;
    const level = (v: number) => Math.min(3, Math.max(-3, Math.round(v)));
    if (level(predicted[i]!) === level(labels[i]!)) seven++;
    meanP += predicted[i]! / n;
    meanY += labels[i]! / n;
  }
  let covariance = 0;
  let varianceP = 0;
  let varianceY = 0;
  for (let i = 0; i < n; i++) {
    covariance += (predicted[i]! - meanP) * (labels[i]! - meanY);
    varianceP += (predicted[i]! - meanP) ** 2;
    varianceY += (labels[i]! - meanY) ** 2;
  }
  const pearson = varianceP > 0 && varianceY > 0 ? covariance / Math.sqrt(varianceP * varianceY) : 0;
  return { mae: absolute / Math.max(1, n), pearson, acc2: sign / Math.max(1, n), acc7: seven / Math.max(1, n) };
}

/** Dice of predicted and true pixel classes: mean over the classes present in either of 2·|P ∩ T| / (|P| + |T|). */
export function maskDice(predicted: ArrayLike<number>, labels: ArrayLike<number>, classes: number): number {
  const both = new Array<number>(classes).fill(0);
  const total = new Array<number>(classes).fill(0);
  for (let i = 0; i < labels.length; i++) {
    total[predicted[i]!]!++;
    total[labels[i]!]!++;
    if (predicted[i] === labels[i]) both[labels[i]!]!++;
  }
  const present = total.map((t, c) => [t, c] as const).filter(([t]) => t > 0);
  return present.reduce((sum, [t, c]) => sum + (2 * both[c]!) / t, 0) / Math.max(1, present.length);
}
