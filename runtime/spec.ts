/**
 * What a generated trainer tells the runtime about its model: plain data, emitted by the
 * compiler as a literal. The runtime builds parameters and the forward pass from it.
 */
export type OptionValue = number | string | boolean | number[];

export interface ComponentSpec {
  kind: string;
  options: Record<string, OptionValue>;
}

export interface ModelSpec {
  name: string;
  source: string;
  data: ComponentSpec;
  modalities: { name: string; shape: number[] }[];
  target: { name: string; kind: "class" | "real"; classes: number };
  encoders: ComponentSpec[];
  fusion: ComponentSpec;
  head: ComponentSpec;
  auxHead?: ComponentSpec;
  learnables: { name: string; perModality: boolean; init: number }[];
  optimizer: ComponentSpec;
  schedule: ComponentSpec;
  train: { epochs: number; batch: number; seed: number; clip: number; patience: number };
}
