import { defineConfig } from "vitest/config";

/** Tests that run in Node: the local sandbox host, parsers, the stand-in, and end-to-end runs through `npm run dev`. */
export default defineConfig({
  test: {
    include: ["test/node/**/*.test.ts"],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    fileParallelism: false,
  },
});
