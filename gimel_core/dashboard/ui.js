// The page's fixed elements (index.html), and the marker telling tests and benchmarks that
// what was just rendered is on screen.
import { state } from "./state.js";

const $ = (id) => document.getElementById(id);

export const ui = {
  toolbar: $("toolbar"),
  namespace: $("namespace"),
  filter: $("filter"),
  showArchived: $("show-archived"),
  refresh: $("refresh"),
  logout: $("logout"),
  login: $("login"),
  loginForm: $("login-form"),
  loginMessage: $("login-message"),
  apiKey: $("api-key"),
  notice: $("notice"),
  board: $("board"),
  summary: $("summary"),
  list: $("experiments"),
  dialog: $("confirm"),
  dialogTitle: $("confirm-title"),
  dialogBody: $("confirm-body"),
  dialogOk: $("confirm-ok"),
  dialogCancel: $("confirm-cancel"),
  toast: $("toast"),
  toastText: $("toast-text"),
  toastUndo: $("toast-undo"),
};

// body[data-ready] = "login" | "board" | "error", set once the browser has had a chance to
// lay out and paint, unless another load started meanwhile.
export function markReady(value) {
  const seq = state.loadSeq;
  requestAnimationFrame(() =>
    setTimeout(() => {
      if (seq !== state.loadSeq) return;
      document.body.dataset.ready = value;
      if (value === "board") performance.mark("gimel:rendered");
    }, 0),
  );
}
