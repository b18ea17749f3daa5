import { Random } from "../random.js";
import { splitInOrder, type Dataset, type Split } from "./dataset.js";

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
  /**
   * Segmentation: the target is a [height, width] mask, background 0 and a square of the
   * sample's class (1..classes−1). The class comes through the patterns as above; where the
   * square lies only the image modalities show (brighter pixels, resampled to their size).
   */
  mask?: number[];
}

/**
 * The embedded benchmark. Every modality sees the class through a fixed random pattern per
 * class plus Gaussian noise (per element, standard deviation `noise`); `strength` and `weak` are
 * the patterns' norms, i.e. the signal-to-noise ratio a matched filter would reach. The dominant
 * modality's pattern is strong but only separates pairs of classes well (classes 2j and 2j+1
 * share 90% of it), so it is learnt first and quickly lowers the loss; the other modalities
 * separate every class, less easily (a 3-channel image's pattern is a colour per class, which a
 * conv encoder must find under pixel noise). Alone, the dominant modality tops out near half
 * the classes; a joint model needs the others to go further, which is the situation in which
 * the papers observe the dominant modality suppressing the rest.
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
  // A class pattern lives on the axis an encoder keeps after pooling: the channels of an image
  // [C, H, W], the features of a sequence [T, F], every element of a vector; it is constant
  // along the pooled axes, so that a conv or recurrent encoder can find it.
  const pattern = (shape: number[]) => {
    const width = shape.reduce((a, b) => a * b, 1);
    const axis = shape.length === 3 ? shape[0]! : shape.length === 2 ? shape[1]! : width;
    const code = unit(axis);
    return Float64Array.from({ length: width }, (_, i) => {
      const index = shape.length === 3 ? Math.floor(i / (shape[1]! * shape[2]!)) : shape.length === 2 ? i % axis : i;
      return code[index]!;
    });
  };
  const prototypes = shapes.map((shape, m) => {
    if (m !== options.dominant) return Array.from({ length: classes }, () => pattern(shape).map((x) => x * options.weak));
    const shared = Array.from({ length: Math.ceil(classes / 2) }, () => pattern(shape));
    return Array.from({ length: classes }, (_, c) => {
      const own = pattern(shape);
      return shared[c >> 1]!.map((x, i) => options.strength * (0.9 * x + 0.1 * own[i]!));
    });
  });
  const [maskHeight, maskWidth] = options.mask ?? [1, 1];
  const labelWidth = options.mask ? maskHeight! * maskWidth! : 1;
  const all: Split = {
    inputs: widths.map((w) => new Float32Array(options.samples * w)),
    labels: new Float32Array(options.samples * labelWidth),
    size: options.samples,
  };
  for (let i = 0; i < options.samples; i++) {
    // With a mask, class 0 is the background: every sample shows one of the classes 1..classes−1.
    const label = options.mask ? 1 + (i % (classes - 1)) : i % classes;
    const square = options.mask ? { size: Math.max(1, Math.round(maskHeight! / 3)), top: 0, left: 0 } : undefined;
    if (square) {
      square.top = Math.floor(random.uniform() * (maskHeight! - square.size + 1));
      square.left = Math.floor(random.uniform() * (maskWidth! - square.size + 1));
      for (let y = 0; y < maskHeight!; y++) {
        for (let x = 0; x < maskWidth!; x++) {
          const inside = y >= square.top && y < square.top + square.size && x >= square.left && x < square.left + square.size;
          all.labels[i * labelWidth + y * maskWidth! + x] = inside ? label : 0;
        }
      }
    } else all.labels[i] = options.regression ? -3 + (6 * label) / Math.max(1, classes - 1) + 0.25 * random.normal() : label;
    widths.forEach((width, m) => {
      const prototype = prototypes[m]![label]!;
      const row = all.inputs[m]!;
      const shape = shapes[m]!;
      for (let j = 0; j < width; j++) {
        let value = prototype[j]! + random.normal() * options.noise * Math.sqrt(width);
        if (square && shape.length === 3) {
          // Pixel (y, x) of an image of [C, H, W], mapped onto the mask's grid.
          const y = Math.floor(((Math.floor(j / shape[2]!) % shape[1]!) * maskHeight!) / shape[1]!);
          const x = Math.floor(((j % shape[2]!) * maskWidth!) / shape[2]!);
          if (y >= square.top && y < square.top + square.size && x >= square.left && x < square.left + square.size) value += options.weak * Math.sqrt(width);
        }
        row[i * width + j] = value / Math.sqrt(width);
      }
    });
  }
  return splitInOrder(all, widths, random.permutation(options.samples), options, `synthetic(seed ${options.seed})`, undefined, labelWidth);
}
