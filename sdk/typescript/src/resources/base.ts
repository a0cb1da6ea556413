import type { Transport } from "../transport.js";

export abstract class Resource {
  constructor(protected readonly t: Transport) {}
}

/** A JSON body without the fields left unset, so the server's defaults apply. */
export function body(values: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(values).filter(([, value]) => value !== undefined));
}

export interface Paging {
  limit?: number;
  offset?: number;
}
