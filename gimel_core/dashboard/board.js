// The list of experiment cards: built from state.experiments (summaries, or full results
// once fetched), filtered by name, kept in step with the server after an action without
// rebuilding the rest.
import { API_ROOT } from "./api.js";
import { experimentCard } from "./card.js";
import { h } from "./dom.js";
import { count, plural } from "./format.js";
import { openTogether, resultRows } from "./results.js";
import { state } from "./state.js";
import { markReady, ui } from "./ui.js";

// The first cards open their results by themselves while they are few and small, so that a
// short list reads at a glance; a long or big one stays a list of summaries to open.
const AUTO_OPEN_CARDS = 6;
const AUTO_OPEN_ROWS = 120;

export function render() {
  const fragment = document.createDocumentFragment();
  if (!state.experiments.length) fragment.append(emptyState());
  const cards = state.experiments.map((exp) => [exp, experimentCard(exp)]);
  for (const [, card] of cards) fragment.append(card);
  performance.mark("gimel:built");
  ui.list.classList.toggle("many", state.experiments.length > 12);
  ui.list.replaceChildren(fragment);
  applyFilter();
  performance.mark("gimel:inserted");
  const opened = [];
  let rows = 0;
  for (const [exp, card] of cards.slice(0, AUTO_OPEN_CARDS)) {
    const details = card.querySelector("details.results-section");
    if (!details) continue; // no goal yet: nothing to fetch
    rows += resultRows(exp);
    if (rows > AUTO_OPEN_ROWS) break;
    opened.push([details, exp]);
  }
  Promise.allSettled(openTogether(opened)).then(() => markReady("board"));
}

export function applyFilter() {
  const needle = ui.filter.value.trim().toLowerCase();
  for (const card of ui.list.querySelectorAll(".exp")) {
    card.hidden = needle !== "" && !card.dataset.experiment.toLowerCase().includes(needle);
  }
  updateSummary();
}

function updateSummary() {
  const total = state.experiments.length;
  const shown = ui.list.querySelectorAll(".exp:not([hidden])").length;
  const time = new Date().toLocaleTimeString();
  const all = plural(total, "experiment");
  const counted = shown === total ? all : `${count(shown)} of ${all}`;
  ui.summary.replaceChildren(
    counted + " in namespace ",
    h("strong", { text: state.namespace }),
    state.showArchived ? " (archived included)" : "",
    h("span", { class: "muted", text: ` · updated ${time}` }),
  );
}

// No experiment: how to send the first events here, with this server's URLs.
function emptyState() {
  const track = new URL("track", API_ROOT).href;
  const sample = new URL("track", API_ROOT);
  sample.search = new URLSearchParams({
    experiment: "demo",
    variant: "red",
    event: "participate",
    uuid: "visitor-1",
    namespace: state.namespace,
  }).toString();
  const adapter =
    "const adapter = new AlephBet.GimelAdapter(\n" +
    `  ${JSON.stringify(track)},\n  ${JSON.stringify(state.namespace)}\n);`;
  const hidden = "Archived experiments are hidden: tick “Show archived” to see them.";
  return h(
    "div",
    { class: "empty card" },
    h("h2", { text: "No experiments yet" }),
    h(
      "p",
      {},
      "Nothing has been counted in namespace ",
      h("strong", { text: state.namespace }),
      " so far.",
    ),
    state.showArchived ? null : h("p", { class: "muted", text: hidden }),
    h("p", { text: "Send events from your pages with Alephbet:" }),
    h("pre", { class: "code" }, adapter),
    h("p", { text: "or count one by hand, then refresh this page:" }),
    // With a browser's agent: curl's own is one of the scripts' agents Gimel does not count.
    h("pre", { class: "code" }, `curl -A 'Mozilla/5.0 (by hand)' '${sample.href}'`),
  );
}

const byName = (a, b) => (a.experiment < b.experiment ? -1 : a.experiment > b.experiment ? 1 : 0);

// After an action on one experiment: only its card changes (no full re-render, so the scroll
// position and the rest of the page stay put). result is the server's answer, if any.
export function applyResult(action, name, result) {
  const index = state.experiments.findIndex((e) => e.experiment === name);
  const card = [...ui.list.querySelectorAll(".exp")].find((c) => c.dataset.experiment === name);
  const gone = action === "delete" || (action === "archive" && !state.showArchived);
  if (gone) {
    if (index >= 0) state.experiments.splice(index, 1);
    if (card) card.remove();
  } else if (result && typeof result.experiment === "string") {
    if (index >= 0 && card) {
      state.experiments[index] = result;
      card.replaceWith(experimentCard(result));
    } else {
      if (index >= 0) state.experiments[index] = result;
      else state.experiments.push(result);
      state.experiments.sort(byName);
      const scroll = window.scrollY;
      render();
      window.scrollTo(0, scroll);
      return;
    }
  }
  if (!state.experiments.length) render();
  else applyFilter();
}
