import { execFile } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import Module, { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, describe, expect, it, vi } from "vitest";

/**
 * The VS Code extension (editors/vscode): its client run against stubs of `vscode` and
 * `vscode-languageclient/node`, its manifest against the files it names, and its package as
 * `npm run vsix` builds it.
 */

const root = join(import.meta.dirname, "..");
const extensionDir = join(root, "editors", "vscode");
const extensionPath = join(extensionDir, "extension.js");
const readJson = (path: string) => JSON.parse(readFileSync(path, "utf8"));
const manifest = readJson(join(extensionDir, "package.json"));

interface FakeClient {
  id: string;
  serverOptions: { command: string; args: string[]; options: { shell: boolean } };
  clientOptions: { documentSelector: unknown };
  running: boolean;
  stops: number;
}

type ConfigurationListener = (event: { affectsConfiguration(section: string): boolean }) => void;

/**
 * extension.js loaded afresh (its client is module state) with `vscode` and the language client
 * stubbed: the stubs record the clients it makes, the messages it shows and the commands it runs.
 */
function loadExtension(settings: Record<string, unknown>, workspace: string, choice?: string) {
  const clients: FakeClient[] = [];
  const messages: string[] = [];
  const commands: unknown[][] = [];
  const listeners: ConfigurationListener[] = [];
  const vscode = {
    workspace: {
      workspaceFolders: [{ uri: { fsPath: workspace } }],
      getConfiguration: (section: string) => ({ get: (key: string) => settings[`${section}.${key}`] }),
      onDidChangeConfiguration: (listener: ConfigurationListener) => {
        listeners.push(listener);
        return { dispose() {} };
      },
    },
    window: {
      showErrorMessage: (message: string) => {
        messages.push(message);
        return Promise.resolve(choice);
      },
    },
    commands: {
      executeCommand: (...args: unknown[]) => {
        commands.push(args);
        return Promise.resolve();
      },
    },
  };
  class LanguageClient implements FakeClient {
    running = false;
    stops = 0;
    constructor(
      public id: string,
      _name: string,
      public serverOptions: FakeClient["serverOptions"],
      public clientOptions: FakeClient["clientOptions"],
    ) {
      clients.push(this);
    }
    async start() {
      this.running = true;
    }
    isRunning() {
      return this.running;
    }
    async stop() {
      this.running = false;
      this.stops++;
    }
  }
  const stubs: Record<string, unknown> = { vscode, "vscode-languageclient/node": { LanguageClient } };
  const loader = Module as unknown as { _load(request: string, ...rest: unknown[]): unknown };
  const load = loader._load;
  loader._load = function (request, ...rest) {
    return request in stubs ? stubs[request] : load.call(this, request, ...rest);
  };
  try {
    const require = createRequire(import.meta.url);
    delete require.cache[extensionPath];
    const extension = require(extensionPath) as { activate(context: unknown): Promise<void>; deactivate(): Promise<void> };
    const context = { subscriptions: [] as unknown[] };
    const changeSetting = (key: string, value: unknown) => {
      settings[key] = value;
      for (const listener of listeners) listener({ affectsConfiguration: (section) => key === section || key.startsWith(`${section}.`) });
    };
    return { extension, context, clients, messages, commands, changeSetting };
  } finally {
    loader._load = load;
  }
}

const folders: string[] = [];

/** A folder holding an executable `name` (a script that is never run: the client is a stub). */
function withExecutable(name: string, mode = 0o755): string {
  const dir = mkdtempSync(join(tmpdir(), "mmb-vscode-"));
  folders.push(dir);
  writeFileSync(join(dir, name), "#!/bin/sh\n");
  chmodSync(join(dir, name), mode);
  return dir;
}

const saved = { PATH: process.env.PATH, PATHEXT: process.env.PATHEXT, platform: process.platform };
afterEach(() => {
  for (const dir of folders.splice(0)) rmSync(dir, { recursive: true, force: true });
  process.env.PATH = saved.PATH;
  if (saved.PATHEXT === undefined) delete process.env.PATHEXT;
  else process.env.PATHEXT = saved.PATHEXT;
  Object.defineProperty(process, "platform", { value: saved.platform });
});

describe("the extension starts `mmb lsp --stdio`", () => {
  it("by default `mmb` from the PATH, for mmb documents; deactivate stops it", async () => {
    const bin = withExecutable("mmb");
    process.env.PATH = bin;
    const { extension, context, clients, messages } = loadExtension({}, tmpdir());
    await extension.activate(context);
    expect(messages).toEqual([]);
    expect(clients).toHaveLength(1);
    const [client] = clients;
    expect(client!.id).toBe("mmb");
    expect(client!.serverOptions).toEqual({ command: join(bin, "mmb"), args: ["lsp", "--stdio"], options: { shell: false } });
    expect(client!.clientOptions.documentSelector).toEqual([{ language: "mmb" }]);
    expect(client!.running).toBe(true);
    await extension.deactivate();
    expect(client!.running).toBe(false);
    expect(client!.stops).toBe(1);
  });

  it("`mmb.server.path` overrides the command: a path relative to the workspace folder, or absolute", async () => {
    const workspace = withExecutable("my-mmb");
    process.env.PATH = withExecutable("mmb");
    const relative = loadExtension({ "mmb.server.path": "./my-mmb" }, workspace);
    await relative.extension.activate(relative.context);
    expect(relative.clients.map((c) => c.serverOptions.command)).toEqual([join(workspace, "my-mmb")]);
    const absolute = loadExtension({ "mmb.server.path": join(workspace, "my-mmb") }, tmpdir());
    await absolute.extension.activate(absolute.context);
    expect(absolute.clients.map((c) => c.serverOptions.command)).toEqual([join(workspace, "my-mmb")]);
  });

  it("restarts the server when `mmb.server.path` changes, not for another setting", async () => {
    process.env.PATH = withExecutable("mmb");
    const other = withExecutable("mmb-dev");
    const { extension, context, clients, changeSetting } = loadExtension({}, tmpdir());
    await extension.activate(context);
    changeSetting("mmb.trace.server", "verbose");
    changeSetting("mmb.server.path", join(other, "mmb-dev"));
    await vi.waitFor(() => expect(clients).toHaveLength(2));
    await vi.waitFor(() => expect(clients[1]!.running).toBe(true));
    expect(clients[0]!.stops).toBe(1);
    expect(clients[1]!.serverOptions.command).toBe(join(other, "mmb-dev"));
  });

  it("says clearly when the command cannot be found or run, and offers the setting", async () => {
    process.env.PATH = withExecutable("mmb", 0o644);
    const missing = loadExtension({}, tmpdir(), "Open Settings");
    await missing.extension.activate(missing.context);
    expect(missing.clients).toEqual([]);
    expect(missing.messages).toHaveLength(1);
    expect(missing.messages[0]).toMatch(/`mmb` was not found on the PATH.*npm install -g.*mmb\.server\.path/);
    await vi.waitFor(() => expect(missing.commands).toEqual([["workbench.action.openSettings", "mmb.server.path"]]));
    const wrongPath = loadExtension({ "mmb.server.path": "/nowhere/mmb" }, tmpdir());
    await wrongPath.extension.activate(wrongPath.context);
    expect(wrongPath.messages[0]).toMatch(/`\/nowhere\/mmb` does not exist or is not executable/);
    await wrongPath.extension.deactivate();
  });

  it("on Windows, starts npm's `mmb.cmd` shim through a shell, its path quoted", async () => {
    const bin = withExecutable("mmb.cmd", 0o644);
    process.env.PATH = bin;
    process.env.PATHEXT = ".exe;.cmd";
    Object.defineProperty(process, "platform", { value: "win32" });
    const { extension, context, clients } = loadExtension({}, tmpdir());
    await extension.activate(context);
    expect(clients.map((c) => c.serverOptions)).toEqual([{ command: `"${join(bin, "mmb.cmd")}"`, args: ["lsp", "--stdio"], options: { shell: true } }]);
  });
});

describe("the manifest", () => {
  it("names files that exist, the grammar's scope, the language and the root's version", () => {
    expect(manifest.name).toBe("mmb");
    expect(manifest.version).toBe(readJson(join(root, "package.json")).version);
    expect(existsSync(join(extensionDir, manifest.main))).toBe(true);
    expect(manifest.activationEvents).toContain("onLanguage:mmb");
    const [language] = manifest.contributes.languages;
    expect(language.id).toBe("mmb");
    expect(language.extensions).toEqual([".mmb"]);
    const configuration = readJson(join(extensionDir, language.configuration));
    expect(configuration.comments.lineComment).toBe("#");
    const [grammar] = manifest.contributes.grammars;
    expect(grammar.language).toBe("mmb");
    expect(readJson(join(extensionDir, grammar.path)).scopeName).toBe(grammar.scopeName);
    expect(grammar.scopeName).toBe("source.mmb");
    const settings = manifest.contributes.configuration.properties;
    expect(settings["mmb.server.path"].default).toBe("mmb");
    expect(settings["mmb.trace.server"]).toBeDefined();
  });

  it("pins its client and asks for the VS Code that client needs", () => {
    expect(manifest.dependencies).toEqual({ "vscode-languageclient": "11.0.0" });
    const lock = readJson(join(extensionDir, "package-lock.json"));
    const client = lock.packages["node_modules/vscode-languageclient"];
    expect(client.version).toBe("11.0.0");
    expect(manifest.engines.vscode).toBe(client.engines.vscode);
  });

  it("the language configuration: identifiers and numbers are words, `{` indents", () => {
    const configuration = readJson(join(extensionDir, "language-configuration.json"));
    const word = new RegExp(`^(?:${configuration.wordPattern})$`);
    for (const w of ["weight_decay", "conv2d", "1e-4", ".5"]) expect(w).toMatch(word);
    expect("a.b").not.toMatch(word);
    const indent = new RegExp(configuration.indentationRules.increaseIndentPattern);
    expect("balance {").toMatch(indent);
    expect("  when epoch < 5 {  # the warm-up").toMatch(indent);
    expect("when epoch == 0 { set weights(head) = fresh(head) }").not.toMatch(indent);
    expect("# a { in a comment").not.toMatch(indent);
  });
});

/** The names in a zip archive, read from its central directory. */
function zipEntries(zip: Buffer): string[] {
  const end = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  const count = zip.readUInt16LE(end + 10);
  let offset = zip.readUInt32LE(end + 16);
  const names: string[] = [];
  for (let i = 0; i < count; i++) {
    expect(zip.readUInt32LE(offset)).toBe(0x02014b50);
    const nameLength = zip.readUInt16LE(offset + 28);
    names.push(zip.toString("utf8", offset + 46, offset + 46 + nameLength));
    offset += 46 + nameLength + zip.readUInt16LE(offset + 30) + zip.readUInt16LE(offset + 32);
  }
  return names;
}

describe("npm run vsix", () => {
  it("packages the extension with its client into dist/mmb-<version>.vsix", { timeout: 240_000 }, async () => {
    await promisify(execFile)("npm", ["run", "vsix"], { cwd: root, timeout: 240_000, maxBuffer: 16 * 1024 * 1024 });
    const vsix = join(root, "dist", `mmb-${manifest.version}.vsix`);
    const entries = zipEntries(readFileSync(vsix));
    for (const file of ["package.json", "extension.js", "syntaxes/mmb.tmLanguage.json", "language-configuration.json", "readme.md", "node_modules/vscode-languageclient/package.json", "node_modules/vscode-languageclient/lib/node/main.js"]) {
      expect(entries).toContain(`extension/${file}`);
    }
    // Only what VS Code loads: not the packager, nor the lock.
    expect(entries.filter((e) => e.startsWith("extension/node_modules/@vscode/vsce/") || e === "extension/package-lock.json")).toEqual([]);
  });
});
