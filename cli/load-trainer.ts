import { createHash } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { existsSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";
import { ts } from "ts-morph";
import type { TrainerDefinition } from "../runtime/index.js";

/**
 * Writes a generated trainer into `out` (as `trainer.ts`, and as `trainer.mjs` bound to this
 * process's runtime) and imports it, so the trainer and the loop share one tfjs instance. The
 * definition carries the SHA-256 of the code.
 */
export async function loadTrainer(code: string, out: string): Promise<TrainerDefinition> {
  await mkdir(out, { recursive: true });
  await writeFile(join(out, "trainer.ts"), code);
  // Built: dist/runtime/index.js. From source (tsx, vitest): runtime/index.ts.
  const built = new URL("../runtime/index.js", import.meta.url);
  const runtime = existsSync(fileURLToPath(built)) ? built.href : new URL("../runtime/index.ts", import.meta.url).href;
  const js = ts.transpileModule(code, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
  const bound = js.replace(/from "mmb\/runtime"/g, `from ${JSON.stringify(runtime)}`);
  const file = resolve(out, "trainer.mjs");
  await writeFile(file, bound);
  // The module's URL names its content: a time stamp let two trainers written into one folder in
  // the same millisecond share a URL, and the second import returned the first trainer.
  const version = createHash("sha256").update(bound).digest("hex").slice(0, 16);
  const module = (await import(`${pathToFileURL(file).href}?v=${version}`)) as { default: TrainerDefinition };
  // What a checkpoint records of the code, so that a resume refuses a trainer edited since.
  return { ...module.default, codeHash: `sha256:${createHash("sha256").update(code).digest("hex")}` };
}
