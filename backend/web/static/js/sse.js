// Server-Sent Events read from a fetch body: yields {event, data} as each frame completes.
// EventSource cannot POST, so the chat reads /chat/stream's body with a stream reader.

export async function* readEvents(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = frameEnd(buffer)) !== null) {
        const frame = parseFrame(buffer.slice(0, end.at));
        buffer = buffer.slice(end.at + end.length);
        if (frame) yield frame;
      }
    }
  } finally {
    reader.releaseLock();
  }
}

function frameEnd(text) {
  const match = /\r?\n\r?\n/.exec(text);
  return match ? { at: match.index, length: match[0].length } : null;
}

function parseFrame(text) {
  let event = "message";
  const data = [];
  for (const line of text.split(/\r?\n/)) {
    if (line === "" || line.startsWith(":")) continue; // comments are keep-alives
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
  }
  return data.length ? { event, data: data.join("\n") } : null;
}
