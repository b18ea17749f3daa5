import { readFileSync, realpathSync } from "node:fs";
import { totalmem } from "node:os";
import { extname, isAbsolute, relative, resolve } from "node:path";
import { inflateRawSync } from "node:zlib";
import { Random } from "../random.js";
import { targetWidth, type Target } from "../spec.js";
import { DataError, splitInOrder, type Dataset, type Split } from "./dataset.js";

/**
 * `data files(...)`: every modality and the target read from the file its `from` names, as
 * `"path"` or `"path:field"` (an .npz array, a .csv column, a .jsonl key). Formats: .npy
 * (little-endian float32/64, int8-64, uint8, bool; C order), .npz (stored or deflated), .csv (a
 * header line; without a field, every column), .jsonl (one object per line; a number or a
 * nested array per field). Errors name the file, the field, what was expected and found.
 */
export interface FilesOptions {
  valid: number;
  test: number;
  seed: number;
  split: string;
  group: string;
  folds: number;
  fold: number;
}

/**
 * A column of samples: `rows` samples of `width` numbers each, or of strings (split, group
 * columns). `shape`: each sample's shape where the file says it (an .npy array, nested JSON).
 */
interface Column {
  file: string;
  rows: number;
  width: number;
  shape?: number[];
  values: Float64Array | string[];
}

/**
 * Resolves a spec-relative path; it may not leave `root` (the spec's folder unless --data-root),
 * by its name or through a symbolic link: real paths are compared.
 */
export function resolveInside(root: string, path: string): string {
  const leaves = () => new DataError(path, "path", `a file inside ${root} (relative to the spec)`, "a path that leaves it; pass --data-root to allow another folder");
  const full = resolve(root, path);
  const inside = (base: string, target: string) => {
    const rel = relative(base, target);
    return !(rel.startsWith("..") || isAbsolute(rel));
  };
  if (isAbsolute(path) || !inside(root, full)) throw leaves();
  let real: string;
  try {
    real = realpathSync(full);
  } catch {
    return full; // a missing file is named as such when it is read
  }
  if (!inside(realpathSync(root), real)) throw leaves();
  return full;
}

function parseSource(source: string): { path: string; field: string | undefined } {
  const colon = source.lastIndexOf(":");
  // "C:\..." style drive letters are not fields.
  if (colon > 1) return { path: source.slice(0, colon), field: source.slice(colon + 1) || undefined };
  return { path: source, field: undefined };
}

/** The bytes of `file`; errors name it as the spec wrote it (`shown`), and a missing one where it was looked for. */
function readBytes(file: string, shown: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new DataError(shown, "file", "a readable file", (e as NodeJS.ErrnoException).code === "ENOENT" ? `no such file: ${file}` : String((e as Error).message));
  }
}

const npyTypes: Record<string, (buffer: Buffer, offset: number, count: number) => ArrayLike<number>> = {
  "<f4": (b, o, n) => new Float32Array(b.buffer.slice(b.byteOffset + o, b.byteOffset + o + 4 * n)),
  "<f8": (b, o, n) => new Float64Array(b.buffer.slice(b.byteOffset + o, b.byteOffset + o + 8 * n)),
  "<i4": (b, o, n) => new Int32Array(b.buffer.slice(b.byteOffset + o, b.byteOffset + o + 4 * n)),
  "<i8": (b, o, n) => Array.from(new BigInt64Array(b.buffer.slice(b.byteOffset + o, b.byteOffset + o + 8 * n)), Number),
  "<i2": (b, o, n) => new Int16Array(b.buffer.slice(b.byteOffset + o, b.byteOffset + o + 2 * n)),
  "|i1": (b, o, n) => new Int8Array(b.buffer.slice(b.byteOffset + o, b.byteOffset + o + n)),
  "|u1": (b, o, n) => new Uint8Array(b.buffer.slice(b.byteOffset + o, b.byteOffset + o + n)),
  "|b1": (b, o, n) => new Uint8Array(b.buffer.slice(b.byteOffset + o, b.byteOffset + o + n)),
};

/** A .npy array: its shape and values (first axis: samples). */
export function parseNpy(buffer: Buffer, file: string): { shape: number[]; values: Float64Array } {
  if (buffer.length < 12 || buffer.toString("latin1", 0, 6) !== "\x93NUMPY") throw new DataError(file, "header", "a .npy file (magic \\x93NUMPY)", "other bytes");
  const major = buffer[6]!;
  const headerLength = major === 1 ? buffer.readUInt16LE(8) : buffer.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  if (start + headerLength > buffer.length) throw new DataError(file, "header", `${headerLength} bytes of header`, `a file of ${buffer.length} bytes`);
  const header = buffer.toString("latin1", start, start + headerLength);
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (!descr || !fortran || shapeText === undefined) throw new DataError(file, "header", "descr, fortran_order and shape", header.trim());
  if (fortran === "True") throw new DataError(file, "fortran_order", "False (C order)", "True: save with numpy.ascontiguousarray");
  const read = npyTypes[descr.replace("=", "<")];
  if (!read) throw new DataError(file, "dtype", `one of ${Object.keys(npyTypes).join(", ")}`, descr);
  const shape = shapeText.split(",").map((d) => d.trim()).filter(Boolean).map(Number);
  if (!shape.every((d) => Number.isInteger(d) && d >= 0)) throw new DataError(file, "shape", "whole numbers", `(${shapeText})`);
  const count = shape.reduce((a, b) => a * b, 1);
  const width = Number(/\d+/.exec(descr)![0]);
  if (buffer.length < start + headerLength + count * width) throw new DataError(file, "data", `${count} values of ${descr}`, `${Math.floor((buffer.length - start - headerLength) / width)}`);
  return { shape, values: Float64Array.from(read(buffer, start + headerLength, count)) };
}

/**
 * The arrays of a .npz archive (a zip of .npy files, stored or deflated), read lazily: an entry
 * is inflated only when asked for, to at most the size its directory declares, and only if that
 * size fits in memory. A truncated or damaged archive is a DataError, not a raw exception.
 */
export function parseNpz(buffer: Buffer, file: string): Map<string, () => Buffer> {
  const damaged = (what: string) => new DataError(file, "archive", "a well-formed .npz (zip) file", what);
  const u16 = (at: number) => {
    if (at < 0 || at + 2 > buffer.length) throw damaged("a truncated or damaged archive");
    return buffer.readUInt16LE(at);
  };
  const u32 = (at: number) => {
    if (at < 0 || at + 4 > buffer.length) throw damaged("a truncated or damaged archive");
    return buffer.readUInt32LE(at);
  };
  let end = buffer.length - 22;
  while (end >= 0 && buffer.readUInt32LE(end) !== 0x06054b50) end--;
  if (end < 0) throw damaged("no zip directory");
  const entries = u16(end + 10);
  let at = u32(end + 16);
  const out = new Map<string, () => Buffer>();
  for (let i = 0; i < entries; i++) {
    if (u32(at) !== 0x02014b50) throw damaged(`a damaged directory entry ${i + 1}`);
    const method = u16(at + 10);
    const compressed = u32(at + 20);
    const declared = u32(at + 24);
    const nameLength = u16(at + 28);
    const extraLength = u16(at + 30);
    const commentLength = u16(at + 32);
    const local = u32(at + 42);
    if (at + 46 + nameLength > buffer.length) throw damaged("a truncated directory");
    const name = buffer.toString("utf8", at + 46, at + 46 + nameLength);
    const dataStart = local + 30 + u16(local + 26) + u16(local + 28);
    if (dataStart + compressed > buffer.length) throw damaged(`entry ${name} runs past the end of the file`);
    if (method !== 0 && method !== 8) throw new DataError(file, name, "stored or deflated entries", `compression method ${method}`);
    const raw = buffer.subarray(dataStart, dataStart + compressed);
    const key = name.replace(/\.npy$/, "");
    out.set(key, () => {
      if (method === 0) return raw;
      if (declared > totalmem() / 4) throw new DataError(file, key, "an array that fits in memory", `${declared.toLocaleString("en")} bytes declared`);
      try {
        const inflated = inflateRawSync(raw, { maxOutputLength: Math.max(1, declared) });
        if (inflated.length !== declared) throw new Error(`${inflated.length} bytes instead of the ${declared} declared`);
        return inflated;
      } catch (e) {
        throw new DataError(file, key, "a deflated .npy array", `damaged compressed data (${(e as Error).message})`);
      }
    });
    at += 46 + nameLength + extraLength + commentLength;
  }
  return out;
}

/** RFC 4180 rows: commas, quoted fields with "" escapes. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') (field += '"'), i++;
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") row.push(field), (field = "");
    else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(field);
      if (row.some((f) => f !== "")) rows.push(row);
      (row = []), (field = "");
    } else field += c;
  }
  row.push(field);
  if (row.some((f) => f !== "")) rows.push(row);
  return rows;
}

function numbers(file: string, field: string, cells: string[], firstRow: number): Float64Array {
  return Float64Array.from(cells, (cell, i) => {
    const value = cell.trim() === "" ? NaN : Number(cell);
    if (Number.isNaN(value) && !/^\s*nan\s*$/i.test(cell)) throw new DataError(file, field, "a number", `"${cell}" in row ${firstRow + i}`);
    return value;
  });
}

/** Reads the column a source names. `text`: keep strings (split and group columns). */
export function readColumn(root: string, source: string, text = false): Column {
  const { path, field } = parseSource(source);
  const file = resolveInside(root, path);
  const name = field ? `${path}:${field}` : path;
  const extension = extname(path).toLowerCase();
  if (extension === ".npy" || extension === ".npz") {
    let bytes = readBytes(file, path);
    if (extension === ".npz") {
      const arrays = parseNpz(bytes, path);
      const key = field ?? (arrays.size === 1 ? [...arrays.keys()][0]! : undefined);
      if (key === undefined || !arrays.has(key)) throw new DataError(path, field ?? "array", `one of the archive's arrays: ${[...arrays.keys()].join(", ")}`, field ?? "no field (write path.npz:name)");
      bytes = arrays.get(key)!();
    }
    const { shape, values } = parseNpy(bytes, name);
    const rows = shape[0] ?? 1;
    return { file: name, rows, width: rows ? values.length / rows : 0, shape: shape.slice(1), values: text ? Array.from(values, String) : values };
  }
  // A byte-order mark (as spreadsheet programs write it) is not part of the first column's name.
  const lines = readBytes(file, path).toString("utf8").replace(/^\uFEFF/, "");
  if (extension === ".csv") {
    const [header, ...rows] = parseCsv(lines);
    if (!header) throw new DataError(path, "header", "a header line with column names", "an empty file");
    const columns = field ? [header.indexOf(field)] : header.map((_, i) => i);
    if (columns[0] === -1) throw new DataError(path, field!, `one of the columns: ${header.join(", ")}`, "no such column");
    rows.forEach((r, i) => {
      if (r.length !== header.length) throw new DataError(path, `row ${i + 2}`, `${header.length} fields`, `${r.length}`);
    });
    const cells = rows.flatMap((r) => columns.map((c) => r[c]!));
    return { file: name, rows: rows.length, width: columns.length, values: text ? cells : numbers(path, field ?? "values", cells, 2) };
  }
  if (extension === ".jsonl") {
    if (!field) throw new DataError(path, "field", "a key: write path.jsonl:key", "none");
    // Line numbers count every line of the file, blank ones too, as an editor shows them.
    const records = lines.split("\n").flatMap((line, i) => (line.trim() ? [{ line, number: i + 1 }] : []));
    let shape: number[] | undefined;
    const values: (string | number)[][] = records.map(({ line, number }) => {
      let record: unknown;
      try {
        record = JSON.parse(line);
      } catch {
        throw new DataError(path, `line ${number}`, "a JSON object", line.slice(0, 40));
      }
      if (typeof record !== "object" || record === null || Array.isArray(record)) throw new DataError(path, `line ${number}`, "a JSON object", line.slice(0, 40));
      if (!Object.hasOwn(record, field)) throw new DataError(path, field, `a key "${field}" on every line`, `line ${number} without it`);
      const value = (record as Record<string, unknown>)[field];
      shape ??= nestedShape(value);
      const flat = Array.isArray(value) ? (value.flat(Infinity) as unknown[]) : [value];
      if (!text && !flat.every((v) => typeof v === "number")) throw new DataError(path, field, "numbers", `${JSON.stringify(value).slice(0, 40)} on line ${number}`);
      return flat as (string | number)[];
    });
    const width = values[0]?.length ?? 0;
    values.forEach((v, i) => {
      if (v.length !== width) throw new DataError(path, field, `${width} numbers on every line`, `${v.length} on line ${records[i]!.number}`);
    });
    return { file: name, rows: values.length, width, ...(shape ? { shape } : {}), values: text ? values.flat().map(String) : Float64Array.from(values.flat() as number[]) };
  }
  throw new DataError(path, "format", "a .npy, .npz, .csv or .jsonl file", extension || "no extension");
}

/** The shape of a nested JSON array (`[[1, 2], [3, 4]]` → [2, 2]); a number has none. */
function nestedShape(value: unknown): number[] | undefined {
  const shape: number[] = [];
  for (let v = value; Array.isArray(v); v = v[0]) shape.push(v.length);
  return shape.length ? shape : undefined;
}

/**
 * A modality's samples must have its declared shape, not only as many values: frames stored as
 * [32, 32, 3] would train as float[3, 32, 32] with every pixel in the wrong place. A file that
 * stores samples flat (a .csv, a 2-D .npy) is taken in the declared order, and a flat modality
 * (float[n]) takes samples of any shape, flattened: it has no axes to mix.
 */
function checkShape(column: Column, modality: { name: string; shape: number[] }): void {
  const declared = `float[${modality.shape.join(", ")}]`;
  const width = modality.shape.reduce((a, b) => a * b, 1);
  if (column.width !== width) throw new DataError(column.file, modality.name, `${width} values per sample (${declared})`, `${column.width}`);
  const stored = column.shape;
  if (!stored || stored.length <= 1 || modality.shape.length <= 1 || stored.join() === modality.shape.join()) return;
  const permuted = stored.length === modality.shape.length && [...stored].sort((a, b) => a - b).join() === [...modality.shape].sort((a, b) => a - b).join();
  const hint = permuted
    ? `; the same axes in another order${stored[stored.length - 1] === modality.shape[0] ? " (channels last?)" : ""}: store the samples as [N, ${modality.shape.join(", ")}] (e.g. numpy.transpose)`
    : "";
  throw new DataError(column.file, modality.name, `samples of shape [${modality.shape.join(", ")}] (${declared})`, `[${stored.join(", ")}]${hint}`);
}

export function files(root: string, modalities: { name: string; shape: number[]; source?: string }[], target: Target, options: FilesOptions): Dataset {
  const inputs = modalities.map((m) => {
    const column = readColumn(root, m.source!);
    checkShape(column, m);
    return column;
  });
  const { labels, classNames } = target.kind === "class" ? classLabels(readColumn(root, target.source!, true), target) : { labels: readColumn(root, target.source!), classNames: undefined };
  const labelWidth = targetWidth(target);
  if (labels.width !== labelWidth) throw new DataError(labels.file, target.name, labelWidth === 1 ? "one value per sample" : `${labelWidth} pixel classes per sample (mask ${target.shape!.join("×")})`, `${labels.width}`);
  const size = labels.rows;
  for (const column of inputs) {
    if (column.rows !== size) throw new DataError(column.file, "samples", `${size}, as many as ${labels.file}`, `${column.rows}`);
  }
  const all: Split = { inputs: inputs.map((c) => Float32Array.from(c.values as Float64Array)), labels: Float32Array.from(labels.values as Float64Array), size };
  const widths = inputs.map((c) => c.width);
  const description = `files (${[...inputs.map((c) => c.file), labels.file].join(", ")})`;
  const names = { modalities: inputs.map((c) => c.file), target: labels.file };
  const named = (dataset: Dataset): Dataset => (classNames ? { ...dataset, classNames } : dataset);
  /** The dataset with each sample in the split its name says: train, valid or test. */
  const byName = (splits: string[]): Dataset => {
    const order = ["train", "valid", "test"].flatMap((want) => splits.flatMap((n, i) => (n === want ? [i] : [])));
    const count = (want: string) => splits.filter((n) => n === want).length;
    return named(splitInOrder(all, widths, order, { valid: count("valid") / size, test: count("test") / size }, description, names, labelWidth));
  };
  if (options.split) {
    const split = readColumn(root, options.split, true);
    if (split.rows !== size || split.width !== 1) throw new DataError(split.file, "samples", `${size} split names`, `${split.rows}`);
    const splits = split.values as string[];
    const bad = splits.findIndex((n) => !["train", "valid", "test"].includes(n.trim()));
    if (bad >= 0) throw new DataError(split.file, "split", "train, valid or test", `"${splits[bad]}" in sample ${bad}`);
    return byName(splits.map((n) => n.trim()));
  }
  if (options.group) {
    const group = readColumn(root, options.group, true);
    if (group.rows !== size || group.width !== 1) throw new DataError(group.file, "samples", `${size} group names`, `${group.rows}`);
    if (!(options.fold >= 0 && options.fold < options.folds)) throw new DataError(group.file, "fold", `0..${options.folds - 1}`, `${options.fold}`);
    // Groups (e.g. actors) in order of first appearance, dealt round-robin into folds.
    const groups = [...new Set(group.values as string[])];
    if (groups.length < options.folds) throw new DataError(group.file, "groups", `at least ${options.folds} (one per fold)`, `${groups.length}`);
    const foldOf = new Map(groups.map((g, i) => [g, i % options.folds]));
    const testFold = options.fold;
    const validFold = (options.fold + 1) % options.folds;
    const splitOf = (g: string) => (foldOf.get(g) === testFold ? "test" : foldOf.get(g) === validFold ? "valid" : "train");
    const inSplit = (want: string) => groups.filter((g) => splitOf(g) === want);
    return { ...byName((group.values as string[]).map(splitOf)), folds: { fold: options.fold, folds: options.folds, groups: { train: inSplit("train"), valid: inSplit("valid"), test: inSplit("test") } } };
  }
  return named(splitInOrder(all, widths, new Random(options.seed).permutation(size), options, description, names, labelWidth));
}

/**
 * A class target's labels, read as text: class indices (`3`), or class names (`"disgust"`), which
 * map through the declared `class(["anger", "disgust", ...])` or, without one, through the names
 * found in the file, sorted (so that the same file gives the same indices); `classNames` says
 * which. A name that is not declared, a file mixing indices and names, or more or fewer names
 * than `class(N)` is a DataError naming the file, the field and the row.
 */
function classLabels(column: Column, target: Target): { labels: Column; classNames?: string[] } {
  const cells = (column.values as string[]).map((v) => v.trim());
  // A number (an index, or a value the dataset check refuses, as blanks and NaN) or a name.
  const isName = (cell: string) => cell !== "" && !/^nan$/i.test(cell) && !Number.isFinite(Number(cell));
  const row = (i: number) => (extname(column.file.split(":")[0]!).toLowerCase() === ".csv" ? `row ${i + 2}` : `sample ${i}`);
  const named = cells.filter(isName).length;
  // Indices with a stray word (a typo in one row) are not a list of names: the word is the error.
  if (named > 0 && !target.names && named < cells.filter((c) => c !== "").length / 2) {
    const i = cells.findIndex(isName);
    throw new DataError(column.file, target.name, `a class index in 0..${target.classes - 1}, as the other rows (or every class by name)`, `"${cells[i]}" in ${row(i)}`);
  }
  const names = named > 0 ? (target.names ?? [...new Set(cells)].sort()) : undefined;
  if (!names) return { labels: { ...column, values: Float64Array.from(cells, (c) => (c === "" ? NaN : Number(c))) } };
  if (!target.names && names.length !== target.classes) {
    throw new DataError(column.file, target.name, `${target.classes} class names (class(${target.classes})), or declare them: class(["a", "b", ...])`, `${names.length}: ${names.slice(0, 8).join(", ")}${names.length > 8 ? ", ..." : ""}`);
  }
  const index = new Map(names.map((n, i) => [n, i]));
  const values = Float64Array.from(cells, (cell, i) => {
    const k = index.get(cell);
    if (k !== undefined) return k;
    const found = isName(cell) ? `"${cell}"` : `${cell || "an empty cell"} among class names`;
    throw new DataError(column.file, target.name, `one of the classes ${names.slice(0, 8).join(", ")}${names.length > 8 ? ", ..." : ""}`, `${found} in ${row(i)}`);
  });
  return { labels: { ...column, values }, classNames: names };
}
