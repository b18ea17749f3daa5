import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { analyze, codes, renderAll } from "../compiler/index.js";
import { fixturesDir, root, updateGoldens } from "./helpers.js";

const cases = readdirSync(fixturesDir).filter((d) => existsSync(join(fixturesDir, d, "input.mmb"))).sort();

function rendered(name: string) {
  const input = readFileSync(join(fixturesDir, name, "input.mmb"), "utf8");
  const analysis = analyze(input, { fileName: `${name}/input.mmb` });
  return { input, analysis, text: renderAll(analysis.diagnostics, analysis.source) + "\n" };
}

function golden(path: string, actual: string): void {
  if (updateGoldens || !existsSync(path)) writeFileSync(path, actual);
  expect(actual).toBe(readFileSync(path, "utf8"));
}

describe("diagnostic fixtures", () => {
  for (const name of cases) {
    it(name, () => {
      const { analysis, text } = rendered(name);
      expect(analysis.diagnostics.length).toBeGreaterThan(0);
      for (const d of analysis.diagnostics) {
        expect(d.span.start).toBeGreaterThanOrEqual(0);
        expect(d.span.end).toBeLessThanOrEqual(analysis.source.text.length);
        expect(d.help, `${d.code} has a help line`).toBeTruthy();
      }
      golden(join(fixturesDir, name, "diagnostics.txt"), text);
    });
  }

  it("covers every code of the catalogue (MMB026 comes from the command line: test/cli.test.ts)", () => {
    const hit = new Set(cases.flatMap((name) => rendered(name).analysis.diagnostics.map((d) => d.code)));
    const missing = Object.keys(codes).filter((code) => code !== "MMB026" && !hit.has(code as keyof typeof codes));
    expect(missing).toEqual([]);
  });

  it("reports five independent mistakes in one run", () => {
    const found = rendered("five-independent-errors").analysis.diagnostics.map((d) => d.code);
    expect(found).toEqual(["MMB003", "MMB012", "MMB011", "MMB006", "MMB017"]);
  });

  it("docs/diagnostics.md lists every code with its fixture", () => {
    const sections = Object.entries(codes).map(([code, title]) => {
      const example = cases.find((name) => name !== "five-independent-errors" && rendered(name).analysis.diagnostics[0]?.code === code);
      if (!example) return `## ${code}: ${title}\n\nReported by \`mmb train --set\` (and \`bench\`, \`compile\`, \`data export\`) for a name the spec does not declare as a \`param\`. The command line has no place in the spec, so the caret goes under the declared param of the nearest name (a typo: the help line asks "did you mean \`--set scaling=5\`?"), else under the first param, else under the \`model\` line; the help line lists the declared params.\n`;
      const { input, text } = rendered(example);
      return `## ${code}: ${title}\n\nFrom \`test/fixtures/${example}/input.mmb\`:\n\n\`\`\`\n${input.trimEnd()}\n\`\`\`\n\n\`\`\`\n${text.trimEnd()}\n\`\`\`\n`;
    });
    const doc = `# Diagnostics\n\nEvery error mmb reports has a stable code. This page is generated from the fixtures in\n\`test/fixtures/\` (\`UPDATE_GOLDEN=1 npm test\` regenerates it); the help line of each shows the fix.\n\`mmb check --format json\` gives the same as data: code, severity, message, file, start and end\n(line, column), labels and help.\n\n${sections.join("\n")}`;
    golden(join(root, "docs", "diagnostics.md"), doc);
  });
});
