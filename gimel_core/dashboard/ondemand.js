// A <details> of a card that fetches what it shows when opened (results, history, alerts): its
// data-state ("loading", then "ready" or "error"), aria-busy while it waits, and the error
// in its body with a button to try again. A name with no URL ("." or "..") is an error.
import { experimentPath } from "./api.js";
import { h } from "./dom.js";
import { failed } from "./errors.js";

// show(path) fetches and draws into body; what names it in the messages ("results").
export async function fetchInto(details, body, exp, what, show, retry) {
  const path = experimentPath(exp.experiment);
  const set = (value) => (details.dataset.state = value);
  if (path === null) {
    set("error");
    body.replaceChildren(h("p", { class: "muted", text: "A name of “.” or “..” has no URL." }));
    return;
  }
  set("loading");
  details.setAttribute("aria-busy", "true");
  body.replaceChildren(h("p", { class: "muted", text: `Loading the ${what}…` }));
  try {
    await show(path);
    set("ready");
  } catch (error) {
    set("error");
    if ((error.status === 401 || error.status === 403) && failed(error, () => {})) return;
    const again = h("button", {
      type: "button",
      class: "btn btn-small",
      text: "Try again",
      onclick: retry,
    });
    const text = `Could not load the ${what}: ${error.message}`;
    body.replaceChildren(h("p", { class: "alert alert-error" }, text, " ", again));
  } finally {
    details.removeAttribute("aria-busy");
  }
}

// A card's closed <details> (class `kind`, its body `${kind}-body`) whose summary is `title`
// and a muted `note`; opened (or opened again after an error) it fetches what it shows:
// show(path, details, body) fetches and draws into body.
export function onDemandSection(kind, title, note, exp, show) {
  const body = h("div", { class: `${kind}-body` });
  const details = h(
    "details",
    { class: kind, "data-state": "closed" },
    h("summary", {}, title, h("span", { class: "muted", text: note })),
    body,
  );
  const fetched = (path) => show(path, details, body);
  const load = () => fetchInto(details, body, exp, kind, fetched, load);
  details.addEventListener("toggle", () => {
    const now = details.dataset.state;
    if (details.open && (now === "closed" || now === "error")) load();
  });
  return details;
}
