// Gimel dashboard: one page, no third-party host, nothing inline (strict CSP); one library,
// uPlot, served from the package and loaded only when a history is opened (plots.js).
// This entry module loads the experiments' summaries, every page of them, and wires the
// toolbar; each other module holds one concern (api, errors, login, notice, board, card,
// results, goal, chart, history, actions, ...).
import { initActions } from "./actions.js";
import { api } from "./api.js";
import { render, applyFilter } from "./board.js";
import { failed } from "./errors.js";
import { initLogin, showLogin } from "./login.js";
import { clearNotice, clearRetry, notice, resetBackoff } from "./notice.js";
import { DEFAULT_NAMESPACE, setNamespace, setShowArchived, state } from "./state.js";
import { ui } from "./ui.js";

const isExperiment = (e) => e && typeof e.experiment === "string";

// Every page of GET /experiments?view=summary, following meta.next: a few kilobytes per
// experiment, whatever its goals (their results are fetched when its card opens).
async function summaries(params) {
  const found = [];
  const seen = new Set(); // a cursor given twice would never end
  let cursor = null;
  do {
    const page = { ...params, view: "summary", limit: "100" };
    if (cursor) page.cursor = cursor;
    const data = await api("GET", "experiments", page);
    if (!Array.isArray(data)) break;
    found.push(...data.filter(isExperiment));
    const meta = data[0] && data[0].meta;
    cursor = meta && typeof meta.next === "string" && !seen.has(meta.next) ? meta.next : null;
    seen.add(cursor);
  } while (cursor);
  return found;
}

async function load() {
  clearRetry();
  if (!state.key) {
    showLogin();
    return;
  }
  const seq = ++state.loadSeq;
  delete document.body.dataset.ready;
  ui.login.hidden = true;
  ui.toolbar.hidden = false;
  ui.board.hidden = false;
  ui.board.setAttribute("aria-busy", "true");
  ui.refresh.disabled = true;
  if (!state.experiments.length) ui.summary.textContent = "Loading…";
  const params = { namespace: state.namespace };
  if (state.showArchived) params.archived = "true";
  try {
    const found = await summaries(params);
    if (seq !== state.loadSeq) return;
    performance.mark("gimel:data");
    clearNotice();
    resetBackoff();
    state.experiments = found;
    render();
  } catch (error) {
    if (seq !== state.loadSeq) return;
    if (!state.experiments.length) ui.summary.textContent = "";
    if (!failed(error, load)) {
      notice("error", `Could not load the experiments: ${error.message}`);
      state.experiments = [];
      render();
    }
  } finally {
    if (seq === state.loadSeq) {
      ui.refresh.disabled = false;
      ui.board.removeAttribute("aria-busy");
    }
  }
}

function changeNamespace() {
  const value = ui.namespace.value.trim() || DEFAULT_NAMESPACE;
  ui.namespace.value = value;
  if (value === state.namespace) return;
  setNamespace(value);
  load();
}

ui.namespace.value = state.namespace;
ui.showArchived.checked = state.showArchived;
ui.namespace.addEventListener("change", changeNamespace);
ui.namespace.addEventListener("keydown", (event) => {
  if (event.key === "Enter") changeNamespace();
});
ui.filter.addEventListener("input", applyFilter);
ui.showArchived.addEventListener("change", () => {
  setShowArchived(ui.showArchived.checked);
  load();
});
ui.refresh.addEventListener("click", () => load());
initLogin(load);
initActions(load);
load();
