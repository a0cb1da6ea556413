import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/live-server.ts"],
    testTimeout: 30_000,
    hookTimeout: 90_000,
    // One live server for all files; two workers are what these machines can spare.
    maxWorkers: 2,
    minWorkers: 1,
  },
});
