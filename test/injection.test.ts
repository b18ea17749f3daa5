import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ts } from "ts-morph";
import { describe, expect, it } from "vitest";
import { loadTrainer } from "../cli/load-trainer.js";
import { compile } from "../compiler/index.js";
import { Random } from "../runtime/random.js";
import { findTorchPython } from "../cli/python.js";
import { smallSpec } from "./helpers.js";

/** Fragments that would break out of a string, a template, a comment or a line if pasted raw. */
const fragments = [
  '"', "'", "`", "${globalThis.__pwned = 1}", "*/ globalThis.__pwned = 1; /*", "\\", "\n", "\r\n", "\u2028", "</script>", "é☃😀", "\u202e", "); globalThis.__pwned = 1; (", "//", "x".repeat(5000),
  // Python's: triple quotes, a comment, an f-string's braces, a statement after a newline.
  '"""', "\'\'\'", "#", "{__import__('builtins').__setattr__('pwned', 1)}", "\nimport builtins; builtins.pwned = 1\n", "\f", "\v",
];

function payload(random: Random): string {
  const parts = Array.from({ length: 1 + Math.floor(random.uniform() * 4) }, () => fragments[Math.floor(random.uniform() * fragments.length)]!);
  return parts.join("");
}

/** A spec string literal for `payload`: the lexer's strings escape `"` and `\` and hold no newline. */
const specString = (text: string) => `"${text.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/[\r\n\u2028]/g, " ")}"`;

/**
 * A hostile file name, and a spec whose free string (a `from` path of `data files(...)`: options
 * such as `activation` take names from a list) is another payload; never blank, as a `from` of
 * spaces only is MMB028.
 */
function hostileSpec(random: Random): { fileName: string; option: string; source: string } {
  const fileName = payload(random);
  const option = `f${payload(random).replace(/[\r\n\u2028]/g, " ")}`;
  const source = smallSpec("  s[m] = acc(contrib[m], y)")
    .replace(/data synthetic\([^)]*\)/, "data files()")
    .replace("modality a : float[8]", `modality a : float[8] from ${specString(option)}`)
    .replace("modality b : float[6]", 'modality b : float[6] from "b.npy"')
    .replace("target y : class(4)", 'target y : class(4) from "y.npy"');
  return { fileName, option, source };
}

describe("no code injection from a spec or its file name", () => {
  it("hostile file names and `from` paths appear in the trainer only as literals (30 random payloads)", async () => {
    const random = new Random(11);
    const dir = mkdtempSync(join(tmpdir(), "mmb-injection-"));
    for (let i = 0; i < 30; i++) {
      const { fileName, option, source } = hostileSpec(random);
      const result = await compile(source, { fileName });
      expect(result.diagnostics).toEqual([]);
      const parsed = ts.createSourceFile("trainer.ts", result.code!, ts.ScriptTarget.ES2022, true);
      expect((parsed as unknown as { parseDiagnostics: unknown[] }).parseDiagnostics).toEqual([]);
      const trainer = await loadTrainer(result.code!, join(dir, String(i)));
      expect((globalThis as { __pwned?: number }).__pwned).toBeUndefined();
      expect(trainer.spec.source).toBe(fileName);
      expect(trainer.spec.modalities[0]!.source).toBe(option);
    }
  });

  const python = findTorchPython().python;
  it.skipIf(!python)("in the torch trainer too: the same payloads are Python literals, and running the module executes none", async () => {
    const random = new Random(12);
    const dir = mkdtempSync(join(tmpdir(), "mmb-injection-torch-"));
    const cases: { file: string; fileName: string; option: string }[] = [];
    for (let i = 0; i < 30; i++) {
      const { fileName, option, source } = hostileSpec(random);
      const result = await compile(source, { fileName, target: "torch" });
      expect(result.diagnostics).toEqual([]);
      const file = join(dir, `trainer${i}.py`);
      writeFileSync(file, result.code!);
      cases.push({ file, fileName, option });
    }
    // One interpreter runs every module (importing torch once), then says whether any payload ran.
    const program = "import builtins, json, runpy, sys\nfor f in sys.argv[1:]:\n    ns = runpy.run_path(f)\n    print(json.dumps([ns['SPEC']['source'], ns['SPEC']['modalities'][0]['source']]))\nprint(json.dumps(hasattr(builtins, 'pwned')))";
    const read = spawnSync(python!.command, ["-c", program, ...cases.map((c) => c.file)], { encoding: "utf8", maxBuffer: 1 << 26 });
    expect(read.stderr).toBe("");
    const lines = read.stdout.trim().split("\n").map((l) => JSON.parse(l));
    expect(lines).toEqual([...cases.map((c) => [c.fileName, c.option]), false]);
  }, 120_000);
});
