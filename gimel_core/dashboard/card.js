// One experiment's card, from its summary or its full results: title, badges, action
// buttons, SRM warning, caveat, then its results by goal, fetched when opened (or the
// participants alone while no goal has been reached), then its history and its alerts.
import { alertsSection } from "./alerts.js";
import { h } from "./dom.js";
import { DASH, count, day, pct, plural, pText, raw } from "./format.js";
import { variantLabel } from "./goal.js";
import { historySection } from "./history.js";
import { goalNames, resultsSection } from "./results.js";
import { DecisionKind, Mode } from "./vocabulary.js";

const EXACT_CAVEAT = "Exact unique counts: a visitor is counted once within the de-dup window.";
const HLL_CAVEAT =
  "HyperLogLog counts: about ±0.8% counting error, already included in the intervals and " +
  "p-values.";
const NO_GOALS = "No goal has been reached yet: only participants are counted so far.";

const sum = (counts) => Object.values(counts).reduce((a, b) => a + (b || 0), 0);

// Buttons only: actions.js handles their clicks, by data-action, for every card at once.
function actionButtons(archived) {
  const button = (action, text, danger) =>
    h("button", {
      type: "button",
      class: danger ? "btn btn-small btn-danger" : "btn btn-small",
      "data-action": action,
      text,
    });
  return [
    archived ? button("unarchive", "Unarchive") : button("archive", "Archive"),
    button("reset", "Reset"),
    button("delete", "Delete", true),
  ];
}

function header(exp) {
  const archived = !!exp.archived;
  const exact = exp.counting === Mode.EXACT;
  const meta = [
    exp.created ? `started ${day(exp.created)}` : null,
    exp.reset_at ? `counts reset ${day(exp.reset_at)}` : null,
    plural(sum(exp.participants || {}), "participant"),
    exp.control ? `control: ${exp.control}` : null,
  ].filter(Boolean);
  const title = h(
    "h2",
    {},
    h("span", { class: "exp-name", text: exp.experiment }),
    archived ? h("span", { class: "badge badge-muted", text: "archived" }) : null,
    exp.plan ? h("span", { class: "badge badge-plan", text: "declared" }) : null,
    h("span", {
      class: `badge badge-${exact ? Mode.EXACT : Mode.HLL}`,
      text: exact ? "exact counts" : "HyperLogLog",
    }),
  );
  return h(
    "header",
    { class: "exp-head" },
    h(
      "div",
      { class: "exp-title" },
      title,
      exp.description ? h("p", { class: "exp-desc", text: exp.description }) : null,
      h("p", { class: "exp-meta", text: meta.join(" · ") }),
    ),
    h("div", { class: "exp-actions" }, actionButtons(archived)),
  );
}

// The server's one line for the whole experiment: what to do now.
const DECISION_KINDS = Object.values(DecisionKind);

function decisionLine(exp) {
  const given = exp.decision;
  if (!given || typeof given.text !== "string") return null;
  const kind = DECISION_KINDS.includes(given.kind) ? given.kind : DecisionKind.KEEP_RUNNING;
  return h(
    "p",
    { class: `decision decision-${kind}`, "data-kind": kind, role: "status" },
    h("strong", { class: "decision-label", text: "Decision: " }),
    h("span", { class: "decision-text", text: given.text }),
  );
}

// The plan's figures for its first primary goal, when it declares a size or an MDE.
function planningLine(exp) {
  const p = exp.planning;
  if (!p) return null;
  const plan = exp.plan || {};
  const parts = [];
  if (plan.planned_participants) {
    const mde = p.mde === null ? "out of reach" : pct(p.mde);
    const planned = plural(plan.planned_participants, "participant");
    parts.push(`detectable at ${planned}: ${mde}`);
  }
  if (plan.mde) {
    if (p.power !== null) parts.push(`power for ${pct(plan.mde)}: ${pct(p.power)}`);
    parts.push(
      p.needed === null ? `${pct(plan.mde)} is out of reach` : `${count(p.needed)} needed`,
    );
  }
  if (p.days_remaining !== null) {
    const days = p.days_remaining;
    const left = days < 1 ? "less than a day" : `about ${plural(Math.round(days), "day")}`;
    parts.push(`${left} to go`);
  }
  const text = `Plan (${p.goal}): ${parts.join(" · ")}`;
  return h("p", { class: "planning", "data-goal": p.goal }, text);
}

// A group-sequential experiment's looks: closed days, each at its share of the planned size.
function looksLine(exp) {
  const looks = exp.looks;
  if (!looks) return null;
  const planned = looks.planned ? `${count(looks.planned)} planned` : "size from the first look";
  const parts = [`Group-sequential (${looks.spending.replace("_", "-")}, ${planned})`];
  const taken = looks.dates.length;
  if (!taken) {
    parts.push(`first look at the end of ${looks.next_look} (UTC)`);
  } else {
    const last = taken - 1;
    parts.push(
      `${plural(taken, "look")}, the last on ${looks.dates[last]} at ` +
        `${pct(looks.fractions[last])} with bound |z| ≥ ${looks.bounds[last].toFixed(2)}`,
    );
    parts.push(looks.final ? "final" : `next at the end of ${looks.next_look}`);
  }
  return h("p", { class: "looks", "data-final": String(looks.final) }, parts.join(" · "));
}

// The plan's covariate: what the CUPED columns adjust on, and what they assume.
function covariateLine(exp) {
  const covariate = exp.covariate;
  if (!covariate) return null;
  return h(
    "p",
    { class: "covariate", "data-covariate": covariate.name },
    h("strong", { text: `CUPED, ${covariate.name}: ` }),
    covariate.note,
  );
}

function srmWarning(exp) {
  const participants = exp.participants || {};
  const expected = exp.srm.expected || {};
  const total = sum(participants) || 1;
  const split = Object.keys(expected)
    .map((v) => `${v} ${pct((participants[v] || 0) / total)} (expected ${pct(expected[v])})`)
    .join(", ");
  return h(
    "div",
    { class: "alert alert-error srm", role: "alert", "data-srm-p": raw(exp.srm.p_value) },
    h("strong", { text: "Sample ratio mismatch. " }),
    `Participants split ${split}; ${pText(exp.srm.p_value)}. ` +
      "Assignment or tracking is probably broken: " +
      "do not trust these results until the cause is found.",
  );
}

function participantsTable(exp) {
  const participants = exp.participants || {};
  const expected = (exp.srm && exp.srm.expected) || {};
  const total = sum(participants);
  const heading = (text, num) => h("th", { scope: "col", class: num && "num", text });
  const rows = Object.keys(participants).map((v) =>
    h(
      "tr",
      { "data-variant": v },
      h("th", { scope: "row", class: "variant" }, variantLabel(v, v === exp.control)),
      h(
        "td",
        {
          class: "num",
          "data-field": "trials",
          "data-label": "Participants",
          "data-value": raw(participants[v]),
        },
        count(participants[v]),
      ),
      h("td", { class: "num", "data-label": "Share" }, total ? pct(participants[v] / total) : DASH),
      h(
        "td",
        { class: "num", "data-label": "Expected" },
        expected[v] === undefined ? DASH : pct(expected[v]),
      ),
    ),
  );
  const head = h(
    "tr",
    {},
    heading("Variant"),
    heading("Participants", true),
    heading("Share", true),
    heading("Expected", true),
  );
  return h(
    "div",
    { class: "table-wrap" },
    h("table", { class: "results" }, h("thead", {}, head), h("tbody", {}, rows)),
  );
}

export function experimentCard(exp) {
  const card = h(
    "article",
    {
      class: exp.archived ? "exp card is-archived" : "exp card",
      "data-experiment": exp.experiment,
      "data-goals": goalNames(exp).length,
    },
    header(exp),
  );
  for (const line of [decisionLine(exp), planningLine(exp), looksLine(exp), covariateLine(exp)]) {
    if (line) card.append(line);
  }
  if (exp.srm && exp.srm.mismatch) card.append(srmWarning(exp));
  card.append(
    h(
      "p",
      { class: "caveat", "data-counting": exp.counting || "" },
      exp.counting === Mode.EXACT ? EXACT_CAVEAT : HLL_CAVEAT,
    ),
  );
  if (!goalNames(exp).length) {
    card.append(h("p", { class: "muted no-goals", text: NO_GOALS }), participantsTable(exp));
  } else {
    card.append(resultsSection(exp));
  }
  card.append(historySection(exp), alertsSection(exp));
  return card;
}
