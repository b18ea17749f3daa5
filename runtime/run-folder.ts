import { mkdtemp, open, readdir, readFile, rm, unlink } from "node:fs/promises";
import { join } from "node:path";
import { runTarget, type Target } from "./checkpoint.js";
import { exportedLogs } from "./log-export.js";

/**
 * A run folder holds one run. A fresh run refuses a folder that holds another run's state unless
 * told to replace it; `--resume` continues the run that is there; and a lock file keeps a second
 * process from writing into a folder a live one is using. Nothing is ever mixed.
 */
export class RunFolderError extends Error {}

/** What a run leaves: its state (log, summary, checkpoints, the best-validation checkpoint) and the report made from it. The trainer files are rewritten by each run. */
const runState = ["log.jsonl", "summary.json", "checkpoints", "best", ...exportedLogs];
const runFiles = [...runState, "report.html"];
const lockName = ".mmb-lock";

export interface RunFolder {
  dir: string;
  /** Removes the lock; the folder stays. */
  release(): Promise<void>;
}

/**
 * Claims `dir` for a run of `target` (tfjs by default): takes its lock (a lock whose process has
 * ended is taken over), then, for a fresh run, checks that no other run's state is there, or
 * removes it with `overwrite`.
 */
export async function claimRunFolder(dir: string, options: { resume?: boolean; overwrite?: boolean; target?: Target }): Promise<RunFolder> {
  const lock = join(dir, lockName);
  await takeLock(lock, dir);
  try {
    if (!options.resume) {
      const entries = await readdir(dir);
      const present = runState.filter((entry) => entries.includes(entry));
      if (present.length > 0 && !options.overwrite) {
        // The other target's run is continued by that target: a bare --resume would be refused.
        const other = await runTarget(dir);
        const target = options.target ?? "tfjs";
        throw new RunFolderError(
          other && other !== target
            ? `${dir} holds a ${other} run (${present.join(", ")}); choose another --out, or --overwrite to replace it (${other === "torch" ? "`--target torch --resume`" : "`--resume` without `--target torch`"} continues it)`
            : `${dir} holds another run (${present.join(", ")}); choose another --out, add --resume to continue that run, or --overwrite to replace it`,
        );
      }
      if (options.overwrite) for (const entry of runFiles) await rm(join(dir, entry), { recursive: true, force: true });
    }
  } catch (e) {
    await unlink(lock).catch(() => {});
    throw e;
  }
  return { dir, release: () => unlink(lock).catch(() => {}) };
}

/**
 * Where a run writes the trainer it runs (and, for torch, the data), while it holds the folder's
 * lock. A fresh run: the run folder itself (the claim refused another run's state). A resume: a
 * folder of its own inside the run folder (on its disk: a data set's export may be large), which
 * `remove` deletes when the run ends. The run folder keeps its own trainer and data: a resume the
 * trainer accepts has the same spec, data and mmb, so the same files, and one it refuses must leave
 * the folder as it was. Any earlier such folder is a killed resume's (the lock is held), and goes.
 */
export async function trainerFiles(dir: string, resume: boolean): Promise<{ dir: string; remove(): Promise<void> }> {
  if (!resume) return { dir, remove: async () => {} };
  for (const entry of await readdir(dir)) if (entry.startsWith(stagingPrefix)) await rm(join(dir, entry), { recursive: true, force: true });
  const staging = await mkdtemp(join(dir, stagingPrefix));
  return { dir: staging, remove: () => rm(staging, { recursive: true, force: true }) };
}

const stagingPrefix = ".mmb-resume-";

async function takeLock(lock: string, dir: string): Promise<void> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await open(lock, "wx");
      await handle.writeFile(String(process.pid));
      await handle.close();
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
    }
    const holder = Number((await readFile(lock, "utf8").catch(() => "")).trim());
    if (Number.isInteger(holder) && holder > 0 && alive(holder)) {
      throw new RunFolderError(`${dir} is in use by another mmb train (process ${holder}); wait for it to finish, or choose another --out`);
    }
    // The process that held the lock has ended (killed mid-run): its lock is stale.
    await unlink(lock).catch(() => {});
  }
  throw new RunFolderError(`${dir}: could not take the run folder's lock (${lockName})`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}
