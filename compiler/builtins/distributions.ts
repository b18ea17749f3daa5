import { runtimeCall, torchCall } from "./lowering.js";
import type { Builtin, RefineContext, Signature } from "./types.js";

/**
 * A head's outputs as distributions, per sample: softmax over the last axis (the classes, or a
 * feature's dimensions), its entropy and confidence, divergences and distances between two outputs
 * or features. Each gives one number per sample, to weight per sample or reduce over the batch.
 */
const classTarget = (call: RefineContext): boolean =>
  call.targetKind === "class" || call.report("MMB008", `\`${call.name}\` needs a class target`, { help: "per-sample correctness and margins are defined for `target y : class(N)`" });

const pairs = (kinds: ("logits" | "features")[]): Signature[] =>
  kinds.map((kind) => ({ params: [{ name: "a", kinds: [kind] }, { name: "b", kinds: [kind] }], result: "batch" }));

/** `torch`: the torch runtime's function, where its name differs from the builtin's. */
function perSample(name: string, runtime: string, usage: string, doc: string, signatures: Signature[], extra: Partial<Builtin> = {}, torch = name): Builtin {
  return { name, family: "distributions", usage, doc, signatures, lower: { tfjs: runtimeCall(runtime), torch: torchCall(torch) }, ...extra };
}

export const distributions: Builtin[] = [
  perSample("entropy", "entropy", "entropy(o)", "−Σ p·log p of softmax(o), per sample; of features `z[m]`, over their dimensions", [
    { params: [{ name: "o", kinds: ["logits"] }], result: "batch" },
    { params: [{ name: "o", kinds: ["features"] }], result: "batch" },
  ]),
  perSample("logsumexp", "logsumexp", "logsumexp(o)", "log Σ_c exp(o_c), per sample: `sigmoid(logsumexp(contrib[a]) - logsumexp(contrib[b]))` is a's share of a softmax over both modalities' logits", [
    { params: [{ name: "o", kinds: ["logits"] }], result: "batch" },
  ]),
  perSample("confidence", "confidence", "confidence(o)", "the largest class probability of softmax(o), per sample", [{ params: [{ name: "o", kinds: ["logits"] }], result: "batch" }]),
  perSample("correct", "correct", "correct(o, y)", "whether o's most probable class is the target, per sample: a per-sample condition", [
    { params: [{ name: "o", kinds: ["logits"] }, { name: "y", kinds: ["label"] }], result: "batchBool" },
  ], { refine: classTarget, example: "correct(out, y)" }),
  perSample("nll", "nll", "nll(o, y)", "−log softmax(o)[y]: the cross-entropy of each sample, to weight before reducing: `mean(batch, w * nll(out, y))`", [
    { params: [{ name: "o", kinds: ["logits"] }, { name: "y", kinds: ["label"] }], result: "batch" },
  ], { example: "nll(out, y)" }),
  perSample("margin", "margin", "margin(o, y)", "the true class's probability minus the largest other one, per sample", [
    { params: [{ name: "o", kinds: ["logits"] }, { name: "y", kinds: ["label"] }], result: "batch" },
  ], { refine: classTarget, example: "margin(out, y)" }),
  perSample("kl", "kl", "kl(p, q)", "KL(softmax(p) ‖ softmax(q)) per sample; a temperature divides the logits: `kl(out / 4, head[m] / 4)`", pairs(["logits"]), { example: "kl(out, head[m])" }),
  perSample("mix", "mixture", "mix(p, q)", "the logits of the equal mixture m = (softmax(p) + softmax(q))/2 (log m): `kl(mix(p, q), p)` is KL(m ‖ softmax(p))", [
    { params: [{ name: "p", kinds: ["logits"] }, { name: "q", kinds: ["logits"] }], result: "logits" },
  ], { example: "kl(mix(contrib[a], contrib[b]), contrib[a])" }, "mixture"),
  perSample("js", "js", "js(p, q)", "the Jensen–Shannon divergence of softmax(p) and softmax(q), per sample", pairs(["logits"]), { example: "js(contrib[a], contrib[b])" }),
  perSample("normalize", "normalize", "normalize(x)", "each sample's features (or outputs) scaled to unit L2 norm; in a fusion too: `concat(j, normalize(z[j]))`", [
    { params: [{ name: "x", kinds: ["features"] }], result: "features" },
    { params: [{ name: "x", kinds: ["logits"] }], result: "logits" },
  ], { fusion: "elementwise", example: "normalize(z[m])" }),
];

/** `mse` and `cos` take two outputs or features too, per sample (besides their other overloads). */
export const outputPairs = { mse: pairs(["logits", "features"]), cos: pairs(["logits", "features"]) };
