import * as tf from "@tensorflow/tfjs";
import { installSecondOrderGradients } from "./second-order.js";
import { registerNativeKernels } from "./native-kernels.js";
import { registerWasmKernels } from "./wasm-kernels.js";
import { describeAdapter, startWebgpu, webgpuAdapter } from "./webgpu.js";

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
      if (tf.getBackend() === "webgpu" || tf.findBackend("webgpu")) {
        if (await tf.setBackend("webgpu")) return name;
        continue;
      }
      const started = await startWebgpu();
      if (started.started) return name;
      if (forced) throw new Error(`backend "webgpu" cannot start here: ${started.reason}`);
      if (started.installed) notice(`mmb: webgpu is installed but cannot start, so the run falls back: ${started.reason}`);
      continue;
    }
    if (name === "wasm") {
      await import("@tensorflow/tfjs-backend-wasm");
      registerWasmKernels();
      nativeKernels = registerNativeKernels();
    }
    if (await tf.setBackend(name)) {
      await tf.ready();
      return name;
    }
  }
  throw new Error(forced ? `backend "${forced}" is not available here (is its package installed?)` : "no TensorFlow.js backend could start");
}
