import { mmbVersion } from "../runtime/version.js";

/** A flag of the command line: how `node:util`'s parseArgs reads it, and what it does. */
interface Flag {
  type: "string" | "boolean";
  short?: string;
  multiple?: boolean;
  /** The value's placeholder in the help (`N`, `DIR`); absent for a switch. */
  value?: string;
  doc: string;
}

/** Every flag, once; each command names the ones it takes. */
export const flags = {
  format: { type: "string", value: "text|json", doc: "diagnostics as rendered text (default) or as JSON data" },
  output: { type: "string", short: "o", value: "FILE", doc: "the file to write" },
  "dump-ir": { type: "boolean", doc: "print the AST, the IR and the step plan" },
  out: { type: "string", value: "DIR", doc: "the run folder (default runs/<spec or trainer name>; bench: runs/bench)" },
  target: { type: "string", value: "tfjs|torch", doc: "the trainer's language: TypeScript on TensorFlow.js (default), or Python on PyTorch (`trainer.py`, torch and numpy only)" },
  device: { type: "string", value: "cpu|cuda", doc: "--target torch: where the tensors live (default cpu; cuda: the first GPU, or each torchrun process's)" },
  rng: { type: "string", value: "shared|torch", doc: "--target torch: a step's random draws (noise, bernoulli, dropout, drop, uniform) are the tfjs trainer's, bit for bit (shared, the default), or torch's own on the device (faster; reproducible, not the tfjs trainer's)" },
  backend: { type: "string", value: "NAME", doc: "tensorflow-gpu, tensorflow, webgpu, wasm or cpu (default: the first that loads; `mmb doctor` lists them)" },
  seed: { type: "string", value: "N", doc: "the seed of initialisation and shuffling (default: the spec's)" },
  seeds: { type: "string", value: "N", doc: "seeds 1..N per spec (default 3)" },
  epochs: { type: "string", value: "N", doc: "epochs to train (with stages: the last stage's)" },
  set: { type: "string", multiple: true, value: "name=value", doc: "a `param` of the spec, for this run (repeatable)" },
  data: { type: "string", value: "SOURCE", doc: 'replaces the spec\'s data declaration, e.g. "synthetic(weak: 2)" or "mnist()"; with --target torch also FILE.npz, an export (mmb data export)' },
  "data-root": { type: "string", value: "DIR", doc: "the folder `from` files are read from (default: the spec's)" },
  resume: { type: "boolean", doc: "continue the run in --out from its last checkpoint" },
  overwrite: { type: "boolean", doc: "replace another run's state in --out" },
  jobs: { type: "string", value: "N", doc: "runs at a time (default: the machine's cores)" },
  fold: { type: "string", value: "F", doc: "cross-validation: test on fold F of the spec's files(group: ...) data (with --folds)" },
  folds: { type: "string", value: "K", doc: "cross-validation: the number of folds (train: with --fold; bench: every fold of every seed)" },
  log: { type: "string", value: "csv,tensorboard", doc: "the log also as CSV tables (log-steps.csv, log-epochs.csv) and a TensorBoard event file (tensorboard/)" },
  select: { type: "string", value: "best|last", doc: "the table's figures at each run's best validation epoch (default) or at its last" },
  check: { type: "boolean", doc: "write nothing: list the specs that are not formatted, and exit 1 if any" },
  init: { type: "string", value: "FILE.npz", doc: "start a fresh run from these weights (tfjs names and layouts, as `mmb export RUN -o FILE.npz` writes them) instead of the seed's draw" },
  best: { type: "boolean", doc: "the best validation epoch's checkpoint (best/) instead of the last (checkpoints/)" },
  stdio: { type: "boolean", doc: "speak the protocol over stdin and stdout (the default and only transport; editors pass it)" },
  help: { type: "boolean", short: "h", doc: "this help" },
} as const satisfies Record<string, Flag>;

export type FlagName = keyof typeof flags;
/** The parsed options: a string, a switch, or (for `--set`) every value given. */
export type FlagValues = { [K in FlagName]?: (typeof flags)[K] extends { multiple: true } ? string[] : (typeof flags)[K]["type"] extends "boolean" ? boolean : string };

export interface Command {
  name: string;
  /** The positional arguments, as the usage line writes them. */
  args: string;
  summary: string;
  /** The flags it takes, in the order its help lists them. */
  flags: FlagName[];
  /** What the help adds below the flags. */
  notes?: string;
}

const training: FlagName[] = ["out", "backend", "seed", "epochs", "set", "data-root", "fold", "folds", "resume", "overwrite", "log", "init"];

export const commands: Command[] = [
  { name: "check", args: "<spec.mmb...>", summary: "check specs: every error with its code, span and help", flags: ["format"] },
  {
    name: "fmt",
    args: "<spec.mmb... | ->",
    summary: "rewrite specs in the canonical layout: aligned `=`, one item per line, comments kept",
    flags: ["check"],
    notes: "Each spec is rewritten in place when it changes, and its name printed; `-` formats standard input to standard output.\nA spec with syntax errors is left as it is, its errors printed (exit 1). The layout is described in README.md, \"Formatting\".",
  },
  {
    name: "compile",
    args: "<spec.mmb>",
    summary: "compile a spec to its trainer, TypeScript or (--target torch) PyTorch (to stdout, or -o FILE)",
    flags: ["target", "output", "dump-ir", "format"],
  },
  {
    name: "train",
    args: "<spec.mmb>",
    summary: "compile a spec and train it: log.jsonl, summary.json and checkpoints in the run folder",
    flags: ["target", "device", "rng", ...training.slice(0, 5), "data", ...training.slice(5), "format"],
    notes:
      "--target torch writes trainer.py and data.npz (the spec's samples, as `mmb data export` writes them) into the run folder and runs\nthe trainer with a python3 that imports torch (MMB_PYTHON, else python3 on the PATH, else /usr/bin/python3); --backend is tfjs's.",
  },
  {
    name: "run",
    args: "<trainer.ts>",
    summary: "train a generated trainer as it is on disk, hand edits included (the spec is not read)",
    flags: training,
    notes: "The trainer is one that `mmb compile` wrote; its data declaration is in its `spec` object, so --data does not apply.",
  },
  {
    name: "bench",
    args: "<spec.mmb...>",
    summary: "train every spec with seeds 1..N (and every fold), each run in its own process, and tabulate mean ± std",
    flags: ["seeds", "folds", "out", "jobs", "select", "epochs", "set", "data", "data-root", "target", "device", "rng", "backend", "log", "overwrite", "format"],
    notes: "Writes results.md, results.json and results.csv in --out; `mmb report DIR` draws the figures.",
  },
  { name: "report", args: "<run-dir | bench-dir>", summary: "an HTML report of a run or a bench: curves of every logged value", flags: ["output"] },
  {
    name: "data",
    args: "export <spec.mmb>",
    summary: "write the samples `mmb train` reads (every split, after --data, --data-root and --fold) to one .npz (-o FILE)",
    flags: ["output", "data", "data-root", "fold", "folds", "set", "format"],
    notes:
      "Entries (numpy keys): <split>/<modality> (float32, [n, ...shape]) and <split>/<target> (float32, [n] or [n, ...mask shape]; class indices)\nfor split in train, valid, test; `classes` (the class names, where the data or the spec names them); `meta` (uint8: UTF-8 JSON\nof the model, modalities, target, split sizes, description, source spec and fold). numpy.load(FILE) reads it; runtime/torch/data.py's\nload_dataset checks it against a spec.",
  },
  {
    name: "export",
    args: "<run-dir>",
    summary: "write a run's trained weights (tfjs or torch) as a PyTorch state_dict (-o FILE.pt) or as a .npz of tfjs names and layouts (-o FILE.npz)",
    flags: ["output", "best"],
    notes:
      "The run's current checkpoint (--best: its best validation epoch's), read as the target that trained it wrote it (weights.bin: tfjs,\nweights.pt: torch). FILE.pt: torch names and layouts (weight [out, in], conv2d OIHW), for the torch trainer's\nModel(SPEC, seed, TRAINER[\"fuse\"]).load_state_dict(torch.load(FILE)). FILE.npz: float32 arrays by tfjs name (kernel [in, out],\nconv2d HWIO, conv1d [k, in, out]), which `mmb train SPEC --init FILE.npz` and the torch trainer's --init start from.\nA .pt, and anything from a torch run, needs a python3 that imports torch (MMB_PYTHON, else python3, else /usr/bin/python3).",
  },
  {
    name: "doctor",
    args: "",
    summary: "which backends start on this machine, the GPU adapter they find, the versions; exit 0 when a hardware GPU is usable",
    flags: [],
    notes: "Exit status 1 means no backend computes on a hardware GPU (webgpu on a software Vulkan driver is correct but not fast); training still runs on the first backend listed as available.",
  },
  {
    name: "lsp",
    args: "",
    summary: "the language server for editors: diagnostics as you type, hover, definitions, references, completion, rename",
    flags: ["stdio"],
    notes: "Started by an editor, not by hand: editors/vscode/ is the VS Code extension that runs it.",
  },
];

function flagLine(name: FlagName): string {
  const flag: Flag = flags[name];
  const spelled = `${flag.short ? `-${flag.short}, ` : ""}--${name}${flag.value ? ` ${flag.value}` : ""}`;
  return `  ${spelled.padEnd(26)} ${flag.doc}`;
}

/** `mmb <command> --help`. */
export function commandHelp(command: Command): string {
  return [
    `usage: mmb ${[command.name, command.args].filter(Boolean).join(" ")}${command.flags.length ? " [options]" : ""}`,
    "",
    command.summary,
    "",
    "options:",
    ...[...command.flags, "help" as const].map(flagLine),
    ...(command.notes ? ["", command.notes] : []),
  ].join("\n");
}

/** `mmb --help`: every command in a line. */
export const overview = [
  `mmb ${mmbVersion}: balanced multimodal training, written as equations`,
  "",
  "usage: mmb <command> [options]",
  "",
  ...commands.map((c) => `  mmb ${`${c.name} ${c.args}`.padEnd(30)} ${c.summary}`),
  "",
  "  mmb --version               the version",
  "  mmb <command> --help        a command's options",
  "",
  "exit status: 0 success, 1 errors in a spec or a failed run, 2 wrong usage",
].join("\n");
