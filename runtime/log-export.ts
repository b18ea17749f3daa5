import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { writeAtomically } from "./checkpoint.js";
import { eventFile, type Scalar } from "./tensorboard.js";

/**
 * The run's log in the forms researchers' tools read (`--log csv`, `--log tensorboard`), made
 * from log.jsonl after each epoch, so that they always say what the log says (a resumed run's
 * log is cut back to its checkpoint, and so are they). Every value is one number per column or
 * tag: a per-modality value becomes one per modality, named after it (`grad_norm/audio`).
 */
export type LogFormat = "csv" | "tensorboard";
export const logFormats: readonly LogFormat[] = ["csv", "tensorboard"];

/** What the formats write into the run folder (a fresh run refuses a folder holding them). */
export const exportedLogs = ["log-steps.csv", "log-epochs.csv", "tensorboard"];

export type LogRecord = Record<string, unknown> & { type: "step" | "epoch"; epoch: number; step?: number };

/** The run's step and epoch records, in order (the first record, which names the modalities, is not one). */
export async function readLogRecords(path: string): Promise<LogRecord[]> {
  return (await readFile(path, "utf8"))
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((r): r is LogRecord => r.type === "step" || r.type === "epoch");
}

/**
 * A record's numbers, flattened: nested objects and per-modality arrays become `a/b` names. A
 * null (a figure this run cannot measure, such as the torch trainer's tensor count on a CPU) is
 * kept as a name without a number, so that both targets' tables have the same columns.
 */
export function flatten(record: Record<string, unknown>, modalities: string[], prefix = ""): [string, number | null][] {
  return Object.entries(record).flatMap(([key, value]): [string, number | null][] => {
    const name = prefix + key;
    if (typeof value === "number" || value === null) return [[name, value]];
    if (typeof value === "boolean") return [[name, value ? 1 : 0]];
    if (Array.isArray(value)) return value.flatMap((v, i): [string, number | null][] => (typeof v === "number" ? [[`${name}/${modalities[i] ?? i}`, v]] : []));
    if (value && typeof value === "object") return flatten(value as Record<string, unknown>, modalities, `${name}/`);
    return [];
  });
}

/** A record's numbers, without the fields that place it (type, epoch, step, stage). */
const placed = new Set(["type", "epoch", "step", "stage"]);
const numbersOf = (r: LogRecord, modalities: string[]) => flatten(Object.fromEntries(Object.entries(r).filter(([k]) => !placed.has(k))), modalities);

function csvTable(records: LogRecord[], modalities: string[], key: "step" | "epoch"): string {
  const rows = records.map((r) => ({ r, values: new Map(numbersOf(r, modalities)) }));
  const columns = [...new Set(rows.flatMap(({ values }) => [...values.keys()]))];
  const staged = records.some((r) => typeof r.stage === "string");
  const quote = (v: string) => (/[",\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v);
  const header = [...(key === "step" ? ["step"] : []), "epoch", ...(staged ? ["stage"] : []), ...columns];
  const lines = rows.map(({ r, values }) =>
    [...(key === "step" ? [String(r.step)] : []), String(r.epoch), ...(staged ? [String(r.stage ?? "")] : []), ...columns.map((c) => String(values.get(c) ?? ""))].map(quote).join(","),
  );
  return [header.map(quote).join(","), ...lines].join("\n") + "\n";
}

/** Scalars for TensorBoard: `step/...` tags at each step, `epoch/...` tags at each epoch (its number as the step). */
function scalars(records: LogRecord[], modalities: string[]): Scalar[] {
  let elapsed = 0;
  const out: Scalar[] = [];
  for (const r of records) {
    // A name without a number has no scalar to draw.
    const values = numbersOf(r, modalities).filter((entry): entry is [string, number] => entry[1] !== null);
    if (r.type === "epoch") {
      elapsed += typeof r.seconds === "number" ? r.seconds : 0;
      out.push(...values.map(([tag, value]) => ({ tag: `epoch/${tag}`, step: r.epoch, value, wallTime: elapsed })));
    } else out.push(...values.map(([tag, value]) => ({ tag: `step/${tag}`, step: r.step ?? 0, value, wallTime: elapsed })));
  }
  return out;
}

/** Writes the formats asked for from the run's log.jsonl. */
export async function exportLogs(out: string, formats: readonly LogFormat[], modalities: string[]): Promise<void> {
  if (formats.length === 0) return;
  const records = await readLogRecords(join(out, "log.jsonl"));
  if (formats.includes("csv")) {
    await writeAtomically(join(out, "log-steps.csv"), csvTable(records.filter((r) => r.type === "step"), modalities, "step"));
    await writeAtomically(join(out, "log-epochs.csv"), csvTable(records.filter((r) => r.type === "epoch"), modalities, "epoch"));
  }
  if (formats.includes("tensorboard")) {
    await mkdir(join(out, "tensorboard"), { recursive: true });
    // One file, rewritten whole: TensorBoard reloads it; the name must contain `tfevents`.
    await writeAtomically(join(out, "tensorboard", "events.out.tfevents.mmb"), eventFile(scalars(records, modalities)));
  }
}
