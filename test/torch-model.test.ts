import * as tf from "@tensorflow/tfjs";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findTorchPython } from "../cli/python.js";
import { torchRuntimeSource } from "../compiler/3-codegen/torch/runtime-source.js";
import { selectBackend } from "../runtime/backend.js";
import { Forward, initialValues, modelStatistics, type Params } from "../runtime/model.js";
import { add, crossEntropy, div, gradNorm, meanSquaredError, mul } from "../runtime/ops.js";
import {
  auxHeadGroup,
  encoderGroup,
  encoderLastGroup,
  encoderLayersGroup,
  fusionGroup,
  Groups,
  headGroup,
  inGroup,
  learnableParam,
  membersOf,
  weightsOf,
  type LayerKind,
} from "../runtime/parameter-groups.js";
import { Random } from "../runtime/random.js";
import { StepRandom } from "../runtime/step-random.js";
import type { FusionInputs, ModelSpec } from "../runtime/spec.js";
import { encoderCaseName, encoderCases, encoderModelSpec, fusionModelSpec, root, weightedConcat } from "./helpers.js";

/**
 * The torch model (runtime/torch/model.py, with random.py and groups.py) against the tfjs model
 * (runtime/model.ts): for every encoder, fusion and head, an aux head and a segmentation mask, from
 * the same spec and seed, the initial weights bit for bit, and on the same inputs the outputs, the
 * per-modality views, the gradient of the loss and the gradient of ‖∂L/∂G‖² with respect to every
 * parameter, to 1e-5; the conversion of weights between the two layouts; the parameter groups; and
 * the random draws. Python runs once, on every case. Skipped where no python3 imports torch, unless
 * MMB_REQUIRE_TORCH=1 (there it fails).
 */

const { python, tried } = findTorchPython();
const required = process.env.MMB_REQUIRE_TORCH === "1";

/** A tensor as plain numbers, row-major. */
type Host = { values: number[]; shape: number[] };

const read = (t: tf.Tensor): Host => ({ values: Array.from(t.dataSync()), shape: t.shape });

function hostInput(shape: number[], seed: number, batch = 8): Host {
  const random = new Random(seed);
  const size = batch * shape.reduce((a, b) => a * b, 1);
  return { values: Array.from({ length: size }, () => random.normal()), shape: [batch, ...shape] };
}

const labels = (shape: number[], classes: number, salt: number): Host => {
  const size = shape.reduce((a, b) => a * b, 1);
  return { values: Array.from({ length: size }, (_, i) => (i * 7 + salt) % classes), shape };
};

interface Case {
  name: string;
  spec: ModelSpec;
  seed: number;
  /** The Python of `spec.fuse`, defining `fuse(inputs)`. */
  fuse?: string;
  inputs: Host[];
  target: Host;
  loss: "cross_entropy" | "mse";
  /** The group G of ‖∂L/∂G‖². */
  secondOrder: string;
  /** Whether `contrib[m]` is defined (a linear or cosine head over a fusion linear in the features). */
  contrib: boolean;
  /** `keep` multipliers of a second pass: a number, or a [batch, 1] tensor. */
  keep?: (number | Host)[];
}

const twoModalities = (spec: ModelSpec, name: string, extra: Partial<Case> = {}): Case => ({
  name,
  spec,
  seed: 5,
  inputs: [hostInput([5], 4), hostInput([4], 5)],
  target: labels([8], 3, 1),
  loss: "cross_entropy",
  secondOrder: "encoder.a",
  contrib: false,
  ...extra,
});

const concat = { kind: "concat", options: {} };
const attentionPart = { kind: "attention", options: {} };
const weightedConcatPy = `def fuse(inputs):
    return torch.cat([inputs.learnable("w", j) * inputs.z[j] for j in inputs.modalities], -1)`;
/** `(concat(j, w[j] * z[j]) + attention) * s / 2`: a built-in part and a scalar learnable. */
const partFuse = (inputs: FusionInputs) => div(mul(add(weightedConcat(inputs), inputs.part(0)), inputs.learnable("s")), 2);
const partFusePy = `def fuse(inputs):
    weighted = torch.cat([inputs.learnable("w", j) * inputs.z[j] for j in inputs.modalities], -1)
    return (weighted + inputs.part(0)) * inputs.learnable("s") / 2`;

const cases: Case[] = [
  ...[
    ...encoderCases,
    // TensorFlow's 'same' padding with odd sizes and an even kernel: more padding after than before.
    ["conv2d", [1, 7, 5], { channels: [3, 4], kernel: 4, out: 6, activation: "gelu" }] as const,
    ["conv1d", [9, 2], { channels: [3, 4, 5], kernel: 4, out: 6, activation: "sigmoid" }] as const,
  ].map(([kind, shape, options], i): Case => ({
    name: `encoder ${encoderCaseName(kind, options)} ${JSON.stringify(shape)}${i >= encoderCases.length ? " (odd sizes, even kernel)" : ""}`,
    spec: encoderModelSpec(kind, [...shape], options),
    seed: 1,
    inputs: [hostInput([...shape], 3)],
    target: labels([8], 3, 0),
    loss: "cross_entropy",
    secondOrder: "encoder.x",
    contrib: true,
  })),
  twoModalities(fusionModelSpec(concat), "fusion concat", { contrib: true, keep: [{ values: [1, 0, 1, 1, 0, 1, 0, 1], shape: [8, 1] }, 0] }),
  twoModalities(fusionModelSpec({ kind: "sum", options: {} }), "fusion sum", { contrib: true, keep: [0.5, 1] }),
  twoModalities(fusionModelSpec({ kind: "gated", options: {} }), "fusion gated"),
  twoModalities(fusionModelSpec({ kind: "film", options: { by: "b" } }), "fusion film"),
  twoModalities(fusionModelSpec({ kind: "attention", options: {} }), "fusion attention"),
  twoModalities(
    fusionModelSpec({ kind: "expression", options: { width: 8 } }, { fuse: weightedConcat, fusionParts: [], learnables: [{ name: "w", perModality: true, init: 1.5 }] }),
    "fusion expression concat(j, w[j] * z[j])",
    { fuse: weightedConcatPy, contrib: true },
  ),
  twoModalities(
    fusionModelSpec(
      { kind: "expression", options: { width: 8 } },
      { fuse: partFuse, fusionParts: [attentionPart], learnables: [{ name: "w", perModality: true, init: 1.5 }, { name: "s", perModality: false, init: 0.5 }] },
    ),
    "fusion expression (concat(j, w[j] * z[j]) + attention) * s / 2",
    { fuse: partFusePy, secondOrder: "fusion" },
  ),
  twoModalities(fusionModelSpec(concat, { head: { kind: "cosine", options: { out: 3, scale: 10 } } }), "head cosine over concat", { contrib: true }),
  twoModalities(fusionModelSpec({ kind: "sum", options: {} }, { head: { kind: "cosine", options: { out: 3, scale: 10 } } }), "head cosine over sum", { secondOrder: "head" }),
  twoModalities(
    fusionModelSpec(concat, {
      head: { kind: "mlp", options: { hidden: [5, 4], out: 3, activation: "gelu" } },
      encoders: ["sigmoid", "relu"].map((activation) => ({ kind: "mlp", options: { hidden: [6, 5], out: 4, activation, dropout: 0 } })),
    }),
    "head mlp (gelu), sigmoid and relu encoders",
  ),
  twoModalities(fusionModelSpec(concat, { auxHead: { kind: "linear", options: { out: 3, detach: true } } }), "aux linear heads (detached)", { contrib: true }),
  twoModalities(fusionModelSpec({ kind: "sum", options: {} }, { auxHead: { kind: "cosine", options: { out: 3, scale: 5, detach: false } } }), "aux cosine heads (detach: false)", {
    secondOrder: "aux.b",
  }),
  twoModalities(fusionModelSpec(concat, { target: { name: "y", kind: "mask", classes: 3, shape: [2, 3] } }), "segmentation mask", { target: labels([8, 2, 3], 3, 2), contrib: true }),
  twoModalities(fusionModelSpec({ kind: "sum", options: {} }, { target: { name: "y", kind: "real", classes: 1 }, head: { kind: "linear", options: { out: 1 } } }), "regression", {
    target: { values: hostInput([], 9).values, shape: [8] },
    loss: "mse",
    contrib: true,
  }),
];

const layerKinds: LayerKind[] = ["last", "conv", "dense", "rnn", "attention", "norm"];

/** Every group a spec can address for these modalities and learnables, and each one's `|weight`. */
function groupsOf(spec: ModelSpec): string[] {
  const modalities = spec.modalities.map((m) => m.name);
  const groups = [headGroup, fusionGroup, ...[0, 1].map((i) => `${fusionGroup}.${i}`)];
  for (const m of modalities) groups.push(encoderGroup(m), encoderLastGroup(m), ...layerKinds.map((k) => encoderLayersGroup(m, k)), auxHeadGroup(m));
  for (const l of spec.learnables) groups.push(learnableParam(l.name), ...modalities.map((m) => learnableParam(l.name, m)));
  return [...groups, ...groups.map(weightsOf)];
}

/**
 * Running statistics unlike the initial ones (means 0, variances 1), for an evaluation pass: the
 * i-th statistic's channel k is sin(i + k) as a mean, 1 + cos(i + k)² / 2 as a variance.
 */
function runningStatistics(spec: ModelSpec): Map<string, { values: Float32Array; shape: number[] }> {
  return new Map(
    modelStatistics(spec).map(({ name, shape }, i) => {
      const values = Float32Array.from({ length: shape[0]! }, (_, k) => (name.endsWith("_var") ? 1 + Math.cos(i + k) ** 2 / 2 : Math.sin(i + k)));
      return [name, { values, shape }];
    }),
  );
}

/** What the tfjs model computes for a case: every quantity the harness computes in torch. */
function expected(c: Case) {
  const initial = initialValues(c.spec, c.seed);
  const names = [...initial.keys()];
  const statistics = runningStatistics(c.spec);
  const computed = tf.tidy(() => {
    const values = names.map((n) => tf.tensor(initial.get(n)!.values, initial.get(n)!.shape));
    const xs = c.inputs.map((x) => tf.tensor(x.values, x.shape));
    const y = tf.tensor(c.target.values, c.target.shape);
    const paramsOf = (vs: tf.Tensor[]) => Object.fromEntries(names.map((n, i) => [n, vs[i]!])) as Params;
    const forward = (vs: tf.Tensor[]) => new Forward(c.spec, paramsOf(vs), xs, y, true);
    const taskLoss = (out: tf.Tensor) => (c.loss === "mse" ? meanSquaredError(out, y) : crossEntropy(out, y));
    const lossOf = (f: Forward) => (c.spec.auxHead ? f.modalities.reduce((l, m) => tf.add(l, taskLoss(f.aux(m))), taskLoss(f.out)) : taskLoss(f.out));
    const gradientsOf = (f: (xs: tf.Tensor[]) => tf.Tensor, at: tf.Tensor[]) =>
      tf.engine().gradients(() => f(at) as tf.Scalar, at, undefined, true).grads.map((g, i) => g ?? tf.zerosLike(at[i]!));
    const f = forward(values);
    const modalities = f.modalities;
    const inner = membersOf(names, c.secondOrder);
    const first = gradientsOf((vs) => lossOf(forward(vs)), values);
    const second = gradientsOf((vs) => {
      const own = (g: tf.Tensor[]) => vs.map((v, i) => (inner.includes(names[i]!) ? g[inner.indexOf(names[i]!)]! : v));
      return tf.square(gradNorm(gradientsOf((g) => lossOf(forward(own(g))), inner.map((n) => vs[names.indexOf(n)]!))));
    }, values);
    const keep = c.keep?.map((k) => (typeof k === "number" ? k : tf.tensor(k.values, k.shape)));
    const running = Object.fromEntries([...statistics].map(([n, { values, shape }]) => [n, tf.tensor(values, shape)]));
    return {
      out: read(f.out),
      evaluated: read(new Forward(c.spec, paramsOf(values), xs, y, false, undefined, undefined, running).out),
      fused: read(f.fused),
      z: f.z.map(read),
      alone: modalities.map((m) => read(f.alone(m))),
      without: modalities.map((m) => read(f.without(m))),
      contrib: c.contrib ? modalities.map((m) => read(f.contrib(m))) : undefined,
      aux: c.spec.auxHead ? modalities.map((m) => read(f.aux(m))) : undefined,
      keep: keep ? read(new Forward(c.spec, paramsOf(values), xs, y, true, keep).out) : undefined,
      first: Object.fromEntries(names.map((n, i) => [n, read(first[i]!)])),
      second: Object.fromEntries(names.map((n, i) => [n, read(second[i]!)])),
    };
  });
  const groups = Object.fromEntries(
    groupsOf(c.spec).map((g) => {
      try {
        return [g, membersOf(names, g)];
      } catch {
        return [g, null];
      }
    }),
  );
  const every = new Map([...initial, ...modelStatistics(c.spec).map(({ name, shape, init }) => [name, { values: new Float32Array(shape[0]!).fill(init), shape }] as const)]);
  return {
    ...computed,
    initial: Object.fromEntries([...every].map(([n, { values }]) => [n, Array.from(values)])),
    running: Object.fromEntries([...statistics].map(([n, { values }]) => [n, Array.from(values)])),
    shapes: Object.fromEntries([...every].map(([n, { shape }]) => [n, shape])),
    groups,
  };
}

/** The Python side: runs every case (and the random draws) in torch, float32 on the CPU, and writes what it computed. */
const harness = String.raw`
import json
import sys

import numpy as np
import torch

source, folder, job_path, out_path = sys.argv[1:5]
runtime = {}
try:
    exec(compile(open(source).read(), "torch runtime", "exec"), runtime)
    used = "the whole runtime"
except Exception as error:
    # A later runtime file, someone else's, is broken: the files this test is about, each as it stands.
    runtime = {}
    for name in ("random.py", "groups.py", "model.py"):
        exec(compile(open(f"{folder}/{name}").read(), name, "exec"), runtime)
    used = f"random.py, groups.py and model.py alone: the whole runtime fails ({type(error).__name__}: {error})"

Model, Forward, Random, StepRandom = runtime["Model"], runtime["Forward"], runtime["Random"], runtime["StepRandom"]
tfjs_names, tfjs_weights, load_tfjs_weights, tfjs_layout = runtime["tfjs_names"], runtime["tfjs_weights"], runtime["load_tfjs_weights"], runtime["tfjs_layout"]
in_group, members_of, Groups = runtime["in_group"], runtime["members_of"], runtime["Groups"]
job = json.load(open(job_path))


def host(t):
    t = t.detach()
    return {"values": t.reshape(-1).tolist(), "shape": list(t.shape)}


def tensor(h):
    return torch.tensor(h["values"], dtype=torch.float32).reshape(h["shape"])


def task_loss(kind, out, y):
    if kind == "mse":
        return ((out.reshape(-1) - y) ** 2).mean()
    return -torch.log_softmax(out, -1).gather(-1, y.long().unsqueeze(-1)).mean()


def gradients(value, params, create_graph=False):
    grads = torch.autograd.grad(value, params, create_graph=create_graph, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]


def load_error(model, arrays):
    try:
        load_tfjs_weights(model, arrays)
    except ValueError as error:
        return str(error)
    return None


results = []
for case in job["cases"]:
    fuse = None
    if case.get("fuse"):
        scope = dict(runtime)
        exec(case["fuse"], scope)
        fuse = scope["fuse"]
    spec, seed = case["spec"], case["seed"]
    model = Model(spec, seed, fuse)
    names = tfjs_names(model)
    params = dict(model.named_parameters())
    # The parameters, without the batch norms' running statistics (buffers, not differentiated).
    trained = [(name, shape, key) for name, shape, key in names if key in params]
    ordered = [params[key] for _, _, key in trained]
    initial = {name: np.array(case["initial"][name], np.float32).reshape(shape) for name, shape, _ in names}
    drawn = tfjs_weights(model)
    differing = sum(int((drawn[name] != initial[name]).sum()) for name in initial)

    xs = [tensor(x) for x in case["inputs"]]
    y = tensor(case["target"])

    def loss_of(f):
        loss = task_loss(case["loss"], f.out, y)
        if spec.get("auxHead"):
            for m in f.modalities:
                loss = loss + task_loss(case["loss"], f.aux(m), y)
        return loss

    f = Forward(model, xs, y, training=True)
    first = gradients(loss_of(f), ordered)
    inner = [params[key] for key in members_of([key for _, _, key in trained], case["secondOrder"])]
    group = gradients(loss_of(Forward(model, xs, y)), inner, create_graph=True)
    second = gradients(sum((g ** 2).sum() for g in group), ordered)
    keep = [k if isinstance(k, (int, float)) else tensor(k) for k in case["keep"]] if case.get("keep") else None

    copy = Model(spec, seed + 1, fuse)
    load_tfjs_weights(copy, initial)
    back = tfjs_weights(copy)
    # An evaluation pass normalises with running statistics: set unlike the initial ones.
    running = {name: np.array(values, np.float32) for name, values in case["running"].items()}
    evaluated = Model(spec, seed, fuse)
    load_tfjs_weights(evaluated, {**initial, **running})
    first_name, first_shape, _ = names[0]
    last_name = names[-1][0]
    groups = {}
    for g in case["groups"]:
        try:
            groups[g] = sorted(members_of(params, g))
        except ValueError:
            groups[g] = None

    results.append({
        "names": names,
        "differing": differing,
        "out": host(f.out),
        "evaluated": host(Forward(evaluated, xs, y, training=False).out),
        "fused": host(f.fused),
        "z": [host(z) for z in f.z],
        "alone": [host(f.alone(m)) for m in f.modalities],
        "without": [host(f.without(m)) for m in f.modalities],
        "contrib": [host(f.contrib(m)) for m in f.modalities] if case["contrib"] else None,
        "aux": [host(f.aux(m)) for m in f.modalities] if spec.get("auxHead") else None,
        "keep": host(Forward(model, xs, y, keep=keep).out) if keep else None,
        "first": {name: host(torch.from_numpy(tfjs_layout(name, g.detach().numpy()).copy())) for (name, _, _), g in zip(trained, first)},
        "second": {name: host(torch.from_numpy(tfjs_layout(name, g.detach().numpy()).copy())) for (name, _, _), g in zip(trained, second)},
        "groups": groups,
        "in_group": {g: sorted(n for n in params if in_group(n, g)) for g in case["groups"]},
        "round_trip": all(np.array_equal(back[name], initial[name]) for name in initial) and torch.equal(copy(xs), model(xs)),
        "errors": {
            "shape": load_error(copy, {**initial, first_name: np.zeros([s + 1 for s in first_shape], np.float32)}),
            "missing": load_error(copy, {name: a for name, a in initial.items() if name != last_name}),
            "unknown": load_error(copy, {**initial, "encoder.nowhere.kernel": np.zeros(1, np.float32)}),
        },
    })

draws = job["random"]
random = {"seeds": [], "bulk": []}
for seed in draws["seeds"]:
    r = Random(seed)
    uniforms = [r.uniform() for _ in range(20)]
    snapshot = r.snapshot
    random["seeds"].append({
        "uniforms": uniforms,
        "snapshot": snapshot,
        "permutation": r.permutation(10),
        "normals": r.normals(5, 0.3).tolist(),
        "restored": Random.restore(snapshot).uniform(),
    })
for seed, theirs in zip(draws["bulk_seeds"], draws["bulk"]):
    r = Random(seed)
    ours = np.array([r.normal() for _ in theirs])
    theirs = np.array(theirs)
    random["bulk"].append({
        "doubles": int((ours != theirs).sum()),
        "float32": {str(std): int((np.float32(ours * std) != np.float32(theirs * std)).sum()) for std in draws["stds"]},
    })
# The draw on an accelerator (_normals_torch: mulberry32 in int64 tensors, Box–Muller in float64), run
# on the CPU, in blocks of 1,000 pairs so that 5,003 draws cross several.
runtime["_DEVICE_BLOCK"] = 1000
random["device"] = {str(seed): runtime["_normals_torch"](Random(seed).snapshot, 5003, 0.3, "cpu").tolist() for seed in draws["device_seeds"]}
# The host's draw (numpy, a block of pairs at a time in arrays reused from block to block), in blocks
# of 1,000 pairs and into a given array, as a run's gradient noise draws it; then the next draw.
runtime["_BLOCK"] = 1000
def host_draw(seed):
    r = Random(seed)
    drawn = r.normals(5003, 0.3, out=np.full(5003, np.nan, np.float32)).tolist()
    return drawn + r.normals(3).tolist()
random["host"] = {str(seed): host_draw(seed) for seed in draws["device_seeds"]}
step = StepRandom(7, 3)
p = torch.tensor([[0.1, 0.5, 0.9], [0.3, 0.7, 0.2]])
random["step"] = {
    "uniform": step.uniform(1),
    "uniform_key": step.uniform(2, 4.7),
    "bernoulli": step.bernoulli(5, 0.3),
    "bernoulli_tensor": host(step.bernoulli(6, p)),
    "bernoulli_list": [host(t) for t in step.bernoulli(8, [p, p.t()])],
    "dropout": host(step.dropout(9, torch.arange(1.0, 13.0).reshape(3, 4), 0.5)),
}
g = Groups(["audio", "visual"])
groups = [g.encoder(1), g.encoder_last(0), g.encoder_layers(1, "conv"), g.aux(0), g.learnable("w"), g.learnable("w", 1), g.weights(g.head), g.fusion]

json.dump({"runtime": used, "torch": torch.__version__, "cases": results, "random": random, "groups": groups}, open(out_path, "w"))
`;

/** 1e-5, absolutely for values of order 1 or less, relatively for larger ones; the worst error. */
const tolerance = 1e-5;
function worstError(torch: Host, tfjs: Host, what: string): number {
  expect(torch.shape, `${what}: shape`).toEqual(tfjs.shape);
  let worst = 0;
  let at = 0;
  tfjs.values.forEach((v, i) => {
    const error = Math.abs(torch.values[i]! - v) / Math.max(1, Math.abs(v));
    if (!(error <= worst)) [worst, at] = [Number.isNaN(error) ? Infinity : error, i];
  });
  expect(worst, `${what}: element ${at}, tfjs ${tfjs.values[at]}, torch ${torch.values[at]}`).toBeLessThanOrEqual(tolerance);
  return worst;
}

const seeds = [0, 1, 42, 2 ** 31 + 5, -3, 4294967295];
const bulkSeeds = [1, 2];
const deviceSeeds = [1, 42, 4294967295];
const stds = [1, 0.3, Math.sqrt(2 / 12), Math.sqrt(2 / (64 + 6))];

describe.runIf(!!python || required)("the torch model computes what the tfjs model computes", () => {
  let torch: { runtime: string; torch: string; cases: any[]; random: any; groups: string[] };
  let tfjs: ReturnType<typeof expected>[];
  const worst = new Map<string, { quantity: string; error: number }>();

  beforeAll(async () => {
    expect(python, `no python3 imports torch and numpy (${tried.join("; ")}); MMB_REQUIRE_TORCH=1 makes that a failure`).toBeDefined();
    await selectBackend("cpu");
    tfjs = cases.map(expected);
    const dir = mkdtempSync(join(tmpdir(), "mmb-torch-model-"));
    const file = (name: string, text: string) => {
      writeFileSync(join(dir, name), text);
      return join(dir, name);
    };
    const bulk = bulkSeeds.map((seed) => {
      const random = new Random(seed);
      return Array.from({ length: 100_000 }, () => random.normal());
    });
    const job = {
      cases: cases.map((c, i) => ({ ...c, groups: groupsOf(c.spec), initial: tfjs[i]!.initial, running: tfjs[i]!.running })),
      random: { seeds, bulk_seeds: bulkSeeds, bulk, stds, device_seeds: deviceSeeds },
    };
    const out = join(dir, "out.json");
    const run = spawnSync(python!.command, [file("harness.py", harness), file("runtime.py", torchRuntimeSource()), join(root, "runtime", "torch"), file("job.json", JSON.stringify(job)), out], {
      encoding: "utf8",
      timeout: 600_000,
    });
    expect(run.status, run.stderr).toBe(0);
    torch = JSON.parse(readFileSync(out, "utf8"));
    if (torch.runtime !== "the whole runtime") console.warn(`torch-model.test.ts exec'd ${torch.runtime}`);
  }, 600_000);

  afterAll(() => {
    if (worst.size) console.log(`worst torch–tfjs error per case (torch ${torch.torch}):\n${[...worst].map(([name, w]) => `  ${name}: ${w.error.toExponential(2)} (${w.quantity})`).join("\n")}`);
  });

  cases.forEach((c, i) => {
    it(c.name, () => {
      const ours = tfjs[i]!;
      const theirs = torch.cases[i];
      // The same parameters, in tfjs's order, and the same initial draw, bit for bit.
      expect(theirs.names.map(([name, shape]: [string, number[]]) => [name, shape])).toEqual(Object.entries(ours.shapes));
      expect(theirs.differing, "initial values that differ from tfjs's").toBe(0);
      let error = { quantity: "", error: 0 };
      const compare = (t: Host, j: Host, quantity: string) => {
        const e = worstError(t, j, quantity);
        if (e >= error.error) error = { quantity, error: e };
      };
      compare(theirs.out, ours.out, "out");
      compare(theirs.evaluated, ours.evaluated, "out in evaluation (running statistics)");
      compare(theirs.fused, ours.fused, "fused");
      for (const view of ["z", "alone", "without", "contrib", "aux"] as const) {
        expect(theirs[view] === null, `${view} computed on both sides`).toBe(ours[view] === undefined);
        ours[view]?.forEach((v, m) => compare(theirs[view][m], v, `${view}[${m}]`));
      }
      if (ours.keep) compare(theirs.keep, ours.keep, "out with keep");
      for (const name of Object.keys(ours.first)) compare(theirs.first[name], ours.first[name]!, `∂L/∂${name}`);
      for (const name of Object.keys(ours.second)) compare(theirs.second[name], ours.second[name]!, `∂‖∂L/∂${c.secondOrder}‖²/∂${name}`);
      // The comparisons mean something: gradients that are not all zero.
      expect(Object.values(ours.second).some((g) => g.values.some((v) => Math.abs(v) > 1e-6))).toBe(true);
      worst.set(c.name, error);
    });
  });

  it("every parameter's torch name is in the groups its tfjs name is in (parameter-groups.ts), for every group", () => {
    cases.forEach((c, i) => {
      // The parameters: the running statistics of batch norms belong to no group.
      const parameters = new Set(Object.keys(tfjs[i]!.first));
      const torchNames = new Map<string, string>(torch.cases[i].names.filter(([name]: [string]) => parameters.has(name)).map(([name, , key]: [string, number[], string]) => [name, key]));
      for (const [group, members] of Object.entries(tfjs[i]!.groups)) {
        const expected = members && members.map((n) => torchNames.get(n)!).sort();
        expect(torch.cases[i].groups[group], `${c.name}: members_of(${group})`).toEqual(expected);
        const names = [...torchNames.keys()].filter((n) => inGroup(n, group));
        expect(torch.cases[i].in_group[group], `${c.name}: in_group(${group})`).toEqual(names.map((n) => torchNames.get(n)!).sort());
      }
    });
    const groups = new Groups(["audio", "visual"]);
    expect(torch.groups).toEqual([groups.encoder(1), groups.encoderLast(0), groups.encoderLayers(1, "conv"), groups.aux(0), groups.learnable("w"), groups.learnable("w", 1), groups.weights(groups.head), groups.fusion]);
  });

  it("tfjs_weights reads what load_tfjs_weights sets; a wrong shape, a missing or an unknown parameter is an error that names it", () => {
    cases.forEach((c, i) => {
      const theirs = torch.cases[i];
      expect(theirs.round_trip, c.name).toBe(true);
      const [[first, shape], [last]] = [theirs.names[0], theirs.names.at(-1)];
      expect(theirs.errors.shape).toBe(`parameter ${first}: expected shape [${shape.join(", ")}], found [${shape.map((s: number) => s + 1).join(", ")}]`);
      expect(theirs.errors.missing).toMatch(new RegExp(`^no weights for parameter ${last.replace(/\./g, "\\.")} \\(expected shape \\[`));
      expect(theirs.errors.unknown).toBe("weights for encoder.nowhere.kernel, which the model does not have");
    });
  });

  it("Random and StepRandom draw what runtime/random.ts and step-random.ts draw", () => {
    seeds.forEach((seed, i) => {
      const r = new Random(seed);
      const uniforms = Array.from({ length: 20 }, () => r.uniform());
      const snapshot = r.snapshot;
      expect(torch.random.seeds[i], `seed ${seed}`).toEqual({
        uniforms,
        snapshot,
        permutation: r.permutation(10),
        normals: Array.from(r.normals(5, 0.3)),
        restored: Random.restore(snapshot).uniform(),
      });
    });
    // 100,000 normal draws per seed: as doubles (Math.log and Math.cos against Python's math) and as the float32 weights they become.
    for (const bulk of torch.random.bulk) {
      expect(bulk.float32).toEqual(Object.fromEntries(stds.map((s) => [String(s), 0])));
      if (bulk.doubles) console.log(`torch-model.test.ts: ${bulk.doubles} of 100,000 normal draws differ from JavaScript's in the last bit of the double`);
    }
    // The draw a GPU run makes on its device: the same float32 numbers.
    for (const seed of deviceSeeds) expect(torch.random.device[String(seed)], `seed ${seed} on the device path`).toEqual(Array.from(new Random(seed).normals(5003, 0.3)));
    // The host's draw across blocks: the same numbers, and the generator where JavaScript's is after them.
    for (const seed of deviceSeeds) {
      const r = new Random(seed);
      expect(torch.random.host[String(seed)], `seed ${seed} on the host path`).toEqual([...Array.from(r.normals(5003, 0.3)), ...Array.from(r.normals(3))]);
    }
    const step = new StepRandom(7, 3);
    const p = tf.tensor([
      [0.1, 0.5, 0.9],
      [0.3, 0.7, 0.2],
    ]);
    expect(torch.random.step).toEqual({
      uniform: step.uniform(1),
      uniform_key: step.uniform(2, 4.7),
      bernoulli: step.bernoulli(5, 0.3),
      bernoulli_tensor: read(step.bernoulli(6, p) as tf.Tensor),
      bernoulli_list: (step.bernoulli(8, [p, tf.transpose(p)]) as tf.Tensor[]).map(read),
      dropout: read(step.dropout(9, tf.reshape(tf.range(1, 13), [3, 4]), 0.5)),
    });
  });
});
