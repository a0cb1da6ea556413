/**
 * What the SDK derives from the server is current, it calls only routes the server has,
 * and its browser entry imports nothing from Node.
 */

import { execFile } from "node:child_process";
import { readFile, readdir } from "node:fs/promises";
import { dirname, join, relative, resolve } from "node:path";
import { promisify } from "node:util";
import { describe, expect, test } from "vitest";

import { ROOT } from "./live-server.js";

const PACKAGE = resolve(import.meta.dirname, "..");
const SRC = join(PACKAGE, "src");
const OPENAPI = join(ROOT, "sdk", "openapi.json");

async function sources(dir = SRC): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const files = await Promise.all(
    entries.map((e) => (e.isDirectory() ? sources(join(dir, e.name)) : [join(dir, e.name)])),
  );
  return files.flat().filter((f) => f.endsWith(".ts") && !f.includes("generated"));
}

/** Every (method, route) literal the client passes to its transport. */
async function calledRoutes(): Promise<Set<string>> {
  const calls = /\.(?:request|json|send)(?:<[^>]*>)?\(\s*"([A-Z]+)",\s*"([^"]+)"/g;
  const downloads = /openDownload\(\s*this\.t,\s*"([^"]+)"/g;
  const found = new Set<string>();
  for (const file of await sources()) {
    const text = await readFile(file, "utf8");
    for (const [, method, route] of text.matchAll(calls)) found.add(`${method} ${route}`);
    for (const [, route] of text.matchAll(downloads)) found.add(`GET ${route}`);
  }
  return found;
}

describe("contract with the server", () => {
  test("every route the client calls exists in sdk/openapi.json with that method", async () => {
    const document = JSON.parse(await readFile(OPENAPI, "utf8")) as {
      paths: Record<string, Record<string, unknown>>;
    };
    const known = new Set(
      Object.entries(document.paths).flatMap(([path, ops]) =>
        Object.keys(ops).map((method) => `${method.toUpperCase()} ${path}`),
      ),
    );
    const called = await calledRoutes();
    expect(called.size).toBeGreaterThanOrEqual(45); // the scan found the calls
    expect([...called].filter((route) => !known.has(route))).toEqual([]);
  });

  test("src/generated/schema.ts is openapi-typescript's output for sdk/openapi.json", async () => {
    const binary = join(PACKAGE, "node_modules", ".bin", "openapi-typescript");
    const { stdout } = await promisify(execFile)(binary, [OPENAPI], {
      cwd: PACKAGE,
      maxBuffer: 64 * 1024 * 1024,
    });
    const committed = await readFile(join(SRC, "generated", "schema.ts"), "utf8");
    expect(committed === stdout, "stale: run scripts/generate-sdks").toBe(true);
  });

  test("the browser entry reaches no Node module, and no Node global", async () => {
    const seen = new Set<string>();
    const outside: string[] = [];
    const visit = async (file: string): Promise<void> => {
      if (seen.has(file)) return;
      seen.add(file);
      const text = await readFile(file, "utf8");
      for (const [, specifier] of text.matchAll(/(?:from|import)\s*\(?\s*"([^"]+)"/g)) {
        if (specifier === undefined) continue;
        if (!specifier.startsWith(".")) outside.push(`${relative(PACKAGE, file)}: ${specifier}`);
        else await visit(resolve(dirname(file), specifier.replace(/\.js$/, ".ts")));
      }
      // The generated file holds types only (its doc comments may say "process(").
      if (file.includes("generated")) return;
      if (/\b(process|Buffer|require)\s*[.(]/.test(text)) outside.push(`${relative(PACKAGE, file)}: Node global`);
    };
    await visit(join(SRC, "index.ts"));
    expect(seen.size).toBeGreaterThan(10);
    expect([...seen].map((f) => relative(SRC, f))).not.toContain("node.ts");
    expect(outside).toEqual([]);
  });
});
