import { createConnection, StreamMessageReader, StreamMessageWriter } from "vscode-languageserver/node";
import { serve } from "./server.js";

export { serve, toLspDiagnostic } from "./server.js";

/**
 * `mmb lsp`: the language server over stdin and stdout. Stdout carries the protocol alone, so
 * anything else written to the console (a dependency's notice) goes to stderr, which editors show
 * as the server's log. The connection ends the process on the client's `exit`.
 */
export function serveStdio(): Promise<never> {
  console.log = console.error;
  console.info = console.error;
  serve(createConnection(new StreamMessageReader(process.stdin), new StreamMessageWriter(process.stdout)));
  return new Promise<never>(() => {});
}
