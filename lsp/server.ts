import {
  DiagnosticSeverity,
  DocumentSymbol,
  ErrorCodes,
  ResponseError,
  SymbolKind,
  TextDocuments,
  TextDocumentSyncKind,
  type Connection,
  type Diagnostic as LspDiagnostic,
  type Location,
  type Range,
  type TextEdit,
} from "vscode-languageserver";
import { TextDocument } from "vscode-languageserver-textdocument";
import { reservedNames } from "../compiler/builtins/index.js";
import { analyze, type Analysis } from "../compiler/index.js";
import type { Diagnostic, Span } from "../diagnostics/index.js";
import { formatSpec } from "../grammar/print.js";
import { keywords } from "../grammar/tokens.js";
import { complete } from "./completion.js";
import { hoverText } from "./hover.js";
import { indexSymbols, occurrenceAt, type SpecSymbol, type SymbolIndex } from "./symbols.js";

/**
 * The language server: every answer comes from the compiler's own phases (`analyze`: the parser
 * and the checker, never a copy) and the builtin catalogue, over the open documents' text.
 * Diagnostics carry the CLI's codes, spans and help lines.
 */

interface Understood {
  version: number;
  analysis: Analysis;
  symbols: SymbolIndex;
}

/** Names a rule value may be renamed to: an identifier that is not a keyword or a builtin. */
const identifier = /^[A-Za-z_][A-Za-z0-9_]*$/;
const keywordWords: ReadonlySet<string> = new Set(keywords.map((k) => k.name.toLowerCase()));

export function serve(connection: Connection): void {
  const documents = new TextDocuments(TextDocument);
  const cache = new Map<string, Understood>();

  /** The document analysed at its current version (analysed once per version). */
  const understand = (document: TextDocument): Understood => {
    const cached = cache.get(document.uri);
    if (cached?.version === document.version) return cached;
    const analysis = analyze(document.getText(), { fileName: fileNameOf(document.uri) });
    const understood = { version: document.version, analysis, symbols: indexSymbols(analysis.program) };
    cache.set(document.uri, understood);
    return understood;
  };
  const documentOf = (uri: string): TextDocument | undefined => documents.get(uri);

  connection.onInitialize(() => ({
    capabilities: {
      textDocumentSync: TextDocumentSyncKind.Incremental,
      hoverProvider: true,
      definitionProvider: true,
      referencesProvider: true,
      documentSymbolProvider: true,
      renameProvider: { prepareProvider: true },
      completionProvider: { triggerCharacters: ["(", ",", "[", ".", " "] },
      documentFormattingProvider: true,
    },
    serverInfo: { name: "mmb" },
  }));

  documents.onDidChangeContent(({ document }) => {
    let diagnostics: LspDiagnostic[];
    try {
      diagnostics = understand(document).analysis.diagnostics.map((d) => toLspDiagnostic(d, document));
    } catch (e) {
      // A crash of the compiler must not take the editor's server down with it: it is reported where the user looks.
      connection.console.error(`mmb: internal error while checking ${document.uri}: ${(e as Error).stack ?? e}`);
      diagnostics = [{ range: range(document, { start: 0, end: 0 }), severity: DiagnosticSeverity.Error, source: "mmb", message: `internal error of the checker: ${(e as Error).message}` }];
    }
    void connection.sendDiagnostics({ uri: document.uri, version: document.version, diagnostics });
  });
  documents.onDidClose(({ document }) => {
    cache.delete(document.uri);
    void connection.sendDiagnostics({ uri: document.uri, diagnostics: [] });
  });

  connection.onHover(({ textDocument, position }) => {
    const document = documentOf(textDocument.uri);
    if (!document) return null;
    const { analysis, symbols } = understand(document);
    const occurrence = occurrenceAt(symbols, document.offsetAt(position));
    if (!occurrence) return null;
    return { contents: { kind: "markdown", value: hoverText(occurrence, analysis.source, analysis.ir) }, range: range(document, occurrence.span) };
  });

  /** The spec's own symbol under the cursor, if any. */
  const symbolAt = (uri: string, position: { line: number; character: number }): { document: TextDocument; symbol: SpecSymbol; understood: Understood } | undefined => {
    const document = documentOf(uri);
    if (!document) return undefined;
    const understood = understand(document);
    const occurrence = occurrenceAt(understood.symbols, document.offsetAt(position));
    return occurrence?.kind === "symbol" ? { document, symbol: occurrence.symbol, understood } : undefined;
  };

  connection.onDefinition(({ textDocument, position }): Location | null => {
    const found = symbolAt(textDocument.uri, position);
    return found ? { uri: textDocument.uri, range: range(found.document, found.symbol.span) } : null;
  });

  connection.onReferences(({ textDocument, position, context }): Location[] => {
    const found = symbolAt(textDocument.uri, position);
    if (!found) return [];
    const spans = [...(context.includeDeclaration ? [found.symbol.span] : []), ...found.symbol.references];
    return spans.map((span) => ({ uri: textDocument.uri, range: range(found.document, span) }));
  });

  connection.onPrepareRename(({ textDocument, position }) => {
    const found = symbolAt(textDocument.uri, position);
    if (!found) return null;
    if (!renamable(found.symbol)) throw new ResponseError(ErrorCodes.InvalidRequest, `only rule values and params can be renamed; \`${found.symbol.name}\` is a ${found.symbol.kind}`);
    const at = found.document.offsetAt(position);
    const span = [found.symbol.span, ...found.symbol.references].find((s) => s.start <= at && at <= s.end)!;
    return { range: range(found.document, span), placeholder: found.symbol.name };
  });

  connection.onRenameRequest(({ textDocument, position, newName }) => {
    const found = symbolAt(textDocument.uri, position);
    if (!found || !renamable(found.symbol)) return null;
    const { document, symbol, understood } = found;
    if (!identifier.test(newName) || keywordWords.has(newName) || reservedNames.has(newName)) {
      throw new ResponseError(ErrorCodes.InvalidParams, `\`${newName}\` cannot name a ${symbol.kind === "param" ? "param" : "rule value"}: it is ${identifier.test(newName) ? "a keyword or a builtin's name" : "not an identifier"}`);
    }
    const spans = [symbol.span, ...symbol.references].sort((a, b) => a.start - b.start);
    // The checker decides: a rename that makes a checking spec fail (a name taken, a log field) is refused with its message.
    if (understood.analysis.diagnostics.length === 0) {
      const text = document.getText();
      let renamed = "";
      let at = 0;
      for (const span of spans) {
        renamed += text.slice(at, span.start) + newName;
        at = span.end;
      }
      const after = analyze(renamed + text.slice(at), { fileName: fileNameOf(document.uri) });
      const broken = after.diagnostics[0];
      if (broken) throw new ResponseError(ErrorCodes.InvalidParams, `renaming \`${symbol.name}\` to \`${newName}\` would make the spec fail: ${broken.code} ${broken.message}`);
    }
    const edits: TextEdit[] = spans.map((span) => ({ range: range(document, span), newText: newName }));
    return { changes: { [textDocument.uri]: edits } };
  });

  connection.onCompletion(({ textDocument, position }) => {
    const document = documentOf(textDocument.uri);
    if (!document) return [];
    const { analysis, symbols } = understand(document);
    return complete(document.getText(), document.offsetAt(position), analysis.program, symbols);
  });

  // `mmb fmt`'s layout: the whole text replaced by the formatted one; nothing while it does not parse.
  connection.onDocumentFormatting(({ textDocument }): TextEdit[] => {
    const document = documentOf(textDocument.uri);
    if (!document) return [];
    const text = document.getText();
    const formatted = formatSpec(text);
    if (!("text" in formatted) || formatted.text === text) return [];
    return [{ range: range(document, { start: 0, end: text.length }), newText: formatted.text }];
  });

  connection.onDocumentSymbol(({ textDocument }): DocumentSymbol[] => {
    const document = documentOf(textDocument.uri);
    if (!document) return [];
    const { symbols } = understand(document);
    const outline = (s: SpecSymbol): DocumentSymbol => DocumentSymbol.create(s.index ? `${s.name}[${s.index}]` : s.name, s.kind, outlineKinds[s.kind], range(document, s.declaration), range(document, s.span));
    const stages = new Map<string, DocumentSymbol>();
    const top: DocumentSymbol[] = [];
    for (const symbol of symbols.symbols) {
      const entry = outline(symbol);
      if (symbol.kind === "stage") stages.set(symbol.name, entry);
      const parent = symbol.kind === "value" && symbol.stage ? stages.get(symbol.stage) : undefined;
      if (parent) (parent.children ??= []).push(entry);
      else top.push(entry);
    }
    return top;
  });

  documents.listen(connection);
  connection.listen();
}

const renamable = (symbol: SpecSymbol) => symbol.kind === "value" || symbol.kind === "param";

const outlineKinds: Record<SpecSymbol["kind"], SymbolKind> = {
  modality: SymbolKind.EnumMember,
  target: SymbolKind.Variable,
  learnable: SymbolKind.Field,
  stage: SymbolKind.Module,
  param: SymbolKind.Constant,
  value: SymbolKind.Variable,
};

/** A span of the document as the protocol's range (line and UTF-16 character, as JavaScript strings count). */
function range(document: TextDocument, span: Span): Range {
  return { start: document.positionAt(span.start), end: document.positionAt(span.end) };
}

function fileNameOf(uri: string): string {
  return decodeURIComponent(uri.slice(uri.lastIndexOf("/") + 1)) || "spec.mmb";
}

/** A compiler diagnostic as the protocol's: its code, its spans, its help line under the message. */
export function toLspDiagnostic(d: Diagnostic, document: TextDocument): LspDiagnostic {
  return {
    range: range(document, d.span),
    severity: d.severity === "error" ? DiagnosticSeverity.Error : DiagnosticSeverity.Warning,
    code: d.code,
    source: "mmb",
    message: [d.message + (d.label ? `: ${d.label}` : ""), d.help ? `help: ${d.help}` : ""].filter(Boolean).join("\n"),
    ...(d.related.length ? { relatedInformation: d.related.map((r) => ({ location: { uri: document.uri, range: range(document, r.span) }, message: r.message })) } : {}),
  };
}
