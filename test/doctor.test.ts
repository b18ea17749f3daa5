import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { backendPreference } from "../runtime/backend.js";
import { mmb, root } from "./helpers.js";

/**
 * `mmb doctor` and what a run says about webgpu. The webgpu cases need its optional packages (CI
 * installs them and sets MMB_REQUIRE_WEBGPU=1, so that their absence fails there); a missing
 * Vulkan driver is simulated by pointing the Vulkan loader at no driver.
 */
const installed = existsSync(join(root, "node_modules", "webgpu")) && existsSync(join(root, "node_modules", "@tensorflow", "tfjs-backend-webgpu"));
const required = process.env.MMB_REQUIRE_WEBGPU === "1";
const noDriver = { VK_ICD_FILENAMES: "/nonexistent.json", VK_DRIVER_FILES: "/nonexistent.json" };

describe("mmb doctor", () => {
  it("lists every backend in the order a run tries them, says which a run uses, and exits 0 only with a hardware GPU", () => {
    const result = mmb("doctor");
    const lines = result.stdout.split("\n");
    const listed = lines.filter((l) => /^ {2}\S+\s+(yes|no)\s/.test(l)).map((l) => l.trim().split(/\s+/)[0]);
    expect(listed).toEqual([...backendPreference]);
    expect(lines.find((l) => l.trim().startsWith("cpu"))).toMatch(/^\s+cpu\s+yes/);
    const verdict = lines.find((l) => l.startsWith("a run without --backend uses "))!;
    expect(verdict).toBeDefined();
    expect(result.status).toBe(verdict.includes("a hardware GPU is usable") ? 0 : 1);
    if (!installed) expect(lines.find((l) => l.trim().startsWith("webgpu"))).toMatch(/no .*npm install --no-save webgpu@0\.6\.2 @tensorflow\/tfjs-backend-webgpu@4\.22\.0/);
  });
});

describe.skipIf(!installed && !required)("webgpu installed, without an adapter", () => {
  it("the packages are there (CI installs them)", () => {
    expect(installed).toBe(true);
  });

  it("a run says why webgpu is not used and how to give Dawn a driver, and trains on the next backend", () => {
    const out = mkdtempSync(join(tmpdir(), "mmb-noadapter-"));
    const result = mmbWith(noDriver, "train", "specs/baseline.mmb", "--epochs", "1", "--out", out);
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toContain("webgpu is installed but not used: Dawn found no WebGPU adapter");
    expect(result.stdout).toContain("mesa-vulkan-drivers");
    expect(result.stdout).toMatch(/training baseline on backend wasm/);
  });

  it("--backend webgpu is an error that says the same", () => {
    const result = mmbWith(noDriver, "train", "specs/baseline.mmb", "--epochs", "1", "--backend", "webgpu", "--out", mkdtempSync(join(tmpdir(), "mmb-noadapter-")));
    expect(result.status).toBe(1);
    expect(result.stderr).toMatch(/backend "webgpu" cannot start here: Dawn found no WebGPU adapter/);
  });

  it("mmb doctor says so too", () => {
    const result = mmbWith(noDriver, "doctor");
    expect(result.stdout).toMatch(/^ {2}webgpu\s+no\s+Dawn found no WebGPU adapter/m);
    expect(result.status).toBe(1);
  });
});

function mmbWith(env: Record<string, string>, ...args: string[]) {
  const previous = { ...process.env };
  Object.assign(process.env, env);
  try {
    return mmb(...args);
  } finally {
    for (const key of Object.keys(env)) if (previous[key] === undefined) delete process.env[key];
  }
}
