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

  it("the compiler reads only the runtime's parameter naming and number ranges (one module each for both), never tfjs", () => {
    const reached = typescriptFiles(join(root, "compiler")).flatMap((f) => imports(f).filter((i) => i.startsWith("runtime/")));
    expect([...new Set(reached)].sort()).toEqual(["runtime/parameter-groups.ts", "runtime/range.ts"]);
    for (const shared of ["parameter-groups.ts", "range.ts"]) expect(readFileSync(join(root, "runtime", shared), "utf8")).not.toMatch(/from\s+"/);
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

/**
 * The modules a file loads when it is loaded: its imports and re-exports that are not type-only
 * (TypeScript erases those), by repository path for our own files and by name for packages.
 * `import()` inside a function loads when it runs, so it is not one of them.
 */
function loadedWith(file: string): string[] {
  const text = readFileSync(file, "utf8");
  return [...text.matchAll(/^(?:import|export)\s+(type\s+)?[^;]*?\bfrom\s+"([^"]+)"/gms)]
    .filter((m) => !m[1])
    .map((m) => (m[2]!.startsWith(".") ? relative(root, resolve(dirname(file), m[2]!)).replace(/\.js$/, ".ts") : m[2]!));
}

describe("the command line starts with what the command needs", () => {
  it("`mmb check`, `fmt`, `compile --target torch` and `--help` load neither TensorFlow.js nor ts-morph nor prettier: none is reached from cli/main.ts before a command imports it", () => {
    const seen = new Set<string>();
    const heavy: string[] = [];
    const visit = (module: string, path: string[]) => {
      if (seen.has(module)) return;
      seen.add(module);
      if (!module.endsWith(".ts")) {
        if (/^(@tensorflow\/|ts-morph|prettier)/.test(module)) heavy.push([...path, module].join(" → "));
        return;
      }
      for (const next of loadedWith(join(root, module))) visit(next, [...path, module]);
    };
    visit("cli/main.ts", []);
    expect(heavy).toEqual([]);
    // The walk reached the parser and the checker, which every command needs.
    expect(seen).toContain("compiler/1-check/index.ts");
    expect(seen).toContain("chevrotain");
  });
});
