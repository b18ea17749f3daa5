import * as tf from "@tensorflow/tfjs";
import { gatherRows, type Split } from "./data/index.js";
import { targetWidth, type ModelSpec } from "./spec.js";

/** Samples per forward pass when a whole split is evaluated (metrics, `over` in an epoch rule). */
export const evalBatch = 256;

/** The inputs and target of some rows of a split, as tensors. */
export function batchTensors(split: Split, spec: ModelSpec, rows: number[]): { inputs: tf.Tensor[]; target: tf.Tensor } {
  const inputs = spec.modalities.map((modality, m) => tf.tensor(gatherRows(split.inputs[m]!, modality.shape.reduce((a, b) => a * b, 1), rows), [rows.length, ...modality.shape]));
  const labels = gatherRows(split.labels, targetWidth(spec.target), rows);
  return { inputs, target: tf.tensor(labels, [rows.length, ...(spec.target.shape ?? [])], "float32") };
}

/** A split's rows in order, `evalBatch` at a time. */
export function* evaluationBatches(split: Split): Generator<number[]> {
  for (let start = 0; start < split.size; start += evalBatch) yield Array.from({ length: Math.min(evalBatch, split.size - start) }, (_, i) => start + i);
}
