// Every call to the REST API goes through here, so that every failure, a 4xx, a 5xx or
// an unreachable server, becomes an ApiError carrying the API's own message.

export class ApiError extends Error {
  constructor(status, message, detail = null) {
    super(message);
    this.status = status;
    this.detail = detail;
  }
}

// The API's `detail`: a string, or pydantic's list of field errors for a malformed body.
export function describeDetail(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((e) => {
        const where = (e.loc || []).filter((p) => p !== "body").join(".");
        return where ? `${where}: ${e.msg}` : e.msg;
      })
      .join("; ");
  }
  return JSON.stringify(detail);
}

async function errorFrom(response) {
  let detail = null;
  try {
    detail = (await response.json()).detail ?? null;
  } catch {
    // not JSON: fall back to the status line below
  }
  const message =
    detail == null ? `HTTP ${response.status} ${response.statusText}`.trim() : describeDetail(detail);
  return new ApiError(response.status, message, detail);
}

// The API key typed into the console, kept for this browser tab only (sessionStorage).
const KEY_ITEM = "specrag-api-key";

export function apiKey() {
  return sessionStorage.getItem(KEY_ITEM) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_ITEM, key);
  else sessionStorage.removeItem(KEY_ITEM);
}

async function send(method, path, body) {
  const init = { method, headers: {} };
  const key = apiKey();
  if (key) init.headers.authorization = `Bearer ${key}`;
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, `cannot reach the server: ${err.message}`);
  }
  if (!response.ok) throw await errorFrom(response);
  return response;
}

export async function api(method, path, body) {
  const response = await send(method, path, body);
  return response.status === 204 ? null : response.json();
}

// POST with Server-Sent Events back. EventSource only does GET, so the body stream is
// read here and split into events at blank lines; onEvent(name, data) gets each one.
export async function streamEvents(path, body, onEvent) {
  const response = await send("POST", path, body);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}
