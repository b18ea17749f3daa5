import { readFileSync } from "node:fs";

/**
 * The Python the torch trainer embeds, so that it needs nothing but torch and numpy: the files of
 * runtime/torch/, in this order (a later file may use an earlier one's names at module level).
 * Each file starts with its imports; they are gathered once at the top of the trainer.
 */
export const torchRuntimeFiles = ["random.py", "groups.py", "model.py", "ops.py", "history.py", "rule.py", "step.py", "epoch.py", "data.py", "optimizer.py", "metrics.py", "train.py"] as const;

/** runtime/torch/ in the repository (built: dist/compiler/3-codegen/torch/ → ../../../../runtime/torch/). */
const folder = new URL(import.meta.url.includes("/dist/") ? "../../../../runtime/torch/" : "../../../runtime/torch/", import.meta.url);

let cached: { imports: string[]; body: string } | undefined;

/** The runtime's imports (deduplicated, in first-seen order) and its definitions, file by file. */
export function torchRuntime(): { imports: string[]; body: string } {
  if (cached) return cached;
  const imports: string[] = [];
  const bodies: string[] = [];
  for (const file of torchRuntimeFiles) {
    let text: string;
    try {
      text = readFileSync(new URL(file, folder), "utf8");
    } catch {
      continue; // A file not written yet: the runtime grows file by file.
    }
    const lines = text.split("\n");
    let start = 0;
    // The leading block of `import`/`from` lines (and blank lines) is the file's imports.
    while (start < lines.length && (/^(import |from \S+ import )/.test(lines[start]!) || lines[start]!.trim() === "")) {
      const line = lines[start]!.trim();
      if (line && !imports.includes(line)) imports.push(line);
      start++;
    }
    bodies.push(`# ---- runtime/torch/${file}\n\n${lines.slice(start).join("\n").trim()}\n`);
  }
  // As isort lays them out: the standard library, then numpy and torch, each group sorted by module.
  const thirdParty = (line: string) => /^(import|from) (numpy|torch)\b/.test(line);
  const module = (line: string) => line.split(" ")[1]!;
  const sorted = (lines: string[]) => [...lines].sort((a, b) => module(a).localeCompare(module(b)) || a.localeCompare(b));
  // Numpy and torch may be missing from the python3 a user runs (the first on PATH need not have
  // them): one line that says so, not a traceback.
  const ordered = [
    ...sorted(imports.filter((l) => !thirdParty(l))),
    "",
    "try:",
    ...sorted(imports.filter(thirdParty)).map((l) => `    ${l}`),
    "except ModuleNotFoundError as missing:",
    '    sys.exit(f"mmb: {os.path.basename(sys.argv[0])} needs torch and numpy: {sys.executable} has no module {missing.name} (install them, e.g. `pip install torch numpy`, or run it with a python3 that has them)")',
  ];
  cached = { imports: ordered, body: bodies.join("\n\n") };
  return cached;
}

/** The whole runtime as one Python module's source: imports, then definitions (tests exec it). */
export function torchRuntimeSource(): string {
  const { imports, body } = torchRuntime();
  return `${imports.join("\n")}\n\n${body}`;
}
