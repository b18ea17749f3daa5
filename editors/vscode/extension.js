"use strict";
/**
 * The mmb extension. Highlighting, comments and brackets are declarative (package.json's
 * `contributes`: syntaxes/, language-configuration.json); this module runs the language server,
 * which is the CLI's own `mmb lsp --stdio`, so the editor reports exactly what `mmb check` does.
 * Plain CommonJS: VS Code loads it as it is, with no build step.
 */
const fs = require("node:fs");
const path = require("node:path");
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

const install = "Install the mmb CLI (`npm install -g .` in a built checkout of mmb) or set `mmb.server.path`.";

/** @type {LanguageClient | undefined} */
let client;

/**
 * The file that `command` names, found as a shell would find it: a path (relative to the first
 * workspace folder), or a bare name on the PATH, with Windows's executable extensions. Looked up
 * before starting so that a missing CLI gets a message that says so, where the client would only
 * report that it "couldn't create connection to server".
 * @param {string} command
 * @returns {string | undefined}
 */
function findExecutable(command) {
  const windows = process.platform === "win32";
  const extensions = windows ? ["", ...(process.env.PATHEXT || ".COM;.EXE;.BAT;.CMD").split(";")] : [""];
  const base = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? process.cwd();
  const candidates = /[\\/]/.test(command)
    ? [path.resolve(base, command)]
    : (process.env.PATH || "").split(path.delimiter).filter(Boolean).map((dir) => path.join(dir, command));
  for (const candidate of candidates) {
    for (const extension of extensions) {
      const file = candidate + extension;
      try {
        if (fs.statSync(file).isFile()) {
          fs.accessSync(file, windows ? fs.constants.F_OK : fs.constants.X_OK);
          return file;
        }
      } catch {
        // Absent or not executable: try the next candidate.
      }
    }
  }
  return undefined;
}

/** Starts the server that `mmb.server.path` names, or says why it cannot. */
async function start() {
  const command = vscode.workspace.getConfiguration("mmb").get("server.path") || "mmb";
  const file = findExecutable(command);
  if (file === undefined) {
    const where = /[\\/]/.test(command) ? "does not exist or is not executable" : "was not found on the PATH";
    // Not awaited: activation must not wait for the user to dismiss the message.
    void vscode.window.showErrorMessage(`mmb: the language server command \`${command}\` ${where}. ${install}`, "Open Settings").then((choice) => {
      if (choice === "Open Settings") void vscode.commands.executeCommand("workbench.action.openSettings", "mmb.server.path");
    });
    return;
  }
  // npm's commands on Windows are .cmd shims, which Node starts only through a shell.
  const shell = process.platform === "win32" && /\.(?:cmd|bat)$/i.test(file);
  client = new LanguageClient(
    "mmb",
    "mmb",
    { command: shell ? `"${file}"` : file, args: ["lsp", "--stdio"], options: { shell } },
    { documentSelector: [{ language: "mmb" }] },
  );
  // A failed start is reported by the client itself: a notification, and the server's stderr in
  // the "mmb" output channel (e.g. an mmb too old to have `lsp`).
  await client.start().catch(() => undefined);
}

/** Stops the server; a client that never got running has nothing to stop (and would throw). */
async function stop() {
  const running = client;
  client = undefined;
  if (running?.isRunning()) await running.stop();
}

/**
 * Starts and stops run one after another, so that a stop never meets a client still starting
 * (which cannot be stopped): the settings can change again while the server starts.
 */
let queue = Promise.resolve();

/** @param {() => Promise<void>} task */
function enqueue(task) {
  queue = queue.then(task).catch((error) => {
    void vscode.window.showErrorMessage(`mmb: ${error instanceof Error ? error.message : String(error)}`);
  });
  return queue;
}

/** @param {import("vscode").ExtensionContext} context */
function activate(context) {
  context.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (event.affectsConfiguration("mmb.server")) void enqueue(() => stop().then(start));
    }),
  );
  return enqueue(start);
}

function deactivate() {
  return enqueue(stop);
}

module.exports = { activate, deactivate };
