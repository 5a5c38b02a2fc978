// The client of the `/v1` API the pages use: the key from session storage, problems as
// errors, server-sent events, amounts and addresses.

const KEY = "tributary.key";

export function apiKey() {
  return sessionStorage.getItem(KEY) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
  meCache = null;
}

/** An API problem (`application/problem+json`) or a network failure. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.code = problem.code || "";
    this.title = problem.title || "Request failed";
    this.detail = problem.detail || "";
  }
}

function headers(extra = {}) {
  const h = { ...extra };
  const key = apiKey();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

async function failure(response) {
  let problem = {};
  try {
    problem = await response.json();
  } catch {
    problem = { title: response.statusText || "Request failed", detail: `The server answered ${response.status}.` };
  }
  return new ApiError(response.status, problem);
}

async function send(method, path, init) {
  let response;
  try {
    response = await fetch(path, { method, ...init });
  } catch (e) {
    throw new ApiError(0, { title: "The server cannot be reached", detail: String(e.message || e), code: "network" });
  }
  if (!response.ok) throw await failure(response);
  return response;
}

/** JSON in, JSON out. */
export async function api(method, path, body) {
  const init = { headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await send(method, path, init);
  if (response.status === 204) return null;
  return response.json();
}

export const get = (path) => api("GET", path);

/** Every item of a paged list (follows `next_cursor`), up to `max`. */
export async function all(path, max = 1000) {
  const items = [];
  let cursor = null;
  do {
    const sep = path.includes("?") ? "&" : "?";
    const page = await get(cursor ? `${path}${sep}cursor=${encodeURIComponent(cursor)}` : path);
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return items;
}

let meCache = null;
/** Who the key is: `{role, address, label}` (nulls when signed out). */
export async function me() {
  if (!meCache) meCache = get("/v1/me").catch((e) => {
    meCache = null;
    throw e;
  });
  return meCache;
}

/**
 * POSTs `body` (GETs when it is undefined) and reads the reply as server-sent events:
 * `on[event](data)` for each, data parsed as JSON. A failure before the stream starts throws
 * an ApiError.
 */
export async function stream(path, body, on, signal) {
  const init = body === undefined
    ? { headers: headers({ Accept: "text/event-stream" }), signal }
    : { headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }), body: JSON.stringify(body), signal };
  const response = await send(body === undefined ? "GET" : "POST", path, init);
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
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (!data.length || !on[event]) continue;
      on[event](JSON.parse(data.join("\n")));
    }
  }
}

/** Uploads one file as `multipart/form-data`, reporting progress (0..1). */
export function upload(datanet, file, license, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/v1/datanets/${encodeURIComponent(datanet)}/documents`);
    const key = apiKey();
    if (key) xhr.setRequestHeader("Authorization", `Bearer ${key}`);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    xhr.onerror = () => reject(new ApiError(0, { title: "The upload failed", detail: "The connection was lost.", code: "network" }));
    xhr.onload = () => {
      let body = {};
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = { title: "Unexpected reply", detail: `The server answered ${xhr.status}.` };
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else reject(new ApiError(xhr.status, body));
    };
    const form = new FormData();
    if (license) form.append("license", license);
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

// ---- Money and addresses --------------------------------------------------------------------

export const TOKEN = "TRIB";
const DECIMALS = 18n;

/** A decimal string of the token's smallest unit, as tokens ("0.0015"). Exact: BigInt. */
export function tokens(amount) {
  let v;
  try {
    v = BigInt(amount ?? 0);
  } catch {
    return String(amount);
  }
  const negative = v < 0n;
  if (negative) v = -v;
  const unit = 10n ** DECIMALS;
  const whole = v / unit;
  let frac = (v % unit).toString().padStart(Number(DECIMALS), "0").replace(/0+$/, "");
  const text = frac ? `${whole}.${frac}` : `${whole}`;
  return `${negative ? "-" : ""}${text}`;
}

/** Tokens in, smallest units out ("1.5" -> "1500000000000000000"); throws on bad input. */
export function units(text) {
  const m = /^\s*(\d+)(?:\.(\d{0,18}))?\s*$/.exec(text);
  if (!m) throw new ApiError(0, { title: "Not an amount", detail: `"${text}" is not a number of tokens (up to 18 decimals).`, code: "invalid_amount" });
  return (BigInt(m[1]) * 10n ** DECIMALS + BigInt((m[2] || "").padEnd(18, "0"))).toString();
}

export function isAddress(text) {
  return /^0x[0-9a-fA-F]{40}$/.test(text || "");
}

/** Whether two addresses are the same (EIP-55 case aside). */
export function sameAddress(a, b) {
  return Boolean(a && b) && a.toLowerCase() === b.toLowerCase();
}

/** Whether the signed-in key (`me()`) governs the Datanet: an admin, or its owner's key. */
export function governs(who, datanet) {
  return who.role === "admin" || (who.role === "owner" && sameAddress(who.address, datanet.owner));
}

export function short(address) {
  return isAddress(address) ? `${address.slice(0, 6)}…${address.slice(-4)}` : address;
}

// ---- Byte offsets ---------------------------------------------------------------------------

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The API's offsets are UTF-8 bytes; JavaScript strings are UTF-16. */
export function byteSlicer(text) {
  const bytes = encoder.encode(text);
  return (start, end) => decoder.decode(bytes.subarray(start, end));
}
