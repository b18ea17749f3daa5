import { createToken, Lexer, type TokenType } from "chevrotain";

/** Any word that may name a thing inside an expression: identifiers and a few keywords (`grad(encoder[m])`). */
export const NameWord = createToken({ name: "NameWord", pattern: Lexer.NA });
/** Any word, keywords included: option names (`synthetic(noise: 0.5)`). */
export const Word = createToken({ name: "Word", pattern: Lexer.NA });

export const Identifier = createToken({ name: "Identifier", pattern: /[A-Za-z_][A-Za-z0-9_]*/, categories: [NameWord, Word] });

/** Every infix operator: expressions are operands joined by these; the AST builder applies precedence. */
export const BinaryOperator = createToken({ name: "BinaryOperator", pattern: Lexer.NA });

/** Reserved words start declarations and statements; `longer_alt` keeps `models` an identifier. */
function keyword(word: string, categories: TokenType[] = []): TokenType {
  return createToken({ name: word[0]!.toUpperCase() + word.slice(1), pattern: new RegExp(word), longer_alt: Identifier, categories: [Word, ...categories] });
}

export const Model = keyword("model", [NameWord]);
export const Data = keyword("data", [NameWord]);
export const Modality = keyword("modality", [NameWord]);
export const Target = keyword("target", [NameWord]);
export const Encoder = keyword("encoder", [NameWord]);
export const Fusion = keyword("fusion", [NameWord]);
export const Head = keyword("head", [NameWord]);
export const Loss = keyword("loss", [NameWord]);
export const Optimizer = keyword("optimizer");
export const Schedule = keyword("schedule");
export const Train = keyword("train", [NameWord]);
export const Learnable = keyword("learnable");
export const Predict = keyword("predict", [NameWord]);
export const Balance = keyword("balance");
export const Every = keyword("every");
export const Stage = keyword("stage");
export const Freeze = keyword("freeze");
export const Param = keyword("param");
export const When = keyword("when");
export const Scale = keyword("scale");
export const Noise = keyword("noise");
export const Replace = keyword("replace");
export const Drop = keyword("drop");
export const Rescaled = keyword("rescaled");
export const Set = keyword("set");
export const With = keyword("with");
export const By = keyword("by");
export const Add = keyword("add");
export const Minimize = keyword("minimize");
export const Wrt = keyword("wrt");
export const Using = keyword("using");
export const From = keyword("from");
export const If = keyword("if");
export const Then = keyword("then");
export const Else = keyword("else");
export const And = keyword("and", [BinaryOperator]);
export const Or = keyword("or", [BinaryOperator]);
export const Not = keyword("not");


export const NumberLiteral = createToken({ name: "NumberLiteral", pattern: /(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/ });
export const StringLiteral = createToken({ name: "StringLiteral", pattern: /"(?:[^"\\\n\r]|\\.)*"/ });
export const Arrow = createToken({ name: "Arrow", pattern: /->/ });
export const LessEqual = createToken({ name: "LessEqual", pattern: /<=/, categories: [BinaryOperator] });
export const GreaterEqual = createToken({ name: "GreaterEqual", pattern: />=/, categories: [BinaryOperator] });
export const EqualEqual = createToken({ name: "EqualEqual", pattern: /==/, categories: [BinaryOperator] });
export const NotEqual = createToken({ name: "NotEqual", pattern: /!=/, categories: [BinaryOperator] });
export const Less = createToken({ name: "Less", pattern: /</, categories: [BinaryOperator] });
export const Greater = createToken({ name: "Greater", pattern: />/, categories: [BinaryOperator] });
export const Equals = createToken({ name: "Equals", pattern: /=/ });
export const Plus = createToken({ name: "Plus", pattern: /\+/, categories: [BinaryOperator] });
export const Minus = createToken({ name: "Minus", pattern: /-/, categories: [BinaryOperator] });
export const Star = createToken({ name: "Star", pattern: /\*/, categories: [BinaryOperator] });
export const Slash = createToken({ name: "Slash", pattern: /\//, categories: [BinaryOperator] });
export const Percent = createToken({ name: "Percent", pattern: /%/, categories: [BinaryOperator] });
export const Caret = createToken({ name: "Caret", pattern: /\^/, categories: [BinaryOperator] });
export const Tilde = createToken({ name: "Tilde", pattern: /~/ });
export const Colon = createToken({ name: "Colon", pattern: /:/ });
export const Comma = createToken({ name: "Comma", pattern: /,/ });
export const Dot = createToken({ name: "Dot", pattern: /\./ });
export const LParen = createToken({ name: "LParen", pattern: /\(/ });
export const RParen = createToken({ name: "RParen", pattern: /\)/ });
export const LBracket = createToken({ name: "LBracket", pattern: /\[/ });
export const RBracket = createToken({ name: "RBracket", pattern: /]/ });
export const LBrace = createToken({ name: "LBrace", pattern: /{/ });
export const RBrace = createToken({ name: "RBrace", pattern: /}/ });
/** A byte-order mark (U+FEFF), as some editors write at the start of a file, is whitespace. */
export const WhiteSpace = createToken({ name: "WhiteSpace", pattern: /[ \t\r\n\uFEFF]+/, group: Lexer.SKIPPED });
/** Comments stay out of the parser's tokens, in a group of their own (`lexed.groups.comments`), so the formatter can keep them. */
export const Comment = createToken({ name: "Comment", pattern: /(?:#|\/\/)[^\n\r]*/, group: "comments" });

export const keywords = [
  Model, Data, Modality, Target, Encoder, Fusion, Head, Loss, Optimizer, Schedule, Train, Learnable, Predict,
  Balance, Every, Stage, Freeze, Param, When, Scale, Noise, Replace, Drop, Rescaled, Set, With, By, Add, Minimize, Wrt, Using, From, If, Then, Else, And, Or, Not,
];

export const allTokens: TokenType[] = [
  WhiteSpace, Comment, BinaryOperator, NameWord, Word,
  ...keywords,
  Identifier, NumberLiteral, StringLiteral,
  Arrow, LessEqual, GreaterEqual, EqualEqual, NotEqual, Less, Greater, Equals,
  Plus, Minus, Star, Slash, Percent, Caret, Tilde, Colon, Comma, Dot,
  LParen, RParen, LBracket, RBracket, LBrace, RBrace,
];

export const mmbLexer = new Lexer(allTokens, { positionTracking: "full", ensureOptimizations: true });
