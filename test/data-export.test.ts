import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { dataSpec, exportData, npy, splitNames, zipStored, type ExportMeta } from "../cli/data-export.js";
import { loadTrainer } from "../cli/load-trainer.js";
import { findTorchPython } from "../cli/python.js";
import { analyze } from "../compiler/index.js";
import { evaluationBatches } from "../runtime/batches.js";
import { parseNpy, parseNpz, readColumn } from "../runtime/data/files.js";
import { gatherRows, loadData, type Dataset } from "../runtime/index.js";
import type { ModelSpec } from "../runtime/spec.js";
import { compileOrThrow, mmb, root, specFiles } from "./helpers.js";

/**
 * `mmb data export`: the .npz holds exactly the samples `mmb train` reads (every split, bit for
 * bit), mmb's own .npz reader and numpy read it, and runtime/torch/data.py's `load_dataset`
 * checks it against the spec. The Python cases need a python3 with numpy (the batch cases torch);
 * they are skipped without one unless MMB_REQUIRE_TORCH=1.
 */
const tmp = mkdtempSync(join(tmpdir(), "mmb-data-export-"));
const dataPy = join(root, "runtime", "torch", "data.py");
const requirePython = process.env.MMB_REQUIRE_TORCH === "1";

/** The trainer's own spec object, as `mmb train` builds it (compiled, written and imported). */
async function trainerSpec(text: string, fileName: string): Promise<ModelSpec> {
  return (await loadTrainer(await compileOrThrow(text, fileName), mkdtempSync(join(tmp, "trainer-")))).spec;
}

const bytesOf = (values: Float32Array) => Buffer.from(values.buffer, values.byteOffset, values.byteLength);
const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

/** A numpy '<U…' array's strings. */
function unicodeStrings(bytes: Buffer): string[] {
  const headerLength = bytes.readUInt16LE(8);
  const header = bytes.toString("latin1", 10, 10 + headerLength);
  const width = Number(/'descr': '<U(\d+)'/.exec(header)![1]);
  const count = Number(/'shape': \((\d+),\)/.exec(header)![1]);
  const data = bytes.subarray(10 + headerLength);
  return Array.from({ length: count }, (_, i) => {
    const points = Array.from({ length: width }, (_, k) => data.readUInt32LE(4 * (i * width + k))).filter((c) => c !== 0);
    return String.fromCodePoint(...points);
  });
}

/** Every entry of an exported .npz, read with mmb's own .npz and .npy readers. */
function readExport(file: string): { entries: Map<string, () => Buffer>; meta: ExportMeta; arrays: Map<string, { shape: number[]; values: Float32Array }> } {
  const entries = parseNpz(readFileSync(file), file);
  const metaNpy = parseNpy(entries.get("meta")!(), "meta");
  const meta = JSON.parse(Buffer.from(Uint8Array.from(metaNpy.values)).toString("utf8")) as ExportMeta;
  const arrays = new Map<string, { shape: number[]; values: Float32Array }>();
  for (const key of entries.keys()) {
    if (key === "meta" || key === "classes") continue;
    const bytes = entries.get(key)!();
    expect(bytes.toString("latin1", 0, 60), key).toContain("'descr': '<f4'");
    const { shape, values } = parseNpy(bytes, key);
    arrays.set(key, { shape, values: Float32Array.from(values) });
  }
  return { entries, meta, arrays };
}

/** The export holds every split of `data` as the spec shapes it, bit for bit, and nothing else. */
function expectSameData(file: string, spec: Pick<ModelSpec, "modalities" | "target">, data: Dataset): ExportMeta {
  const { entries, meta, arrays } = readExport(file);
  const keys = splitNames.flatMap((s) => [...spec.modalities.map((m) => `${s}/${m.name}`), `${s}/${spec.target.name}`]);
  expect([...entries.keys()].sort()).toEqual(["meta", ...(data.classNames ?? spec.target.names ? ["classes"] : []), ...keys].sort());
  for (const split of splitNames) {
    spec.modalities.forEach((m, i) => {
      const array = arrays.get(`${split}/${m.name}`)!;
      expect(array.shape).toEqual([data[split].size, ...m.shape]);
      expect(bytesOf(array.values).equals(bytesOf(data[split].inputs[i]!)), `${split}/${m.name}`).toBe(true);
    });
    const labels = arrays.get(`${split}/${spec.target.name}`)!;
    expect(labels.shape).toEqual([data[split].size, ...(spec.target.shape ?? [])]);
    expect(bytesOf(labels.values).equals(bytesOf(data[split].labels)), `${split}/${spec.target.name}`).toBe(true);
  }
  expect(meta).toMatchObject({
    format: "mmb-data",
    version: 1,
    modalities: spec.modalities.map(({ name, shape }) => ({ name, shape })),
    target: { name: spec.target.name, kind: spec.target.kind, classes: spec.target.classes },
    splits: { train: data.train.size, valid: data.valid.size, test: data.test.size },
    description: data.description,
  });
  return meta;
}

/** A project of data files and a spec that reads them (class names as labels, actors as groups). */
function filesProject(): { dir: string; spec: string; text: string } {
  const n = 48;
  const dir = mkdtempSync(join(tmp, "files-"));
  mkdirSync(join(dir, "data"));
  const audio = Float64Array.from({ length: n * 6 }, (_, i) => Math.sin(i) * 3.3 + (Math.floor(i / 6) % 3));
  const visual = Float32Array.from({ length: n * 2 * 3 * 3 }, (_, i) => Math.cos(i * 0.37) / 3);
  const emotions = ["neutral", "anger", "joy"];
  writeFileSync(join(dir, "data", "audio.npy"), npy("<f8", [n, 6], new Uint8Array(audio.buffer)));
  writeFileSync(join(dir, "data", "feats.npz"), zipStored([{ name: "visual.npy", data: npy("<f4", [n, 2, 3, 3], new Uint8Array(visual.buffer)) }]));
  writeFileSync(join(dir, "data", "meta.csv"), `emotion,actor\n${Array.from({ length: n }, (_, i) => `${emotions[(i * 7) % 3]},actor${i % 6}`).join("\n")}\n`);
  const text = `model files_export
data files(group: "data/meta.csv:actor", folds: 3, fold: 0)
modality audio  : float[6]        from "data/audio.npy"
modality visual : float[2, 3, 3]  from "data/feats.npz:visual"
target   y      : class(["neutral", "anger", "joy"]) from "data/meta.csv:emotion"
encoder audio  = mlp(hidden: [8], out: 4)
encoder visual = mlp(hidden: [8], out: 4)
fusion concat -> linear(3)
loss cross_entropy(out, y)
optimizer sgd(lr: 0.1)
train epochs 1 batch 8 seed 1
`;
  const spec = join(dir, "spec.mmb");
  writeFileSync(spec, text);
  return { dir, spec, text };
}

describe("mmb data export", () => {
  it("builds the data part of the spec as the trainer's own spec object has it, for every spec", async () => {
    for (const file of specFiles()) {
      const name = join("specs", file);
      const text = readFileSync(join(root, name), "utf8");
      const trainer = await trainerSpec(text, name);
      const { name: model, source, data, modalities, target } = trainer;
      expect(dataSpec(analyze(text, { fileName: name }).ir!, name), file).toEqual({ name: model, source, data, modalities, target });
    }
  });

  it("(a) writes specs/baseline.mmb's synthetic data: every sample and label bit-identical to loadData's, read back by mmb's .npz reader and files() columns", async () => {
    const file = join(tmp, "baseline", "data.npz");
    const run = mmb("data", "export", "specs/baseline.mmb", "-o", file);
    expect(run.status, run.stderr).toBe(0);
    expect(run.stderr).toContain(`mmb: wrote ${file}: 840 train, 180 valid and 180 test samples of audio, visual, y`);
    const text = readFileSync(join(root, "specs", "baseline.mmb"), "utf8");
    const spec = await trainerSpec(text, "specs/baseline.mmb");
    const data = loadData(spec);
    const meta = expectSameData(file, spec, data);
    expect(meta).toMatchObject({ model: "baseline", source: "specs/baseline.mmb", sourceSha256: sha256(Buffer.from(text)), data: spec.data, target: { name: "y", kind: "class", classes: 6 } });
    expect(meta).not.toHaveProperty("folds");
    // The columns files(...) would read from it (`from "data.npz:train/visual"`), shapes checked.
    const visual = readColumn(join(tmp, "baseline"), "data.npz:train/visual");
    expect([visual.rows, visual.width, visual.shape]).toEqual([840, 768, [3, 16, 16]]);
    expect(bytesOf(Float32Array.from(visual.values as Float64Array)).equals(bytesOf(data.train.inputs[1]!))).toBe(true);
    // The same data, the same bytes: stored entries, a fixed time stamp; no temporary file left.
    const again = join(tmp, "baseline", "again.npz");
    expect(mmb("data", "export", "specs/baseline.mmb", "-o", again).status).toBe(0);
    expect(readFileSync(again).equals(readFileSync(file))).toBe(true);
    expect(existsSync(`${file}.tmp`)).toBe(false);
  });

  it("--data replaces the spec's data as in mmb train; regression and mask targets keep their shapes", async () => {
    const file = join(tmp, "override.npz");
    const run = mmb("data", "export", "specs/baseline.mmb", "--data", "synthetic(classes: 6, samples: 300, seed: 11)", "-o", file);
    expect(run.status, run.stderr).toBe(0);
    const spec = await trainerSpec(readFileSync(join(root, "specs", "baseline.mmb"), "utf8").replace(/^data .*$/m, "data synthetic(classes: 6, samples: 300, seed: 11)"), "specs/baseline.mmb");
    expect(expectSameData(file, spec, loadData(spec)).splits).toEqual({ train: 210, valid: 45, test: 45 });
    for (const name of ["baseline_regression.mmb", "baseline_segmentation.mmb", "baseline_3m.mmb"]) {
      const source = join("specs", name);
      const text = readFileSync(join(root, source), "utf8");
      const out = join(tmp, name.replace(".mmb", ".npz"));
      await exportData(analyze(text, { fileName: source }).ir!, source, out, { text });
      const trainer = await trainerSpec(text, source);
      expectSameData(out, trainer, loadData(trainer));
    }
  });

  it("(b) writes a files(...) spec's data for a fold: the fold's splits, the class names, the groups", async () => {
    const { dir, spec: specFile, text } = filesProject();
    const file = join(dir, "export", "fold1.npz");
    const run = mmb("data", "export", specFile, "--fold", "1", "--folds", "3", "-o", file);
    expect(run.status, run.stderr).toBe(0);
    const trainer = await trainerSpec(text, specFile);
    // `mmb train --fold 1 --folds 3`'s data.
    const data = loadData({ ...trainer, data: { ...trainer.data, options: { ...trainer.data.options, fold: 1, folds: 3 } } });
    expect(data.folds?.fold).toBe(1);
    const meta = expectSameData(file, trainer, data);
    expect(meta.folds).toEqual(data.folds);
    expect(meta.folds!.groups.test).toEqual(["actor1", "actor4"]);
    expect(unicodeStrings(parseNpz(readFileSync(file), file).get("classes")!())).toEqual(["neutral", "anger", "joy"]);
    // Without --fold: the spec's own fold, other splits.
    const own = join(dir, "export", "own.npz");
    expect(mmb("data", "export", specFile, "-o", own).status).toBe(0);
    expectSameData(own, trainer, loadData(trainer));
    // --data-root: the files read from another folder, as in mmb train.
    const moved = mkdtempSync(join(tmp, "spec-only-"));
    writeFileSync(join(moved, "spec.mmb"), text);
    const rooted = join(dir, "export", "rooted.npz");
    expect(mmb("data", "export", join(moved, "spec.mmb"), "--data-root", dir, "-o", rooted).status).toBe(0);
    expect(readExport(rooted).meta).toMatchObject({ dataRoot: dir, splits: readExport(own).meta.splits });
  });

  it("(d) usage errors: a missing -o, an unreadable spec, no subcommand; a spec that does not check prints mmb check's diagnostics; bad data its DataError", () => {
    const missing = mmb("data", "export", "specs/baseline.mmb");
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain("mmb: mmb data export needs -o FILE, the .npz to write");
    expect(missing.stderr).toContain("usage: mmb data export <spec.mmb> [options]");
    const unknown = mmb("data", "export", "specs/no_such_spec.mmb", "-o", join(tmp, "x.npz"));
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain("mmb: cannot read specs/no_such_spec.mmb");
    expect(existsSync(join(tmp, "x.npz"))).toBe(false);
    expect(mmb("data", "specs/baseline.mmb", "-o", join(tmp, "x.npz")).stderr).toContain('mmb data has one subcommand, export, got "specs/baseline.mmb"');
    expect(mmb("data", "export", "specs/baseline.mmb", "-o", join(tmp, "x.npy")).stderr).toContain('-o names the .npz to write, got "');
    expect(mmb("data", "export", "specs/baseline.mmb", "--fold", "1", "-o", join(tmp, "x.npz")).stderr).toContain("--fold and --folds come together");
    // A spec with errors: exit 1, and its diagnostics exactly as `mmb check` prints them.
    const bad = join(tmp, "bad.mmb");
    writeFileSync(bad, readFileSync(join(root, "specs", "baseline.mmb"), "utf8").replace("fusion concat -> linear(6)", "fusion concat -> linear(5)\nencoder text = mlp(out: 4)"));
    const check = mmb("check", bad);
    expect(check.status).toBe(1);
    const failed = mmb("data", "export", bad, "-o", join(tmp, "x.npz"));
    expect(failed.status).toBe(1);
    expect(failed.stderr).toBe(check.stderr);
    expect(existsSync(join(tmp, "x.npz"))).toBe(false);
    // Data that does not load: the DataError's message; no fold of data without groups.
    const { dir, spec } = filesProject();
    writeFileSync(join(dir, "data", "audio.npy"), Buffer.from("not numpy"));
    const unreadable = mmb("data", "export", spec, "-o", join(tmp, "x.npz"));
    expect(unreadable.status).toBe(1);
    expect(unreadable.stderr.trim()).toBe("mmb: data/audio.npy: header: expected a .npy file (magic \\x93NUMPY), found other bytes");
    const fold = mmb("data", "export", "specs/baseline.mmb", "--fold", "0", "--folds", "2", "-o", join(tmp, "x.npz"));
    expect(fold.status).toBe(1);
    expect(fold.stderr).toContain('specs/baseline.mmb: data: expected `files(group: "file:field", ...)`');
    expect(existsSync(join(tmp, "x.npz"))).toBe(false);
  });
});

/** The interpreters that import numpy (python3 on the PATH, Debian's), each once, and whether each has torch. */
function numpyPythons(): { command: string; torch: boolean }[] {
  const found: { command: string; torch: boolean; version: string }[] = [];
  for (const command of [...new Set([process.env.MMB_PYTHON, "python3", "/usr/bin/python3"].filter((c): c is string => !!c))]) {
    const probe = spawnSync(command, ["-c", "import sys, numpy\ntry:\n    import torch\n    t = 1\nexcept ImportError:\n    t = 0\nprint(t, sys.executable, numpy.__version__)"], { encoding: "utf8" });
    if (probe.status !== 0) continue;
    const [torch, executable, numpy] = probe.stdout.trim().split(" ");
    if (!found.some((f) => f.version === `${executable} ${numpy}`)) found.push({ command, torch: torch === "1", version: `${executable} ${numpy}` });
  }
  return found;
}

const pythons = numpyPythons();
const torchPython = findTorchPython().python;

/**
 * Runs `cases` (load_dataset of a file against a spec, and batches) in `python`, data.py exec'd as
 * the trainer holds it. Without torch, a stand-in module lets load_dataset (numpy only) run.
 */
function runPython(command: string, job: unknown): Record<string, any> {
  const script = `
import hashlib, json, sys, types
try:
    import torch
except ImportError:
    sys.modules["torch"] = types.ModuleType("torch")
ns = {}
exec(compile(open(${JSON.stringify(dataPy)}).read(), "data.py", "exec"), ns)
job = json.load(sys.stdin)
digest = lambda a: hashlib.sha256(a.tobytes()).hexdigest()
out = {}
for case in job["cases"]:
    try:
        d = ns["load_dataset"](case["path"], case["spec"])
        result = {"classes": d.classes, "description": d.description, "meta": d.meta, "splits": {}}
        for name in ("train", "valid", "test"):
            s = getattr(d, name)
            result["splits"][name] = {"size": s.size, "inputs": [[list(a.shape), a.dtype.str, digest(a)] for a in s.inputs], "labels": [list(s.labels.shape), s.labels.dtype.str, digest(s.labels)], "sum": float(sum(float(a.astype("float64").sum()) for a in s.inputs))}
        if case.get("rows") is not None:
            import torch
            split = d.train
            inputs, target = ns["batch_tensors"](split, case["rows"], "cpu")
            as_tensor, _ = ns["batch_tensors"](split, torch.tensor(case["rows"]), "cpu")
            result["batch"] = {"inputs": [[list(t.shape), str(t.dtype), digest(t.numpy())] for t in inputs], "target": [list(target.shape), str(target.dtype), digest(target.numpy())], "same_from_tensor": all(torch.equal(a, b) for a, b in zip(inputs, as_tensor))}
            result["evaluation"] = [[b[0], len(b)] for b in ns["evaluation_batches"](d.valid)]
            try:
                ns["batch_tensors"](split, [0, split.size], "cpu")
                result["out_of_range"] = None
            except IndexError as e:
                result["out_of_range"] = str(e)
        out[case["name"]] = result
    except ns["DataError"] as e:
        out[case["name"]] = {"error": {"file": e.file, "field": e.field, "expected": e.expected, "found": e.found, "message": str(e)}}
print(json.dumps(out))
`;
  const result = spawnSync(command, ["-c", script], { input: JSON.stringify(job), encoding: "utf8", maxBuffer: 64 * 2 ** 20 });
  if (result.status !== 0) throw new Error(`${command} failed: ${result.stderr}`);
  return JSON.parse(result.stdout);
}

describe.runIf(pythons.length > 0 || requirePython)("(c) runtime/torch/data.py reads the export", () => {
  it("a python3 with numpy is here (MMB_REQUIRE_TORCH=1 requires one)", () => {
    expect(pythons.length, "no python3 imports numpy").toBeGreaterThan(0);
  });

  it("data.py starts with its imports only, and imports nothing but the standard library, numpy and torch", () => {
    const lines = readFileSync(dataPy, "utf8").split("\n");
    const start = lines.findIndex((l) => l.trim() !== "" && !/^(import |from \S+ import )/.test(l));
    const imports = lines.slice(0, start).filter((l) => l.trim());
    expect(imports).toEqual(["import hashlib", "import json", "import numpy as np", "import torch"]);
    expect(lines.slice(start).filter((l) => /^\s*(import |from \S+ import )/.test(l))).toEqual([]);
  });

  it("load_dataset: every split's arrays, in spec order, bit-identical to the TypeScript side; class names; each bad file a DataError naming file, entry, expected and found", async () => {
    const text = readFileSync(join(root, "specs", "baseline.mmb"), "utf8");
    const spec = await trainerSpec(text, "specs/baseline.mmb");
    const data = loadData(spec);
    const file = join(tmp, "python", "baseline.npz");
    await exportData(analyze(text, { fileName: "specs/baseline.mmb" }).ir!, "specs/baseline.mmb", file, { text });
    const files = filesProject();
    const filesSpec = await trainerSpec(files.text, files.spec);
    const filesData = loadData(filesSpec);
    const filesNpz = join(files.dir, "data.npz");
    expect(mmb("data", "export", files.spec, "-o", filesNpz).status).toBe(0);
    const segmentation = readFileSync(join(root, "specs", "baseline_segmentation.mmb"), "utf8");
    const maskSpec = await trainerSpec(segmentation, "specs/baseline_segmentation.mmb");
    const maskNpz = join(tmp, "python", "segmentation.npz");
    await exportData(analyze(segmentation, { fileName: "specs/baseline_segmentation.mmb" }).ir!, "specs/baseline_segmentation.mmb", maskNpz, { text: segmentation });
    const specJson = (s: ModelSpec) => JSON.parse(JSON.stringify({ modalities: s.modalities, target: s.target }));

    // Damaged copies: an entry left out, a wrong shape, a wrong dtype, a value out of range, other class names, a cut file.
    const entries = parseNpz(readFileSync(file), file);
    const damaged = (name: string, change: (key: string, bytes: Buffer) => Buffer | undefined) => {
      const path = join(tmp, "python", `${name}.npz`);
      const kept = [...entries.keys()].flatMap((key) => {
        const bytes = change(key, entries.get(key)!());
        return bytes ? [{ name: `${key}.npy`, data: bytes }] : [];
      });
      writeFileSync(path, zipStored(kept));
      return path;
    };
    const f32 = (n: number, value = 0.5) => new Uint8Array(new Float32Array(n).fill(value).buffer);
    const cases = [
      { name: "baseline", path: file, spec: specJson(spec) },
      { name: "files", path: filesNpz, spec: specJson(filesSpec) },
      { name: "mask", path: maskNpz, spec: specJson(maskSpec) },
      { name: "missing entry", path: damaged("missing", (key, b) => (key === "valid/visual" ? undefined : b)), spec: specJson(spec) },
      { name: "missing meta", path: damaged("nometa", (key, b) => (key === "meta" ? undefined : b)), spec: specJson(spec) },
      { name: "wrong shape", path: damaged("shape", (key, b) => (key === "train/audio" ? npy("<f4", [840, 63], f32(840 * 63)) : b)), spec: specJson(spec) },
      { name: "fewer samples", path: damaged("fewer", (key, b) => (key === "valid/visual" ? npy("<f4", [179, 3, 16, 16], f32(179 * 3 * 16 * 16)) : b)), spec: specJson(spec) },
      { name: "channels last", path: damaged("channels", (key, b) => (key === "valid/visual" ? npy("<f4", [180, 16, 16, 3], f32(180 * 3 * 16 * 16)) : b)), spec: specJson(spec) },
      { name: "wrong dtype", path: damaged("dtype", (key, b) => (key === "test/audio" ? npy("<f8", [180, 64], new Uint8Array(new Float64Array(180 * 64).buffer)) : b)), spec: specJson(spec) },
      { name: "label out of range", path: damaged("labels", (key, b) => (key === "test/y" ? npy("<f4", [180], f32(180, 6)) : b)), spec: specJson(spec) },
      { name: "not finite", path: damaged("nan", (key, b) => (key === "valid/audio" ? npy("<f4", [180, 64], f32(180 * 64, NaN)) : b)), spec: specJson(spec) },
      { name: "modality the spec lacks", path: file, spec: { ...specJson(spec), modalities: specJson(spec).modalities.slice(0, 1) } },
      { name: "spec modality missing", path: file, spec: { ...specJson(spec), modalities: [...specJson(spec).modalities, { name: "text", shape: [32] }] } },
      { name: "other shape in spec", path: file, spec: { ...specJson(spec), modalities: [{ name: "audio", shape: [8, 8] }, specJson(spec).modalities[1]] } },
      { name: "other target", path: file, spec: { ...specJson(spec), target: { ...specJson(spec).target, name: "label" } } },
      { name: "other classes", path: filesNpz, spec: { ...specJson(filesSpec), target: { ...specJson(filesSpec).target, names: ["anger", "joy", "neutral"] } } },
      { name: "cut file", path: (() => { const p = join(tmp, "python", "cut.npz"); writeFileSync(p, readFileSync(file).subarray(0, 5000)); return p; })(), spec: specJson(spec) },
      { name: "no file", path: join(tmp, "python", "absent.npz"), spec: specJson(spec) },
    ];
    const ts = (d: Dataset, s: ModelSpec) =>
      Object.fromEntries(
        splitNames.map((name) => [
          name,
          {
            size: d[name].size,
            inputs: s.modalities.map((m, i) => [[d[name].size, ...m.shape], "<f4", sha256(bytesOf(d[name].inputs[i]!))]),
            labels: [[d[name].size, ...(s.target.shape ?? [])], "<f4", sha256(bytesOf(d[name].labels))],
          },
        ]),
      );
    for (const python of pythons) {
      const out = runPython(python.command, { cases });
      expect(out.baseline.splits, python.command).toMatchObject(ts(data, spec));
      // The values' sum, as a second check against the TypeScript side.
      const sum = data.train.inputs.reduce((a, v) => a + v.reduce((b, x) => b + x, 0), 0);
      expect(out.baseline.splits.train.sum).toBeCloseTo(sum, 2);
      expect(out.baseline).toMatchObject({ classes: null, description: "synthetic(seed 7)", meta: { model: "baseline", splits: { train: 840, valid: 180, test: 180 } } });
      expect(out.files.splits).toMatchObject(ts(filesData, filesSpec));
      expect(out.files.classes).toEqual(["neutral", "anger", "joy"]);
      expect(out.mask.splits.train.labels[0]).toEqual([out.mask.meta.splits.train, 8, 8]);
      const error = (name: string) => out[name].error;
      expect(error("missing entry"), python.command).toEqual({
        file: join(tmp, "python", "missing.npz"),
        field: "valid/visual",
        expected: "180 samples of the spec's modality visual, float[3, 16, 16]: float32 of shape [180, 3, 16, 16]",
        found: "no such entry; the file has: meta, test/audio, test/visual, test/y, train/audio, train/visual, train/y, valid/audio, valid/y",
        message: expect.stringMatching(/^\/.*missing\.npz: valid\/visual: expected 180 samples .* found no such entry; /),
      });
      expect(error("missing meta")).toMatchObject({ field: "meta", found: expect.stringMatching(/^no such entry; the file has: test\/audio, /) });
      expect(error("wrong shape")).toMatchObject({ field: "train/audio", expected: "840 samples of the spec's modality audio, float[64]: shape [840, 64]", found: "[840, 63]" });
      // Axes in another order are named as the TypeScript loader names them (runtime/data/files.ts).
      expect(error("channels last")).toMatchObject({ field: "valid/visual", found: "[180, 16, 16, 3]; the same axes in another order (channels last?): store the samples as [N, 3, 16, 16] (e.g. numpy.transpose)" });
      expect(error("fewer samples")).toMatchObject({ field: "valid/visual", found: "[179, 3, 16, 16]" });
      expect(error("wrong dtype")).toMatchObject({ field: "test/audio", expected: "180 samples of the spec's modality audio, float[64]: float32 ('<f4')", found: "<f8" });
      expect(error("label out of range")).toMatchObject({ field: "test/y", expected: "a class in 0..5", found: "6 in sample 0" });
      expect(error("not finite")).toMatchObject({ field: "valid/audio", expected: "finite numbers", found: "NaN in sample 0" });
      expect(error("modality the spec lacks")).toMatchObject({ file, field: "train/visual", expected: "the spec's modalities only (audio)", found: "a modality visual that the spec does not declare" });
      expect(error("spec modality missing")).toMatchObject({ field: "train/text", found: expect.stringMatching(/^no such entry; the file has: /) });
      expect(error("other shape in spec")).toMatchObject({ field: "train/audio", expected: "840 samples of the spec's modality audio, float[8, 8]: shape [840, 8, 8]", found: "[840, 64]" });
      expect(error("other target")).toMatchObject({ field: "train/label", expected: "the labels of the spec's target label", found: "no such entry; the file's target is y" });
      expect(error("other classes")).toMatchObject({ field: "classes", expected: "the spec's classes in its order: anger, joy, neutral", found: "neutral, anger, joy" });
      expect(error("cut file")).toMatchObject({ field: "archive", expected: "a well-formed .npz (zip) file, as `mmb data export` writes", found: expect.stringMatching(/^BadZipFile/) });
      expect(error("no file")).toMatchObject({ field: "file", found: "no such file" });
    }
  });

  describe.runIf(!!torchPython || requirePython)("with torch", () => {
    it("batch_tensors gathers rows in the order given, as runtime/batches.ts; evaluation_batches are its 256-row batches", async () => {
      expect(torchPython, `no python3 imports torch and numpy: ${findTorchPython().tried.join("; ")}`).toBeDefined();
      const text = readFileSync(join(root, "specs", "baseline.mmb"), "utf8");
      const spec = await trainerSpec(text, "specs/baseline.mmb");
      const data = loadData(spec);
      const file = join(tmp, "torch.npz");
      await exportData(analyze(text, { fileName: "specs/baseline.mmb" }).ir!, "specs/baseline.mmb", file, { text });
      const rows = [839, 0, 17, 17, 400];
      const out = runPython(torchPython!.command, { cases: [{ name: "baseline", path: file, spec: JSON.parse(JSON.stringify({ modalities: spec.modalities, target: spec.target })), rows }] });
      expect(out.baseline.batch).toEqual({
        inputs: spec.modalities.map((m, i) => [[rows.length, ...m.shape], "torch.float32", sha256(bytesOf(gatherRows(data.train.inputs[i]!, m.shape.reduce((a, b) => a * b, 1), rows)))]),
        target: [[rows.length], "torch.float32", sha256(bytesOf(gatherRows(data.train.labels, 1, rows)))],
        same_from_tensor: true,
      });
      expect(out.baseline.evaluation).toEqual([...evaluationBatches(data.valid)].map((b) => [b[0], b.length]));
      expect(out.baseline.out_of_range).toBe("row 840 of a split of 840 samples");
    });
  });
});
