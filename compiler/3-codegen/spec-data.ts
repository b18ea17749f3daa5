import { createHash } from "node:crypto";
import { groupNames } from "../2-schedule/index.js";
import type { ModelIR } from "../ir.js";

/** What every target's generated trainer says made it. */
export const generatorVersion = "0.1.0";

/** The spec text's SHA-256: checkpoints record it, so that `--resume` continues only this spec's run. */
export function sourceHash(text: string): string {
  return `sha256:${createHash("sha256").update(text).digest("hex")}`;
}

/**
 * The model as plain data, as every target's runtime reads it (runtime/spec.ts's `ModelSpec`,
 * without the fusion expression, which is code): architecture, data, optimiser, settings, stages.
 */
export function specData(model: ModelIR, sourceName: string) {
  const component = (c: { kind: string; options: Record<string, unknown> }) => ({ kind: c.kind, options: c.options });
  return {
    name: model.name,
    source: sourceName,
    data: component(model.data),
    modalities: model.modalities.map((m) => ({ name: m.name, shape: m.shape, ...(m.source ? { source: m.source } : {}) })),
    target: {
      name: model.target.name,
      kind: model.target.kind,
      classes: model.target.classes,
      ...(model.target.names ? { names: model.target.names } : {}),
      ...(model.target.shape ? { shape: model.target.shape } : {}),
      ...(model.target.source ? { source: model.target.source } : {}),
    },
    encoders: model.encoders.map(component),
    fusion: component(model.fusion),
    ...(model.fuse ? { fusionParts: model.fuse.parts.map(component) } : {}),
    head: component(model.head),
    ...(model.auxHead ? { auxHead: component(model.auxHead) } : {}),
    learnables: model.learnables.map((l) => ({ name: l.name, perModality: l.perModality, init: l.init })),
    ...(model.unread.length ? { unreadModalities: model.unread } : {}),
    optimizer: component(model.optimizer),
    schedule: component(model.schedule),
    train: model.train,
    // Each stage's optimiser, schedule, settings and the parameter groups it leaves untrained.
    ...(model.stages
      ? { stages: model.stages.map((s) => ({ name: s.name, optimizer: component(s.optimizer), schedule: component(s.schedule), train: s.train, frozen: s.frozen.flatMap((g) => groupNames(g, model)) })) }
      : {}),
  };
}
