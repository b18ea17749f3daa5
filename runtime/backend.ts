import * as tf from "@tensorflow/tfjs";
import { createRequire } from "node:module";
import { installSecondOrderGradients } from "./second-order.js";
import { registerNativeKernels } from "./native-kernels.js";
import { registerWasmKernels } from "./wasm-kernels.js";
import { describeAdapter, startWebgpu, webgpuAdapter, webgpuInstall } from "./webgpu.js";

export const backendPreference = ["tensorflow-gpu", "tensorflow", "webgpu", "wasm", "cpu"] as const;
export type BackendName = (typeof backendPreference)[number];

/** The npm package that provides each native backend; both are optional peer dependencies. */
const nativePackages: Partial<Record<BackendName, string>> = {
  "tensorflow-gpu": "@tensorflow/tfjs-node-gpu",
  tensorflow: "@tensorflow/tfjs-node",
};

async function tryNative(name: BackendName): Promise<boolean> {
  const pkg = nativePackages[name];
  if (!pkg) return false;
  try {
    await import(pkg);
    return await tf.setBackend("tensorflow");
  } catch {
    return false;
  }
}

let nativeKernels: boolean | undefined;

/** The wasm backend with mmb's replacement kernels, and the OpenBLAS kernels where they were built. */
async function loadWasm(): Promise<void> {
  await import("@tensorflow/tfjs-backend-wasm");
  registerWasmKernels();
  nativeKernels = registerNativeKernels();
}

/** The backend as users should read it: `wasm + OpenBLAS` where the native kernels run its matmuls and convolutions; webgpu with its adapter. */
export function describeBackend(name: BackendName): string {
  const adapter = webgpuAdapter();
  if (name === "webgpu" && adapter) return `webgpu (${describeAdapter(adapter)})`;
  return name === "wasm" && nativeKernels ? "wasm + OpenBLAS" : name;
}

/**
 * Picks the fastest available backend (or the forced one) and returns its name.
 * The native packages register themselves as "tensorflow"; we report which package it was.
 * webgpu's optional packages, once installed, mean the user wants it: when it cannot start there
 * (no adapter), `notice` says why and how to enable it, and the next backend runs.
 */
export async function selectBackend(forced?: string, notice: (line: string) => void = () => {}): Promise<BackendName> {
  installSecondOrderGradients();
  const order = forced ? [forced as BackendName] : backendPreference;
  if (forced && !backendPreference.includes(forced as BackendName)) {
    throw new Error(`unknown backend "${forced}": choose one of ${backendPreference.join(", ")}`);
  }
  for (const name of order) {
    if (name === "tensorflow-gpu" || name === "tensorflow") {
      if (await tryNative(name)) return name;
      continue;
    }
    if (name === "webgpu") {
      // Started earlier in this process (a forced run): taken again on the same terms, a software adapter only when forced.
      if (tf.findBackend("webgpu")) {
        if ((forced || !webgpuAdapter()?.software) && (await tf.setBackend("webgpu"))) return name;
        continue;
      }
      const started = await startWebgpu(forced === "webgpu");
      if (started.started) return name;
      if (forced) throw new Error(`backend "webgpu" cannot start here: ${started.reason}`);
      if (started.installed) notice(`mmb: webgpu is installed but not used: ${started.reason}`);
      continue;
    }
    if (name === "wasm") await loadWasm();
    if (await tf.setBackend(name)) {
      await tf.ready();
      return name;
    }
  }
  throw new Error(forced ? `backend "${forced}" is not available here (is its package installed?)` : "no TensorFlow.js backend could start");
}

/** What `mmb doctor` says of one backend: whether it starts here, and why not or on what. */
export interface BackendProbe {
  name: BackendName;
  available: boolean;
  detail: string;
  /** It computes on a hardware GPU (not a software Vulkan driver). */
  gpu: boolean;
  /** A run without `--backend` takes it when it is the first such (webgpu on a software driver is skipped). */
  preferred: boolean;
}

/** The installed version of a package, or undefined when it is not installed. */
export function packageVersion(name: string): string | undefined {
  try {
    return (createRequire(import.meta.url)(`${name}/package.json`) as { version: string }).version;
  } catch {
    return undefined;
  }
}

/**
 * Every backend in the order a run tries them, each started once (`mmb doctor`). Probing leaves
 * the process on the last one that started, and a started webgpu holds the process: the caller exits.
 */
export async function probeBackends(): Promise<BackendProbe[]> {
  installSecondOrderGradients();
  const probes: BackendProbe[] = [];
  for (const name of backendPreference) {
    if (name === "tensorflow-gpu" || name === "tensorflow") {
      const pkg = nativePackages[name]!;
      const version = packageVersion(pkg);
      const available = version !== undefined && (await tryNative(name));
      const needs = name === "tensorflow-gpu" ? "; it needs CUDA 11.2 and cuDNN 8.1, and downloads libtensorflow 2.9 when installed" : "";
      probes.push({ name, available, preferred: available, gpu: available && name === "tensorflow-gpu", detail: version === undefined ? `${pkg} is not installed (optional${needs})` : available ? `${pkg} ${version}` : `${pkg} ${version} is installed but does not load${needs}` });
    } else if (name === "webgpu") {
      const started = await startWebgpu(true);
      const adapter = webgpuAdapter();
      const versions = `webgpu ${packageVersion("webgpu") ?? "-"}, @tensorflow/tfjs-backend-webgpu ${packageVersion("@tensorflow/tfjs-backend-webgpu") ?? "-"}`;
      probes.push(
        started.started && adapter
          ? { name, available: true, gpu: !adapter.software, preferred: !adapter.software, detail: `${describeAdapter(adapter)}: ${adapter.description} (${versions})${adapter.software ? "; correct, but its speed says nothing about a GPU" : ""}` }
          : { name, available: false, gpu: false, preferred: false, detail: started.started ? "started without an adapter" : started.installed ? `${started.reason} (${versions})` : `the optional packages are not installed (optional: \`${webgpuInstall}\`)` },
      );
    } else {
      if (name === "wasm") await loadWasm();
      const available = await tf.setBackend(name);
      const detail = name === "wasm" ? (nativeKernels ? "with the OpenBLAS kernels (native/)" : "without the OpenBLAS kernels (build them with `npm run build` where libopenblas-dev is installed)") : "plain JavaScript, always there";
      probes.push({ name, available, preferred: available, gpu: false, detail });
    }
  }
  return probes;
}
