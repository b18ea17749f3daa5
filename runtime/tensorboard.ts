import { createRequire } from "node:module";
import protobuf from "protobufjs";

/**
 * TensorBoard's event file: TFRecord framing around serialised `Event` messages. The messages are
 * the subset of tensorflow/core/util/event.proto and summary.proto that scalars need; protobufjs
 * encodes them from this definition, and CRC-32C (SheetJS's crc-32) checks each record's length
 * and data as TensorBoard's reader expects.
 */
const schema = `
syntax = "proto3";
message Event {
  double wall_time = 1;
  int64 step = 2;
  oneof what {
    string file_version = 3;
    Summary summary = 5;
  }
}
message Summary {
  message Value {
    string tag = 1;
    float simple_value = 2;
  }
  repeated Value value = 1;
}
`;

const root = protobuf.parse(schema).root;
const Event = root.lookupType("Event");

/** SheetJS's CRC-32C (the Castagnoli polynomial TFRecord uses); the subpath ships no types. */
const crc32c = createRequire(import.meta.url)("crc-32/crc32c") as { buf(data: Uint8Array, seed?: number): number };

/** TFRecord's masked CRC: rotated right by 15 bits plus a constant, so that a CRC of CRCs is not trivially zero. */
export function maskedCrc32c(data: Uint8Array): number {
  const crc = crc32c.buf(data) >>> 0;
  return (((crc >>> 15) | (crc << 17)) + 0xa282ead8) >>> 0;
}

/** One scalar point: a tag's value at a step. */
export interface Scalar {
  tag: string;
  step: number;
  value: number;
  /** Seconds since the run began (TensorBoard's relative time axis). */
  wallTime: number;
}

/** One TFRecord: length, masked CRC of the length, data, masked CRC of the data (little-endian). */
function record(data: Uint8Array): Buffer {
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(data.length));
  const crcs = Buffer.alloc(8);
  crcs.writeUInt32LE(maskedCrc32c(length), 0);
  crcs.writeUInt32LE(maskedCrc32c(data), 4);
  return Buffer.concat([length, crcs.subarray(0, 4), data, crcs.subarray(4)]);
}

/** An event file: the version record, then one event per step holding that step's scalars (in the order given). */
export function eventFile(scalars: Scalar[]): Buffer {
  const events = [Event.encode(Event.create({ wallTime: 0, fileVersion: "brain.Event:2" })).finish()];
  const byStep = new Map<string, Scalar[]>();
  for (const s of scalars) {
    const key = `${s.step}@${s.wallTime}`;
    const points = byStep.get(key);
    if (points) points.push(s);
    else byStep.set(key, [s]);
  }
  for (const points of byStep.values()) {
    const { step, wallTime } = points[0]!;
    const message = Event.create({ wallTime, step, summary: { value: points.map((p) => ({ tag: p.tag, simpleValue: p.value })) } });
    events.push(Event.encode(message).finish());
  }
  return Buffer.concat(events.map(record));
}
