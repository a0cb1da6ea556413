import { randomBytes } from "node:crypto";
import { inject } from "vitest";

import { SparkTrainerClient } from "../src/node.js";
import type { ClientOptions } from "../src/index.js";

export const url = (): string => inject("serverUrl");

export function adminClient(options: Partial<ClientOptions> = {}): SparkTrainerClient {
  return new SparkTrainerClient({ baseUrl: url(), apiKey: inject("adminApiKey"), ...options });
}

export function unique(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString("hex")}`;
}

/** A standard-tier user of its own (rate limits are per user), with its password. */
export async function standardUser(): Promise<{ username: string; password: string }> {
  const username = unique("user");
  const password = "a long enough password";
  await adminClient().users.create({ username, password, tier: "standard" });
  return { username, password };
}

/** A shell command that logs `count` points with the Python SDK: loss = 1 / (step + 1). */
export function loggingJob(count: number, pauseSeconds = 0): string {
  const code =
    `import sparktrainer, time\n` +
    `for s in range(${count}):\n` +
    `    sparktrainer.log({'loss': 1 / (s + 1)}, step=s)\n` +
    `    time.sleep(${pauseSeconds})\n`;
  return `python -c "${code}"`;
}
