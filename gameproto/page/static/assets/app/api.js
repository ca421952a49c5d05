// The REST API, called with the session cookie.  Every URL is relative to the page, so
// the page works wherever the server is mounted (/ or /game/).

export class ApiError extends Error {
  constructor(status, message, field) {
    super(message);
    this.status = status;
    this.field = field;
  }
}

export async function api(method, path, body) {
  const init = {
    method,
    credentials: "same-origin",
    // Proves to the server that the call comes from this page (a page of another origin
    // could only add this header after a CORS preflight, which gameproto never grants).
    headers: { "X-Requested-With": "gameproto" },
  };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path.replace(/^\//, ""), init);
  } catch (error) {
    throw new ApiError(0, "the server cannot be reached");
  }
  if (response.status === 204) return null;
  let payload = null;
  try {
    payload = await response.json();
  } catch (error) {
    payload = null;
  }
  if (!response.ok) {
    const message = payload && typeof payload.error === "string" ? payload.error : `HTTP ${response.status}`;
    throw new ApiError(response.status, message, payload && payload.field);
  }
  return payload;
}

// ws://host/prefix/ws/game/7/?role=host from a path relative to the page.
export function socketURL(path) {
  const url = new URL(path.replace(/^\//, ""), document.baseURI);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.hash = "";
  return url.href;
}

// The page's own path ("/" or "/game/"), where the server's tree is mounted.
export function basePath() {
  return new URL(".", document.baseURI).pathname;
}
