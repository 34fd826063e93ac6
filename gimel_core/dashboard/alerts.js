// An experiment's alerts, on demand: a closed <details> after its history. Opening it fetches
// GET /experiments/<name>/alerts and lists what the watcher announced, oldest first (kind,
// when, its text, the deliveries still due), then the latest delivery attempts, newest first
// (destination as the server shows it, scheme and host only; status; error; next retry).
import { api } from "./api.js";
import { h } from "./dom.js";
import { DASH, moment, plural } from "./format.js";
import { onDemandSection } from "./ondemand.js";
import { state } from "./state.js";
import { AlertKind } from "./vocabulary.js";

// How a person is told each kind (as the Slack message's header says it).
const KINDS = {
  [AlertKind.DECIDED]: "Decided",
  [AlertKind.HARM]: "Harm on a guardrail",
  [AlertKind.SRM]: "Sample ratio mismatch",
  [AlertKind.SILENT]: "No events",
  [AlertKind.SIZE_REACHED]: "Planned size reached",
};

const kindText = (kind) => KINDS[kind] || kind;

const NONE = "No alert announced yet: the watcher has found nothing to report.";
const NO_DELIVERY =
  "No delivery attempted yet: without GIMEL_WEBHOOK_URL or GIMEL_SLACK_WEBHOOK_URL, alerts " +
  "are only kept here.";

// The card's section; data-state as history's: "closed", "loading", "ready" or "error".
export function alertsSection(exp) {
  const show = async (path, _, body) => {
    draw(body, await api("GET", path + "/alerts", { namespace: state.namespace }));
  };
  return onDemandSection("alerts", "Alerts", " · what the watcher sent", exp, show);
}

// A delivery still due: a retry that waits, or a first attempt (alerts go out in order, so one
// waits while an earlier alert's delivery to the same destination is retried).
function pendingText(due) {
  const when = moment(due.retry_at);
  if (!due.attempts) return `${due.destination}: not tried yet (due ${when}; alerts go in order)`;
  return `${due.destination}: ${plural(due.attempts, "attempt")} failed, next try ${when}`;
}

function announced(alert) {
  const pending = alert.pending || [];
  return h(
    "li",
    { class: "alert-item", "data-kind": alert.kind, "data-id": alert.id },
    h(
      "p",
      { class: "alert-head" },
      h("strong", { class: "alert-kind", text: kindText(alert.kind) }),
      " · ",
      h("time", { datetime: new Date(alert.created * 1000).toISOString() }, moment(alert.created)),
    ),
    h("p", { class: "alert-text", text: alert.text }),
    pending.length
      ? h(
          "ul",
          { class: "alert-pending" },
          pending.map((due) =>
            h("li", { "data-destination": due.destination, text: pendingText(due) }),
          ),
        )
      : null,
  );
}

function deliveryRow(d) {
  const cell = (label, field, text, extra = {}) =>
    h("td", { "data-label": label, "data-field": field, ...extra }, text);
  return h(
    "tr",
    { "data-ok": String(d.ok), "data-alert": d.alert },
    h("th", { scope: "row", class: "variant" }, moment(d.at)),
    cell("Alert", "kind", kindText(d.kind), { class: "text" }),
    cell("Destination", "destination", d.destination, { class: "text" }),
    cell("Attempt", "attempt", String(d.attempt)),
    cell("Status", "status", d.status === null ? DASH : String(d.status), {
      class: d.ok ? "pos" : "neg",
    }),
    cell("Error", "error", d.error || DASH, { class: "text error" }),
    cell("Next retry", "retry_at", d.retry_at === null ? DASH : moment(d.retry_at)),
  );
}

function deliveriesTable(deliveries) {
  const heading = (text) => h("th", { scope: "col", text });
  const head = h(
    "tr",
    {},
    ["When", "Alert", "Destination", "Attempt", "Status", "Error", "Next retry"].map(heading),
  );
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "results deliveries" },
      h("thead", {}, head),
      h("tbody", {}, deliveries.map(deliveryRow)),
    ),
  );
}

function draw(body, log) {
  const alerts = log.alerts || [];
  const deliveries = log.deliveries || [];
  if (!alerts.length && !deliveries.length) {
    body.replaceChildren(h("p", { class: "muted no-alerts", text: NONE }));
    return;
  }
  body.replaceChildren(
    h("h4", {}, `Announced (${alerts.length}), oldest first`),
    h("ol", { class: "alert-list" }, alerts.map(announced)),
    h("h4", {}, "Latest deliveries, newest first"),
    deliveries.length
      ? deliveriesTable(deliveries)
      : h("p", { class: "muted no-deliveries", text: NO_DELIVERY }),
  );
}
