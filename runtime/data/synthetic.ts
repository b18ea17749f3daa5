import { Random } from "../random.js";
import type { Dataset, Split } from "./dataset.js";

export interface SyntheticOptions {
  classes: number;
  samples: number;
  /** Index of the modality with the strong signal. */
  dominant: number;
  strength: number;
  weak: number;
  noise: number;
  seed: number;
  valid: number;
  test: number;
  /**
   * Regression: the target is the class's level on [-3, 3] (as sentiment scores) plus a little
   * noise, so neighbouring levels are what the dominant modality confuses.
   */
  regression: boolean;
}

/**
 * The embedded benchmark. Every modality sees the class through a fixed random pattern per
 * class plus Gaussian noise. The dominant modality's pattern is strong but only separates
 * pairs of classes well (classes 2j and 2j+1 share most of it), so it is learnt first and
 * quickly lowers the loss; the weak modalities separate every class but with a faint signal.
 * A joint model therefore needs the weak modality to go beyond ~half the classes, which is
 * the situation in which the papers observe the dominant modality suppressing the other.
 */
export function synthetic(shapes: number[][], options: SyntheticOptions): Dataset {
  const random = new Random(options.seed);
  const { classes } = options;
  const widths = shapes.map((s) => s.reduce((a, b) => a * b, 1));
  const unit = (n: number) => {
    const v = random.normals(n);
    const norm = Math.sqrt(v.reduce((a, x) => a + x * x, 0));
    return v.map((x) => (x / norm) * Math.sqrt(n));
  };
  const prototypes = widths.map((width, m) => {
    if (m !== options.dominant) return Array.from({ length: classes }, () => unit(width).map((x) => x * options.weak));
    const shared = Array.from({ length: Math.ceil(classes / 2) }, () => unit(width));
    return Array.from({ length: classes }, (_, c) => {
      const own = unit(width);
      return shared[c >> 1]!.map((x, i) => options.strength * (0.9 * x + 0.1 * own[i]!));
    });
  });
  const all: Split = {
    inputs: widths.map((w) => new Float32Array(options.samples * w)),
    labels: new Float32Array(options.samples),
    size: options.samples,
  };
  for (let i = 0; i < options.samples; i++) {
    const label = i % classes;
    all.labels[i] = options.regression ? -3 + (6 * label) / Math.max(1, classes - 1) + 0.25 * random.normal() : label;
    widths.forEach((width, m) => {
      const prototype = prototypes[m]![label]!;
      const row = all.inputs[m]!;
      for (let j = 0; j < width; j++) row[i * width + j] = (prototype[j]! + random.normal() * options.noise * Math.sqrt(width)) / Math.sqrt(width);
    });
  }
  const order = random.permutation(options.samples);
  const nValid = Math.round(options.samples * options.valid);
  const nTest = Math.round(options.samples * options.test);
  const nTrain = options.samples - nValid - nTest;
  const take = (from: number, count: number): Split => ({
    inputs: widths.map((w, m) => {
      const out = new Float32Array(count * w);
      for (let k = 0; k < count; k++) out.set(all.inputs[m]!.subarray(order[from + k]! * w, (order[from + k]! + 1) * w), k * w);
      return out;
    }),
    labels: Float32Array.from({ length: count }, (_, k) => all.labels[order[from + k]!]!),
    size: count,
  });
  return {
    train: take(0, nTrain),
    valid: take(nTrain, nValid),
    test: take(nTrain + nValid, nTest),
    description: `synthetic(seed ${options.seed})`,
  };
}
