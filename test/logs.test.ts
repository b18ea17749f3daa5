import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import protobuf from "protobufjs";
import { describe, expect, it } from "vitest";
import { loadTrainer } from "../cli/load-trainer.js";
import { compile } from "../compiler/index.js";
import { logFields } from "../compiler/builtins/index.js";
import { claimRunFolder, train, type LogFormat } from "../runtime/index.js";
import { exportLogs } from "../runtime/log-export.js";
import { maskedCrc32c } from "../runtime/tensorboard.js";
import { compileOrThrow, logRecords, smallSpec } from "./helpers.js";

/** The logs researchers read: the step log's own fields, and what the actions did to each encoder's gradient. */
async function run(balance: string, logFormats: LogFormat[] = []) {
  const out = mkdtempSync(join(tmpdir(), "mmb-logs-"));
  const trainer = await loadTrainer(await compileOrThrow(smallSpec(balance)), out);
  await train(trainer, { out, backend: "cpu", log: () => {}, logFormats });
  return Object.assign(logRecords(out), { out });
}

/** CRC-32C bit by bit (the Castagnoli polynomial, reflected), written here from its definition. */
function crc32c(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}
const masked = (crc: number) => (((crc >>> 15) | (crc << 17)) + 0xa282ead8) >>> 0;

/** TensorBoard's Event and Summary messages, as tensorflow/core/util/event.proto and summary.proto define the fields used. */
const Event = protobuf.parse(`syntax = "proto3";
message Event { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
message Summary { message Value { string tag = 1; float simple_value = 2; } repeated Value value = 1; }`).root.lookupType("Event");

/** The records of a TFRecord file, each CRC checked. */
function records(file: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < file.length; ) {
    const lengthBytes = file.subarray(at, at + 8);
    const length = Number(lengthBytes.readBigUInt64LE());
    expect(file.readUInt32LE(at + 8)).toBe(masked(crc32c(lengthBytes)));
    const data = file.subarray(at + 12, at + 12 + length);
    expect(file.readUInt32LE(at + 12 + length)).toBe(masked(crc32c(data)));
    out.push(data);
    at += 16 + length;
  }
  return out;
}

describe("the logs researchers' tools read", () => {
  it("CRC-32C and its TFRecord mask agree with the definition and the known vectors", () => {
    expect(crc32c(Buffer.from("123456789"))).toBe(0xe3069283);
    expect(crc32c(new Uint8Array(32))).toBe(0x8a9136aa); // RFC 3720, B.4: 32 bytes of zeros
    for (const text of ["", "123456789", "mmb", "x".repeat(1000)]) expect(maskedCrc32c(Buffer.from(text))).toBe(masked(crc32c(Buffer.from(text))));
  });

  it("--log csv,tensorboard: the log as CSV tables with a column per modality, and a TensorBoard event file that decodes to the same numbers", async () => {
    const log = await run("  s[m] = acc(contrib[m], y)", ["csv", "tensorboard"]);
    const steps = log.filter((r) => r.type === "step");
    const epochs = log.filter((r) => r.type === "epoch");
    // CSV: one row per step, a column per number; per-modality values one column per modality.
    const [header, ...rows] = readFileSync(join(log.out, "log-steps.csv"), "utf8").trim().split("\n").map((l) => l.split(","));
    expect(header).toEqual(expect.arrayContaining(["step", "epoch", "loss", "s/a", "s/b", "grad_norm/a", "grad_norm/b", "update_grad_norm/a"]));
    expect(rows).toHaveLength(steps.length);
    const column = (name: string) => header!.indexOf(name);
    rows.forEach((row, i) => {
      expect(Number(row[column("loss")])).toBe(steps[i]!.loss);
      expect(Number(row[column("grad_norm/b")])).toBe(steps[i]!.grad_norm[1]);
      expect(Number(row[column("s/a")])).toBe(steps[i]!.s[0]);
    });
    const epochTable = readFileSync(join(log.out, "log-epochs.csv"), "utf8").trim().split("\n");
    expect(epochTable[0]!.split(",")).toEqual(expect.arrayContaining(["epoch", "valid/acc", "test/acc", "unimodal/a", "unimodal/b"]));
    expect(epochTable).toHaveLength(epochs.length + 1);
    // TensorBoard: the version event first, then the scalars, float32 as the format stores them.
    const events = records(readFileSync(join(log.out, "tensorboard", "events.out.tfevents.mmb"))).map((r) => Event.toObject(Event.decode(r), { longs: Number }) as { step?: number; fileVersion?: string; summary?: { value: { tag: string; simpleValue: number }[] } });
    expect(events[0]!.fileVersion).toBe("brain.Event:2");
    const points = events.slice(1).flatMap((e) => e.summary!.value.map((v) => ({ step: e.step ?? 0, ...v })));
    const point = (tag: string, step: number) => points.find((p) => p.tag === tag && p.step === step)?.simpleValue;
    for (const s of steps) {
      expect(point("step/loss", s.step)).toBe(Math.fround(s.loss));
      expect(point("step/grad_norm/a", s.step)).toBe(Math.fround(s.grad_norm[0]));
      expect(point("step/s/b", s.step)).toBe(Math.fround(s.s[1]));
    }
    for (const e of epochs) expect(point("epoch/valid/acc", e.epoch)).toBe(Math.fround(e.valid.acc));
    // They are the run's state: a run that replaces it (--overwrite) removes them, so no old scalar mixes into a new run.
    const folder = await claimRunFolder(log.out, { overwrite: true });
    await folder.release();
    for (const file of ["tensorboard", "log-steps.csv", "log-epochs.csv"]) expect(existsSync(join(log.out, file)), file).toBe(false);
  });
});

describe("the log's exports, of either target", () => {
  it("a field one target leaves null (the torch trainer's tensor count on a CPU) is a column of empty cells in the CSV, as the other target's numbers are a column, and no TensorBoard scalar", async () => {
    const out = mkdtempSync(join(tmpdir(), "mmb-logs-null-"));
    const epoch = (e: number, tensors: number | null) => ({ type: "epoch", epoch: e, loss: 1 / (e + 1), memory: { tensors, rss_mb: 100 + e } });
    writeFileSync(join(out, "log.jsonl"), [{ type: "modalities", modalities: ["a", "b"] }, epoch(0, null), epoch(1, null)].map((r) => JSON.stringify(r)).join("\n") + "\n");
    await exportLogs(out, ["csv", "tensorboard"], ["a", "b"]);
    expect(readFileSync(join(out, "log-epochs.csv"), "utf8")).toBe("epoch,loss,memory/tensors,memory/rss_mb\n0,1,,100\n1,0.5,,101\n");
    const tags = records(readFileSync(join(out, "tensorboard", "events.out.tfevents.mmb"))).slice(1).flatMap((r) => (Event.toObject(Event.decode(r)) as { summary: { value: { tag: string }[] } }).summary.value.map((v) => v.tag));
    expect(new Set(tags)).toEqual(new Set(["epoch/loss", "epoch/memory/rss_mb"]));
  });
});

describe("the step log", () => {
  it("opens with a record naming the modalities its per-modality arrays hold, in order", async () => {
    const log = await run("");
    expect(log[0]).toEqual({ type: "run", model: "small", modalities: ["a", "b"] });
    expect(log.slice(1).every((r) => r.type === "step" || r.type === "epoch")).toBe(true);
  });

  it("logs each encoder's gradient norm after the actions beside the raw one", async () => {
    const steps = (await run("  scale grad(encoder[a]) by 0.25")).filter((r) => r.type === "step");
    expect(steps.length).toBeGreaterThan(0);
    for (const step of steps) {
      const [raw, updated] = [step.grad_norm as number[], step.update_grad_norm as number[]];
      expect(Math.abs(updated[0]! - 0.25 * raw[0]!)).toBeLessThan(1e-6 * raw[0]!);
      expect(updated[1]).toBe(raw[1]);
    }
  });

  it("its own fields are the compiler's list, so a rule value of such a name is refused (MMB020), not overwritten", async () => {
    const steps = (await run("  s[m] = acc(contrib[m], y)")).filter((r) => r.type === "step");
    expect(Object.keys(steps[0]!).filter((k) => k !== "s").sort()).toEqual(logFields.filter((f) => f !== "stage").sort());
    for (const field of ["grad_norm", "update_grad_norm", "total_loss"]) {
      const { diagnostics } = await compile(smallSpec(`  ${field} = 1`));
      expect(diagnostics.map((d) => [d.code, d.message]), field).toEqual([["MMB020", `\`${field}\` is a field of the step log`]]);
    }
  });
});
