import * as tf from "@tensorflow/tfjs";

/**
 * TensorFlow.js's WebGPU backend in Node, through Dawn (the npm package `webgpu`, prebuilt, which
 * loads the system's Vulkan driver). Both packages are optional: 130 MB that most users of the
 * embedded data do not need. Measured pitfalls (shared notes, webgpu-facts), each handled here:
 * - the backend registers itself only if `navigator.gpu` exists when its module is evaluated, so
 *   the globals come first and the module is imported after;
 * - AddN with more than 7 inputs binds more buffers than the device allows: the pipeline is
 *   invalid, Dawn only prints a validation error, and the sum is garbage; it is summed in chunks;
 * - GPU validation errors are not surfaced by tfjs: they are trapped here and fail the run;
 * - Dawn frees destroyed buffers (one per upload of a host value) only while the event loop runs:
 *   a training loop waits for each step's GPU work (`webgpuStepDone`);
 * - a process holding `navigator.gpu` does not exit by itself: the CLI exits explicitly.
 */

/**
 * The command that adds the optional packages (the versions this runtime is tested with), in mmb's
 * own folder: the backend must share mmb's tfjs-core. For a global mmb: `--prefix "$(npm root -g)/mmb"`.
 */
export const webgpuInstall = "npm install --no-save webgpu@0.6.2 @tensorflow/tfjs-backend-webgpu@4.22.0";

/** How to give Dawn a Vulkan driver, for the message when it finds none. */
export const webgpuDriverHelp =
  "Dawn needs a Vulkan driver: on a GPU machine the vendor's (in a container, NVIDIA_DRIVER_CAPABILITIES must include `graphics`); " +
  "without a GPU, Mesa >= 25's lavapipe (Debian 12: `apt-get install -t bookworm-backports mesa-vulkan-drivers libvulkan1`)";

export interface AdapterInfo {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** A software rasteriser (lavapipe, SwiftShader): correct, but its speed says nothing about a GPU. */
  software: boolean;
}

/** What the Dawn bindings export that is used here. */
interface Dawn {
  create(flags: string[]): { requestAdapter(): Promise<{ info: Record<string, unknown> & { isFallbackAdapter?: boolean } } | null> };
  globals: Record<string, unknown>;
}

interface WebgpuDevice {
  onuncapturederror: ((event: { error: { message: string } }) => void) | null;
  lost: Promise<{ message: string; reason?: string }>;
  queue: { onSubmittedWorkDone(): Promise<void> };
}

let adapter: AdapterInfo | undefined;
let device: WebgpuDevice | undefined;
/** The validation errors since the run started (`webgpuRunStarts`). */
const deviceErrors: string[] = [];
/** A lost device stays lost: every later run fails with it too. */
let lostDevice: string | undefined;

/** The adapter the webgpu backend runs on, once it started. */
export function webgpuAdapter(): AdapterInfo | undefined {
  return adapter;
}

/** The adapter in a few words: `nvidia ampere ...`, or `mesa llvmpipe-..., software Vulkan`. */
export function describeAdapter(info: AdapterInfo): string {
  const name = [info.vendor, info.architecture !== "software" ? info.architecture : "", info.device].filter(Boolean).join(" ");
  return `${name || "unknown adapter"}${info.software ? ", software Vulkan" : ""}`;
}

/** Loads a package by a name TypeScript does not resolve: the optional packages need not be installed to build. */
const optional = (name: string): Promise<unknown> => import(name);

/**
 * Starts the webgpu backend, or says why it cannot (packages missing, no adapter); `installed`
 * tells a missing package from a missing driver. A software adapter is taken only when
 * `allowSoftware` (a forced `--backend webgpu`, `mmb doctor`): by default wasm outruns it.
 */
export async function startWebgpu(allowSoftware: boolean): Promise<{ started: true } | { started: false; installed: boolean; reason: string }> {
  let dawn: Dawn;
  try {
    dawn = (await optional("webgpu")) as Dawn;
  } catch {
    return { started: false, installed: false, reason: `the optional packages are not installed: ${webgpuInstall}` };
  }
  Object.assign(globalThis, dawn.globals);
  const gpu = dawn.create([]);
  const found = await gpu.requestAdapter();
  if (!found) return { started: false, installed: true, reason: `Dawn found no WebGPU adapter. ${webgpuDriverHelp}` };
  const info = adapterInfo(found.info);
  if (info.software && !allowSoftware) {
    return { started: false, installed: true, reason: `Dawn found only a software Vulkan driver (${describeAdapter(info)}), which wasm outruns; \`--backend webgpu\` uses it anyway` };
  }
  // Node 20 has no `navigator`, Node 21+ a read-only one: defined over, with the GPU in it.
  Object.defineProperty(globalThis, "navigator", { value: { ...(globalThis as { navigator?: object }).navigator, gpu }, configurable: true, writable: true });
  try {
    await optional("@tensorflow/tfjs-backend-webgpu");
  } catch {
    return { started: false, installed: false, reason: `the optional packages are not installed: ${webgpuInstall}` };
  }
  if (!(await tf.setBackend("webgpu"))) return { started: false, installed: true, reason: `the webgpu backend did not start on the adapter. ${webgpuDriverHelp}` };
  await tf.ready();
  adapter = info;
  device = (tf.backend() as unknown as { device: WebgpuDevice }).device;
  device.onuncapturederror = (event) => deviceErrors.push(event.error.message);
  void device.lost.then((lost) => {
    if (lost.reason !== "destroyed") lostDevice = `the device was lost: ${lost.message}`;
  });
  chunkAddN();
  return { started: true };
}

function adapterInfo(info: Record<string, unknown> & { isFallbackAdapter?: boolean }): AdapterInfo {
  const text = (key: string) => String(info[key] ?? "");
  return {
    vendor: text("vendor"),
    architecture: text("architecture"),
    device: text("device"),
    description: text("description"),
    software: info.isFallbackAdapter === true || text("architecture") === "software" || /llvmpipe|lavapipe|swiftshader/i.test(`${text("device")} ${text("description")}`),
  };
}

/**
 * A run on webgpu begins: the validation errors of an earlier run in this process (which failed
 * with them, or ran on another backend meanwhile) are not this run's. Without this, one error
 * failed every later run of the process (tests, a notebook), even on the cpu backend.
 */
export async function webgpuRunStarts(): Promise<void> {
  if (!device) return;
  // Errors of an earlier run's work still queued arrive once it is done.
  await device.queue.onSubmittedWorkDone();
  deviceErrors.length = 0;
}

/** A GPU error the device reported since the run started (a validation error, a lost device): the run's results cannot be trusted. */
export async function webgpuError(): Promise<string | undefined> {
  // A run on another backend is not failed by the GPU (an earlier webgpu run in the same process).
  if (!device || tf.getBackend() !== "webgpu") return undefined;
  // Errors of work still queued arrive once it is done.
  await device.queue.onSubmittedWorkDone();
  return lostDevice ?? deviceErrors[0];
}

/**
 * Waits for the GPU work submitted so far; a training loop calls it after each step. An epoch's
 * steps read nothing back, so without a wait the loop never yields to the event loop until the
 * epoch ends, and Dawn, which frees destroyed buffers only when it runs (every upload of a host
 * value, a batch or a constant, goes through a staging buffer destroyed after use), keeps all of
 * them: on lavapipe each is a memory mapping, and an epoch of a few hundred steps passed the
 * kernel's limit of 65,530 (vm.max_map_count) and crashed the process in the driver (a segfault
 * in vkCreateDescriptorPool; specs/agm_cr_per_sample.mmb's first epoch). test/webgpu.test.ts
 * counts the mappings during an epoch.
 */
export async function webgpuStepDone(): Promise<void> {
  if (!device || tf.getBackend() !== "webgpu") return;
  await device.queue.onSubmittedWorkDone();
}

/** The most inputs one AddN pipeline binds: the device's default limit is 8 storage buffers, the output being one. */
const addNInputs = 7;

/** AddN of any number of inputs, in sums of at most `addNInputs` (see the header). */
function chunkAddN(): void {
  const original = tf.getKernel("AddN", "webgpu");
  if (!original) return;
  const sum = (args: Parameters<tf.KernelFunc>[0], inputs: tf.TensorInfo[]): tf.TensorInfo => {
    if (inputs.length <= addNInputs) return original.kernelFunc({ ...args, inputs: inputs as unknown as tf.NamedTensorInfoMap }) as tf.TensorInfo;
    const partials: tf.TensorInfo[] = [];
    for (let i = 0; i < inputs.length; i += addNInputs) partials.push(sum(args, inputs.slice(i, i + addNInputs)));
    const total = sum(args, partials);
    for (const partial of partials) (args.backend as tf.KernelBackend).disposeData(partial.dataId);
    return total;
  };
  tf.unregisterKernel("AddN", "webgpu");
  tf.registerKernel({ kernelName: "AddN", backendName: "webgpu", kernelFunc: (args) => sum(args, args.inputs as unknown as tf.TensorInfo[]) });
}
