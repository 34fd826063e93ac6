// Calls to the Gimel API with the key in the x-api-key header (never in a URL).
//
// URLs are relative to the page's, so the API root is "./": "/" when the page is served at
// /dashboard, "/prod/" at /prod/dashboard on API Gateway (the modules are a version's
// folder deeper: …/dashboard/v/<version>/api.js).
import { state } from "./state.js";

export const API_ROOT = new URL("./", document.baseURI);

// status is 0 when the server could not be reached; retryAfter is in seconds, or null.
export class ApiError extends Error {
  constructor(status, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

// "." and ".." cannot travel in a URL path (browsers remove them): null for those, so that
// callers refuse them up front rather than hit another URL.
export function experimentPath(name) {
  if (name === "." || name === "..") return null;
  return "experiments/" + encodeURIComponent(name);
}

// The decoded JSON answer, or an ApiError.
export async function api(method, path, params, body) {
  const url = new URL(path, API_ROOT);
  for (const [name, value] of Object.entries(params || {})) url.searchParams.set(name, value);
  const headers = { "x-api-key": state.key, Accept: "application/json" };
  const init = {
    method,
    headers,
    cache: "no-store",
    credentials: "omit",
    referrerPolicy: "no-referrer",
  };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch {
    throw new ApiError(0, "The server could not be reached.");
  }
  const data = await response.json().catch(() => null); // not JSON: no details
  if (!response.ok) {
    const error = data && typeof data.error === "string" && data.error;
    const retry = parseInt(response.headers.get("Retry-After") || "", 10);
    throw new ApiError(
      response.status,
      error || response.statusText,
      Number.isFinite(retry) ? retry : null,
    );
  }
  return data;
}
