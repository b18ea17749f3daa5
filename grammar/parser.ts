import { CstParser, type CstNode, type ILexingResult, type IToken } from "chevrotain";
import * as T from "./tokens.js";

/** The concrete-syntax parser. One instance is reused: Chevrotain's self-analysis is costly. */
class MmbParser extends CstParser {
  constructor() {
    super(T.allTokens, { recoveryEnabled: true, nodeLocationTracking: "onlyOffset", maxLookahead: 3 });
    this.performSelfAnalysis();
  }

  program = this.RULE("program", () => {
    this.MANY(() => this.SUBRULE(this.declaration));
  });

  declaration = this.RULE("declaration", () => {
    this.OR([
      { ALT: () => this.SUBRULE(this.modelDecl) },
      { ALT: () => this.SUBRULE(this.dataDecl) },
      { ALT: () => this.SUBRULE(this.modalityDecl) },
      { ALT: () => this.SUBRULE(this.targetDecl) },
      { ALT: () => this.SUBRULE(this.encoderDecl) },
      { ALT: () => this.SUBRULE(this.headDecl) },
      { ALT: () => this.SUBRULE(this.fusionDecl) },
      { ALT: () => this.SUBRULE(this.lossDecl) },
      { ALT: () => this.SUBRULE(this.optimizerDecl) },
      { ALT: () => this.SUBRULE(this.scheduleDecl) },
      { ALT: () => this.SUBRULE(this.trainDecl) },
      { ALT: () => this.SUBRULE(this.learnableDecl) },
      { ALT: () => this.SUBRULE(this.predictDecl) },
      { ALT: () => this.SUBRULE(this.balanceBlock) },
      { ALT: () => this.SUBRULE(this.epochBlock) },
      { ALT: () => this.SUBRULE(this.stageDecl) },
      { ALT: () => this.SUBRULE(this.freezeDecl) },
    ]);
  });

  modelDecl = this.RULE("modelDecl", () => {
    this.CONSUME(T.Model);
    this.CONSUME(T.Identifier, { LABEL: "name" });
  });

  dataDecl = this.RULE("dataDecl", () => {
    this.CONSUME(T.Data);
    this.SUBRULE(this.expression, { LABEL: "value" });
  });

  modalityDecl = this.RULE("modalityDecl", () => {
    this.CONSUME(T.Modality);
    this.CONSUME(T.Identifier, { LABEL: "name" });
    this.CONSUME(T.Colon);
    this.SUBRULE(this.expression, { LABEL: "type" });
    this.OPTION(() => {
      this.CONSUME(T.From);
      this.SUBRULE2(this.expression, { LABEL: "source" });
    });
  });

  targetDecl = this.RULE("targetDecl", () => {
    this.CONSUME(T.Target);
    this.CONSUME(T.Identifier, { LABEL: "name" });
    this.CONSUME(T.Colon);
    this.SUBRULE(this.expression, { LABEL: "type" });
    this.OPTION(() => {
      this.CONSUME(T.From);
      this.SUBRULE2(this.expression, { LABEL: "source" });
    });
  });

  /** `name` or `name[m]`: the left side of per-modality declarations. */
  indexedName = this.RULE("indexedName", () => {
    this.CONSUME(T.Identifier, { LABEL: "name" });
    this.OPTION(() => {
      this.CONSUME(T.LBracket);
      this.CONSUME2(T.Identifier, { LABEL: "index" });
      this.CONSUME(T.RBracket);
    });
  });

  encoderDecl = this.RULE("encoderDecl", () => {
    this.CONSUME(T.Encoder);
    this.OR([
      { ALT: () => this.CONSUME(T.Identifier, { LABEL: "name" }) },
      {
        ALT: () => {
          this.CONSUME(T.LBracket);
          this.CONSUME2(T.Identifier, { LABEL: "index" });
          this.CONSUME(T.RBracket);
        },
      },
    ]);
    this.CONSUME(T.Equals);
    this.SUBRULE(this.expression, { LABEL: "value" });
  });

  headDecl = this.RULE("headDecl", () => {
    this.CONSUME(T.Head);
    this.CONSUME(T.LBracket);
    this.CONSUME(T.Identifier, { LABEL: "index" });
    this.CONSUME(T.RBracket);
    this.CONSUME(T.Equals);
    this.SUBRULE(this.expression, { LABEL: "value" });
  });

  fusionDecl = this.RULE("fusionDecl", () => {
    this.CONSUME(T.Fusion);
    this.SUBRULE(this.expression, { LABEL: "value" });
    this.CONSUME(T.Arrow);
    this.SUBRULE2(this.expression, { LABEL: "head" });
  });

  /** `loss EXPR`, or `loss[m] EXPR`: one loss per modality, trained in turn (`train ... turns`). */
  lossDecl = this.RULE("lossDecl", () => {
    this.CONSUME(T.Loss);
    this.OPTION(() => {
      this.CONSUME(T.LBracket);
      this.CONSUME(T.Identifier, { LABEL: "index" });
      this.CONSUME(T.RBracket);
    });
    this.SUBRULE(this.expression, { LABEL: "value" });
  });

  optimizerDecl = this.RULE("optimizerDecl", () => {
    this.CONSUME(T.Optimizer);
    this.SUBRULE(this.expression, { LABEL: "value" });
  });

  scheduleDecl = this.RULE("scheduleDecl", () => {
    this.CONSUME(T.Schedule);
    this.SUBRULE(this.expression, { LABEL: "value" });
  });

  trainDecl = this.RULE("trainDecl", () => {
    this.CONSUME(T.Train);
    this.AT_LEAST_ONE(() => {
      this.CONSUME(T.Identifier, { LABEL: "key" });
      this.SUBRULE(this.operand, { LABEL: "value" });
    });
  });

  learnableDecl = this.RULE("learnableDecl", () => {
    this.CONSUME(T.Learnable);
    this.SUBRULE(this.indexedName, { LABEL: "target" });
    this.CONSUME(T.Equals);
    this.SUBRULE(this.expression, { LABEL: "value" });
  });

  /** `predict EXPR`: how the model predicts at evaluation, when that differs from `out`. */
  predictDecl = this.RULE("predictDecl", () => {
    this.CONSUME(T.Predict);
    this.SUBRULE(this.expression, { LABEL: "value" });
  });

  balanceBlock = this.RULE("balanceBlock", () => {
    this.CONSUME(T.Balance);
    this.CONSUME(T.LBrace);
    this.MANY(() => this.SUBRULE(this.statement));
    this.CONSUME(T.RBrace);
  });

  /** `stage NAME { ... }`: a training stage with its own loss, optimiser, settings and rules. */
  stageDecl = this.RULE("stageDecl", () => {
    this.CONSUME(T.Stage);
    this.CONSUME(T.Identifier, { LABEL: "name" });
    this.CONSUME(T.LBrace);
    this.MANY(() => this.SUBRULE(this.declaration));
    this.CONSUME(T.RBrace);
  });

  /** `freeze G, G, ...`: groups a stage does not train. */
  freezeDecl = this.RULE("freezeDecl", () => {
    this.CONSUME(T.Freeze);
    this.AT_LEAST_ONE_SEP({ SEP: T.Comma, DEF: () => this.SUBRULE(this.expression, { LABEL: "groups" }) });
  });

  /** `every epoch { ... }`: rules evaluated at each epoch's start. */
  epochBlock = this.RULE("epochBlock", () => {
    this.CONSUME(T.Every);
    this.CONSUME(T.Identifier, { LABEL: "unit" });
    this.CONSUME(T.LBrace);
    this.MANY(() => this.SUBRULE(this.statement));
    this.CONSUME(T.RBrace);
  });

  statement = this.RULE("statement", () => {
    this.OR([
      { ALT: () => this.SUBRULE(this.paramStmt) },
      { ALT: () => this.SUBRULE(this.whenStmt) },
      { ALT: () => this.SUBRULE(this.scaleStmt) },
      { ALT: () => this.SUBRULE(this.noiseStmt) },
      { ALT: () => this.SUBRULE(this.replaceStmt) },
      { ALT: () => this.SUBRULE(this.dropStmt) },
      { ALT: () => this.SUBRULE(this.addLossStmt) },
      { ALT: () => this.SUBRULE(this.minimizeStmt) },
      { ALT: () => this.SUBRULE(this.setStmt) },
      { ALT: () => this.SUBRULE(this.defineStmt) },
    ]);
  });

  paramStmt = this.RULE("paramStmt", () => {
    this.CONSUME(T.Param);
    this.CONSUME(T.Identifier, { LABEL: "name" });
    this.CONSUME(T.Equals);
    this.SUBRULE(this.expression, { LABEL: "value" });
  });

  defineStmt = this.RULE("defineStmt", () => {
    this.SUBRULE(this.indexedName, { LABEL: "target" });
    this.CONSUME(T.Equals);
    this.SUBRULE(this.expression, { LABEL: "value" });
  });

  whenStmt = this.RULE("whenStmt", () => {
    this.CONSUME(T.When);
    this.SUBRULE(this.expression, { LABEL: "condition" });
    this.CONSUME(T.LBrace);
    this.MANY(() => this.SUBRULE(this.statement));
    this.CONSUME(T.RBrace);
  });

  scaleStmt = this.RULE("scaleStmt", () => {
    this.CONSUME(T.Scale);
    this.SUBRULE(this.expression, { LABEL: "target" });
    this.CONSUME(T.By);
    this.SUBRULE2(this.expression, { LABEL: "factor" });
  });

  noiseStmt = this.RULE("noiseStmt", () => {
    this.CONSUME(T.Noise);
    this.SUBRULE(this.expression, { LABEL: "target" });
    this.CONSUME(T.Tilde);
    this.SUBRULE2(this.expression, { LABEL: "distribution" });
  });

  replaceStmt = this.RULE("replaceStmt", () => {
    this.CONSUME(T.Replace);
    this.SUBRULE(this.expression, { LABEL: "target" });
    this.CONSUME(T.By);
    this.SUBRULE2(this.expression, { LABEL: "value" });
  });

  dropStmt = this.RULE("dropStmt", () => {
    this.CONSUME(T.Drop);
    this.SUBRULE(this.expression, { LABEL: "target" });
    this.CONSUME(T.With);
    this.SUBRULE2(this.expression, { LABEL: "probability" });
    this.OPTION(() => this.CONSUME(T.Rescaled, { LABEL: "rescaled" }));
  });

  setStmt = this.RULE("setStmt", () => {
    this.CONSUME(T.Set);
    this.SUBRULE(this.expression, { LABEL: "target" });
    this.CONSUME(T.Equals);
    this.SUBRULE2(this.expression, { LABEL: "value" });
  });

  addLossStmt = this.RULE("addLossStmt", () => {
    this.CONSUME(T.Add);
    this.CONSUME(T.Loss);
    this.SUBRULE(this.expression, { LABEL: "value" });
  });

  minimizeStmt = this.RULE("minimizeStmt", () => {
    this.CONSUME(T.Minimize);
    this.SUBRULE(this.expression, { LABEL: "value" });
    this.CONSUME(T.Wrt);
    this.SUBRULE2(this.expression, { LABEL: "group" });
    this.CONSUME(T.Using);
    this.SUBRULE3(this.expression, { LABEL: "optimizer" });
  });

  /**
   * Operands joined by infix operators, flat: the AST builder applies precedence (one rule
   * instead of a rule per precedence level keeps parsing fast).
   */
  expression = this.RULE("expression", () => {
    this.SUBRULE(this.operand, { LABEL: "operand" });
    this.MANY(() => {
      this.CONSUME(T.BinaryOperator, { LABEL: "operator" });
      this.SUBRULE2(this.operand, { LABEL: "operand" });
    });
  });

  /** Prefix operators, a primary, then calls, indexing and member access: one rule, so that a leaf costs one rule call. */
  operand = this.RULE("operand", () => {
    this.MANY(() => {
      this.OR([
        { ALT: () => this.CONSUME(T.Minus, { LABEL: "prefix" }) },
        { ALT: () => this.CONSUME(T.Not, { LABEL: "prefix" }) },
      ]);
    });
    this.OR2([
      { ALT: () => this.CONSUME(T.NumberLiteral, { LABEL: "number" }) },
      { ALT: () => this.CONSUME(T.StringLiteral, { LABEL: "string" }) },
      { ALT: () => this.CONSUME(T.NameWord, { LABEL: "name" }) },
      { ALT: () => this.SUBRULE(this.listLiteral, { LABEL: "list" }) },
      { ALT: () => this.SUBRULE(this.ifExpr, { LABEL: "conditional" }) },
      {
        ALT: () => {
          this.CONSUME(T.LParen);
          this.SUBRULE(this.expression, { LABEL: "inner" });
          this.CONSUME(T.RParen);
        },
      },
    ]);
    this.MANY2(() => {
      this.OR3([
        { ALT: () => this.SUBRULE(this.callSuffix, { LABEL: "suffix" }) },
        { ALT: () => this.SUBRULE(this.indexSuffix, { LABEL: "suffix" }) },
        { ALT: () => this.SUBRULE(this.memberSuffix, { LABEL: "suffix" }) },
      ]);
    });
  });

  callSuffix = this.RULE("callSuffix", () => {
    this.CONSUME(T.LParen);
    this.MANY_SEP({ SEP: T.Comma, DEF: () => this.SUBRULE(this.argument) });
    this.CONSUME(T.RParen);
  });

  argument = this.RULE("argument", () => {
    // An option name may be any word, keywords included (`synthetic(noise: 0.5)`).
    this.OPTION(() => {
      this.CONSUME(T.Word, { LABEL: "name" });
      this.CONSUME(T.Colon);
    });
    this.SUBRULE(this.expression, { LABEL: "value" });
  });

  indexSuffix = this.RULE("indexSuffix", () => {
    this.CONSUME(T.LBracket);
    this.AT_LEAST_ONE_SEP({ SEP: T.Comma, DEF: () => this.SUBRULE(this.expression, { LABEL: "index" }) });
    this.CONSUME(T.RBracket);
  });

  memberSuffix = this.RULE("memberSuffix", () => {
    this.CONSUME(T.Dot);
    this.CONSUME(T.NameWord, { LABEL: "property" });
  });

  listLiteral = this.RULE("listLiteral", () => {
    this.CONSUME(T.LBracket);
    this.MANY_SEP({ SEP: T.Comma, DEF: () => this.SUBRULE(this.expression, { LABEL: "item" }) });
    this.CONSUME(T.RBracket);
  });

  ifExpr = this.RULE("ifExpr", () => {
    this.CONSUME(T.If);
    this.SUBRULE(this.expression, { LABEL: "condition" });
    this.CONSUME(T.Then);
    this.SUBRULE2(this.expression, { LABEL: "then" });
    this.CONSUME(T.Else);
    this.SUBRULE3(this.expression, { LABEL: "otherwise" });
  });
}

export const mmbParser = new MmbParser();

export interface ParseOutput {
  cst: CstNode;
  lexErrors: { offset: number; length: number; message: string }[];
  parseErrors: { token: IToken; message: string; previousToken?: IToken | undefined }[];
}

/** Parses the lexer's output (`mmbLexer.tokenize(source)`). */
export function parseCst(lexed: ILexingResult): ParseOutput {
  mmbParser.input = lexed.tokens;
  const cst = mmbParser.program();
  return {
    cst,
    lexErrors: lexed.errors.map((e) => ({ offset: e.offset, length: e.length, message: e.message })),
    parseErrors: mmbParser.errors.map((e) => ({ token: e.token, message: e.message, previousToken: (e as { previousToken?: IToken }).previousToken })),
  };
}
