// The console's only way to the data: the public JSON API, with the key the user signed in with.
const KEY = "adtarget.console.key";

export class ApiError extends Error {
  constructor(status, error) {
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || "";
    this.field = error.field || null;
    this.error = error;
  }
}

export const getKey = () => sessionStorage.getItem(KEY) || "";
export const setKey = (key) =>
  key ? sessionStorage.setItem(KEY, key) : sessionStorage.removeItem(KEY);

export function authHeaders() {
  const key = getKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** Call the API; JSON in and out. Throws ApiError with the API's {code, message, field}. */
export async function api(method, path, body, { raw = false } = {}) {
  const headers = authHeaders();
  let payload;
  if (body instanceof FormData) payload = body;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body: payload });
  } catch (err) {
    throw new ApiError(0, { code: "network", message: `the server did not answer (${err.message})` });
  }
  if (!res.ok) {
    let data = {};
    try { data = await res.json(); } catch { /* not JSON */ }
    throw new ApiError(res.status, data.error || { message: res.statusText });
  }
  return raw ? res : res.json();
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body ?? {});
export const patch = (path, body) => api("PATCH", path, body);

/** An API error in words a campaign manager reads (a 409 is never just "409"). */
export function inWords(err) {
  if (!(err instanceof ApiError)) return String(err.message || err);
  const field = err.field && !["body", "id"].includes(err.field) && !err.code.startsWith("rule_") ? ` (field: ${err.field})` : "";
  switch (err.code) {
    case "nothing_to_undo":
      return "There is nothing of yours to undo: every change you made is already undone.";
    case "nothing_to_redo":
      return "There is nothing to redo: redo works only right after an undo.";
    case "conflict":
      return (
        "Your change was not applied because this changed since you loaded it " +
        `(someone else, or another tab, got there first): ${err.message} ` +
        "The lists below are reloaded: check them and try again."
      );
    case "invalid_transition":
      return `That status change is not allowed: ${err.message}`;
    case "unauthorized":
      return "Your API key was not accepted. Sign out and sign in with a valid key.";
    case "forbidden":
      return `Your key may not do this: ${err.message}`;
    case "network":
      return `The adtarget server did not answer: is it still running? (${err.message})`;
    default:
      if (err.status === 409) return `Conflict: ${err.message}`;
      if (err.status === 503) return `The service is busy or a part is unavailable; try again in a moment. ${err.message}`;
      return `${err.message}${field}`;
  }
}

/** Save a Response body as a file download (exports and CSV reports need the key header). */
export async function download(res, fallbackName) {
  const blob = await res.blob();
  const cd = res.headers.get("content-disposition") || "";
  const match = cd.match(/filename="?([^";]+)"?/);
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = match ? match[1] : fallbackName;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}
