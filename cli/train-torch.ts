import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { constants as fsConstants, copyFile, rm, writeFile } from "node:fs/promises";
import { constants } from "node:os";
import { join, resolve } from "node:path";
import type { ModelIR } from "../compiler/index.js";
import { claimRunFolder, trainerFiles } from "../runtime/run-folder.js";
import { exportLogs, type LogFormat } from "../runtime/log-export.js";
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
  /** An export to train on as it is (`--data FILE.npz`), instead of the spec's data exported for the run. */
  dataFile?: string;
  logFormats: LogFormat[];
}

/** The interpreter could not be found, or the trainer stopped: the message says which and why. */
export class TorchRunError extends Error {}

/**
 * Trains with PyTorch: the run folder is claimed as a tfjs run claims it (another run's state is
 * refused unless --overwrite), the trainer (`trainer.py`) and the spec's data (`data.npz`, as
 * `mmb data export` writes it) are written into it, and the trainer runs in a Python that imports
 * torch. Its log.jsonl and summary.json have the tfjs trainer's schema, so report and bench read them.
 * A resume writes them beside the folder's own instead (see `trainerFiles`).
 */
export async function trainTorch(run: TorchRun): Promise<number> {
  const { python, tried } = findTorchPython();
  if (!python) throw new TorchRunError(`no Python with torch and numpy (tried ${tried.join("; ")}); ${torchInstallHint}`);
  const folder = await claimRunFolder(run.out, { resume: run.resume, overwrite: run.overwrite, target: "torch" });
  const files = await trainerFiles(run.out, run.resume).catch(async (e: unknown) => {
    await folder.release();
    throw e;
  });
  try {
    try {
      await writeFile(join(files.dir, "trainer.py"), run.code);
      if (run.dataFile) await placeExport(run.dataFile, join(files.dir, "data.npz"));
      // The same bytes for the same samples: a resumed run's data check finds the file it started with.
      else await exportData(run.ir, run.path, join(files.dir, "data.npz"), { text: run.text, ...(run.dataRoot ? { dataRoot: run.dataRoot } : {}), ...(run.fold ? { fold: run.fold } : {}) });
    } finally {
      // The trainer takes the folder's lock itself.
      await folder.release();
    }
    const args = [
      join(files.dir, "trainer.py"),
      "--data",
      join(files.dir, "data.npz"),
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
    const status = await runStoppably(python.command, args);
    if (status === 0 && run.logFormats.length) await exportLogs(resolve(run.out), run.logFormats, run.ir.modalities.map((m) => m.name));
    return status;
  } finally {
    await files.remove();
  }
}

/**
 * An export given with `--data FILE.npz` becomes the run's data.npz: a copy, so that the folder
 * keeps the samples the run trained on whatever later writes into the file (numpy.savez rewrites a
 * file in place); a clone that shares the blocks where the file system has them. An export already
 * there (`mmb bench` links its own into each run folder) stays. The trainer checks it against the
 * spec as it checks the spec's own export.
 */
async function placeExport(file: string, into: string): Promise<void> {
  if (!existsSync(file)) throw new TorchRunError(`${file}: file: expected a .npz that \`mmb data export\` wrote, found no such file`);
  if (resolve(file) === resolve(into)) return;
  await rm(into, { force: true });
  await copyFile(file, into, fsConstants.COPYFILE_FICLONE);
}

/**
 * Runs the trainer until it ends; stopping mmb stops it. SIGINT, SIGTERM and SIGHUP are passed on
 * (a trainer left running would go on writing into the run folder), and mmb ends when the trainer
 * has. The trainer gets a process group of its own, so that a terminal's Ctrl-C reaches it once,
 * through mmb, not twice. The exit status is the trainer's, or 128 + the signal that ended it.
 */
function runStoppably(command: string, args: string[]): Promise<number> {
  return new Promise<number>((done, fail) => {
    const child = spawn(command, args, { stdio: "inherit", detached: true });
    const passOn = (signal: NodeJS.Signals) => child.kill(signal);
    const signals = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
    for (const signal of signals) process.on(signal, passOn);
    const finish = () => signals.forEach((signal) => process.off(signal, passOn));
    child.on("error", (e) => {
      finish();
      fail(e);
    });
    child.on("close", (code, signal) => {
      finish();
      done(code ?? 128 + (signal ? constants.signals[signal] : 0));
    });
  });
}
