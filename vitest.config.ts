import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Backends and tfjs's kernel registry are process-global: one file at a time per worker.
    pool: "forks",
    // Training on cpu is single-threaded JS: two workers use both of CI's cores.
    maxWorkers: 2,
  },
});
