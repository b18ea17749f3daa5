import * as tf from "@tensorflow/tfjs";
import { readFileSync } from "node:fs";
import { mkdir, open, stat, truncate, writeFile } from "node:fs/promises";
import { totalmem } from "node:os";
import { join } from "node:path";
import { describeBackend, selectBackend, type BackendName } from "./backend.js";
import { webgpuError, webgpuRunStarts, webgpuStepDone } from "./webgpu.js";
import { loadCheckpoint, saveCheckpoint, writeJsonAtomically, type Best, type CheckpointState, type Measured } from "./checkpoint.js";
import { batchTensors, evaluationBatches } from "./batches.js";
import { DataError, loadData, type Dataset, type Split } from "./data/index.js";
import { parseNpy, parseNpz } from "./data/files.js";
import { EpochContext, type EpochResult } from "./epoch.js";
import { History } from "./history.js";
import { exportLogs, readLogRecords, type LogFormat, type LogRecord } from "./log-export.js";
import { RunningStatistics } from "./batch-norm.js";
import { estimateMemory, Forward, initialParameters, initialValues, modelStatistics, parameterShapes, type Params } from "./model.js";
import { classificationMetrics, maskDice, regressionMetrics } from "./metrics.js";
import { gradNorm } from "./ops.js";
import { inGroup } from "./parameter-groups.js";
import { Optimizer } from "./optimizer.js";
import { Random } from "./random.js";
import { inRange, type ParamRange } from "./range.js";
import { targetWidth, type ModelSpec, type StageSpec } from "./spec.js";
import { claimRunFolder, type RunFolder } from "./run-folder.js";
import { resumeConflicts, runOrigin, type RunOrigin } from "./run-origin.js";
import { StepContext, type GradientOf, type Gradients } from "./step.js";

/** What a generated trainer module exports: one stage's functions, or with `stage` blocks, each stage's. */
export type TrainerDefinition = TrainerCommon & (StageDefinition | { stages: (StageDefinition & { name: string })[] });

interface TrainerCommon {
  spec: ModelSpec;
  /** `predict`: the outputs evaluation scores instead of `out` (the fused metrics; unimodal ones stay each modality's). */
  predict?(f: Forward, p: Record<string, number>): tf.Tensor;
  /** The spec's `param` values, overridable with `--set name=value`. */
  params: Record<string, number>;
  /** The ranges of the calls that take a param as a constant: a `--set` outside them is refused. */
  paramRanges?: Record<string, ParamRange[]>;
  /** SHA-256 of the spec's text: a checkpoint records it, and `--resume` refuses another spec. */
  sourceHash?: string;
  /**
   * SHA-256 of the trainer's own code, set by whatever loaded it (cli/load-trainer.ts): a checkpoint
   * records it, and `--resume` refuses a trainer edited since (`mmb run` trains hand-edited ones).
   */
  codeHash?: string;
}

/** How one stage trains: its step, its epoch rule, and what the loop needs to know of their values. */
export interface StageDefinition {
  /** Parameter groups updated only by their own `minimize` objective. */
  trainedSeparately: string[];
  /** Source line of each logged rule value, for error messages. */
  valueLines: Record<string, number>;
  /** Rule values with one number per sample: the step log records their mean over the batch. */
  perSampleValues?: string[];
  trainStep(ctx: StepContext, p: Record<string, number>): StepResult;
  /** The `every epoch` rule, run at each epoch's start; the steps read its values. */
  /** Async when it reads a split to the host (`purity`). */
  epochRule?(ctx: EpochContext, p: Record<string, number>): EpochResult | Promise<EpochResult>;
}

export interface StepResult {
  loss: tf.Tensor;
  /** Every rule value of the step, by name (per-modality values as arrays). */
  values: Record<string, tf.Tensor | number | (tf.Tensor | number)[]>;
  raw: GradientOf;
  /** `turns step`: each modality's turn's raw gradients, in modality order (encoder m's norm is logged from turn m). */
  turns?: GradientOf[];
}

export interface TrainOptions {
  out: string;
  backend?: string;
  seed?: number;
  epochs?: number;
  set?: Record<string, number>;
  resume?: boolean;
  /** A fresh run replaces another run's state in `out` instead of refusing it. */
  overwrite?: boolean;
  /** `out`, already claimed by the caller (the CLI claims it before writing the trainer there). */
  folder?: RunFolder;
  /** Replaces the spec's data (tests, benchmarks). */
  data?: Dataset;
  /** A progress bar with ETA on stderr (default: when stderr is a terminal and `log` is not given). */
  progress?: boolean;
  /** The folder `from` files are read from (default: the spec's folder); paths may not leave it. */
  dataRoot?: string;
  /** The log also as CSV tables and a TensorBoard event file, rewritten from log.jsonl after each epoch. */
  logFormats?: LogFormat[];
  /** Cross-validation: the fold (and the number of folds) of the spec's `files(group: ...)` data to test on. */
  fold?: { fold: number; folds: number };
  /**
   * A fresh run's initial weights instead of the seed's draw: a .npz of every parameter by its
   * tfjs name in tfjs's layout (`mmb export RUN -o FILE.npz` writes one, from a tfjs or a torch
   * run), or the arrays themselves; checked name by name and shape by shape. A resume refuses it.
   * (`init(G)` in a rule stays the seed's draw, as in the torch trainer.)
   */
  init?: string | Map<string, { values: Float32Array; shape: number[] }>;
  log?: (line: string) => void;
}

export interface Summary {
  model: string;
  source: string;
  backend: BackendName;
  /** `wasm + OpenBLAS` where the native kernels ran. */
  kernels: string;
  seed: number;
  epochs: number;
  params: Record<string, number>;
  metric: "accuracy" | "mae" | "dice";
  test: number;
  valid: number;
  /** Every metric of the fused head: accuracy and macro-F1, or MAE, Pearson's r, Acc-2 and Acc-7. */
  metrics: { valid: Record<string, number>; test: Record<string, number> };
  /** A class target's names, in index order: declared (`class(["a", ...])`) or found in its data file. */
  classes?: string[];
  /** With `files(group: ...)`: the test fold, and which groups fell into each split. */
  folds?: Dataset["folds"];
  /** A torch run whose step draws were torch's own (`--rng torch`): `torch on cpu|cuda`. Absent where they are the shared ones, every tfjs run's. */
  rng?: string;
  /** The epoch with the best validation metric (of the last stage), whose weights `best/` keeps. */
  bestEpoch: number;
  /** The figures at that epoch; `test`, `valid`, `metrics` and `unimodal` above are the last epoch's. */
  best: { epoch: number; test: number; valid: number; metrics: { valid: Record<string, number>; test: Record<string, number> }; unimodal: Record<string, number> };
  unimodal: Record<string, number>;
  unimodalMethod: string;
  /** Every modality, in order (the step log's per-modality arrays follow it). */
  modalities: string[];
  /** How the step log summarises values that are not one number: `{ name: "mean over the batch" }`. */
  logged: Record<string, string>;
  wallSeconds: number;
  secondsPerEpoch: number;
}

export class NumericError extends Error {}
export class ResourceError extends Error {}
/** The GPU reported an error (a validation error, a lost device): what the run computed cannot be trusted. */
export class DeviceError extends Error {}
/** `--resume` of a checkpoint that another spec, params, seed, data or mmb wrote. */
export class ResumeError extends Error {}

const gib = (bytes: number) => (bytes / 2 ** 30).toFixed(bytes < 2 ** 30 ? 2 : 1);

/** What the process holds at the end of an epoch: a count of tensors that grows from epoch to epoch is a leak. */
function memoryRecord() {
  const { numTensors, numBytes } = tf.memory();
  return { tensors: numTensors, tensor_mb: Math.round(numBytes / 2 ** 10) / 2 ** 10, rss_mb: Math.round(process.memoryUsage().rss / 2 ** 20) };
}

/** The bytes a dataset holds in memory: every split's inputs and labels, as float32. */
function datasetBytes(data: Dataset): number {
  return [data.train, data.valid, data.test].reduce((n, split) => n + split.inputs.reduce((m, x) => m + x.byteLength, 0) + split.labels.byteLength, 0);
}

/**
 * Fails before the model is allocated when training cannot fit: the backend's limit for the
 * model's tensors, and the machine's memory for those and the data (held outside the backend).
 */
function checkResources(spec: ModelSpec, backend: BackendName, dataBytes: number): void {
  const need = estimateMemory(spec);
  // wasm32 addresses at most 4 GiB; the others share the machine's memory.
  const machine = totalmem() * 0.8;
  const limit = Math.min(machine, backend === "wasm" ? 4 * 2 ** 30 : Infinity);
  const what = () =>
    `${need.parameters.toLocaleString("en")} parameters with their gradients and optimiser state, ` +
    `and ${need.activations.toLocaleString("en")} activation values for a batch of ${spec.train.batch}`;
  if (need.bytes > limit) {
    throw new ResourceError(
      `training ${spec.name} needs about ${gib(need.bytes)} GiB (${what()}), more than the ${gib(limit)} GiB ${backend === "wasm" ? "the wasm backend can address" : "this machine can give"}; ` +
        "make the encoders smaller or the batch smaller",
    );
  }
  if (need.bytes + dataBytes > machine) {
    throw new ResourceError(
      `training ${spec.name} needs about ${gib(need.bytes + dataBytes)} GiB: ${gib(dataBytes)} GiB of data and ${gib(need.bytes)} GiB for ${what()}, more than the ${gib(machine)} GiB this machine can give; ` +
        "use fewer samples or smaller inputs",
    );
  }
}

/**
 * Metrics of the fused head on a split, or of one modality alone (its auxiliary head, or the
 * others' features zeroed). The first key is the primary metric: accuracy, MAE, or Dice.
 */
async function evaluate(spec: ModelSpec, params: Params, running: Params, split: Split, only?: number, predict?: (f: Forward) => tf.Tensor): Promise<Record<string, number>> {
  const classes = spec.target.kind !== "real";
  const width = targetWidth(spec.target);
  const predicted = new Float32Array(split.size * width);
  for (const rows of evaluationBatches(split)) {
    const batch = tf.tidy(() => {
      const { inputs, target } = batchTensors(split, spec, rows);
      const keep = only === undefined || spec.auxHead ? undefined : spec.modalities.map((_, m) => (m === only ? 1 : 0));
      const f = new Forward(spec, params, inputs, target, false, keep, undefined, running);
      const output = only !== undefined ? (spec.auxHead ? f.aux(only) : f.out) : predict ? predict(f) : f.out;
      return classes ? tf.argMax(output, -1) : tf.reshape(output, [-1]);
    });
    // Read asynchronously: a GPU backend's tensors cannot be read synchronously.
    predicted.set(await batch.data(), rows[0]! * width);
    batch.dispose();
  }
  if (spec.target.kind === "mask") {
    const pixels = classificationMetrics(predicted, split.labels, spec.target.classes);
    return { dice: maskDice(predicted, split.labels, spec.target.classes), pixel_acc: pixels.acc };
  }
  return classes ? classificationMetrics(predicted, split.labels, spec.target.classes) : regressionMetrics(predicted, split.labels);
}

/** An epoch's measurements as its log record holds them (a checkpoint of an earlier mmb kept only the best epoch's number). */
async function measuredInLog(path: string, epoch: number): Promise<Measured | undefined> {
  const record = (await readLogRecords(path)).find((r) => r.type === "epoch" && r.epoch === epoch) as (LogRecord & Measured) | undefined;
  return record && { train: record.train, valid: record.valid, test: record.test, unimodal: record.unimodal };
}

/** The spec with its `files(group: ...)` data's fold replaced (`mmb train --fold`, `mmb bench --folds`, `mmb data export --fold`). */
export function withFold<S extends Pick<ModelSpec, "source" | "data">>(spec: S, fold: { fold: number; folds: number }): S {
  if (spec.data.kind !== "files" || !spec.data.options.group) {
    throw new DataError(spec.source, "data", '`files(group: "file:field", ...)`, whose groups (e.g. actors) the folds deal out', spec.data.kind === "files" ? "files() without `group`" : `${spec.data.kind}(...)`);
  }
  if (!(Number.isInteger(fold.folds) && fold.folds >= 2 && Number.isInteger(fold.fold) && fold.fold >= 0 && fold.fold < fold.folds)) {
    throw new DataError(spec.source, "fold", `a fold in 0..folds − 1, with at least 2 folds`, `fold ${fold.fold} of ${fold.folds}`);
  }
  return { ...spec, data: { ...spec.data, options: { ...spec.data.options, ...fold } } };
}

/**
 * `init`: the weights of every parameter of the model and the running statistics of its batch
 * norms, read from a .npz (float32 or any numeric dtype, converted to float32) and checked against
 * the spec's: no array for another parameter, none missing, each of the parameter's shape, every
 * value finite.
 */
function initialWeights(init: NonNullable<TrainOptions["init"]>, spec: ModelSpec): Map<string, { values: Float32Array; shape: number[] }> {
  const file = typeof init === "string" ? init : "init";
  let given = init as Map<string, { values: Float32Array; shape: number[] }>;
  if (typeof init === "string") {
    let bytes: Buffer;
    try {
      bytes = readFileSync(init);
    } catch (e) {
      throw new DataError(init, "file", "a .npz of weights (`mmb export RUN -o FILE.npz` writes one)", (e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message);
    }
    given = new Map([...parseNpz(bytes, init)].map(([name, read]) => {
      const { shape, values } = parseNpy(read(), `${init}: ${name}`);
      return [name, { shape, values: Float32Array.from(values) }];
    }));
  }
  const expected = [...parameterShapes(spec), ...modelStatistics(spec)];
  const known = new Set(expected.map((p) => p.name));
  const unknown = [...given.keys()].filter((name) => !known.has(name));
  if (unknown.length) {
    const more = unknown.length > 1 ? ` (and ${unknown.length - 1} more)` : "";
    throw new DataError(file, unknown[0]!, `only parameters of model ${spec.name}`, `an array for a parameter the model does not have${more}: the weights of another spec's run?`);
  }
  for (const { name, shape } of expected) {
    const weights = given.get(name);
    if (!weights) throw new DataError(file, `parameter ${name}`, `an array of shape [${shape.join(", ")}]`, "none: the weights of another spec's run?");
    const size = shape.reduce((a, b) => a * b, 1);
    if (weights.shape.join() !== shape.join() || weights.values.length !== size) {
      throw new DataError(file, `parameter ${name}`, `shape [${shape.join(", ")}]`, `[${weights.shape.join(", ")}]${weights.values.length !== weights.shape.reduce((a, b) => a * b, 1) ? ` with ${weights.values.length} values` : ""}`);
    }
    if (!weights.values.every(Number.isFinite)) throw new DataError(file, `parameter ${name}`, "finite values", "NaN or infinity");
  }
  return given;
}

/** The primary metric of a result of `evaluate`. */
const primary = (metrics: Record<string, number>): number => Object.values(metrics)[0]!;

function firstNonFinite(record: Record<string, unknown>): string | undefined {
  for (const [key, value] of Object.entries(record)) {
    const values = Array.isArray(value) ? value : [value];
    if (values.some((v) => typeof v === "number" && !Number.isFinite(v))) return key;
  }
  return undefined;
}

/** "1 epoch", "2 epochs": for the console's lines. */
const epochCount = (n: number) => `${n} epoch${n === 1 ? "" : "s"}`;

/**
 * `--set` names params of the spec, each inside the range of every call that takes it: `mmb train`
 * checked the spec with these values; a trainer run as it is (`mmb run`) checks them here, before
 * anything starts.
 */
function checkSets(definition: TrainerDefinition, set: Record<string, number>): void {
  for (const [name, value] of Object.entries(set)) {
    if (!Object.hasOwn(definition.params, name)) throw new Error(`--set ${name}: the spec has no \`param ${name}\` (params: ${Object.keys(definition.params).join(", ") || "none"})`);
    const outside = (definition.paramRanges?.[name] ?? []).filter((taken) => !inRange(value, taken.range));
    if (outside.length) throw new Error(`--set ${name}=${value}: ${outside.map((taken) => `${taken.use} (spec line ${taken.line}) must be ${taken.text}`).join("; ")}`);
  }
}

export async function train(definition: TrainerDefinition, options: TrainOptions): Promise<Summary> {
  const started = Date.now();
  const say = options.log ?? ((line: string) => console.log(line));
  const spec = options.fold ? withFold(definition.spec, options.fold) : definition.spec;
  checkSets(definition, options.set ?? {});
  const backend = await selectBackend(options.backend, say);
  // A GPU error an earlier run of this process caused is not this run's (webgpu.ts).
  if (backend === "webgpu") await webgpuRunStarts();
  const seed = options.seed ?? spec.train.seed;
  // The stages in order (one, without `stage` blocks); `--epochs` sets the last one's epochs.
  const stages = stagesOf(definition, options.epochs);
  // Each epoch of the run, as its stage and its epoch within the stage.
  const plan = stages.flatMap((s, index) => Array.from({ length: s.settings.train.epochs }, (_, epoch) => ({ index, epoch })));
  const epochs = plan.length;
  const staged = "stages" in definition;
  const p = { ...definition.params, ...options.set };
  const data = options.data ?? loadData(spec, options.dataRoot);
  checkResources(spec, backend, datasetBytes(data));
  if (options.init !== undefined && options.resume) throw new ResumeError("--init sets a fresh run's weights; a resumed run continues from its checkpoint's");
  const init = options.init === undefined ? undefined : initialWeights(options.init, spec);
  const origin = runOrigin(spec, { source: definition.sourceHash, code: definition.codeHash }, p, seed, epochs, { ...(options.data ? { given: options.data } : {}), ...(options.dataRoot ? { root: options.dataRoot } : {}) });
  await mkdir(options.out, { recursive: true });
  const folder = options.folder ?? (await claimRunFolder(options.out, { resume: options.resume ?? false, overwrite: options.overwrite ?? false }));
  const checkpoints = join(options.out, "checkpoints");
  const log = new RunLog(join(options.out, "log.jsonl"));
  const perSample = new Set(stages.flatMap((s) => s.code.perSampleValues ?? []));

  const params = initialParameters(spec, seed);
  const statistics = new RunningStatistics(modelStatistics(spec));
  // What a checkpoint holds of the model: its parameters, then its batch norms' running statistics.
  const variables = new Map<string, tf.Variable>([...params, ...statistics.values]);
  // `init(G)`: the initial values, a function of the seed, made again on resume when a rule asks.
  let initial: Map<string, tf.Tensor> | undefined;
  const initialTensors = () => (initial ??= new Map([...initialValues(spec, seed)].map(([name, { values, shape }]) => [name, tf.keep(tf.tensor(values, shape))])));
  let optimizer = new Optimizer(stages[0]!.settings.optimizer);
  // The weights each finished stage ended with, read by later stages as `NAME.out`, `NAME.z[m]`, ...
  const finished = new Map<string, Params>();
  // The run's step at which the current stage began: its rules count steps from there.
  let stageStep = 0;
  const separate = new Map<string, Optimizer>();
  // One history for step and epoch rules: their slots are distinct, an epoch rule's `prev` of a step
  // value reads the slot its steps write, and each rule's writes commit when it ends.
  const history = new History();
  let firstEpoch = 0;
  let step = 0;
  let best: Best = { metric: -Infinity, epoch: -1, stale: 0 };
  // `schedule plateau(...)`: the learning-rate factor falls when the validation metric stalls.
  let plateauFactor = 1;
  const sign = spec.target.kind === "real" ? -1 : 1;

  // Whatever happens (a numeric stop, a data or a backend error), the weights and state are
  // freed and the folder's lock released, so that the process can go on (tests, a notebook).
  try {
    const resumed = options.resume ? await loadCheckpoint(checkpoints) : undefined;
    if (resumed) {
      const { state, weights } = resumed;
      // More epochs may follow a run's last one, unless its last stage's schedule reads their number.
      const conflicts = resumeConflicts(state.origin as RunOrigin | undefined, origin, stages[stages.length - 1]!.settings.schedule.kind === "cosine");
      if (conflicts.length) throw new ResumeError(`cannot resume ${options.out}: ${conflicts.join("; ")}; start a new run with another --out, or --overwrite`);
      // Fewer epochs than it has trained would end the run before its checkpoint, and its summary would count them.
      const trained = state.epoch + 1;
      if (trained > epochs) {
        const lastStage = stages[stages.length - 1]!.settings.train.epochs;
        throw new ResumeError(`cannot resume ${options.out}: it has trained ${epochCount(trained)}, more than the ${epochs} this run trains; give --epochs ${trained - (epochs - lastStage)} or more, or start a new run with another --out`);
      }
      // The model's variables, no more and no fewer: a checkpoint of an mmb whose model differs (a
      // ResNet before batch norm) would leave some at their initial values, or name ones it lacks.
      const saved = state.manifest.map((m) => m.name).filter((name) => !finishedName(name));
      const lacking = [...variables.keys()].find((name) => !saved.includes(name));
      const foreign = saved.find((name) => !variables.has(name));
      if (lacking || foreign) {
        throw new ResumeError(`cannot resume ${options.out}: its checkpoint ${lacking ? `has no ${lacking}` : `holds ${foreign}, which the model does not have`} (written by an mmb whose model differs); start a new run with another --out, or --overwrite`);
      }
      tf.tidy(() =>
        state.manifest.forEach(({ name, shape }, i) => {
          const kept = finishedName(name);
          if (!kept) return variables.get(name)!.assign(tf.tensor(weights[i]!, shape));
          const stageWeights = finished.get(kept.stage) ?? {};
          stageWeights[kept.parameter] = tf.keep(tf.tensor(weights[i]!, shape));
          finished.set(kept.stage, stageWeights);
        }),
      );
      optimizer.dispose();
      optimizer = new Optimizer(stages[plan[state.epoch]?.index ?? stages.length - 1]!.settings.optimizer);
      optimizer.restore(state.optimizer as Parameters<Optimizer["restore"]>[0]);
      stageStep = state.stageStep ?? 0;
      for (const [group, s] of Object.entries(state.separateOptimizers)) {
        const own = new Optimizer({ kind: (s as { kind: string }).kind, options: (s as { options: Record<string, number> }).options });
        own.restore((s as { state: Parameters<Optimizer["restore"]>[0] }).state);
        separate.set(group, own);
      }
      history.restore(state.history);
      firstEpoch = state.next ?? state.epoch + 1;
      step = state.step;
      best = state.best;
      plateauFactor = state.plateauFactor ?? 1;
      // The log agrees with the checkpoint: what a killed run logged after it is cut off.
      await log.truncate(state.logBytes ?? 0);
      say(`mmb: resumed from epoch ${state.epoch + 1}`);
    } else {
      // A job script that always passes --resume starts its first run, or one killed before its
      // first checkpoint, this way; a mistyped --out would too, so it is said.
      if (options.resume) say(`mmb: --resume: ${options.out} holds no checkpoint yet; the run starts from the beginning`);
      if (init) {
        tf.tidy(() => init.forEach(({ values, shape }, name) => variables.get(name)!.assign(tf.tensor(values, shape))));
        if (typeof options.init === "string") say(`mmb: initial weights from ${options.init}`);
      }
      await log.truncate(0);
      // The log's first record names what its per-modality arrays hold, in order.
      await log.append([JSON.stringify({ type: "run", model: spec.name, modalities: spec.modalities.map((m) => m.name) })]);
    }
    const progress = (options.progress ?? (!options.log && process.stderr.isTTY)) ? progressBar(epochs) : undefined;
    say(`mmb: training ${spec.name} on backend ${describeBackend(backend)}, seed ${seed}, ${epochCount(epochs)}`);

    const names = [...variables.keys()];
    const predict = definition.predict && ((f: Forward) => definition.predict!(f, p));
    const measure = async () => {
      const current = Object.fromEntries(params) as Params;
      const running = statistics.running;
      const unimodal: Record<string, number> = {};
      for (const [i, m] of spec.modalities.entries()) if (!spec.unreadModalities?.includes(m.name)) unimodal[m.name] = primary(await evaluate(spec, current, running, data.test, i));
      return {
        train: await evaluate(spec, current, running, data.train, undefined, predict),
        valid: await evaluate(spec, current, running, data.valid, undefined, predict),
        test: await evaluate(spec, current, running, data.test, undefined, predict),
        unimodal,
      };
    };
    let last: Awaited<ReturnType<typeof measure>> | undefined;
    let saved = resumed?.state.epoch;
    const epochSeconds: number[] = [];
    for (let epoch = firstEpoch; epoch < epochs; epoch++) {
      const epochStart = performance.now();
      const { index: stageIndex, epoch: stageEpoch } = plan[epoch]!;
      const { code, settings, name: stageName } = stages[stageIndex]!;
      if (stageEpoch === 0 && epoch > 0) {
        // A stage begins: the last one's weights (and running statistics) are kept for reading, and it trains with optimisers of its own.
        const previous = stages[plan[epoch - 1]!.index]!.name;
        finished.set(previous, Object.fromEntries([...variables].map(([n, v]) => [n, tf.keep(tf.clone(v))])));
        optimizer.dispose();
        optimizer = new Optimizer(settings.optimizer);
        separate.forEach((o) => o.dispose());
        separate.clear();
        best = { metric: -Infinity, epoch: -1, stale: 0 };
        plateauFactor = 1;
        stageStep = step;
      }
      if (staged && stageEpoch === 0) say(`mmb: stage ${stageName} (${stageIndex + 1}/${stages.length}), ${epochCount(settings.train.epochs)}`);
      // Rules count steps and epochs within their stage; each stage draws from streams of its own.
      const stageSeed = (seed + 1000003 * stageIndex) % 2147483647;
      const localStep = () => step - stageStep;
      const order = new Random(seed * 7919 + epoch).permutation(data.train.size);
      const batch = settings.train.batch;
      const lrSchedule = settings.schedule.kind === "plateau" ? plateauFactor : Optimizer.scheduleFactor(settings.schedule, stageEpoch, settings.train.epochs);
      // The epoch rule, on the weights the last epoch left: its `set`s apply before the first step.
      const ruled = code.epochRule && (await runEpochRule(code.epochRule, new EpochContext(spec, params, data, stageEpoch, localStep(), history, stageSeed, initialTensors, finished, statistics.running), p));
      history.advance();
      const epochRecord = ruled ? await downloadValues(ruled.logged) : undefined;
      const badEpochValue = epochRecord && firstNonFinite(epochRecord);
      if (badEpochValue) {
        disposeEpochResult(ruled);
        const line = Object.hasOwn(code.valueLines, badEpochValue) ? code.valueLines[badEpochValue] : undefined;
        throw new NumericError(`non-finite value of \`${badEpochValue}\`${line ? ` (spec line ${line})` : ""} at the start of epoch ${epoch}; ${kept(saved, checkpoints)}`);
      }
      const records: { tensor: tf.Tensor; step: number }[] = [];
      let keys: [string, number][] = [];
      // With stages, every record names its stage (epoch and step count over the whole run).
      const stageField = staged ? { stage: stageName } : {};
      for (let start = 0; start < order.length; start += batch, step++) {
        const rows = order.slice(start, start + batch);
        const { inputs, target } = batchTensors(data.train, spec, rows);
        const untrained = [...code.trainedSeparately, ...settings.frozen];
        const ctx = new StepContext(spec, params, inputs, target, localStep(), stageEpoch, history, separate, stageSeed, untrained, initialTensors, p, ruled, finished, start / order.length);
        // What balancing changed: each encoder's update gradient after the actions (before clipping), from the last update that held it.
        const updateNorms: (tf.Tensor | undefined)[] = spec.modalities.map(() => undefined);
        ctx.update = (grads: Gradients) => {
          spec.modalities.forEach((_, m) => {
            const encoder = ctx.group.encoder(m);
            if ([...grads.values.keys()].some((name) => inGroup(name, encoder))) updateNorms[m] = gradNorm(grads.of(encoder));
          });
          let clipFactor: tf.Tensor | number = 1;
          if (settings.train.clip > 0) {
            const norm = gradNorm([...grads.values.values()]);
            clipFactor = tf.minimum(1, tf.div(settings.train.clip, tf.add(norm, 1e-12)));
          }
          const update = new Map([...grads.values].map(([n, g]) => [n, clipFactor === 1 ? g : tf.mul(g, clipFactor)]));
          optimizer.apply(params, update, (n) => {
            const factor = grads.lrFactors.get(n);
            return factor ? tf.mul(factor, lrSchedule) : lrSchedule;
          });
          // A batch norm's running statistics move with its gain and bias: not in a turn that leaves them, nor when frozen.
          statistics.update(grads.measured, (layer) => grads.values.has(`${layer}.gain`));
        };
        const record = tf.tidy(() => {
          const result = code.trainStep(ctx, p);
          // `set` statements assign together, from the values after the optimiser step.
          ctx.applyAssignments();
          keys = [["loss", 0], ["total_loss", 0]];
          const flat: tf.Tensor[] = [tf.reshape(result.loss, [1]), tf.reshape(ctx.totalLoss ?? result.loss, [1])];
          for (const [key, value] of Object.entries(result.values)) {
            const list = Array.isArray(value) ? value : [value];
            keys.push([key, Array.isArray(value) ? list.length : 0]);
            // One number per value: a per-sample value is logged as its mean over the batch (the summary says so).
            const one = (v: tf.Tensor) => (perSample.has(key) ? tf.mean(tf.cast(v, "float32")) : tf.cast(v, "float32"));
            flat.push(...list.map((v) => tf.reshape(one(typeof v === "number" ? tf.scalar(v) : v), [-1]).slice(0, 1)));
          }
          keys.push(["grad_norm", spec.modalities.length]);
          // An encoder a stage freezes has no gradient: its norm is 0.
          spec.modalities.forEach((_, m) => {
            const frozen = settings.frozen.includes(ctx.group.encoder(m));
            flat.push(tf.reshape(frozen ? tf.zeros([1]) : gradNorm((result.turns?.[m] ?? result.raw)(ctx.group.encoder(m))), [1]));
          });
          // An encoder no update held (frozen, or trained only by its own objective) changed by 0.
          keys.push(["update_grad_norm", spec.modalities.length]);
          updateNorms.forEach((norm) => flat.push(tf.reshape(norm ?? tf.zeros([1]), [1])));
          return tf.concat(flat);
        });
        ctx.keptTensors.forEach((t) => t.dispose());
        inputs.forEach((t) => t.dispose());
        target.dispose();
        history.advance();
        records.push({ tensor: record, step });
        // On webgpu, lets Dawn free the step's destroyed buffers before the next step (webgpu.ts).
        if (backend === "webgpu") await webgpuStepDone();
        progress?.(epoch, records.length, Math.ceil(order.length / batch), performance.now() - epochStart);
      }
      disposeEpochResult(ruled);
      // Download this epoch's step records at once: no host sync inside the step loop.
      const lines: string[] = [];
      let lossSum = 0;
      for (const r of records) {
        const values = await r.tensor.data();
        r.tensor.dispose();
        const entry = unflatten(keys, values);
        const bad = firstNonFinite(entry);
        if (bad) {
          records.forEach((other) => other.tensor.dispose());
          // The steps before the stop are logged, and the message names the checkpoint that is current.
          await log.append([...lines, JSON.stringify({ type: "step", epoch, step: r.step, ...stageField, ...entry })]);
          const line = Object.hasOwn(code.valueLines, bad) ? code.valueLines[bad] : undefined;
          throw new NumericError(`non-finite value of \`${bad}\`${line ? ` (spec line ${line})` : ""} at step ${r.step}, epoch ${epoch}; ${kept(saved, checkpoints)}`);
        }
        lossSum += Number(entry.loss);
        lines.push(JSON.stringify({ type: "step", epoch, step: r.step, ...stageField, ...entry }));
      }
      // Training alone (steps and their logs), apart from the evaluation that follows.
      const stepSeconds = (performance.now() - epochStart) / 1000;
      const weights = await Promise.all(names.map(async (n) => (await variables.get(n)!.data()) as Float32Array));
      const optimizerState = await optimizer.state();
      const separateState = Object.fromEntries(await Promise.all([...separate].map(async ([g, o]) => [g, { kind: o.spec.kind, options: o.spec.options, state: await o.state() }])));
      // A checkpoint becomes current only when whole and finite: a weight or optimiser value that the
      // epoch's last step made non-finite stops the run here, with the previous checkpoint current.
      const broken = nonFiniteParameter(names, weights) ?? nonFiniteState(optimizerState, "optimiser state") ?? nonFiniteState(separateState, "optimiser state");
      if (broken) {
        await log.append(lines);
        throw new NumericError(`${broken} became non-finite in epoch ${epoch}; ${kept(saved, checkpoints)}`);
      }
      last = await measure();
      // A GPU error of this epoch's steps or evaluation (the device reports them late) fails the run before its checkpoint.
      const gpuError = await webgpuError();
      if (gpuError) throw new DeviceError(`the GPU reported an error in epoch ${epoch}: ${gpuError}; ${kept(saved, checkpoints)}`);
      const { unimodal } = last;
      const valid = primary(last.valid);
      const test = primary(last.test);
      const seconds = (performance.now() - epochStart) / 1000;
      epochSeconds.push(seconds);
      const metricName = Object.keys(last.test)[0]!;
      const loss = lossSum / Math.max(1, records.length);
      // `rule`: the epoch rule's values, computed at this epoch's start and read by its steps.
      lines.push(JSON.stringify({ type: "epoch", epoch, ...stageField, loss, lr: Number(settings.optimizer.options.lr) * lrSchedule, ...(epochRecord ? { rule: epochRecord } : {}), train: last.train, valid: last.valid, test: last.test, unimodal, seconds, step_seconds: stepSeconds, ...memoryRecord() }));
      const logBytes = await log.append(lines);
      await exportLogs(options.out, options.logFormats ?? [], spec.modalities.map((m) => m.name));
      // Model selection: the epoch with the best validation metric (of the stage), and what it measured.
      if (sign * valid > best.metric) best = { metric: sign * valid, epoch, stale: 0, measured: last };
      else best.stale++;
      const plateau = settings.schedule.options;
      if (settings.schedule.kind === "plateau" && best.stale > 0 && best.stale % Number(plateau.patience) === 0) {
        plateauFactor = Math.max(Number(plateau.min), plateauFactor * Number(plateau.gamma));
        say(`mmb: no improvement for ${best.stale} epochs; learning rate × ${plateauFactor}`);
      }
      say(`epoch ${epoch + 1}/${epochs}  loss ${loss.toFixed(4)}  valid ${metricName} ${valid.toFixed(4)}  test ${metricName} ${test.toFixed(4)}  ${Object.entries(unimodal).map(([k, v]) => `${k} ${v.toFixed(3)}`).join("  ")}  ${seconds.toFixed(1)}s`);
      // Early stopping ends the stage: the run goes on with the next stage's first epoch, or ends.
      const stop = settings.train.patience > 0 && best.stale >= settings.train.patience;
      const next = !stop ? epoch + 1 : stageIndex === stages.length - 1 ? epochs : plan.findIndex((e) => e.index === stageIndex + 1);
      const state: CheckpointState = {
        epoch,
        next,
        step,
        ...(staged ? { stageStep } : {}),
        manifest: [...names.map((name) => ({ name, shape: variables.get(name)!.shape })), ...finishedManifest(finished)],
        optimizer: optimizerState,
        separateOptimizers: separateState,
        history: await history.state(),
        best,
        plateauFactor,
        logBytes,
        origin,
      };
      const allWeights = [...weights, ...(await finishedWeights(finished))];
      await saveCheckpoint(checkpoints, state, allWeights);
      // The best-validation checkpoint, kept beside the last one (`best/`, read as `checkpoints/` is).
      if (best.epoch === epoch) await saveCheckpoint(join(options.out, "best"), state, allWeights);
      saved = epoch;
      if (stop) say(`mmb: early stop after epoch ${epoch + 1} (no improvement for ${best.stale} epochs)${next < epochs ? `; stage ${stages[stageIndex + 1]!.name} follows` : ""}`);
      epoch = next - 1;
    }

    // The last epoch already measured the final weights; a resume with no epoch left measures here.
    const final = last ?? (await measure());
    const classes = data.classNames ?? spec.target.names;
    const chosen = best.epoch < 0 ? final : (best.measured ?? (await measuredInLog(log.path, best.epoch)) ?? final);
    const summary: Summary = {
      model: spec.name,
      source: spec.source,
      backend,
      kernels: describeBackend(backend),
      seed,
      epochs,
      params: p,
      metric: spec.target.kind === "class" ? "accuracy" : spec.target.kind === "mask" ? "dice" : "mae",
      test: primary(final.test),
      valid: primary(final.valid),
      metrics: { valid: final.valid, test: final.test },
      ...(classes ? { classes } : {}),
      ...(data.folds ? { folds: data.folds } : {}),
      bestEpoch: best.epoch,
      best: { epoch: best.epoch, test: primary(chosen.test), valid: primary(chosen.valid), metrics: { valid: chosen.valid, test: chosen.test }, unimodal: chosen.unimodal },
      unimodal: final.unimodal,
      unimodalMethod: spec.auxHead ? "auxiliary head of each modality" : "fused head with the other modalities' features set to zero",
      modalities: spec.modalities.map((m) => m.name),
      logged: Object.fromEntries([...perSample].map((name) => [name, "mean over the batch"])),
      wallSeconds: (Date.now() - started) / 1000,
      secondsPerEpoch: epochSeconds.length ? epochSeconds.reduce((a, b) => a + b, 0) / epochSeconds.length : 0,
    };
    await writeJsonAtomically(join(options.out, "summary.json"), summary);
    return summary;
  } finally {
    params.forEach((v) => v.dispose());
    statistics.dispose();
    initial?.forEach((v) => v.dispose());
    optimizer.dispose();
    separate.forEach((o) => o.dispose());
    history.dispose();
    finished.forEach((weights) => Object.values(weights).forEach((t) => t.dispose()));
    if (!options.folder) await folder.release();
  }
}

/** A stage as the loop runs it: its name, its generated functions, and its optimiser, schedule, settings and frozen groups. */
interface Stage {
  name: string;
  code: StageDefinition;
  settings: Required<Pick<StageSpec, "optimizer" | "schedule" | "train" | "frozen">>;
}

/** The trainer's stages: one of the spec's own settings without `stage` blocks; `epochs` replaces the last one's. */
function stagesOf(definition: TrainerDefinition, epochs: number | undefined): Stage[] {
  const spec = definition.spec;
  const stages: Stage[] =
    "stages" in definition
      ? definition.stages.map((code, i) => ({ name: code.name, code, settings: spec.stages![i]! }))
      : [{ name: "", code: definition, settings: { optimizer: spec.optimizer, schedule: spec.schedule, train: spec.train, frozen: [] } }];
  const last = stages[stages.length - 1]!;
  if (epochs !== undefined) last.settings = { ...last.settings, train: { ...last.settings.train, epochs } };
  return stages;
}

/** Checkpoint entries of finished stages' weights: `stage:<name>:<parameter>`. */
const finishedKey = (stage: string, parameter: string) => `stage:${stage}:${parameter}`;

function finishedName(entry: string): { stage: string; parameter: string } | undefined {
  const match = /^stage:([^:]*):(.*)$/.exec(entry);
  return match ? { stage: match[1]!, parameter: match[2]! } : undefined;
}

function finishedManifest(finished: Map<string, Params>): { name: string; shape: number[] }[] {
  return [...finished].flatMap(([stage, weights]) => Object.entries(weights).map(([n, t]) => ({ name: finishedKey(stage, n), shape: t.shape })));
}

async function finishedWeights(finished: Map<string, Params>): Promise<Float32Array[]> {
  return Promise.all([...finished.values()].flatMap((weights) => Object.values(weights).map(async (t) => (await t.data()) as Float32Array)));
}

/**
 * Runs the epoch rule and makes its `set`s; its values stay alive for the epoch's steps. A scope
 * as `tf.tidy` opens, which cannot wait for a rule that reads a split to the host (`purity`):
 * nothing else runs tensors meanwhile, so what the rule makes is freed at its end, its results aside.
 */
async function runEpochRule(rule: NonNullable<StageDefinition["epochRule"]>, ctx: EpochContext, p: Record<string, number>): Promise<EpochResult> {
  tf.engine().startScope("epochRule");
  let result: EpochResult | undefined;
  try {
    const r = await rule(ctx, p);
    ctx.applyAssignments();
    // Copies: a value read from the history (`prev`) is the history's own tensor, which its next write frees.
    const copy = <T>(value: T): T => (value instanceof tf.Tensor ? (tf.clone(value) as T) : Array.isArray(value) ? (value.map(copy) as T) : value);
    const copies = (record: Record<string, unknown>) => Object.fromEntries(Object.entries(record).map(([name, v]) => [name, copy(v)]));
    result = { logged: copies(r.logged), kept: copies(r.kept) } as EpochResult;
    return result;
  } finally {
    tf.engine().endScope(result as unknown as tf.TensorContainer);
  }
}

function disposeEpochResult(result: EpochResult | undefined): void {
  if (!result) return;
  for (const value of [...Object.values(result.logged), ...Object.values(result.kept)]) {
    for (const t of [value].flat(2)) if (t instanceof tf.Tensor) t.dispose();
  }
}

/** The epoch rule's numbers, as the epoch log records them (per-modality values as arrays). */
async function downloadValues(values: EpochResult["logged"]): Promise<Record<string, number | number[]>> {
  const one = async (v: tf.Tensor | number | boolean) => (v instanceof tf.Tensor ? (await v.data())[0]! : Number(v));
  return Object.fromEntries(await Promise.all(Object.entries(values).map(async ([name, v]) => [name, Array.isArray(v) ? await Promise.all(v.map(one)) : await one(v)] as const)));
}

/** Which checkpoint a stopped run leaves current, as the error message says it. */
function kept(epoch: number | undefined, checkpoints: string): string {
  return epoch === undefined ? "no checkpoint was written (the stop came before the first epoch ended)" : `the last good checkpoint (epoch ${epoch + 1}) stays current in ${checkpoints}`;
}

/** The first parameter with a NaN or infinite value. */
function nonFiniteParameter(names: string[], weights: Float32Array[]): string | undefined {
  const i = weights.findIndex((w) => !w.every(Number.isFinite));
  return i < 0 ? undefined : `parameter ${names[i]}`;
}

/** A NaN or infinity anywhere in a JSON-like state (optimiser moments, step counts). */
function nonFiniteState(state: unknown, what: string): string | undefined {
  const stack: unknown[] = [state];
  while (stack.length) {
    const value = stack.pop();
    if (typeof value === "number" && !Number.isFinite(value)) return what;
    if (ArrayBuffer.isView(value)) {
      if (!(value as Float32Array).every(Number.isFinite)) return what;
    } else if (value && typeof value === "object") stack.push(...Object.values(value));
  }
  return undefined;
}

/**
 * The step log, written in whole lines: an append that fails midway (a full disk) is cut back,
 * so no torn line stays; a resume cuts it to the length its checkpoint recorded.
 */
class RunLog {
  constructor(readonly path: string) {}

  /** Appends the lines; returns the log's new length in bytes. */
  async append(lines: string[]): Promise<number> {
    const before = await this.size();
    if (lines.length === 0) return before;
    const handle = await open(this.path, "a");
    try {
      await handle.writeFile(lines.join("\n") + "\n");
      await handle.sync();
    } catch (e) {
      await handle.truncate(before).catch(() => {});
      throw e;
    } finally {
      await handle.close();
    }
    return this.size();
  }

  async truncate(bytes: number): Promise<void> {
    if (bytes === 0) return writeFile(this.path, "");
    const size = await this.size();
    if (size < bytes) throw new ResumeError(`${this.path} is shorter (${size} bytes) than its checkpoint recorded (${bytes}); the log was edited or lost`);
    await truncate(this.path, bytes);
  }

  private async size(): Promise<number> {
    return stat(this.path).then((s) => s.size, () => 0);
  }
}

/** One line redrawn in place: epoch, a bar of the epoch's steps, and the time the epoch has left. */
function progressBar(epochs: number): (epoch: number, done: number, total: number, elapsedMs: number) => void {
  return (epoch, done, total, elapsedMs) => {
    const width = 30;
    const filled = Math.round((width * done) / total);
    const left = ((elapsedMs / done) * (total - done)) / 1000;
    const line = `epoch ${epoch + 1}/${epochs} [${"#".repeat(filled)}${".".repeat(width - filled)}] ${done}/${total} steps, ETA ${left.toFixed(1)}s`;
    process.stderr.write(done < total ? `\r${line}` : `\r${" ".repeat(line.length)}\r`);
  };
}

/**
 * A step record's layout is `keys`: a name and its width (0: one number, n: one per modality).
 * Built with Object.fromEntries, so that a value named `__proto__` is a property like any other.
 */
function unflatten(keys: [string, number][], values: Float32Array | Int32Array | Uint8Array): Record<string, number | number[]> {
  let i = 0;
  return Object.fromEntries(
    keys.map(([key, width]) => {
      const value = width === 0 ? values[i]! : Array.from(values.slice(i, i + width));
      i += Math.max(1, width);
      return [key, value];
    }),
  );
}
