/**
 * The names of parameters and parameter groups: the one place that spells them, read by the
 * compiler (which groups a spec names, which layers each encoder has) and by the runtime (which
 * creates the parameters and selects a group's members). Pure: no tensors, no tfjs.
 *
 * A parameter's name says where it sits: `encoder.<m>.*` (`encoder[m]`), `encoder.<m>.last.*`
 * (`encoder[m].last`), `fusion.*`, `head.*`, `aux.<m>.*` (`head[m]`), `learnable.<name>[.<m>]`.
 * A group is a name prefix, then optional filters after `|`: a layer kind (`encoder.audio|conv`)
 * or `weight` (no biases, no norm gains).
 */

/** Layers of an encoder a group can select: its last linear layer, or every layer of one kind. */
export type LayerKind = "last" | "conv" | "dense" | "rnn" | "attention" | "norm";

/**
 * The layer kinds each encoder has, for `encoder[m].<kind>` (the names below follow model.ts);
 * a batch-normalised one (`norm: "batch"`) also has `norm` layers (encoderLayerKindsOf).
 */
export const encoderLayerKinds: Record<string, readonly LayerKind[]> = {
  mlp: ["last", "dense"],
  conv1d: ["last", "conv"],
  conv2d: ["last", "conv"],
  lstm: ["last", "rnn"],
  gru: ["last", "rnn"],
  transformer: ["last", "dense", "attention", "norm"],
  resnet: ["last", "conv"],
};

/** The layer kinds of an encoder as declared: its kind's, and `norm` where its layers are batch-normalised. */
export function encoderLayerKindsOf(encoder: { kind: string; options: Record<string, unknown> }): readonly LayerKind[] {
  const kinds = encoderLayerKinds[encoder.kind] ?? [];
  return encoder.options.norm === "batch" && !kinds.includes("norm") ? [...kinds, "norm"] : kinds;
}

export const headGroup = "head";
export const fusionGroup = "fusion";
/** `encoder[m]`: every parameter of modality m's encoder. */
export const encoderGroup = (modality: string): string => `encoder.${modality}`;
/** `encoder[m].last`: the encoder's last linear layer. */
export const encoderLastGroup = (modality: string): string => `${encoderGroup(modality)}.last`;
/** `encoder[m].conv` and the like: every layer of one kind. */
export const encoderLayersGroup = (modality: string, kind: LayerKind): string => `${encoderGroup(modality)}|${kind}`;
/** `head[m]`: modality m's auxiliary head. */
export const auxHeadGroup = (modality: string): string => `aux.${modality}`;
/** The parameter of `learnable name` (`learnable name[m]`: one per modality). */
export const learnableParam = (name: string, modality?: string): string => (modality === undefined ? `learnable.${name}` : `learnable.${name}.${modality}`);
/** `G.weight`: the group's weights without biases and norm gains. */
export const weightsOf = (group: string): string => `${group}|weight`;

/** The kind of layer a parameter belongs to, from its name. */
export function layerKind(param: string): LayerKind | "other" {
  const segments = param.split(".").slice(2, -1);
  if (segments[0] === "last") return "last";
  // A batch norm (`<conv>.norm`) is a norm layer, not part of the layer it follows.
  if (segments.some((s) => /^norm\d*$/.test(s))) return "norm";
  if (segments.some((s) => /^(conv\d*|stem|skip)$/.test(s))) return "conv";
  if (segments.some((s) => /^(dense\d*|input|ff\d)$/.test(s))) return "dense";
  if (segments[0] === "rnn") return "rnn";
  if (segments.some((s) => /^(query|key|value|output|position)$/.test(s))) return "attention";
  return "other";
}

/** Whether parameter `param` belongs to `group`. */
export function inGroup(param: string, group: string): boolean {
  const [prefix, ...filters] = group.split("|");
  if (!(param === prefix || param.startsWith(`${prefix}.`))) return false;
  return filters.every((f) => (f === "weight" ? !/\.(bias|gain)$/.test(param) : layerKind(param) === f));
}

/** The parameters among `names` that belong to `group`; a group without any is an error. */
export function membersOf(names: Iterable<string>, group: string): string[] {
  const members = [...names].filter((n) => inGroup(n, group));
  if (members.length === 0) throw new Error(`parameter group "${group}" has no parameters`);
  return members;
}

/** Names of the parameter groups a spec can address, for modality index m. */
export class Groups {
  constructor(private readonly modalities: readonly string[]) {}
  encoder = (m: number): string => encoderGroup(this.modalities[m]!);
  encoderLast = (m: number): string => encoderLastGroup(this.modalities[m]!);
  encoderLayers = (m: number, kind: LayerKind): string => encoderLayersGroup(this.modalities[m]!, kind);
  aux = (m: number): string => auxHeadGroup(this.modalities[m]!);
  learnable = (name: string, m?: number): string => learnableParam(name, m === undefined ? undefined : this.modalities[m]);
  weights = weightsOf;
  readonly head = headGroup;
  readonly fusion = fusionGroup;
}
