import { targetWidth, type Target } from "../spec.js";

/** A dataset held in memory: one Float32Array per modality, row-major per sample. */
export interface Split {
  inputs: Float32Array[];
  /** Class index (classification), value (regression) or a mask's pixel classes, per sample. */
  labels: Float32Array;
  size: number;
}

export interface Dataset {
  train: Split;
  valid: Split;
  test: Split;
  /** Where the data came from, for logs and error messages. */
  description: string;
  /** The file each modality and the target came from, for error messages. */
  files?: { modalities: string[]; target: string };
  /** A class target's class names, in index order, where its file labels samples by name. */
  classNames?: string[];
  /** With `files(group: ...)`: which fold is the test split, and the groups each split holds. */
  folds?: { fold: number; folds: number; groups: { train: string[]; valid: string[]; test: string[] } };
}

/** The samples `rows` of `source` (samples of `width` values each), side by side in that order. */
export function gatherRows(source: Float32Array, width: number, rows: ArrayLike<number>): Float32Array {
  const out = new Float32Array(rows.length * width);
  for (let k = 0; k < rows.length; k++) out.set(source.subarray(rows[k]! * width, (rows[k]! + 1) * width), k * width);
  return out;
}

/**
 * Splits `all` into train, valid and test in the order `order` (a permutation of its samples),
 * with the given fractions for valid and test; `widths` are the per-sample sizes of the inputs.
 */
export function splitInOrder(all: Split, widths: number[], order: number[], fractions: { valid: number; test: number }, description: string, files?: Dataset["files"], labelWidth = 1): Dataset {
  const nValid = Math.round(all.size * fractions.valid);
  const nTest = Math.round(all.size * fractions.test);
  const nTrain = all.size - nValid - nTest;
  const take = (from: number, count: number): Split => {
    const rows = order.slice(from, from + count);
    return { inputs: widths.map((w, m) => gatherRows(all.inputs[m]!, w, rows)), labels: gatherRows(all.labels, labelWidth, rows), size: count };
  };
  return { train: take(0, nTrain), valid: take(nTrain, nValid), test: take(nTrain + nValid, nTest), description, ...(files ? { files } : {}) };
}

export class DataError extends Error {
  constructor(
    readonly file: string,
    readonly field: string,
    readonly expected: string,
    readonly found: string,
  ) {
    super(`${file}: ${field}: expected ${expected}, found ${found}`);
    this.name = "DataError";
  }
}

/** Checks a dataset against the model's declared shapes and target before any training. */
export function validateDataset(
  data: Dataset,
  modalities: { name: string; shape: number[] }[],
  target: Target,
): void {
  const labelWidth = targetWidth(target);
  for (const [splitName, split] of Object.entries({ train: data.train, valid: data.valid, test: data.test })) {
    if (split.size === 0) throw new DataError(data.description, `${splitName} split`, "at least one sample", "none");
    if (split.labels.length !== split.size * labelWidth) {
      throw new DataError(data.files?.target ?? data.description, `${target.name} (${splitName})`, `${split.size * labelWidth} labels (${labelWidth} per sample)`, `${split.labels.length}`);
    }
    modalities.forEach((modality, m) => {
      const width = modality.shape.reduce((a, b) => a * b, 1);
      const values = split.inputs[m];
      const file = data.files?.modalities[m] ?? data.description;
      if (!values || values.length !== split.size * width) {
        const found = values ? `${values.length / width} samples of float[${modality.shape.join(", ")}] (${values.length} values)` : "no data";
        throw new DataError(file, `${modality.name} (${splitName})`, `${split.size} samples of float[${modality.shape.join(", ")}]`, found);
      }
      const bad = values.findIndex((v) => !Number.isFinite(v));
      if (bad >= 0) {
        throw new DataError(file, `${modality.name} (${splitName})`, "finite numbers", `${values[bad]} in sample ${Math.floor(bad / width)}`);
      }
    });
    const targetFile = data.files?.target ?? data.description;
    split.labels.forEach((label, i) => {
      if (target.kind !== "real" && !(Number.isInteger(label) && label >= 0 && label < target.classes)) {
        throw new DataError(targetFile, `${target.name} (${splitName})`, `a class in 0..${target.classes - 1}`, `${label} in sample ${Math.floor(i / labelWidth)}`);
      }
      if (target.kind === "real" && !Number.isFinite(label)) {
        throw new DataError(targetFile, `${target.name} (${splitName})`, "a finite number", `${label} in sample ${i}`);
      }
    });
  }
}
