/**
 * What a generated trainer tells the runtime about its model: plain data, emitted by the
 * compiler as a literal. The runtime builds parameters and the forward pass from it.
 */
import type { Tensor } from "@tensorflow/tfjs";

export type OptionValue = number | string | boolean | number[];

export interface ComponentSpec {
  kind: string;
  options: Record<string, OptionValue>;
}

/** What a fusion expression (generated `fuse`) can read. */
export interface FusionInputs {
  /** The features z[m] of every modality. */
  z: Tensor[];
  modalities: number[];
  /** The output of the i-th built-in fusion the expression uses (`spec.fusionParts[i]`). */
  part(i: number): Tensor;
  learnable(name: string, m?: number): Tensor;
  other(m: number): number;
}

/** What a model predicts. `mask`: one class per pixel of a [height, width] mask (`shape`). */
export interface Target {
  name: string;
  kind: "class" | "real" | "mask";
  classes: number;
  /** `class(["a", "b", ...])`: the classes' names in index order; string labels in data files map through them. */
  names?: string[];
  shape?: number[];
  source?: string;
}

/** Numbers per sample of a target: 1, or a mask's pixels. */
export const targetWidth = (target: Target): number => (target.shape ?? [1]).reduce((a, b) => a * b, 1);

export interface ModelSpec {
  name: string;
  source: string;
  data: ComponentSpec;
  /** `source`: the file (and field) `data files(...)` reads, relative to the spec. */
  modalities: { name: string; shape: number[]; source?: string }[];
  target: Target;
  encoders: ComponentSpec[];
  /** A built-in fusion, or `expression`: then `fuse` computes it from `fusionParts`. */
  fusion: ComponentSpec;
  fusionParts?: ComponentSpec[];
  fuse?: (inputs: FusionInputs) => Tensor;
  head: ComponentSpec;
  auxHead?: ComponentSpec;
  learnables: { name: string; perModality: boolean; init: number }[];
  /** Modalities the fusion never reads (the compiler warns, MMB031): no unimodal metric for them. */
  unreadModalities?: string[];
  optimizer: ComponentSpec;
  schedule: ComponentSpec;
  /** `turns`: with `loss[m]`, one optimiser step per modality on each batch (`step`), or one modality per `turn_epochs` epochs (`epoch`). */
  train: { epochs: number; batch: number; seed: number; clip: number; patience: number; turns?: "step" | "epoch"; turn_epochs?: number };
  /** `stage` blocks, in order: each one's optimiser, schedule, settings, and the parameter groups it does not train. */
  stages?: StageSpec[];
}

export interface StageSpec {
  name: string;
  optimizer: ComponentSpec;
  schedule: ComponentSpec;
  train: ModelSpec["train"];
  frozen: string[];
}
