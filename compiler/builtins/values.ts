import type { ValueKind } from "../ir.js";

/**
 * The values a rule reads by name: time, the model's outputs and features. Their meaning is
 * resolved by the checker (1-check/names.ts); this table names them once, for the reserved
 * names, suggestions and the reference.
 */
export interface BuiltinValue {
  name: string;
  usage: string;
  kind: ValueKind | "index";
  doc: string;
  /** Indexed by a modality: `contrib[m]`. */
  perModality?: boolean;
}

export const values: BuiltinValue[] = [
  { name: "out", usage: "out", kind: "logits", doc: "the fused head's outputs" },
  { name: "contrib", usage: "contrib[m]", kind: "logits", perModality: true, doc: "modality m's additive share of a linear head's outputs (`z_m·W_m + b/M`)" },
  { name: "head", usage: "head[m]", kind: "logits", perModality: true, doc: "the auxiliary head's outputs on z[m] (declared `head[m] = linear(N)`)" },
  { name: "alone", usage: "alone[m]", kind: "logits", perModality: true, doc: "the fused head on modality m's features alone" },
  { name: "without", usage: "without[m]", kind: "logits", perModality: true, doc: "the fused head with modality m's features zeroed" },
  { name: "z", usage: "z[m]", kind: "features", perModality: true, doc: "modality m's features" },
  { name: "step", usage: "step", kind: "scalar", doc: "the step, counted from 0 over the run" },
  { name: "epoch", usage: "epoch", kind: "scalar", doc: "the epoch, counted from 0" },
  { name: "progress", usage: "progress", kind: "scalar", doc: "the share of the epoch's batches done before this step, from 0 at its first to (n − 1)/n at its last (step rules)" },
  { name: "batch", usage: "batch", kind: "index", doc: "the samples of the batch, as a reduction's range: `mean(batch, prob(out, y))`" },
];

/**
 * The fields of the step log's records that are not rule values (runtime/train.ts writes them; a
 * test keeps the two in step): a rule value of one of these names would be overwritten in the log.
 */
export const logFields: readonly string[] = ["type", "epoch", "step", "stage", "loss", "total_loss", "grad_norm", "update_grad_norm"];
