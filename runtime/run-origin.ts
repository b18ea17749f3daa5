import type { Dataset } from "./data/index.js";
import type { ModelSpec } from "./spec.js";
import { mmbVersion } from "./version.js";

/**
 * What made a run: recorded in every checkpoint, so that `--resume` continues only the run that
 * wrote it. Any difference is named, and the resume refused: a run never mixes two.
 */
export interface RunOrigin {
  mmb: string;
  /** The spec's file and the SHA-256 of its text (as the generated trainer records it). */
  source: string;
  sourceHash?: string;
  /** The SHA-256 of the trainer's code, where its loader gave it: a hand edit of the step changes it. */
  codeHash?: string;
  /** The model as the trainer describes it: architecture, data clause, optimiser, schedule, training settings. */
  spec: Record<string, unknown>;
  params: Record<string, number>;
  seed: number;
  epochs: number;
  /** Where the samples come from: the spec's data clause and folder, or data given by the caller. */
  data: string;
}

export function runOrigin(spec: ModelSpec, hashes: { source?: string | undefined; code?: string | undefined }, params: Record<string, number>, seed: number, epochs: number, data: { given?: Dataset; root?: string }): RunOrigin {
  const { fuse: _fuse, ...described } = spec;
  return {
    mmb: mmbVersion,
    source: spec.source,
    ...(hashes.source ? { sourceHash: hashes.source } : {}),
    ...(hashes.code ? { codeHash: hashes.code } : {}),
    spec: JSON.parse(JSON.stringify(described)) as Record<string, unknown>,
    params,
    seed,
    epochs,
    data: data.given ? `given: ${data.given.description}` : `${JSON.stringify(spec.data)}${data.root ? ` from ${data.root}` : ""}`,
  };
}

/** Why a checkpoint of `saved` cannot be continued as `now`; empty when it can. */
export function resumeConflicts(saved: RunOrigin | undefined, now: RunOrigin, scheduleReadsEpochs: boolean): string[] {
  if (!saved) return ["the checkpoint records no origin (written by an older mmb)"];
  const conflicts: string[] = [];
  if (saved.mmb !== now.mmb) conflicts.push(`it was written by mmb ${saved.mmb}, this is mmb ${now.mmb}`);
  if (saved.sourceHash !== now.sourceHash || saved.source !== now.source) {
    const parts = Object.keys({ ...saved.spec, ...now.spec }).filter((k) => JSON.stringify(saved.spec[k]) !== JSON.stringify(now.spec[k]));
    conflicts.push(parts.length ? `the spec changed: ${parts.join(", ")}` : `the spec's text changed (its rule, or ${saved.source === now.source ? "its comments" : `its file: ${saved.source} → ${now.source}`})`);
  }
  const value = (params: Record<string, number>, name: string) => (Object.hasOwn(params, name) ? params[name] : undefined);
  const names = [...new Set([...Object.keys(saved.params), ...Object.keys(now.params)])];
  const changed = names.filter((n) => value(saved.params, n) !== value(now.params, n)).map((n) => `${n} ${value(saved.params, n) ?? "(none)"} → ${value(now.params, n) ?? "(none)"}`);
  if (changed.length) conflicts.push(`params changed: ${changed.join(", ")}`);
  if (saved.seed !== now.seed) conflicts.push(`the seed changed: ${saved.seed} → ${now.seed}`);
  if (saved.data !== now.data) conflicts.push(`the data changed: ${saved.data} → ${now.data}`);
  if (saved.epochs !== now.epochs && scheduleReadsEpochs) conflicts.push(`the epochs changed (${saved.epochs} → ${now.epochs}) and the learning-rate schedule depends on them`);
  // The same spec, params and mmb write the same trainer: a difference nothing above explains is an
  // edit. (A checkpoint, or a loader, without the hash has nothing to compare.)
  if (conflicts.length === 0 && saved.codeHash && now.codeHash && saved.codeHash !== now.codeHash) conflicts.push("the trainer's code changed (it was edited since the run began)");
  return conflicts;
}
