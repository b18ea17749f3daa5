import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { endianness, tmpdir } from "node:os";
import { dirname, extname, join, resolve } from "node:path";
import { torchRuntimeSource } from "../compiler/3-codegen/torch/runtime-source.js";
import { loadCheckpoint, writeAtomically } from "../runtime/checkpoint.js";
import { npy, zipStored } from "./data-export.js";
import { findTorchPython, torchInstallHint } from "./python.js";

/**
 * `mmb export`: a run's trained weights, from its current checkpoint (or `best/`), in the form the
 * other target reads.
 *
 * - `.npz`: every parameter by its tfjs name (`encoder.audio.conv0.kernel`) in tfjs's layout
 *   (dense [in, out], conv2d HWIO, conv1d [k, in, out]), float32, one `.npy` entry each, nothing
 *   else: the interchange both trainers start from with `--init FILE.npz`.
 * - `.pt`: a PyTorch `state_dict` (torch names and layouts: weight [out, in], conv2d OIHW), as
 *   the torch trainer's `Model(SPEC, seed, TRAINER["fuse"]).load_state_dict(torch.load(FILE))`
 *   takes it.
 *
 * What the run is comes from its checkpoint: `weights.bin` a tfjs run's, `weights.pt` a torch
 * run's (whose folder also holds trainer.py). The model's description comes from the checkpoint
 * too (`origin.spec` in state.json, which both targets record: the model the weights were
 * trained as, not whatever trainer file or spec is on disk now). Every conversion goes through
 * runtime/torch/model.py's `Model`, `load_tfjs_weights` and `tfjs_weights`, so a weight that
 * does not fit the model is refused by name and shape, never written.
 */
export class ExportError extends Error {}

export type WeightsFormat = "pt" | "npz";

/** What `-o FILE` asks for, by its extension: `.pt` (or `.pth`) a state_dict, `.npz` tfjs names and layouts. */
export function weightsFormat(file: string): WeightsFormat | undefined {
  const ext = extname(file).toLowerCase();
  return ext === ".npz" ? "npz" : ext === ".pt" || ext === ".pth" ? "pt" : undefined;
}

export interface Exported {
  /** The target that trained the run. */
  run: "tfjs" | "torch";
  /** The checkpoint read (`<run>/checkpoints/checkpoint-3`, `<run>/best/checkpoint-1`), and its epoch (from 0). */
  checkpoint: string;
  epoch: number;
  model: string;
  format: WeightsFormat;
  /** How many parameters the file holds. */
  parameters: number;
  file: string;
}

interface Checkpoint {
  run: "tfjs" | "torch";
  dir: string;
  state: { epoch: number; origin?: { spec?: Record<string, unknown> & { name?: string } }; weights_sha256?: string };
}

/** The run folder's current checkpoint (`best`: its best validation epoch's), and which target wrote it. */
async function currentCheckpoint(run: string, best: boolean): Promise<Checkpoint> {
  if (!existsSync(run)) throw new ExportError(`${run}: no such run folder`);
  const folder = join(run, best ? "best" : "checkpoints");
  let name: string;
  try {
    name = (await readFile(join(folder, "latest"), "utf8")).trim();
  } catch {
    throw new ExportError(
      best
        ? `${run} has no best-validation checkpoint (${join(folder, "latest")} is missing): train the run for at least one epoch`
        : `${run} has no checkpoint (${join(folder, "latest")} is missing): it is not a run folder, or its first epoch never ended`,
    );
  }
  const dir = join(folder, name);
  const run_ = existsSync(join(dir, "weights.bin")) ? "tfjs" : existsSync(join(dir, "weights.pt")) ? "torch" : undefined;
  if (!run_) throw new ExportError(`${dir} holds neither weights.bin (a tfjs run's checkpoint) nor weights.pt (a torch run's)`);
  let state: Checkpoint["state"];
  try {
    state = JSON.parse(await readFile(join(dir, "state.json"), "utf8")) as Checkpoint["state"];
  } catch (e) {
    throw new ExportError(`${join(dir, "state.json")} cannot be read: ${(e as Error).message}`);
  }
  return { run: run_, dir, state };
}

/** A Float32Array's bytes, little-endian (as .npy's `<f4` says) on any machine. */
function littleEndian(values: Float32Array): Uint8Array {
  if (endianness() === "LE") return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  const out = new DataView(new ArrayBuffer(values.byteLength));
  values.forEach((v, i) => out.setFloat32(4 * i, v, true));
  return new Uint8Array(out.buffer);
}

/** The .npz of weights by tfjs name: one float32 `<name>.npy` per parameter, in the given order. */
export function weightsNpz(weights: { name: string; shape: number[]; values: Float32Array }[]): Buffer {
  return zipStored(weights.map(({ name, shape, values }) => ({ name: `${name}.npy`, data: npy("<f4", shape, littleEndian(values)) })));
}

/**
 * What the Python side runs, after the torch runtime's source: reads a job (JSON, stdin), builds
 * the model the checkpoint describes, loads the weights into it (from tfjs arrays, or from a
 * torch checkpoint's state_dict, checksummed), and writes them as a state_dict (`pt`) or as raw
 * float32 in tfjs names and layouts, in tfjs's order, printing their manifest (`npz`).
 */
const exportPython = `

def _export_no_fuse(inputs):
    raise RuntimeError("mmb export moves weights; it does not run the fusion expression")


def _export_job(job):
    spec = job["spec"]
    model = Model(spec, 0, fuse=_export_no_fuse if spec["fusion"]["kind"] == "expression" else None)
    if job["source"] == "tfjs":
        with np.load(job["weights"], allow_pickle=False) as arrays:
            load_tfjs_weights(model, dict(arrays))
    else:
        with open(job["weights"], "rb") as handle:
            data = handle.read()
        if hashlib.sha256(data).hexdigest() != job["sha256"]:
            raise ValueError(f"{job['weights']} does not match its checksum in state.json: the checkpoint is damaged")
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        expected = model.state_dict()
        for key in expected:
            if key not in state:
                raise ValueError(f"the checkpoint has no weights for parameter {key} (expected shape {list(expected[key].shape)})")
            if tuple(state[key].shape) != tuple(expected[key].shape):
                raise ValueError(f"parameter {key}: expected shape {list(expected[key].shape)}, found {list(state[key].shape)}")
        # A staged run's checkpoint also keeps each finished stage's weights (stage:NAME:...): the model's are the rest.
        model.load_state_dict({key: value for key, value in state.items() if not key.startswith("stage:")})
    if job["target"] == "pt":
        weights = OrderedDict((key, value.detach().cpu().contiguous()) for key, value in model.state_dict().items())
        with open(job["output"], "wb") as handle:
            torch.save(weights, handle)
        return [{"name": key, "shape": list(value.shape)} for key, value in weights.items()]
    arrays = tfjs_weights(model)
    manifest = []
    with open(job["output"], "wb") as handle:
        for name, _, _ in tfjs_names(model):
            array = np.ascontiguousarray(arrays[name], dtype="<f4")
            handle.write(array.tobytes())
            manifest.append({"name": name, "shape": list(array.shape)})
    return manifest


if __name__ == "__main__":
    try:
        print(json.dumps(_export_job(json.load(sys.stdin))))
    except Exception as e:
        print(f"{e}", file=sys.stderr)
        sys.exit(1)
`;

/** Runs the conversion in a Python with torch; its answer is the manifest of what it wrote. */
function runPython(job: Record<string, unknown>, work: string, why: string): { name: string; shape: number[] }[] {
  const { python, tried } = findTorchPython();
  if (!python) throw new ExportError(`${why} needs PyTorch: no Python with torch and numpy (tried ${tried.join("; ")}); ${torchInstallHint}`);
  const script = join(work, "export.py");
  // The runtime as a generated trainer holds it (Model, load_tfjs_weights, tfjs_weights, ...), then the job.
  writeFileSync(script, `${torchRuntimeSource()}\n\nimport hashlib\nimport io\nimport json\nimport sys\nfrom collections import OrderedDict\n${exportPython}`);
  const result = spawnSync(python.command, [script], { input: JSON.stringify(job), encoding: "utf8", maxBuffer: 64 * 2 ** 20 });
  if (result.error) throw new ExportError(`${python.command}: ${result.error.message}`);
  if (result.status !== 0) throw new ExportError(`${why}: ${result.stderr.trim() || `${python.command} exited with status ${result.status}`}`);
  return JSON.parse(result.stdout.trim().split("\n").at(-1)!) as { name: string; shape: number[] }[];
}

/** The model's description as the checkpoint records it (both targets write `origin.spec`). */
function specOf(checkpoint: Checkpoint): Record<string, unknown> & { name?: string } {
  const spec = checkpoint.state.origin?.spec;
  if (!spec) throw new ExportError(`${join(checkpoint.dir, "state.json")} records no model (no origin.spec: written by an older mmb); train the run again to export it`);
  return spec;
}

/**
 * Writes the weights of `run`'s current checkpoint (`best`: of its best validation epoch) to
 * `output`: a `.pt` state_dict or a `.npz` of tfjs names and layouts. Atomic: a reader never
 * sees half a file.
 */
export async function exportWeights(run: string, output: string, options: { best?: boolean } = {}): Promise<Exported> {
  const format = weightsFormat(output);
  if (!format) throw new ExportError(`-o names a .pt (a PyTorch state_dict) or a .npz (weights by tfjs names and layouts), got "${output}"`);
  const checkpoint = await currentCheckpoint(run, options.best ?? false);
  const file = resolve(output);
  const work = mkdtempSync(join(tmpdir(), "mmb-export-"));
  try {
    let bytes: Uint8Array;
    let parameters: number;
    let model: string;
    let epoch = checkpoint.state.epoch;
    if (checkpoint.run === "tfjs") {
      // loadCheckpoint checks the weights against their SHA-256 in state.json.
      const loaded = (await loadCheckpoint(dirname(checkpoint.dir)))!;
      epoch = loaded.state.epoch;
      // A staged run's checkpoint also keeps the weights each finished stage ended with
      // (`stage:<name>:<parameter>`): the model's own are the current ones.
      const weights = loaded.state.manifest.map((m, i) => ({ ...m, values: loaded.weights[i]! })).filter((w) => !w.name.startsWith("stage:"));
      const npz = weightsNpz(weights);
      model = String((checkpoint.state.origin?.spec?.name as string | undefined) ?? "");
      if (format === "npz") {
        bytes = npz;
        parameters = weights.length;
      } else {
        const spec = specOf(checkpoint);
        model = String(spec.name ?? model);
        const arrays = join(work, "weights.npz");
        await writeFile(arrays, npz);
        const written = join(work, "weights.pt");
        parameters = runPython({ source: "tfjs", spec, weights: arrays, target: "pt", output: written }, work, "writing a .pt").length;
        bytes = await readFile(written);
      }
    } else {
      const spec = specOf(checkpoint);
      model = String(spec.name ?? "");
      const weights = join(checkpoint.dir, "weights.pt");
      const written = join(work, format === "pt" ? "weights.pt" : "weights.bin");
      const job = { source: "torch", spec, weights, sha256: checkpoint.state.weights_sha256, target: format, output: written };
      const manifest = runPython(job, work, `reading a torch run's checkpoint (${weights})`);
      parameters = manifest.length;
      if (format === "pt") bytes = await readFile(written);
      else {
        const raw = await readFile(written);
        let offset = 0;
        bytes = weightsNpz(
          manifest.map(({ name, shape }) => {
            const size = shape.reduce((a, b) => a * b, 1);
            const values = new Float32Array(size);
            // Little-endian on disk, as Python wrote `<f4`.
            for (let i = 0; i < size; i++) values[i] = raw.readFloatLE(offset + 4 * i);
            offset += 4 * size;
            return { name, shape, values };
          }),
        );
      }
    }
    await mkdir(dirname(file), { recursive: true });
    await writeAtomically(file, bytes);
    return { run: checkpoint.run, checkpoint: checkpoint.dir, epoch, model, format, parameters, file };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
