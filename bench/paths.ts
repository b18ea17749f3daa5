import { existsSync } from "node:fs";
import { join } from "node:path";

/** The repository root, whether a benchmark runs from bench/ (tsx, vitest) or dist/bench/ (built). */
export const repositoryRoot = [join(import.meta.dirname, ".."), join(import.meta.dirname, "..", "..")].find((dir) => existsSync(join(dir, "specs")))!;
