import { createHash } from "node:crypto";
import { mkdir, open, readdir, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";

/**
 * Checkpoints: `checkpoint-<epoch>/` holds `weights.bin` (float32, in the order of the
 * manifest), `model.json` (its tfjs weights manifest, so that `tf.io` tools can read the
 * weights) and `state.json` (manifest, optimiser and rule state, loop position, and the SHA-256
 * of the weights). A checkpoint becomes current only when the
 * file `latest` names it; `latest` is replaced by rename, so a kill mid-write leaves the
 * previous checkpoint current, and a torn one is never loaded.
 */
export interface CheckpointState {
  epoch: number;
  /** The epoch a resumed run starts with: the next one, or after an early stop the next stage's first (or none left). */
  next?: number;
  step: number;
  /** With stages: the run's step at which the current stage began (rules count steps from it). */
  stageStep?: number;
  manifest: { name: string; shape: number[] }[];
  optimizer: unknown;
  separateOptimizers: Record<string, unknown>;
  history: Record<string, { shape: number[]; values: number[] }>;
  /** The best validation metric so far (of this stage), its epoch and what was measured then, and the epochs since. */
  best: Best;
  /** The learning-rate factor of `schedule plateau(...)`. */
  plateauFactor?: number;
  /** The length of log.jsonl when this checkpoint was made: a resume cuts the log back to it. */
  logBytes?: number;
  /** What made the run (spec, params, seed, data, mmb version): a resume must match it. */
  origin?: unknown;
  weightsSha256?: string;
}

/** What an epoch's evaluation measured: the fused head's metrics on each split, and each modality's. */
export interface Measured {
  train: Record<string, number>;
  valid: Record<string, number>;
  test: Record<string, number>;
  unimodal: Record<string, number>;
}

/** Model selection: the epoch whose validation metric is the best so far (`sign`ed: larger is better), with its measurements. */
export interface Best {
  metric: number;
  epoch: number;
  stale: number;
  /** Absent in checkpoints of an earlier mmb: the run's log has the epoch's record. */
  measured?: Measured;
}

async function writeDurably(path: string, data: string | Uint8Array): Promise<void> {
  const handle = await open(path, "w");
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export async function saveCheckpoint(dir: string, state: CheckpointState, weights: Float32Array[]): Promise<void> {
  const name = `checkpoint-${state.epoch}`;
  const temporary = join(dir, `${name}.tmp-${process.pid}`);
  await rm(temporary, { recursive: true, force: true });
  await mkdir(temporary, { recursive: true });
  const bytes = new Uint8Array(weights.reduce((n, w) => n + w.byteLength, 0));
  let offset = 0;
  for (const w of weights) {
    bytes.set(new Uint8Array(w.buffer, w.byteOffset, w.byteLength), offset);
    offset += w.byteLength;
  }
  const sha = createHash("sha256").update(bytes).digest("hex");
  await writeDurably(join(temporary, "weights.bin"), bytes);
  const weightsManifest = [{ paths: ["weights.bin"], weights: state.manifest.map(({ name, shape }) => ({ name, shape, dtype: "float32" })) }];
  await writeDurably(join(temporary, "model.json"), JSON.stringify({ format: "mmb-checkpoint", generatedBy: "mmb", weightsManifest }));
  await writeDurably(join(temporary, "state.json"), JSON.stringify({ ...state, weightsSha256: sha }));
  await rm(join(dir, name), { recursive: true, force: true });
  await rename(temporary, join(dir, name));
  await writeDurably(join(dir, "latest.tmp"), name);
  await rename(join(dir, "latest.tmp"), join(dir, "latest"));
  for (const entry of await readdir(dir)) {
    if (entry.startsWith("checkpoint-") && entry !== name) await rm(join(dir, entry), { recursive: true, force: true });
  }
}

/** The trainers that write checkpoints: this runtime, and the generated PyTorch trainer (runtime/torch/train.py). */
export type Target = "tfjs" | "torch";

/** Which trainer wrote a checkpoint, by its files: this runtime writes weights.bin, the torch trainer weights.pt. */
export function writtenBy(files: string[]): Target | undefined {
  const [bin, pt] = [files.includes("weights.bin"), files.includes("weights.pt")];
  return bin && !pt ? "tfjs" : pt && !bin ? "torch" : undefined;
}

/** The name `latest` gives the current checkpoint of a checkpoints folder; undefined where none was written. */
async function latestName(dir: string): Promise<string | undefined> {
  return readFile(join(dir, "latest"), "utf8").then(
    (text) => text.trim(),
    () => undefined,
  );
}

/** Which trainer wrote a run folder's current checkpoint; undefined before the first (or where it cannot be read). */
export async function runTarget(runDir: string): Promise<Target | undefined> {
  const name = await latestName(join(runDir, "checkpoints"));
  const files = name === undefined ? undefined : await readdir(join(runDir, "checkpoints", name)).catch(() => undefined);
  return files && writtenBy(files);
}

export async function loadCheckpoint(dir: string): Promise<{ state: CheckpointState; weights: Float32Array[] } | undefined> {
  const name = await latestName(dir);
  if (name === undefined) return undefined;
  const path = join(dir, name);
  const present = await readdir(path).catch(() => undefined);
  if (!present) throw new Error(`${join(dir, "latest")} names ${name}, which is missing: the run cannot be continued; choose another --out, or --overwrite to start it again`);
  // A torch run's checkpoint (weights.pt) is whole too, but not this runtime's to continue.
  if (writtenBy(present) === "torch") throw new Error(`checkpoint ${path} is a torch run's (weights.pt): continue it with --target torch`);
  const state = await wholeJson<CheckpointState>(path, "state.json");
  // model.json is what `tf.io` reads the weights by; `--resume` does not need it, but a damaged one is a damaged checkpoint.
  await wholeJson(path, "model.json");
  const bytes = await readFile(join(path, "weights.bin")).catch(() => {
    throw new Error(`checkpoint ${path} is damaged (weights.bin is missing); delete it or train without --resume`);
  });
  const sha = createHash("sha256").update(bytes).digest("hex");
  if (sha !== state.weightsSha256) throw new Error(`checkpoint ${path} is damaged (weights do not match their checksum); delete it or train without --resume`);
  const all = new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
  let offset = 0;
  const weights = state.manifest.map(({ shape }) => {
    const size = shape.reduce((a, b) => a * b, 1);
    const w = all.slice(offset, offset + size);
    offset += size;
    return w;
  });
  return { state, weights };
}

/** A checkpoint's JSON file, read whole: a missing or cut one names the checkpoint as damaged. */
async function wholeJson<T>(checkpoint: string, file: string): Promise<T> {
  try {
    return JSON.parse(await readFile(join(checkpoint, file), "utf8")) as T;
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === "ENOENT" ? "is missing" : `is not whole JSON: ${(e as Error).message}`;
    throw new Error(`checkpoint ${checkpoint} is damaged (its ${file} ${why}); delete it or train without --resume`);
  }
}

/** Replaces `path` whole: written durably beside it, then renamed over it, so a reader never sees half. */
export async function writeAtomically(path: string, data: string | Uint8Array): Promise<void> {
  await writeDurably(`${path}.tmp`, data);
  await rename(`${path}.tmp`, path);
}

export async function writeJsonAtomically(path: string, value: unknown): Promise<void> {
  await writeAtomically(path, JSON.stringify(value, null, 2) + "\n");
}
