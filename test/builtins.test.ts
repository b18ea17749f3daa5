import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { builtins, runtimeNames } from "../compiler/builtins/index.js";
import { actionTable, builtinsReference, expressionTable } from "../compiler/builtins/reference.js";
import * as runtime from "../runtime/index.js";
import { root, updateGoldens } from "./helpers.js";

function golden(path: string, actual: string): void {
  if (updateGoldens || !existsSync(path)) writeFileSync(path, actual);
  expect(actual).toBe(readFileSync(path, "utf8"));
}

describe("the builtin catalogue", () => {
  it("names each function once, with a usage that calls it and a doc line", () => {
    const names = builtins.map((b) => b.name);
    expect(new Set(names).size).toBe(names.length);
    for (const b of builtins) {
      expect(b.usage.startsWith(`${b.name}(`), b.name).toBe(true);
      expect(b.doc.length, b.name).toBeGreaterThan(5);
    }
  });

  it("every function checked by signature has a tfjs lowering; special forms and one-place names have none to need", () => {
    for (const b of builtins) {
      if (b.form || b.misuse) continue;
      expect(b.signatures.length, b.name).toBeGreaterThan(0);
      expect(b.lower?.tfjs, b.name).toBeDefined();
    }
  });

  it("every runtime function a lowering may emit is exported by mmb/runtime", () => {
    const exported = runtime as Record<string, unknown>;
    const missing = [...runtimeNames].filter((name) => typeof exported[name] !== "function");
    expect(missing).toEqual([]);
  });

  it("README.md's tables and docs/builtins.md are printed from the catalogue", () => {
    const readmePath = join(root, "README.md");
    const readme = readFileSync(readmePath, "utf8");
    const regenerated = readme.replace(
      /(<!-- generated from compiler\/builtins: (\w+) -->\n)[\s\S]*?(<!-- end -->)/g,
      (_, open: string, which: string, close: string) => `${open}${which === "actions" ? actionTable() : expressionTable()}\n${close}`,
    );
    expect(regenerated.match(/<!-- generated from compiler\/builtins/g)?.length).toBe(2);
    golden(readmePath, regenerated);
    golden(join(root, "docs", "builtins.md"), builtinsReference());
  });
});
