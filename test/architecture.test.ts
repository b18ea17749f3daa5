import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { root } from "./helpers.js";

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const path = join(dir, entry);
    return statSync(path).isDirectory() ? sources(path) : path.endsWith(".ts") ? [path] : [];
  });
}

describe("the language carries the methods", () => {
  it("no balancing method is named in grammar/, compiler/ or runtime/", () => {
    const methods = /\b(ogm|ogm_ge|agm|agm_cr|cggm|awf|pmr|mmcosine|gblending|g_blending|mslr|greedy|umt|ume|mla|reconboost|mmpareto)\b/i;
    const hits = ["grammar", "compiler", "runtime"].flatMap((dir) =>
      sources(join(root, dir)).flatMap((file) =>
        readFileSync(file, "utf8")
          .split("\n")
          .flatMap((line, i) => (methods.test(line) ? [`${file}:${i + 1}: ${line.trim()}`] : [])),
      ),
    );
    expect(hits).toEqual([]);
  });
});
