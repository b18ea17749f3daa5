import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deflateRawSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { loadTrainer } from "../cli/load-trainer.js";
import { DataError, loadData, train } from "../runtime/index.js";
import { runCharts } from "../cli/report.js";
import { compile } from "../compiler/index.js";
import { compileOrThrow } from "./helpers.js";

/** A .npy file as numpy writes it (format 1.0, header padded to 64 bytes). */
function npy(values: ArrayLike<number>, shape: number[], descr = "<f4"): Buffer {
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(", ")}${shape.length === 1 ? "," : ""}), }`;
  header += " ".repeat(64 - ((10 + header.length + 1) % 64)) + "\n";
  const prefix = Buffer.concat([Buffer.from("\x93NUMPY", "latin1"), Buffer.from([1, 0]), Buffer.alloc(2)]);
  prefix.writeUInt16LE(header.length, 8);
  const data =
    descr === "<f4" ? Buffer.from(Float32Array.from(values).buffer)
    : descr === "<i8" ? Buffer.from(BigInt64Array.from(Array.from(values, (v) => BigInt(v))).buffer)
    : Buffer.from(Float64Array.from(values).buffer);
  return Buffer.concat([prefix, Buffer.from(header, "latin1"), data]);
}

/** A zip archive (what numpy.savez writes): local headers, central directory, end record. */
function npz(arrays: Record<string, Buffer>, deflate: boolean): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const [key, data] of Object.entries(arrays)) {
    const name = Buffer.from(`${key}.npy`);
    const body = deflate ? deflateRawSync(data) : data;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(deflate ? 8 : 0, 8);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(name.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(deflate ? 8 : 0, 10);
    central.writeUInt32LE(body.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, name, body);
    centrals.push(central, name);
    offset += 30 + name.length + body.length;
  }
  const directory = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(Object.keys(arrays).length, 8);
  end.writeUInt16LE(Object.keys(arrays).length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, directory, end]);
}

const n = 40;
const audio = Array.from({ length: n * 6 }, (_, i) => Math.sin(i) + (Math.floor(i / 6) % 4));
const visual = Array.from({ length: n * 2 * 3 * 3 }, (_, i) => Math.cos(i * 0.3));
const labels = Array.from({ length: n }, (_, i) => i % 4);
const actors = Array.from({ length: n }, (_, i) => `actor${i % 8}`);

function project(files: Record<string, string | Buffer>, data: string, sources = { audio: "data/audio.npy", visual: "data/feats.npz:visual", y: "data/meta.csv:label" }) {
  const dir = mkdtempSync(join(tmpdir(), "mmb-files-"));
  mkdirSync(join(dir, "data"));
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
  const spec = `model files_test
data ${data}
modality audio  : float[6]        from "${sources.audio}"
modality visual : float[2, 3, 3]  from "${sources.visual}"
target   y      : class(4)        from "${sources.y}"
encoder audio  = mlp(hidden: [8], out: 4)
encoder visual = mlp(hidden: [8], out: 4)
fusion concat -> linear(4)
loss cross_entropy(out, y)
optimizer sgd(lr: 0.1)
train epochs 1 batch 8 seed 1
`;
  writeFileSync(join(dir, "spec.mmb"), spec);
  return { dir, spec };
}

const goodFiles = () => ({
  "data/audio.npy": npy(audio, [n, 6]),
  "data/feats.npz": npz({ visual: npy(visual, [n, 2, 3, 3], "<f8"), other: npy([1, 2], [2]) }, true),
  "data/meta.csv": `label,actor,split\n${labels.map((l, i) => `${l},"${actors[i]}",${i % 10 < 6 ? "train" : i % 10 < 8 ? "valid" : "test"}`).join("\n")}\n`,
  "data/text.jsonl": labels.map((l, i) => JSON.stringify({ id: i, label: l, vec: [[i, 1, 2], [3, 4, 5]] })).join("\n"),
});

async function specOf(dir: string, spec: string) {
  return (await loadTrainer(await compileOrThrow(spec, join(dir, "spec.mmb")), join(dir, "run"))).spec;
}

function dataError(f: () => unknown): DataError {
  try {
    f();
  } catch (e) {
    if (e instanceof DataError) return e;
    throw e;
  }
  throw new Error("expected a DataError");
}

describe("data from files (.npy, .npz, .csv, .jsonl)", () => {
  it("reads each modality and the target from its file, values intact, and trains on them", async () => {
    const { dir, spec } = project(goodFiles(), "files(valid: 0.2, test: 0.2, seed: 3)");
    const model = await specOf(dir, spec);
    const data = loadData(model);
    expect(data.train.size + data.valid.size + data.test.size).toBe(n);
    expect([data.valid.size, data.test.size]).toEqual([8, 8]);
    // Every sample's audio row still sits next to its own label: row i has floor(value) offset i % 4.
    for (const split of [data.train, data.valid, data.test]) {
      split.labels.forEach((label, k) => {
        const first = split.inputs[0]![k * 6]!;
        const row = audio.findIndex((v, i) => i % 6 === 0 && Math.abs(v - first) < 1e-6);
        expect(labels[row / 6]).toBe(label);
      });
    }
    const summary = await train(await loadTrainer(await compileOrThrow(spec, join(dir, "spec.mmb")), join(dir, "run")), { out: join(dir, "run"), backend: "cpu", log: () => {} });
    expect(summary.epochs).toBe(1);
  });

  it("a split column assigns every sample; k-fold by group keeps each group in one split", async () => {
    const { dir, spec } = project(goodFiles(), 'files(split: "data/meta.csv:split")');
    const data = loadData(await specOf(dir, spec));
    expect([data.train.size, data.valid.size, data.test.size]).toEqual([24, 8, 8]);
    const folds = project(goodFiles(), 'files(group: "data/meta.csv:actor", folds: 4, fold: 1)');
    const foldData = loadData(await specOf(folds.dir, folds.spec));
    // 8 actors dealt into 4 folds: fold 1 = actors 1 and 5 (test), fold 2 = actors 2 and 6 (valid).
    expect([foldData.train.size, foldData.valid.size, foldData.test.size]).toEqual([20, 10, 10]);
  });

  it("a .jsonl field with nested arrays is flattened per line", async () => {
    const { dir, spec } = project(goodFiles(), "files()", { audio: "data/text.jsonl:vec", visual: "data/feats.npz:visual", y: "data/text.jsonl:label" });
    const data = loadData(await specOf(dir, spec));
    const rows = [data.train, data.valid, data.test].flatMap((s) => Array.from({ length: s.size }, (_, k) => Array.from(s.inputs[0]!.subarray(k * 6, k * 6 + 6))));
    expect(rows.map((r) => r.slice(1))).toContainEqual([1, 2, 3, 4, 5]);
    expect(new Set(rows.map((r) => r[0])).size).toBe(n);
  });

  it("every class of bad data is a DataError naming the file, the field, what was expected and what was found", async () => {
    const renamed = (audioFile: string, visualFile = "data/feats.npz:visual") => ({ audio: audioFile, visual: visualFile, y: "data/meta.csv:label" });
    const cases: [string, Record<string, string | Buffer>, string, Partial<DataError>, ReturnType<typeof renamed>?][] = [
      // Where it looked: the spec's folder, or --data-root.
      ["missing file", goodFiles(), "files()", { file: "data/nope.npy", field: "file", found: expect.stringMatching(/^no such file: .*\/data\/nope\.npy$/) }, renamed("data/nope.npy")],
      ["wrong shape", { ...goodFiles(), "data/audio.npy": npy(audio.slice(0, n * 5), [n, 5]) }, "files()", { file: "data/audio.npy", field: "audio", expected: "6 values per sample (float[6])", found: "5" }],
      ["sample counts differ", { ...goodFiles(), "data/audio.npy": npy(audio.slice(0, 30 * 6), [30, 6]) }, "files()", { file: "data/audio.npy", field: "samples", expected: `${n}, as many as data/meta.csv:label`, found: "30" }],
      ["NaN", { ...goodFiles(), "data/audio.npy": npy(audio.map((v, i) => (i === 13 ? NaN : v)), [n, 6]) }, "files(valid: 0, test: 0)", { file: "data/audio.npy", field: "audio (train)", expected: "finite numbers" }],
      ["label out of range", { ...goodFiles(), "data/meta.csv": `label\n${labels.map((l, i) => (i === 5 ? 7 : l)).join("\n")}\n` }, "files(valid: 0, test: 0)", { file: "data/meta.csv:label", expected: "a class in 0..3", found: expect.stringMatching(/^7 in sample \d+$/) }],
      ["empty split", { ...goodFiles(), "data/meta.csv": `label,split\n${labels.map((l, i) => `${l},${i % 2 ? "train" : "valid"}`).join("\n")}\n` }, 'files(split: "data/meta.csv:split")', { field: "test split", expected: "at least one sample", found: "none" }],
      ["wrong dtype", { ...goodFiles(), "data/audio.npy": Buffer.concat([npy(audio, [n, 6]).subarray(0, 10), Buffer.from(npy(audio, [n, 6]).subarray(10).toString("latin1").replace("<f4", "<c8"), "latin1")]) }, "files()", { file: "data/audio.npy", field: "dtype", found: "<c8" }],
      ["not a number in a CSV", { ...goodFiles(), "data/meta.csv": `label\n${labels.map((l, i) => (i === 2 ? "cat" : l)).join("\n")}\n` }, "files()", { file: "data/meta.csv:label", field: "y", expected: "a class index in 0..3, as the other rows (or every class by name)", found: '"cat" in row 4' }],
      ["unknown split name", goodFiles(), 'files(split: "data/meta.csv:label")', { file: "data/meta.csv:label", field: "split", expected: "train, valid or test", found: '"0" in sample 0' }],
      ["no such npz array", goodFiles(), "files()", { file: "data/feats.npz", field: "vision", expected: "one of the archive's arrays: visual, other" }, renamed("data/audio.npy", "data/feats.npz:vision")],
    ];
    for (const [name, files, data, expected, sources] of cases) {
      const { dir, spec } = project(files, data, sources);
      const model = await specOf(dir, spec);
      const error = dataError(() => loadData(model));
      expect(error.message, name).toMatch(/^.+: .+: expected .+, found .+$/s);
      expect(error, name).toMatchObject(expected);
    }
  });

  it("class names: string labels map through the declared names, or through the names found in the file, sorted; the summary and the report keep them", async () => {
    const words = ["neutral", "anger", "sad", "happy"];
    const named = { ...goodFiles(), "data/meta.csv": `emotion\n${labels.map((l) => words[l]).join("\n")}\n`, "data/text.jsonl": labels.map((l) => JSON.stringify({ emotion: words[l] })).join("\n") };
    // Found in the file: sorted, so anger 0, happy 1, neutral 2, sad 3.
    // Each sample's label, by the original row its audio came from (the splits shuffle the samples).
    const byRow = (split: { size: number; inputs: Float32Array[]; labels: Float32Array }) =>
      Array.from({ length: split.size }, (_, k) => [audio.findIndex((v, i) => i % 6 === 0 && Math.abs(v - split.inputs[0]![k * 6]!) < 1e-6) / 6, split.labels[k]!]);
    const found = project(named, "files(valid: 0.2, test: 0.2, seed: 3)", { audio: "data/audio.npy", visual: "data/feats.npz:visual", y: "data/meta.csv:emotion" });
    const data = loadData(await specOf(found.dir, found.spec));
    expect(data.classNames).toEqual(["anger", "happy", "neutral", "sad"]);
    const sorted = [...words].sort();
    for (const [row, label] of byRow(data.train)) expect(label).toBe(sorted.indexOf(words[labels[row!]!]!));
    // Declared: their order gives the indices, from a .jsonl as from a .csv.
    const declared = project(named, "files(valid: 0.2, test: 0.2, seed: 3)", { audio: "data/audio.npy", visual: "data/feats.npz:visual", y: "data/text.jsonl:emotion" });
    const spec = declared.spec.replace("class(4)", 'class(["neutral", "anger", "sad", "happy"])');
    writeFileSync(join(declared.dir, "spec.mmb"), spec);
    const mapped = loadData(await specOf(declared.dir, spec));
    for (const [row, label] of byRow(mapped.test)) expect(label).toBe(labels[row!]);
    const out = join(declared.dir, "run");
    const summary = await train(await loadTrainer(await compileOrThrow(spec, join(declared.dir, "spec.mmb")), out), { out, backend: "cpu", log: () => {} });
    expect(summary.classes).toEqual(words);
    expect((await runCharts(out, "run", () => {})).header).toContain("classes 0 neutral, 1 anger, 2 sad, 3 happy");
  });

  it("class names that do not fit are DataErrors naming the file, the target, and the row; a bad list of names is MMB013", async () => {
    const words = ["neutral", "anger", "sad", "happy", "fear"];
    const five = { ...goodFiles(), "data/meta.csv": `emotion\n${labels.map((l, i) => words[i === 7 ? 4 : l]).join("\n")}\n` };
    const sources = { audio: "data/audio.npy", visual: "data/feats.npz:visual", y: "data/meta.csv:emotion" };
    const tooMany = project(five, "files()", sources);
    const many = await specOf(tooMany.dir, tooMany.spec);
    expect(dataError(() => loadData(many))).toMatchObject({ file: "data/meta.csv:emotion", field: "y", found: "5: anger, fear, happy, neutral, sad" });
    const undeclared = project(five, "files()", sources);
    const spec = undeclared.spec.replace("class(4)", 'class(["neutral", "anger", "sad", "happy"])');
    const model = await specOf(undeclared.dir, spec);
    expect(dataError(() => loadData(model))).toMatchObject({ file: "data/meta.csv:emotion", field: "y", found: '"fear" in row 9' });
    for (const [type, message] of [
      ['class(["a", "a"])', 'the class "a" is named twice'],
      ['class(["a", 3])', "a class name is a non-empty string"],
      ['class(["a"])', "`class([...])` needs at least 2 class names"],
    ]) {
      const result = await compile(undeclared.spec.replace("class(4)", type!), { fileName: "spec.mmb" });
      expect(result.diagnostics.map((d) => [d.code, d.message]), type).toEqual([["MMB013", message]]);
    }
  });

  it("a path cannot leave the spec's folder unless --data-root allows it", async () => {
    const { dir, spec } = project(goodFiles(), "files()", { audio: "../outside.npy", visual: "data/feats.npz:visual", y: "data/meta.csv:label" });
    const model = await specOf(dir, spec);
    const error = dataError(() => loadData(model));
    expect(error).toMatchObject({ file: "../outside.npy", field: "path", found: "a path that leaves it; pass --data-root to allow another folder" });
  });
});

describe("data that would train the wrong thing, or crash, is named (no silent wrong results)", () => {
  const load = async (files: Record<string, string | Buffer>, sources?: Parameters<typeof project>[2]) => {
    const { dir, spec } = project(files, "files()", sources);
    return { dir, model: await specOf(dir, spec) };
  };

  it("samples are checked in their whole shape: channels-last frames are not taken as channels-first", async () => {
    // float[2, 3, 3] stored as [n, 3, 3, 2]: the same number of values, every pixel in the wrong place.
    const { model } = await load({ ...goodFiles(), "data/feats.npz": npz({ visual: npy(visual, [n, 3, 3, 2]) }, true) });
    const error = dataError(() => loadData(model));
    expect(error).toMatchObject({ file: "data/feats.npz:visual", field: "visual", expected: "samples of shape [2, 3, 3] (float[2, 3, 3])" });
    expect(error.found).toMatch(/^\[3, 3, 2\]; the same axes in another order \(channels last\?\): store the samples as \[N, 2, 3, 3\]/);
    const other = await load({ ...goodFiles(), "data/feats.npz": npz({ visual: npy(visual, [n, 9, 2]) }, true) });
    expect(dataError(() => loadData(other.model)).found).toBe("[9, 2]");
  });

  it("a symbolic link inside the spec's folder that points outside it is refused, not followed", async () => {
    const outside = mkdtempSync(join(tmpdir(), "mmb-outside-"));
    writeFileSync(join(outside, "audio.npy"), npy(audio, [n, 6]));
    const { dir, spec } = project(goodFiles(), "files()");
    rmSync(join(dir, "data", "audio.npy"));
    symlinkSync(join(outside, "audio.npy"), join(dir, "data", "audio.npy"));
    const model = await specOf(dir, spec);
    const error = dataError(() => loadData(model));
    expect(error).toMatchObject({ file: "data/audio.npy", field: "path", found: "a path that leaves it; pass --data-root to allow another folder" });
  });

  it("a .npz inflates only the arrays the spec names: a damaged array it does not read is never touched", async () => {
    const archive = npz({ visual: npy(visual, [n, 2, 3, 3], "<f8"), unused: Buffer.alloc(1 << 20) }, true);
    // Corrupt the unused entry's compressed bytes (it is stored second, after the visual one).
    const at = archive.indexOf(Buffer.from("unused.npy")) + "unused.npy".length;
    archive.fill(0xff, at, at + 64);
    const { model } = await load({ ...goodFiles(), "data/feats.npz": archive });
    expect(loadData(model).train.size).toBeGreaterThan(0);
  });

  it("damaged archives, corrupt compressed data and JSON lines that are not objects are named, with the file's line numbers", async () => {
    const archive = npz({ visual: npy(visual, [n, 2, 3, 3], "<f8") }, true);
    const truncated = await load({ ...goodFiles(), "data/feats.npz": Buffer.concat([archive.subarray(0, 40), archive.subarray(archive.length - 22)]) });
    expect(dataError(() => loadData(truncated.model))).toMatchObject({ file: "data/feats.npz", field: "archive", expected: "a well-formed .npz (zip) file" });
    const corrupt = Buffer.from(archive);
    corrupt.fill(0xff, 40, 80);
    const inflate = await load({ ...goodFiles(), "data/feats.npz": corrupt });
    expect(dataError(() => loadData(inflate.model))).toMatchObject({ file: "data/feats.npz", field: "visual", expected: "a deflated .npy array", found: expect.stringMatching(/^damaged compressed data/) });
    // Line 4 of the file (after a blank line) is a bare number, not an object.
    const lines = labels.map((l, i) => JSON.stringify({ label: l, vec: [i, 1, 2, 3, 4, 5] }));
    lines.splice(2, 0, "", "5");
    const jsonl = await load({ ...goodFiles(), "data/text.jsonl": lines.join("\n") }, { audio: "data/text.jsonl:vec", visual: "data/feats.npz:visual", y: "data/meta.csv:label" });
    expect(dataError(() => loadData(jsonl.model))).toMatchObject({ file: "data/text.jsonl", field: "line 4", expected: "a JSON object", found: "5" });
  });

  it("a CSV written with a byte-order mark finds its first column", async () => {
    const { model } = await load({ ...goodFiles(), "data/meta.csv": `\uFEFFlabel,actor\n${labels.map((l, i) => `${l},${actors[i]}`).join("\n")}\n` });
    expect(loadData(model).train.size).toBeGreaterThan(0);
  });
});
