import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMessageConnection, StreamMessageReader, StreamMessageWriter, type MessageConnection } from "vscode-jsonrpc/node";
import { builtin } from "../compiler/builtins/index.js";
import { renderSignature } from "../compiler/builtins/reference.js";
import { encoders } from "../compiler/components.js";
import { readSpec, root } from "./helpers.js";

/**
 * The language server driven as an editor drives it: `mmb lsp --stdio` in its own process, spoken
 * to over JSON-RPC on its stdin and stdout. Positions in the expectations are found in the text by
 * the test itself (line and UTF-16 column of a searched snippet), not taken from the server.
 */

interface Position {
  line: number;
  character: number;
}
interface Range {
  start: Position;
  end: Position;
}
interface Diagnostic {
  range: Range;
  code: string;
  message: string;
  severity: number;
}

/** The position of the `nth` occurrence of `snippet` in `text` below its header comment, plus `offset` characters into it. */
function positionOf(text: string, snippet: string, offset = 0, nth = 0): Position {
  let at = text.search(/^model /m) - 1;
  for (let i = 0; i <= nth; i++) {
    at = text.indexOf(snippet, at + 1);
    if (at < 0) throw new Error(`\`${snippet}\` (${nth}) is not in the text`);
  }
  const before = text.slice(0, at + offset);
  const line = before.split("\n").length - 1;
  return { line, character: before.length - before.lastIndexOf("\n") - 1 };
}

function rangeOf(text: string, snippet: string, nth = 0): Range {
  const start = positionOf(text, snippet, 0, nth);
  return { start, end: { line: start.line, character: start.character + snippet.length } };
}

const ogm = readSpec("ogm_ge.mmb");
// Three mistakes of three kinds: an option misspelt, a call with an argument missing, an unknown name.
const broken = ogm.replace("mlp(hidden: [128], out: 64)", "mlp(hiden: [128], out: 64)").replace("prob(contrib[m], y)", "prob(contrib[m])").replace("rho[m] = s[m] / s[other(m)]", "rho[m] = s[m] / sigma[other(m)]");

let server: ChildProcess;
let connection: MessageConnection;
const published = new Map<string, Diagnostic[][]>();
let waiters: (() => void)[] = [];

/** The next diagnostics published for a document after `count` earlier publications of it. */
async function diagnosticsFor(uri: string, count: number): Promise<Diagnostic[]> {
  while ((published.get(uri)?.length ?? 0) <= count) await new Promise<void>((resolve) => waiters.push(resolve));
  return published.get(uri)![count]!;
}

function open(uri: string, text: string): void {
  void connection.sendNotification("textDocument/didOpen", { textDocument: { uri, languageId: "mmb", version: 1, text } });
}

beforeAll(async () => {
  server = spawn(process.execPath, [join(root, "dist", "cli", "main.js"), "lsp", "--stdio"], { stdio: ["pipe", "pipe", "inherit"] });
  connection = createMessageConnection(new StreamMessageReader(server.stdout!), new StreamMessageWriter(server.stdin!));
  connection.onNotification("textDocument/publishDiagnostics", (params: { uri: string; diagnostics: Diagnostic[] }) => {
    published.set(params.uri, [...(published.get(params.uri) ?? []), params.diagnostics]);
    const woken = waiters;
    waiters = [];
    for (const wake of woken) wake();
  });
  connection.listen();
  const initialized = (await connection.sendRequest("initialize", { processId: process.pid, rootUri: null, capabilities: {} })) as { capabilities: Record<string, unknown> };
  expect(initialized.capabilities).toMatchObject({ hoverProvider: true, definitionProvider: true, referencesProvider: true, renameProvider: { prepareProvider: true } });
  await connection.sendNotification("initialized", {});
});

afterAll(() => {
  connection?.dispose();
  server?.kill();
});

describe("mmb lsp", () => {
  it("publishes a spec's three mistakes with the CLI's codes, spans and help, and follows edits", async () => {
    const uri = "file:///work/three.mmb";
    open(uri, broken);
    const diagnostics = await diagnosticsFor(uri, 0);
    expect(diagnostics.map((d) => [d.code, d.range])).toEqual([
      ["MMB012", rangeOf(broken, "hiden")],
      ["MMB007", rangeOf(broken, "prob(contrib[m])")],
      ["MMB005", rangeOf(broken, "sigma")],
    ]);
    expect(diagnostics[0]!.message).toContain("help: did you mean `hidden`?");
    expect(diagnostics.every((d) => d.severity === 1)).toBe(true);

    // An edit that fixes the misspelt option: two mistakes remain, at the same places.
    await connection.sendNotification("textDocument/didChange", {
      textDocument: { uri, version: 2 },
      contentChanges: [{ range: rangeOf(broken, "hiden"), text: "hidden" }],
    });
    const fixed = broken.replace("hiden", "hidden");
    expect((await diagnosticsFor(uri, 1)).map((d) => [d.code, d.range])).toEqual([
      ["MMB007", rangeOf(fixed, "prob(contrib[m])")],
      ["MMB005", rangeOf(fixed, "sigma")],
    ]);
  });

  const uri = "file:///work/ogm_ge.mmb";
  const hover = async (snippet: string, offset = 0, nth = 0) => {
    const answer = (await connection.sendRequest("textDocument/hover", { textDocument: { uri }, position: positionOf(ogm, snippet, offset, nth) })) as { contents: { value: string }; range: Range } | null;
    return answer?.contents.value ?? "";
  };

  it("checks a shipped spec clean", async () => {
    open(uri, ogm);
    expect(await diagnosticsFor(uri, 0)).toEqual([]);
  });

  it("hovers a builtin with its signatures and doc from the catalogue", async () => {
    const tanh = builtin("tanh")!;
    const text = await hover("tanh(", 1);
    for (const signature of tanh.signatures) expect(text).toContain(renderSignature(tanh, signature));
    expect(text).toContain(tanh.doc);
    expect(await hover("std(grad")).toContain(builtin("std")!.doc);
  });

  it("hovers a rule value with its kind, a param with its value, a component and an option with their docs", async () => {
    expect(await hover("rho[m] =")).toMatch(/rule value, one per modality \(`rho\[m\]`\): a number, computed each step/);
    expect(await hover("relu(rho[m])", 6)).toContain("rho[m] = s[m] / s[other(m)]");
    expect(await hover("alpha *")).toContain("param = 0.8");
    expect(await hover("mlp(")).toContain(encoders.mlp!.doc);
    expect(await hover("hidden:")).toContain(encoders.mlp!.options.hidden!.doc);
    expect(await hover("contrib[m]")).toContain("additive share");
    expect(await hover("modality audio", 10)).toContain("modality audio  : float[64]");
  });

  it("goes to a name's definition and finds its references", async () => {
    const definition = (await connection.sendRequest("textDocument/definition", { textDocument: { uri }, position: positionOf(ogm, "s[other(m)]") })) as { uri: string; range: Range };
    expect(definition).toEqual({ uri, range: { start: positionOf(ogm, "s[m]   ="), end: positionOf(ogm, "s[m]   =", 1) } });
    const references = (await connection.sendRequest("textDocument/references", { textDocument: { uri }, position: positionOf(ogm, "rho[m] =", 1), context: { includeDeclaration: true } })) as { range: Range }[];
    expect(references.map((r) => r.range)).toEqual([0, 1, 2].map((n) => ({ start: positionOf(ogm, "rho[", 0, n), end: positionOf(ogm, "rho[", 3, n) })));
    const modality = (await connection.sendRequest("textDocument/references", { textDocument: { uri }, position: positionOf(ogm, "audio", 0, 1), context: { includeDeclaration: false } })) as { range: Range }[];
    // `dominant: audio` in the data clause and `encoder audio`: the modality's two uses.
    expect(modality.map((r) => r.range)).toEqual([rangeOf(ogm, "audio", 0), rangeOf(ogm, "audio", 2)]);
  });

  it("completes components, their options, settings and the names an expression can read", async () => {
    const editUri = "file:///work/typing.mmb";
    const typing = ogm.replace("encoder visual = conv2d(channels: [8, 16], out: 64)", "encoder visual = conv2d(channels: [8, 16], ").replace("  k[m]   =", "  q = n\n  k[m]   =");
    open(editUri, typing);
    const labels = async (position: Position) => ((await connection.sendRequest("textDocument/completion", { textDocument: { uri: editUri }, position })) as { label: string }[]).map((c) => c.label);
    expect(await labels(positionOf(typing, "mlp("))).toEqual(expect.arrayContaining(["mlp", "conv2d", "lstm"]));
    const options = await labels(positionOf(typing, "[8, 16], ", 9));
    expect(options).toEqual(Object.keys(encoders.conv2d!.options));
    const inExpression = await labels(positionOf(typing, "q = n", 5));
    expect(inExpression).toEqual(expect.arrayContaining(["norm", "grad", "rho", "alpha", "audio", "step", "contrib"]));
    expect(inExpression).not.toContain("momentum");
    expect(await labels(positionOf(typing, "train epochs 20", 6))).toEqual(expect.arrayContaining(["epochs", "batch", "turns"]));
  });

  it("renames a rule value everywhere, and refuses names the checker or the language would not take", async () => {
    const edit = (await connection.sendRequest("textDocument/rename", { textDocument: { uri }, position: positionOf(ogm, "rho[m] ="), newName: "ratio" })) as { changes: Record<string, { range: Range; newText: string }[]> };
    const edits = edit.changes[uri]!;
    expect(edits.map((e) => e.range)).toEqual([0, 1, 2].map((n) => ({ start: positionOf(ogm, "rho[", 0, n), end: positionOf(ogm, "rho[", 3, n) })));
    expect(edits.every((e) => e.newText === "ratio")).toBe(true);
    await expect(connection.sendRequest("textDocument/rename", { textDocument: { uri }, position: positionOf(ogm, "rho[m] ="), newName: "grad" })).rejects.toThrow(/keyword or a builtin/);
    // `k` is another rule value: the checker refuses the second definition, and so does the rename.
    await expect(connection.sendRequest("textDocument/rename", { textDocument: { uri }, position: positionOf(ogm, "rho[m] ="), newName: "k" })).rejects.toThrow(/would make the spec fail: MMB/);
    await expect(connection.sendRequest("textDocument/prepareRename", { textDocument: { uri }, position: positionOf(ogm, "encoder audio", 8) })).rejects.toThrow(/only rule values and params/);
  });

  it("formats a document as mmb fmt does, and leaves one that does not parse alone", async () => {
    const messyUri = "file:///work/messy.mmb";
    const messy = ogm.replace("s[m]   = sum(batch", "s[m] = sum( batch").replace("rho[m] = s[m] / s[other(m)]", "rho[m]=(s[m]) / s[other(m)]");
    open(messyUri, messy);
    const edits = (await connection.sendRequest("textDocument/formatting", { textDocument: { uri: messyUri }, options: { tabSize: 2, insertSpaces: true } })) as { range: Range; newText: string }[];
    expect(edits).toEqual([{ range: { start: { line: 0, character: 0 }, end: { line: messy.split("\n").length - 1, character: messy.split("\n").at(-1)!.length } }, newText: ogm }]);
    expect(await connection.sendRequest("textDocument/formatting", { textDocument: { uri }, options: { tabSize: 2, insertSpaces: true } })).toEqual([]);
    open("file:///work/unparsed.mmb", "model x\nbalance {");
    expect(await connection.sendRequest("textDocument/formatting", { textDocument: { uri: "file:///work/unparsed.mmb" }, options: { tabSize: 2, insertSpaces: true } })).toEqual([]);
  });

  it("shuts down and exits when the editor says so", async () => {
    await connection.sendRequest("shutdown");
    const exited = new Promise<number | null>((resolve) => server.once("exit", (code) => resolve(code)));
    await connection.sendNotification("exit");
    expect(await exited).toBe(0);
  });
});
