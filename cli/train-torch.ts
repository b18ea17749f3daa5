import { spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { ModelIR } from "../compiler/index.js";
import { claimRunFolder, type LogFormat } from "../runtime/index.js";
import { exportLogs } from "../runtime/log-export.js";
import { exportData } from "./data-export.js";
import { findTorchPython, torchInstallHint } from "./python.js";

/** What `mmb train --target torch` passes on to the generated trainer. */
export interface TorchRun {
  /** The trainer's Python, and the checked spec it was generated from (its data is exported from it). */
  code: string;
  ir: ModelIR;
  /** The spec's file as named, and its text as checked (after `--data`). */
  path: string;
  text: string;
  out: string;
  device?: string;
  /** The generator of a step's draws: shared (the tfjs trainer's) or torch (`--rng`). */
  rng?: string;
  /** A fresh run's initial weights: a .npz by tfjs names and layouts (`mmb export`). */
  init?: string;
  seed?: number;
  epochs?: number;
  sets: Record<string, number>;
  resume: boolean;
  overwrite: boolean;
  dataRoot?: string;
  fold?: { fold: number; folds: number };
  logFormats: LogFormat[];
}

/** The interpreter could not be found, or the trainer stopped: the message says which and why. */
export class TorchRunError extends Error {}

/**
 * Trains with PyTorch: the run folder is claimed as a tfjs run claims it (another run's state is
 * refused unless --overwrite), the trainer (`trainer.py`) and the spec's data (`data.npz`, as
 * `mmb data export` writes it) are written into it, and the trainer runs in a Python that imports
 * torch. Its log.jsonl and summary.json have the tfjs trainer's schema, so report and bench read them.
 */
export async function trainTorch(run: TorchRun): Promise<number> {
  const { python, tried } = findTorchPython();
  if (!python) throw new TorchRunError(`no Python with torch and numpy (tried ${tried.join("; ")}); ${torchInstallHint}`);
  const folder = await claimRunFolder(run.out, { resume: run.resume, overwrite: run.overwrite });
  const trainer = join(run.out, "trainer.py");
  const data = join(run.out, "data.npz");
  try {
    await writeFile(trainer, run.code);
    // The same bytes for the same samples: a resumed run's data check finds the file it started with.
    await exportData(run.ir, run.path, data, { text: run.text, ...(run.dataRoot ? { dataRoot: run.dataRoot } : {}), ...(run.fold ? { fold: run.fold } : {}) });
  } finally {
    // The trainer takes the folder's lock itself.
    await folder.release();
  }
  const args = [
    trainer,
    "--data",
    data,
    "--out",
    run.out,
    ...(run.device ? ["--device", run.device] : []),
    ...(run.rng ? ["--rng", run.rng] : []),
    ...(run.init ? ["--init", run.init] : []),
    ...(run.seed !== undefined ? ["--seed", String(run.seed)] : []),
    ...(run.epochs !== undefined ? ["--epochs", String(run.epochs)] : []),
    ...Object.entries(run.sets).flatMap(([name, value]) => ["--set", `${name}=${value}`]),
    ...(run.resume ? ["--resume"] : []),
  ];
  const status = await new Promise<number>((done, fail) => {
    const child = spawn(python.command, args, { stdio: "inherit" });
    child.on("error", fail);
    child.on("close", (code, signal) => done(code ?? (signal ? 128 : 1)));
  });
  if (status === 0 && run.logFormats.length) await exportLogs(resolve(run.out), run.logFormats, run.ir.modalities.map((m) => m.name));
  return status;
}
