import { createHash } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { createRequire } from "node:module";
import { endianness } from "node:os";
import { dirname, resolve } from "node:path";
import { specData } from "../compiler/3-codegen/spec-data.js";
import type { ModelIR } from "../compiler/index.js";
import { writeAtomically } from "../runtime/checkpoint.js";
import { loadData, type Dataset } from "../runtime/data/index.js";
import { withFold } from "../runtime/train.js";
import type { ModelSpec } from "../runtime/spec.js";
import { mmbVersion } from "../runtime/version.js";

const crc32 = createRequire(import.meta.url)("crc-32") as { buf(data: Uint8Array, seed?: number): number };

/**
 * `mmb data export`: the samples `mmb train` reads, in one .npz that the torch trainer loads
 * (runtime/torch/data.py, `load_dataset`), so that both targets train on the same numbers.
 *
 * Layout (numpy keys): `<split>/<modality>` (float32, [n, ...shape]) and `<split>/<target>`
 * (float32, [n] or [n, ...mask shape]: class indices as floats) for split in train, valid,
 * test; `classes` ('<U…', the class names) where the data or the spec names them; `meta` (uint8,
 * UTF-8 JSON: see `ExportMeta`). Entries are stored, not deflated, so the file reads fast and
 * the same data always gives the same bytes.
 */
export const splitNames = ["train", "valid", "test"] as const;

/** What `meta` holds. */
export interface ExportMeta {
  format: "mmb-data";
  version: 1;
  mmb: string;
  model: string;
  /** The spec file, as it was named, and the SHA-256 of its text (after `--data`). */
  source: string;
  sourceSha256: string;
  data: { kind: string; options: Record<string, unknown> };
  modalities: { name: string; shape: number[] }[];
  target: { name: string; kind: "class" | "real" | "mask"; classes: number; shape?: number[] };
  splits: { train: number; valid: number; test: number };
  description: string;
  /** With `files(group: ...)`: the test fold, and the groups each split holds. */
  folds?: Dataset["folds"];
  /** `--data-root`, where given. */
  dataRoot?: string;
}

/**
 * The part of the trainer's `spec` object that `loadData` reads: the compiler's own spec data
 * (compiler/3-codegen/spec-data.ts), through JSON as the generated trainer holds it.
 */
export function dataSpec(ir: ModelIR, source: string): Pick<ModelSpec, "name" | "source" | "data" | "modalities" | "target"> {
  const { name, data, modalities, target } = JSON.parse(JSON.stringify(specData(ir, source))) as ModelSpec;
  return { name, source, data, modalities, target };
}

export interface ExportOptions {
  /** The spec's text, as checked (after `--data`): its hash goes into `meta`. */
  text: string;
  /** `--data-root` (absolute). */
  dataRoot?: string;
  fold?: { fold: number; folds: number };
  /** The samples to write instead of the spec's (tests write a few batches of them). */
  data?: Dataset;
}

/** The dataset of a checked spec (`source`: its file, as named), loaded as `mmb train` loads it. */
export function exportedData(ir: ModelIR, source: string, options: Omit<ExportOptions, "text"> = {}): { spec: ReturnType<typeof dataSpec>; data: Dataset } {
  const plain = dataSpec(ir, source);
  const spec = options.fold ? withFold(plain, options.fold) : plain;
  // loadData reads the spec's source, data, modalities and target only.
  return { spec, data: loadData(spec as ModelSpec, options.dataRoot) };
}

/** Writes the .npz of a checked spec's data to `output` (atomically); returns what `meta` says. */
export async function exportData(ir: ModelIR, source: string, output: string, options: ExportOptions): Promise<ExportMeta> {
  const loaded = options.data ? { spec: dataSpec(ir, source), data: options.data } : exportedData(ir, source, options);
  const { spec, data } = loaded;
  const meta: ExportMeta = {
    format: "mmb-data",
    version: 1,
    mmb: mmbVersion,
    model: spec.name,
    source,
    sourceSha256: createHash("sha256").update(options.text).digest("hex"),
    data: spec.data,
    modalities: spec.modalities.map(({ name, shape }) => ({ name, shape })),
    target: { name: spec.target.name, kind: spec.target.kind, classes: spec.target.classes, ...(spec.target.shape ? { shape: spec.target.shape } : {}) },
    splits: { train: data.train.size, valid: data.valid.size, test: data.test.size },
    description: data.description,
    ...(data.folds ? { folds: data.folds } : {}),
    ...(options.dataRoot ? { dataRoot: options.dataRoot } : {}),
  };
  const entries: { name: string; data: Uint8Array }[] = [{ name: "meta.npy", data: npy("|u1", [Buffer.byteLength(JSON.stringify(meta))], Buffer.from(JSON.stringify(meta), "utf8")) }];
  const classes = data.classNames ?? spec.target.names;
  if (classes) entries.push({ name: "classes.npy", data: unicodeNpy(classes) });
  for (const name of splitNames) {
    const split = data[name];
    spec.modalities.forEach((m, i) => entries.push({ name: `${name}/${m.name}.npy`, data: npy("<f4", [split.size, ...m.shape], littleEndian(split.inputs[i]!)) }));
    entries.push({ name: `${name}/${spec.target.name}.npy`, data: npy("<f4", [split.size, ...(spec.target.shape ?? [])], littleEndian(split.labels)) });
  }
  const file = resolve(output);
  await mkdir(dirname(file), { recursive: true });
  await writeAtomically(file, zipStored(entries));
  return meta;
}

/** A Float32Array's bytes, little-endian (as .npy's `<f4` says) on any machine. */
function littleEndian(values: Float32Array): Uint8Array {
  if (endianness() === "LE") return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const out = new DataView(new ArrayBuffer(values.byteLength));
  values.forEach((v, i) => out.setFloat32(4 * i, v, true));
  return new Uint8Array(out.buffer);
}

/** A .npy file, format 1.0 (C order), its header padded to a multiple of 64 bytes as numpy writes it. */
export function npy(descr: string, shape: number[], data: Uint8Array): Buffer {
  const dims = shape.length === 1 ? `${shape[0]},` : shape.join(", ");
  let header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${dims}), }`;
  header += " ".repeat((64 - ((10 + header.length + 1) % 64)) % 64) + "\n";
  if (header.length > 0xffff) throw new Error(`a .npy header of ${header.length} bytes does not fit format 1.0`);
  const prefix = Buffer.alloc(10);
  prefix.write("\x93NUMPY", 0, "latin1");
  prefix[6] = 1;
  prefix[7] = 0;
  prefix.writeUInt16LE(header.length, 8);
  return Buffer.concat([prefix, Buffer.from(header, "latin1"), data]);
}

/** Strings as numpy's fixed-width unicode array ('<U…': UTF-32LE code points, zero-padded). */
export function unicodeNpy(strings: string[]): Buffer {
  const points = strings.map((s) => Array.from(s, (c) => c.codePointAt(0)!));
  const width = Math.max(1, ...points.map((p) => p.length));
  const data = Buffer.alloc(4 * width * strings.length);
  points.forEach((p, i) => p.forEach((c, k) => data.writeUInt32LE(c, 4 * (i * width + k))));
  return npy(`<U${width}`, [strings.length], data);
}

/**
 * A zip archive of stored (uncompressed) entries, with their CRC-32s, as numpy's `savez` would
 * write them (without zip64: an archive over 4 GiB is refused, not written damaged). The entries'
 * time is the zip epoch (1980-01-01), so that the same data always gives the same bytes.
 */
export function zipStored(entries: { name: string; data: Uint8Array }[]): Buffer {
  const limit = 0xffffffff;
  const size = entries.reduce((n, e) => n + 30 + 46 + 2 * Buffer.byteLength(e.name) + e.data.length, 22);
  if (size > limit || entries.length > 0xffff) {
    throw new Error(`the .npz would be ${(size / 2 ** 30).toFixed(2)} GiB in ${entries.length} entries; mmb writes archives up to 4 GiB (no zip64): export fewer samples or smaller inputs`);
  }
  const dosDate = (0 << 9) | (1 << 5) | 1;
  const locals: Uint8Array[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const entry of entries) {
    const name = Buffer.from(entry.name, "utf8");
    const flags = /^[\x20-\x7e]*$/.test(entry.name) ? 0 : 0x0800; // bit 11: the name is UTF-8
    const crc = crc32.buf(entry.data) >>> 0;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(flags, 6);
    local.writeUInt16LE(0, 8);
    local.writeUInt16LE(0, 10);
    local.writeUInt16LE(dosDate, 12);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(entry.data.length, 18);
    local.writeUInt32LE(entry.data.length, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(0, 28);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(20, 4);
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(flags, 8);
    central.writeUInt16LE(0, 10);
    central.writeUInt16LE(0, 12);
    central.writeUInt16LE(dosDate, 14);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(entry.data.length, 20);
    central.writeUInt32LE(entry.data.length, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE(offset, 42);
    locals.push(local, name, entry.data);
    centrals.push(central, name);
    offset += 30 + name.length + entry.data.length;
  }
  const directory = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, directory, end]);
}
