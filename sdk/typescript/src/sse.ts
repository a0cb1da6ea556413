/** Server-Sent Events, fed line by line (the WHATWG event-stream format). */

export interface SSEEvent {
  event: string;
  data: string;
  id: string | null;
}

export class SSEParser {
  private event = "";
  private data: string[] = [];
  private id: string | null = null;

  feed(line: string): SSEEvent | null {
    if (line === "") {
      if (this.data.length === 0 && this.event === "") {
        this.id = null;
        return null;
      }
      const event = { event: this.event || "message", data: this.data.join("\n"), id: this.id };
      this.event = "";
      this.data = [];
      this.id = null;
      return event;
    }
    if (line.startsWith(":")) return null;
    const colon = line.indexOf(":");
    const name = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (name === "data") this.data.push(value);
    else if (name === "event") this.event = value;
    else if (name === "id") this.id = value;
    return null;
  }
}

/** The lines of a UTF-8 byte stream (`\n`, `\r\n` or `\r` endings). */
export async function* lines(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let match: RegExpExecArray | null;
      // A lone "\r" at the end may be half of "\r\n": wait for the next chunk to tell.
      while ((match = /\r\n|\n|\r(?!$)/.exec(buffer)) !== null) {
        yield buffer.slice(0, match.index);
        buffer = buffer.slice(match.index + match[0].length);
      }
    }
    buffer += decoder.decode();
    if (buffer) yield buffer.replace(/\r$/, "");
  } finally {
    // Closes the connection when the reader stops early (an unsubscribe, an error).
    reader.cancel().catch(() => undefined);
  }
}
