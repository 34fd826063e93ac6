// An experiment's results, on demand. The list is loaded as summaries (GET /experiments
// ?view=summary: each experiment's fields with its goals' names, not their results); this
// <details> of its card fetches GET /experiments/<name> when opened, then shows a section per
// goal. It is built open when the results are at hand already (an action's answer), and
// board.js opens the first few small ones by itself.
import { api } from "./api.js";
import { h } from "./dom.js";
import { goalSection } from "./goal.js";
import { plural } from "./format.js";
import { fetchInto } from "./ondemand.js";
import { state } from "./state.js";

// A full result carries goals[] (with their results); a summary carries goal_names[].
export const hasResults = (exp) => Array.isArray(exp.goals);

export function goalNames(exp) {
  if (hasResults(exp)) return exp.goals.map((goal) => goal.goal);
  return Array.isArray(exp.goal_names) ? exp.goal_names : [];
}

// What showing the results costs the page: one table row per variant and goal.
export const resultRows = (exp) =>
  Object.keys(exp.participants || {}).length * goalNames(exp).length;

const loading = new WeakMap(); // details -> the promise of its fetch

// The card's section; data-state: "closed" (not fetched), "loading", "ready" or "error".
export function resultsSection(exp) {
  const names = goalNames(exp);
  const shown = names.length > 3 ? [...names.slice(0, 3), "…"] : names;
  const body = h("div", { class: "results-body" });
  const details = h(
    "details",
    { class: "results-section", "data-state": "closed" },
    h(
      "summary",
      {},
      "Results",
      h("span", {
        class: "muted",
        text: ` · ${plural(names.length, "goal")}: ${shown.join(", ")}`,
      }),
    ),
    body,
  );
  if (hasResults(exp)) {
    fill(body, exp);
    details.dataset.state = "ready";
    details.open = true;
  }
  details.addEventListener("toggle", () => {
    if (details.open) openResults(details, exp);
  });
  return details;
}

// Open the section and fetch its results unless done or under way; resolves when shown.
// together: a promise of results fetched with other cards' (openTogether), by name.
export function openResults(details, exp, together = null) {
  details.open = true;
  const now = details.dataset.state;
  if (now === "ready") return Promise.resolve();
  if (now === "loading") return loading.get(details);
  const done = load(details, details.querySelector(".results-body"), exp, together);
  loading.set(details, done);
  return done;
}

// Several cards opened at once (the first ones of the board): their results in one request,
// GET /experiments?scope=a,b,… (one call to the server, not one per card), each card then
// shown as if opened alone. A card the answer leaves out (a name with a comma, which a scope
// cannot hold; a page cut short; an experiment gone since, which a scope lists without a
// counting mode) fetches its own.
export function openTogether(cards) {
  const names = cards.map(([, exp]) => exp.experiment).filter((name) => !name.includes(","));
  let together = null;
  if (names.length > 1) {
    const params = { namespace: state.namespace, scope: names.join(",") };
    together = api("GET", "experiments", params).then(
      (found) =>
        new Map(
          (Array.isArray(found) ? found : [])
            .filter((e) => e && typeof e.counting === "string" && hasResults(e))
            .map((e) => [e.experiment, e]),
        ),
      () => new Map(), // each card tries by itself, and says so if it fails too
    );
  }
  return cards.map(([details, exp]) => openResults(details, exp, together));
}

function load(details, body, exp, together) {
  const seq = state.loadSeq;
  const show = async (path) => {
    const shared = together && (await together).get(exp.experiment);
    const full = shared || (await api("GET", path, { namespace: state.namespace }));
    fill(body, full);
    // Kept, so that the card is drawn again with them (after an action on another card).
    const index = state.experiments.findIndex((e) => e.experiment === exp.experiment);
    if (seq === state.loadSeq && index >= 0) state.experiments[index] = full;
  };
  return fetchInto(details, body, exp, "results", show, () => openResults(details, exp));
}

function fill(body, exp) {
  body.replaceChildren(...(exp.goals || []).map((goal) => goalSection(exp, goal)));
}
