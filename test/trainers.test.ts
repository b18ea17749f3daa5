import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";
import { compileOrThrow, readSpec, root, specFiles, updateGoldens } from "./helpers.js";

const goldenDir = join(root, "test", "golden");

describe("generated trainers", () => {
  const files: string[] = [];
  for (const spec of specFiles()) {
    it(`${spec} compiles to its golden trainer`, async () => {
      const code = await compileOrThrow(readSpec(spec), `specs/${spec}`);
      const path = join(goldenDir, spec.replace(/\.mmb$/, ".ts"));
      mkdirSync(goldenDir, { recursive: true });
      if (updateGoldens || !existsSync(path)) writeFileSync(path, code);
      expect(code).toBe(readFileSync(path, "utf8"));
      files.push(path);
    });
  }

  it("every golden type-checks under tsc --strict", () => {
    const program = ts.createProgram(files, {
      strict: true,
      noEmit: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      skipLibCheck: true,
      types: ["node"],
      baseUrl: root,
      paths: { "mmb/runtime": ["runtime/index.ts"] },
      allowImportingTsExtensions: false,
    });
    const diagnostics = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n") + ` (${d.file?.fileName})`);
    expect(files.length).toBe(specFiles().length);
    expect(diagnostics).toEqual([]);
  });
});
