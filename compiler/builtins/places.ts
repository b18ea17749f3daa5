import type { Builtin } from "./types.js";

/**
 * Names that belong to one place of the language: a modality index, a noise distribution, a
 * learning rate. Elsewhere they are a coded mistake, not an unknown function.
 */
export const places: Builtin[] = [
  {
    name: "index",
    family: "places",
    usage: "index(m)",
    example: "if index(m) == floor(uniform() * 2) then 1 else 0",
    doc: "modality m's position, from 0, as a number (to compare with a drawn one)",
    form: "index",
    signatures: [],
  },
  {
    name: "other",
    family: "places",
    usage: "other(m)",
    doc: "the other modality, inside brackets: `s[other(m)]` (only with exactly two modalities)",
    signatures: [],
    misuse: { code: "MMB009", message: "`other(m)` is a modality index: use it inside brackets", help: "e.g. `s[other(m)]`" },
  },
  {
    name: "normal",
    family: "places",
    usage: "normal(mean, std)",
    doc: "Gaussian noise, after `noise grad(G) ~`",
    signatures: [],
    misuse: { code: "MMB007", message: "`normal(...)` can only follow `noise grad(G) ~`", help: "e.g. `noise grad(encoder[m]) ~ normal(0, 0.01)`" },
  },
  {
    name: "lr",
    family: "places",
    usage: "lr(G)",
    doc: "the learning rate of group `G`, after `scale`",
    signatures: [],
    misuse: { code: "MMB018", message: "`lr(G)` can only be scaled: `scale lr(G) by factor`", help: "e.g. `scale lr(encoder[m]) by 0.5`" },
  },
];
