import * as tf from "@tensorflow/tfjs";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { exportWeights, ExportError } from "../cli/export.js";
import { loadTrainer } from "../cli/load-trainer.js";
import { findTorchPython, torchInstallHint } from "../cli/python.js";
import { compile } from "../compiler/index.js";
import { selectBackend } from "../runtime/backend.js";
import { loadCheckpoint } from "../runtime/checkpoint.js";
import { parseNpy, parseNpz } from "../runtime/data/files.js";
import { Forward, initialValues, type Params } from "../runtime/model.js";
import { train, type TrainerDefinition } from "../runtime/train.js";
import { compileOrThrow, logRecords, mmb, smallSpec } from "./helpers.js";

/**
 * `mmb export`: a run's weights move between the targets. A tfjs run's checkpoint exported to
 * .npz is its weights, bit for bit; `mmb train --init` starts from exactly the weights it is
 * given, and refuses another spec's by name and shape. With torch (skipped without a python3 that
 * imports it, unless MMB_REQUIRE_TORCH=1): a tfjs run exported to .pt loads into the torch
 * trainer's Model with `load_state_dict(torch.load(FILE))` and gives back the same arrays and the
 * same outputs (conv2d encoders: HWIO ↔ OIHW); a torch run exported to .npz starts a tfjs run
 * whose first step computes what the torch trainer computes from the same weights.
 */

const tmp = mkdtempSync(join(tmpdir(), "mmb-export-test-"));
const { python, tried } = findTorchPython();
const torchRequired = process.env.MMB_REQUIRE_TORCH === "1";

/** Two modalities of conv2d encoders (kernels HWIO in tfjs, OIHW in torch), synthetic data: both targets train it. */
const specText = `model exported
data synthetic(classes: 4, samples: 160, dominant: a, seed: 3)
modality a : float[1, 4, 4]
modality b : float[2, 4, 4]
target y : class(4)
encoder[m] = conv2d(channels: [6, 8], out: 5)
fusion concat -> linear(4)
loss cross_entropy(out, y)
optimizer sgd(lr: 0.1)
train epochs 2 batch 16 seed 2

balance {
}
`;
const specFile = join(tmp, "exported.mmb");
writeFileSync(specFile, specText);

type Arrays = Map<string, { shape: number[]; values: Float32Array }>;

/** A .npz of float32 arrays, read with mmb's own readers, in the archive's order. */
function readNpz(file: string): Arrays {
  return new Map([...parseNpz(readFileSync(file), file)].map(([name, read]) => {
    const bytes = read();
    expect(bytes.toString("latin1", 0, 60), name).toContain("'descr': '<f4'");
    const { shape, values } = parseNpy(bytes, name);
    return [name, { shape, values: Float32Array.from(values) }];
  }));
}

/** A checkpoint's weights by name, in its manifest's order. */
async function checkpointWeights(dir: string): Promise<Arrays> {
  const { state, weights } = (await loadCheckpoint(dir))!;
  return new Map(state.manifest.map(({ name, shape }, i) => [name, { shape, values: weights[i]! }]));
}

const bytes = (values: Float32Array) => Buffer.from(values.buffer, values.byteOffset, values.byteLength);

function expectSameArrays(actual: Arrays, expected: Arrays): void {
  expect([...actual.keys()]).toEqual([...expected.keys()]);
  for (const [name, { shape, values }] of expected) {
    expect(actual.get(name)!.shape, name).toEqual(shape);
    expect(bytes(actual.get(name)!.values).equals(bytes(values)), `${name}, bit for bit`).toBe(true);
  }
}

const quiet = { backend: "cpu", log: () => {} };
const folder = (name: string) => mkdtempSync(join(tmp, `${name}-`));
const firstLoss = (out: string) => logRecords(out).find((r) => r.type === "step")!.loss as number;

let trainer: TrainerDefinition;
/** A tfjs run of two epochs (so that `best/` may hold another epoch than `checkpoints/`). */
let tfjsRun: string;
let tfjsNpz: string;

beforeAll(async () => {
  trainer = await loadTrainer(await compileOrThrow(specText, specFile), folder("code"));
  tfjsRun = folder("tfjs-run");
  await train(trainer, { out: tfjsRun, ...quiet });
  tfjsNpz = join(tmp, "tfjs.npz");
});

describe("mmb export of a tfjs run, and mmb train --init", () => {
  it("writes the checkpoint's weights to a .npz, bit for bit, by tfjs names in tfjs layouts", async () => {
    const result = mmb("export", tfjsRun, "-o", tfjsNpz);
    expect(result.stderr).toMatch(/^mmb: wrote .*tfjs\.npz: 14 parameters of exported \(tfjs names and layouts\) from the tfjs run's epoch 2 /);
    expect(result.status).toBe(0);
    const exported = readNpz(tfjsNpz);
    expectSameArrays(exported, await checkpointWeights(join(tfjsRun, "checkpoints")));
    // Kernels in tfjs's layout: conv2d HWIO, dense [in, out].
    expect(exported.get("encoder.b.conv0.kernel")!.shape).toEqual([3, 3, 2, 6]);
    expect(exported.get("head.kernel")!.shape).toEqual([10, 4]);
  });

  it("--best exports the best validation epoch's checkpoint", async () => {
    const file = join(tmp, "best.npz");
    const done = await exportWeights(tfjsRun, file, { best: true });
    expect(done).toMatchObject({ run: "tfjs", format: "npz", parameters: 14, model: "exported" });
    expect(done.checkpoint.startsWith(join(tfjsRun, "best"))).toBe(true);
    expectSameArrays(readNpz(file), await checkpointWeights(join(tfjsRun, "best")));
  });

  it("--init starts a fresh run from exactly the given weights: from the file, from the arrays, or the seed's own draw", async () => {
    const fromFile = folder("init-file");
    const fromArrays = folder("init-arrays");
    await train(trainer, { out: fromFile, epochs: 1, init: tfjsNpz, ...quiet });
    await train(trainer, { out: fromArrays, epochs: 1, init: await checkpointWeights(join(tfjsRun, "checkpoints")), ...quiet });
    expectSameArrays(await checkpointWeights(join(fromFile, "checkpoints")), await checkpointWeights(join(fromArrays, "checkpoints")));
    // A trained start: the first step's loss is not the fresh run's.
    const plain = folder("plain");
    await train(trainer, { out: plain, epochs: 1, ...quiet });
    expect(firstLoss(fromFile)).not.toBeCloseTo(firstLoss(plain), 3);
    // The seed's own draw, given: the plain run, bit for bit.
    const drawn = folder("init-drawn");
    await train(trainer, { out: drawn, epochs: 1, init: initialValues(trainer.spec, 2), ...quiet });
    expectSameArrays(await checkpointWeights(join(drawn, "checkpoints")), await checkpointWeights(join(plain, "checkpoints")));
    const steps = (out: string) => logRecords(out).filter((r) => r.type === "step");
    expect(steps(drawn)).toEqual(steps(plain));
  });

  it("mmb train --init refuses another spec's weights, naming the parameter, what it expected and what it found", () => {
    const other = join(tmp, "small.mmb");
    writeFileSync(other, smallSpec());
    const mlp = mmb("train", other, "--init", tfjsNpz, "--backend", "cpu", "--out", folder("other"));
    expect(mlp.status).toBe(1);
    expect(mlp.stderr.trim()).toBe(
      `mmb: ${tfjsNpz}: encoder.a.conv0.kernel: expected only parameters of model small, found an array for a parameter the model does not have (and 7 more): the weights of another spec's run?`,
    );
    const wider = join(tmp, "wider.mmb");
    writeFileSync(wider, specText.replace("channels: [6, 8]", "channels: [6, 9]"));
    const shapes = mmb("train", wider, "--init", tfjsNpz, "--backend", "cpu", "--out", folder("wider"));
    expect(shapes.status).toBe(1);
    expect(shapes.stderr.trim()).toBe(`mmb: ${tfjsNpz}: parameter encoder.a.conv1.kernel: expected shape [3, 3, 6, 9], found [3, 3, 6, 8]`);
  });

  it("mmb train --init starts a run of the spec from the exported weights", () => {
    const out = folder("cli-init");
    const run = mmb("train", specFile, "--init", tfjsNpz, "--epochs", "1", "--backend", "cpu", "--out", out);
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toContain(`mmb: initial weights from ${tfjsNpz}`);
  });

  it("refuses wrong usage: no -o, another extension, no checkpoint, --init with --resume, a .pt to --init", async () => {
    const usage = (result: ReturnType<typeof mmb>, message: string) => {
      expect(result.stderr).toContain(`mmb: ${message}`);
      expect(result.status).toBe(2);
    };
    usage(mmb("export", tfjsRun), "mmb export needs -o FILE: a .pt (a PyTorch state_dict) or a .npz (weights by tfjs names and layouts)");
    usage(mmb("export", tfjsRun, "-o", "weights.h5"), '-o names a .pt (a PyTorch state_dict) or a .npz (weights by tfjs names and layouts), got "weights.h5"');
    usage(mmb("train", specFile, "--init", tfjsNpz, "--resume", "--out", folder("resume")), "--init sets a fresh run's weights, --resume continues from its checkpoint's: give one");
    usage(mmb("train", specFile, "--init", "weights.pt", "--out", folder("pt")), '--init takes a .npz of weights by tfjs names and layouts (`mmb export RUN -o FILE.npz` writes one), got "weights.pt"');

    const empty = folder("empty");
    const none = mmb("export", empty, "-o", join(tmp, "none.npz"));
    expect(none.status).toBe(1);
    expect(none.stderr.trim()).toBe(`mmb: ${empty} has no checkpoint (${join(empty, "checkpoints", "latest")} is missing): it is not a run folder, or its first epoch never ended`);
    await expect(exportWeights(join(tmp, "absent"), join(tmp, "x.npz"))).rejects.toThrow(`${join(tmp, "absent")}: no such run folder`);
    await expect(exportWeights(empty, join(tmp, "x.npz"), { best: true })).rejects.toThrow(/has no best-validation checkpoint/);
    // The API refuses a resumed run with --init, and a file that is not there.
    await expect(train(trainer, { out: folder("api-resume"), init: tfjsNpz, resume: true, ...quiet })).rejects.toThrow("--init sets a fresh run's weights");
    await expect(train(trainer, { out: folder("api-missing"), init: join(tmp, "missing.npz"), ...quiet })).rejects.toThrow(`${join(tmp, "missing.npz")}: file: expected a .npz of weights`);
  });

  it("says how to get torch when a .pt is asked for and no Python imports it", async () => {
    const saved = process.env.MMB_PYTHON;
    process.env.MMB_PYTHON = join(tmp, "no-such-python");
    try {
      const error = await exportWeights(tfjsRun, join(tmp, "no-torch.pt")).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ExportError);
      expect((error as Error).message).toBe(`writing a .pt needs PyTorch: no Python with torch and numpy (tried ${join(tmp, "no-such-python")}: not found); ${torchInstallHint}`);
    } finally {
      if (saved === undefined) delete process.env.MMB_PYTHON;
      else process.env.MMB_PYTHON = saved;
    }
  });
});

/**
 * Python run against a torch trainer file (`runpy`, so that its `__main__` block does not run):
 * `load-pt` builds its Model(SPEC, seed, TRAINER["fuse"]), loads a .pt with
 * `load_state_dict(torch.load(FILE))` and answers with tfjs_weights (base64 float32) and the
 * outputs on given inputs; `same-weights` compares a torch run's checkpoint with an exported
 * .npz (through tfjs_weights) and an exported .pt (as state_dicts), bit for bit.
 */
const pythonChecks = `
import base64, json, runpy, sys
import numpy as np
import torch

job = json.load(sys.stdin)
ns = runpy.run_path(job["trainer"], run_name="mmb_trainer")
TRAINER, Model, tfjs_weights = ns["TRAINER"], ns["Model"], ns["tfjs_weights"]
model = Model(TRAINER["spec"], 7, TRAINER["fuse"])
if job["command"] == "load-pt":
    model.load_state_dict(torch.load(job["pt"]))
    model.eval()
    inputs = [torch.tensor(x["values"], dtype=torch.float32).reshape(x["shape"]) for x in job["inputs"]]
    with torch.no_grad():
        out = model(inputs)
    weights = {k: {"shape": list(v.shape), "b64": base64.b64encode(np.ascontiguousarray(v, dtype="<f4").tobytes()).decode()} for k, v in tfjs_weights(model).items()}
    print(json.dumps({"weights": weights, "out": out.reshape(-1).tolist(), "keys": list(torch.load(job["pt"]).keys())}))
else:
    _, weights = ns["load_checkpoint"](job["checkpoints"], torch.device("cpu"))
    model.load_state_dict(weights)
    exported = np.load(job["npz"])
    ours = tfjs_weights(model)
    pt = torch.load(job["pt"])
    print(json.dumps({
        "npz": list(exported.keys()) == list(ours.keys()) and all(exported[k].dtype == np.float32 and np.array_equal(exported[k], ours[k]) for k in ours),
        "pt": list(pt.keys()) == list(weights.keys()) and all(torch.equal(pt[k], weights[k].cpu()) for k in weights),
    }))
`;

function pythonCheck<T>(job: Record<string, unknown>): T {
  const script = join(tmp, "checks.py");
  writeFileSync(script, pythonChecks);
  const result = spawnSync(python!.command, [script], { input: JSON.stringify(job), encoding: "utf8", maxBuffer: 64 * 2 ** 20 });
  if (result.status !== 0) throw new Error(`checks.py ${job.command} failed (${result.status}):\n${result.stderr}`);
  return JSON.parse(result.stdout) as T;
}

describe.runIf(python || torchRequired)("mmb export between tfjs and torch", () => {
  if (torchRequired) it("finds a python3 with torch", () => expect(python, tried.join("; ")).toBeDefined());

  it("a tfjs run's .pt loads into the torch trainer's Model: the same arrays through tfjs_weights, bit for bit, and the same outputs to 1e-5", async () => {
    const pt = join(tmp, "tfjs.pt");
    const result = mmb("export", tfjsRun, "-o", pt);
    expect(result.stderr).toMatch(/^mmb: wrote .*tfjs\.pt: 14 parameters of exported \(a PyTorch state_dict, torch names and layouts\) from the tfjs run's epoch 2 /);
    expect(result.status).toBe(0);
    const torchTrainer = join(folder("torch-code"), "trainer.py");
    const compiled = await compile(specText, { fileName: specFile, target: "torch" });
    writeFileSync(torchTrainer, compiled.code!);

    const batch = 8;
    const host = trainer.spec.modalities.map((m, k) => {
      const shape = [batch, ...m.shape];
      const size = shape.reduce((a, b) => a * b, 1);
      return { shape, values: Array.from(Float32Array.from({ length: size }, (_, i) => Math.sin(0.37 * i + k))) };
    });
    const ours = pythonCheck<{ weights: Record<string, { shape: number[]; b64: string }>; out: number[]; keys: string[] }>({ command: "load-pt", trainer: torchTrainer, pt, inputs: host });
    // torch names, kernels as weights: conv2d OIHW, dense [out, in].
    expect(ours.keys).toContain("encoder.a.conv0.weight");
    expect(ours.keys).toContain("head.weight");
    const checkpoint = await checkpointWeights(join(tfjsRun, "checkpoints"));
    expectSameArrays(new Map(Object.entries(ours.weights).map(([name, w]) => [name, { shape: w.shape, values: new Float32Array(Uint8Array.from(Buffer.from(w.b64, "base64")).buffer) }])), checkpoint);

    // The tfjs model's outputs on the same batch, from the checkpoint's weights.
    await selectBackend("cpu");
    const expected = tf.tidy(() => {
      const params = Object.fromEntries([...checkpoint].map(([name, { shape, values }]) => [name, tf.variable(tf.tensor(values, shape), false)])) as Params;
      const inputs = host.map((x) => tf.tensor(x.values, x.shape));
      const out = Array.from(new Forward(trainer.spec, params, inputs, tf.zeros([batch]), false).out.dataSync());
      Object.values(params).forEach((p) => p.dispose());
      return out;
    });
    expect(ours.out).toHaveLength(expected.length);
    const largest = Math.max(...ours.out.map((v, i) => Math.abs(v - expected[i]!)));
    expect(largest).toBeLessThan(1e-5);
  });

  it("a torch run's .npz starts a tfjs run (mmb train --init) at the loss the torch trainer computes from the same weights", () => {
    const torchRun = folder("torch-run");
    const trained = mmb("train", specFile, "--target", "torch", "--epochs", "1", "--out", torchRun);
    expect(trained.status, trained.stderr).toBe(0);
    const npz = join(tmp, "torch.npz");
    const pt = join(tmp, "torch.pt");
    expect(mmb("export", torchRun, "-o", npz).stderr).toMatch(/^mmb: wrote .*torch\.npz: 14 parameters of exported \(tfjs names and layouts\) from the torch run's epoch 1 /);
    expect(mmb("export", torchRun, "-o", pt).status).toBe(0);
    // Both files hold the checkpoint's weights, bit for bit (the .npz through tfjs_weights).
    expect(pythonCheck({ command: "same-weights", trainer: join(torchRun, "trainer.py"), checkpoints: join(torchRun, "checkpoints"), npz, pt })).toEqual({ npz: true, pt: true });

    // The torch trainer from those weights, and a tfjs run from them: the same data, the same shuffle, the same first step.
    const torchFrom = folder("torch-from");
    const again = spawnSync(python!.command, [join(torchRun, "trainer.py"), "--data", join(torchRun, "data.npz"), "--out", torchFrom, "--init", npz, "--epochs", "1", "--quiet"], { encoding: "utf8" });
    expect(again.stderr).toBe("");
    expect(again.status).toBe(0);
    const tfjsFrom = folder("tfjs-from");
    const run = mmb("train", specFile, "--init", npz, "--epochs", "1", "--backend", "cpu", "--out", tfjsFrom);
    expect(run.status, run.stderr).toBe(0);
    expect(Math.abs(firstLoss(tfjsFrom) - firstLoss(torchFrom))).toBeLessThan(1e-5);
    // Not the loss of the seed's draw: the exported weights are trained ones.
    expect(Math.abs(firstLoss(tfjsFrom) - firstLoss(torchRun))).toBeGreaterThan(1e-3);
  });

  it("refuses a torch checkpoint whose weights do not match their checksum", async () => {
    const run = folder("torch-broken");
    mkdirSync(join(run, "checkpoints", "checkpoint-0"), { recursive: true });
    writeFileSync(join(run, "checkpoints", "latest"), "checkpoint-0");
    writeFileSync(join(run, "checkpoints", "checkpoint-0", "weights.pt"), "not a state_dict");
    writeFileSync(join(run, "checkpoints", "checkpoint-0", "state.json"), JSON.stringify({ epoch: 0, origin: { spec: trainer.spec }, weights_sha256: "0" }));
    await expect(exportWeights(run, join(tmp, "broken.npz"))).rejects.toThrow(/weights\.pt does not match its checksum in state\.json: the checkpoint is damaged/);
  });
});
