// The notice bar under the toolbar: errors, and the countdown to the next automatic retry.
import { h } from "./dom.js";
import { ui } from "./ui.js";

let retryTimer = null;
let backoff = 0; // seconds the next retry waits at least; doubles while failures go on

// kind: "info" | "warn" | "error"; action: an optional element shown after the message.
export function notice(kind, message, action) {
  ui.notice.hidden = false;
  ui.notice.className = `notice alert alert-${kind}`;
  ui.notice.replaceChildren(h("span", { text: message }), action || "");
}

export function clearNotice() {
  ui.notice.hidden = true;
  ui.notice.replaceChildren();
}

export function clearRetry() {
  if (retryTimer) clearInterval(retryTimer);
  retryTimer = null;
}

// After a success: the next failure retries quickly again.
export function resetBackoff() {
  backoff = 0;
}

// Calls retry() after what the server asks (Retry-After), doubling while it keeps failing,
// at most 60 s; a button retries at once.
export function scheduleRetry(message, seconds, retry) {
  clearRetry();
  let left = Math.min(60, Math.max(2, seconds || 5, backoff));
  backoff = left * 2;
  const button = h("button", {
    type: "button",
    class: "btn btn-small",
    text: "Retry now",
    onclick: () => retry(),
  });
  const tick = () => notice("warn", `${message} Retrying in ${left} s…`, button);
  tick();
  retryTimer = setInterval(() => {
    left -= 1;
    if (left <= 0) retry();
    else tick();
  }, 1000);
}
