// The key form: asks for the API key, keeps it for this tab, forgets it on request or when
// the server refuses it.
import { clearRetry } from "./notice.js";
import { setKey } from "./state.js";
import { markReady, ui } from "./ui.js";

export function showLogin(message) {
  clearRetry();
  ui.toolbar.hidden = true;
  ui.board.hidden = true;
  ui.notice.hidden = true;
  ui.list.replaceChildren();
  ui.login.hidden = false;
  ui.loginMessage.hidden = !message;
  ui.loginMessage.textContent = message || "";
  ui.loginMessage.className = message ? "alert alert-warn" : "alert";
  ui.apiKey.value = "";
  ui.apiKey.focus();
  markReady("login");
}

export function forgetKey(message) {
  setKey(null);
  showLogin(message);
}

// onKey() runs once a plausible key is stored.
export function initLogin(onKey) {
  ui.loginForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = ui.apiKey.value.trim();
    if (!key) {
      showLogin("Enter the API key.");
      return;
    }
    if (/[^\x20-\x7e]/.test(key)) {
      showLogin("This key has characters a browser cannot send in a header: check it.");
      return;
    }
    setKey(key);
    ui.apiKey.value = "";
    ui.login.hidden = true;
    onKey();
  });
  ui.logout.addEventListener("click", () =>
    forgetKey("Key forgotten. Enter it again to continue."),
  );
}
