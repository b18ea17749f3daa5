/** The runtime library that generated trainers import as "mmb/runtime". */
export type { Tensor } from "@tensorflow/tfjs";
export { selectBackend, backendPreference, type BackendName } from "./backend.js";
export { DataError, gatherRows, loadData, validateDataset, type Dataset, type Split } from "./data/index.js";
export { Forward } from "./model.js";
export * from "./ops.js";
export type { FusionInputs, ModelSpec } from "./spec.js";
export { EpochContext, type EpochResult } from "./epoch.js";
export { StepContext, Gradients, type GradientOf, type Objective, type TaskLoss } from "./step.js";
export { train, DeviceError, NumericError, ResourceError, ResumeError, type StepResult, type Summary, type TrainerDefinition, type TrainOptions } from "./train.js";
export { claimRunFolder, RunFolderError, type RunFolder } from "./run-folder.js";
export { logFormats, type LogFormat } from "./log-export.js";
