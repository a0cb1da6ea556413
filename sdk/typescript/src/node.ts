/**
 * `@sparktrainer/sdk/node`: the client for Node 20, where there is no global WebSocket.
 *
 * The same `SparkTrainerClient`, with the `ws` package's WebSocket as its default. Import
 * it from `@sparktrainer/sdk/node`; browsers use `@sparktrainer/sdk`.
 */

import WebSocket from "ws";

import { SparkTrainerClient as BaseClient, type ClientOptions } from "./client.js";
import type { WebSocketConstructor } from "./streams.js";

export * from "./index.js";

export class SparkTrainerClient extends BaseClient {
  constructor(options: ClientOptions) {
    super({ WebSocket: WebSocket as unknown as WebSocketConstructor, ...options });
  }
}
