import { readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { root, typescriptFiles } from "./helpers.js";

describe("the language carries the methods", () => {
  it("no balancing method is named in grammar/, compiler/ or runtime/", () => {
    const methods = /\b(ogm|ogm_ge|agm|agm_cr|cggm|awf|pmr|mmcosine|mbsd|cml|arl|opm|amco|amss|dgl|gblending|g_blending|mslr|greedy|umt|ume|mla|reconboost|mmpareto|inforeg|lfm|relearning|g2d|linear_probe)\b/i;
    const hits = ["grammar", "compiler", "runtime"].flatMap((dir) =>
      typescriptFiles(join(root, dir)).flatMap((file) =>
        readFileSync(file, "utf8")
          .split("\n")
          .flatMap((line, i) => (methods.test(line) ? [`${file}:${i + 1}: ${line.trim()}`] : [])),
      ),
    );
    expect(hits).toEqual([]);
  });
});

/** The modules a file imports, as paths relative to the repository. */
function imports(file: string): string[] {
  const text = readFileSync(file, "utf8");
  return [...text.matchAll(/from\s+"(\.[^"]+)"/g)].map((m) => relative(root, resolve(dirname(file), m[1]!)).replace(/\.js$/, ".ts"));
}

describe("the layout shows the architecture", () => {
  it("diagnostics/ sits below the grammar and the compiler: grammar/ never imports compiler/, diagnostics/ neither", () => {
    const upward = [
      ...typescriptFiles(join(root, "grammar")).flatMap((f) => imports(f).filter((i) => i.startsWith("compiler/")).map((i) => `${relative(root, f)} → ${i}`)),
      ...typescriptFiles(join(root, "diagnostics")).flatMap((f) => imports(f).filter((i) => /^(compiler|grammar)\//.test(i)).map((i) => `${relative(root, f)} → ${i}`)),
    ];
    expect(upward).toEqual([]);
  });

  it("the compiler reads only the runtime's parameter naming (one module for both), never tfjs", () => {
    const reached = typescriptFiles(join(root, "compiler")).flatMap((f) => imports(f).filter((i) => i.startsWith("runtime/")));
    expect([...new Set(reached)]).toEqual(["runtime/parameter-groups.ts"]);
    expect(readFileSync(join(root, "runtime", "parameter-groups.ts"), "utf8")).not.toMatch(/from\s+"/);
  });

  it("the language server answers from the compiler and the catalogue alone: lsp/ never loads the runtime (tfjs), and no phase imports lsp/", () => {
    const runtime = typescriptFiles(join(root, "lsp")).flatMap((f) => imports(f).filter((i) => i.startsWith("runtime/")).map((i) => `${relative(root, f)} → ${i}`));
    const back = ["diagnostics", "grammar", "compiler", "runtime"].flatMap((dir) => typescriptFiles(join(root, dir)).flatMap((f) => imports(f).filter((i) => i.startsWith("lsp/")).map((i) => `${relative(root, f)} → ${i}`)));
    expect([...runtime, ...back]).toEqual([]);
    expect(typescriptFiles(join(root, "lsp")).length).toBeGreaterThan(0);
  });

  it("no compiler file is longer than 500 lines: one concern per file", () => {
    const long = typescriptFiles(join(root, "compiler"))
      .map((f) => [relative(root, f), readFileSync(f, "utf8").split("\n").length] as const)
      .filter(([, lines]) => lines > 500);
    expect(long).toEqual([]);
  });
});
