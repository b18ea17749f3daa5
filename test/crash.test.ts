import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { loadCheckpoint } from "../runtime/checkpoint.js";
import { Random } from "../runtime/random.js";
import { root, smallSpec } from "./helpers.js";

const cli = ["--import", "tsx", join(root, "cli", "main.ts")];

const latest = (out: string) => (existsSync(join(out, "checkpoints", "latest")) ? readFileSync(join(out, "checkpoints", "latest"), "utf8") : "");

/** Starts `mmb train`, SIGKILLs it `delay` ms after it writes its first new checkpoint; resolves when it is gone. */
function trainAndKill(args: string[], out: string, delay: number): Promise<void> {
  const before = latest(out);
  return new Promise((done) => {
    const child = spawn(process.execPath, [...cli, "train", ...args, "--out", out], { cwd: root, stdio: "ignore" });
    const poll = setInterval(() => {
      if (latest(out) !== before) {
        clearInterval(poll);
        setTimeout(() => child.kill("SIGKILL"), delay);
      }
    }, 5);
    child.on("exit", () => {
      clearInterval(poll);
      done();
    });
  });
}

describe("killed with SIGKILL at random points, --resume reaches the uninterrupted result", () => {
  const dir = mkdtempSync(join(tmpdir(), "mmb-crash-"));
  const spec = join(dir, "spec.mmb");
  writeFileSync(spec, smallSpec("  s[m] = sum(batch, prob(contrib[m], y))\n  k[m] = if s[m] > s[other(m)] then 0.5 else 1\n  d = ema(mean(j, s[j]), 0.9)\n  scale grad(encoder[m]) by k[m]").replace("train epochs 2", "train epochs 8").replace("samples: 160", "samples: 1600"));

  for (const backend of ["cpu", "wasm"]) {
    it(`on ${backend}: three kills (seeded delays), then bit-identical weights and the same test metric`, async () => {
      const args = [spec, "--backend", backend];
      const straight = join(dir, `${backend}-straight`);
      expect(spawnSync(process.execPath, [...cli, "train", ...args, "--out", straight], { cwd: root }).status).toBe(0);
      const random = new Random(backend === "cpu" ? 5 : 6);
      const out = join(dir, `${backend}-killed`);
      for (let kill = 0; kill < 3; kill++) await trainAndKill(kill === 0 ? args : [...args, "--resume"], out, Math.floor(random.uniform() * 400));
      // The kills interrupted training; what is loaded is a complete checkpoint that verifies.
      const interrupted = (await loadCheckpoint(join(out, "checkpoints")))!;
      expect(interrupted.state.epoch).toBeLessThan(7);
      const resumed = spawnSync(process.execPath, [...cli, "train", ...args, "--out", out, "--resume"], { cwd: root, encoding: "utf8" });
      expect(resumed.status, resumed.stderr).toBe(0);
      const a = (await loadCheckpoint(join(straight, "checkpoints")))!;
      const b = (await loadCheckpoint(join(out, "checkpoints")))!;
      expect(b.state.epoch).toBe(7);
      a.weights.forEach((w, i) => expect(Buffer.from(b.weights[i]!.buffer).equals(Buffer.from(w.buffer))).toBe(true));
      const summary = (file: string) => JSON.parse(readFileSync(join(file, "summary.json"), "utf8")).test;
      expect(summary(out)).toBe(summary(straight));
    });
  }
});
