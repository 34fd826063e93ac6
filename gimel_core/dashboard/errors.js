// What the page does about an API error that is not specific to one request: ask for the
// key again (401, 403), or retry later (503, 5xx, network).
import { forgetKey } from "./login.js";
import { scheduleRetry } from "./notice.js";
import { markReady } from "./ui.js";

// True when the error was handled (login shown or retry scheduled); retry() reloads.
export function failed(error, retry) {
  if (error.status === 401) {
    forgetKey("The server needs an API key: enter it to continue.");
  } else if (error.status === 403) {
    const wrong = /wrong api key/i.test(error.message);
    forgetKey(
      wrong
        ? "The server refused this key (wrong API key). Check it and enter it again."
        : `The server refused access: ${error.message}`,
    );
  } else if (error.status === 503) {
    scheduleRetry("The event store is unavailable right now.", error.retryAfter, retry);
    markReady("error");
  } else if (error.status === 0 || error.status >= 500) {
    const message = `${error.message || "The server failed."} (${error.status || "network"})`;
    scheduleRetry(message, 5, retry);
    markReady("error");
  } else {
    return false;
  }
  return true;
}
