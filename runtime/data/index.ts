import type { ModelSpec } from "../spec.js";
import { validateDataset, type Dataset } from "./dataset.js";
import { dirname, resolve } from "node:path";
import { files } from "./files.js";
import { mnist } from "./mnist.js";
import { synthetic } from "./synthetic.js";

export { DataError, gatherRows, validateDataset, type Dataset, type Split } from "./dataset.js";

/**
 * Loads the data a spec declares and validates it against the spec's shapes and target.
 * `root`: the folder `from` paths are relative to and may not leave (the spec's folder).
 */
export function loadData(spec: ModelSpec, root = dirname(resolve(spec.source))): Dataset {
  const o = spec.data.options;
  let data: Dataset;
  switch (spec.data.kind) {
    case "synthetic": {
      const dominant = Math.max(0, spec.modalities.findIndex((m) => m.name === o.dominant));
      data = synthetic(spec.modalities.map((m) => m.shape), {
        classes: Number(o.classes) || (spec.target.kind === "real" ? 7 : spec.target.classes),
        samples: Number(o.samples),
        dominant,
        strength: Number(o.strength),
        weak: Number(o.weak),
        noise: Number(o.noise),
        seed: Number(o.seed),
        valid: Number(o.valid),
        test: Number(o.test),
        regression: spec.target.kind === "real",
        ...(spec.target.kind === "mask" ? { mask: spec.target.shape! } : {}),
      });
      break;
    }
    case "files":
      data = files(root, spec.modalities, spec.target, {
        valid: Number(o.valid),
        test: Number(o.test),
        seed: Number(o.seed),
        split: String(o.split ?? ""),
        group: String(o.group ?? ""),
        folds: Number(o.folds),
        fold: Number(o.fold),
      });
      break;
    case "mnist":
      data = mnist(spec.modalities.map((m) => m.shape), spec.target, {
        samples: Number(o.samples),
        noise: Number(o.noise),
        shift: Number(o.shift),
        coarse: Number(o.coarse),
        seed: Number(o.seed),
        valid: Number(o.valid),
        test: Number(o.test),
      });
      break;
    default:
      throw new Error(`unknown data source ${spec.data.kind}`);
  }
  validateDataset(data, spec.modalities, spec.target);
  return data;
}
