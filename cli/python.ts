import { spawnSync } from "node:child_process";

/** A Python interpreter that imports torch and numpy, and their versions. */
export interface TorchPython {
  command: string;
  torch: string;
  numpy: string;
}

/**
 * The first interpreter that imports torch and numpy: `MMB_PYTHON` when set, else `python3` on
 * the PATH, else Debian's own `/usr/bin/python3` (where apt's `python3-torch` lands, which need
 * not be the first `python3` on the PATH: pyenv's, a virtual environment's). Undefined when none
 * does; `tried` then says what each candidate answered.
 */
export function findTorchPython(): { python?: TorchPython; tried: string[] } {
  const candidates = process.env.MMB_PYTHON ? [process.env.MMB_PYTHON] : ["python3", "/usr/bin/python3"];
  const tried: string[] = [];
  for (const command of [...new Set(candidates)]) {
    const probe = spawnSync(command, ["-c", "import torch, numpy; print(torch.__version__, numpy.__version__)"], { encoding: "utf8" });
    if (probe.status === 0) {
      const [torch, numpy] = probe.stdout.trim().split(" ");
      return { python: { command, torch: torch!, numpy: numpy! }, tried };
    }
    const why = probe.error ? "not found" : (probe.stderr.trim().split("\n").at(-1) ?? `exit ${probe.status}`);
    tried.push(`${command}: ${why}`);
  }
  return { tried };
}

/** How to get torch, for messages: Debian's package, into Debian's own python3. */
export const torchInstallHint = "install PyTorch for a python3 (on Debian: `apt-get install python3-torch`, for /usr/bin/python3), or name an interpreter that has it with MMB_PYTHON";
