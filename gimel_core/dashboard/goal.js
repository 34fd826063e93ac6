// One goal of an experiment: the server's verdicts in words, the results table, the chart.
import { chart } from "./chart.js";
import { h } from "./dom.js";
import { DASH, chance, count, interval, pct, pValue, raw, signedPct } from "./format.js";
import { Direction, Role, VerdictKind } from "./vocabulary.js";

const VERDICT_ICONS = {
  [VerdictKind.WIN]: "▲",
  [VerdictKind.LOSE]: "▼",
  [VerdictKind.EVEN]: "=",
  [VerdictKind.WAIT]: "…",
  [VerdictKind.HARM]: "▼",
  [VerdictKind.SAFE]: "✓",
};
const NO_RATE = "No participants yet: the chart of rates starts with the first.";
const ROLE_NOTES = {
  [Role.GUARDRAIL]: "guardrail",
  [Role.SECONDARY]: "secondary, not decided on",
};

// The server decides (row.verdict: {kind, text}, null for the control); a row it has not
// judged, or judged in a way this page does not know, waits.
function verdictOf(row, control, goal) {
  const given = row.verdict;
  const text =
    given && typeof given.text === "string"
      ? given.text
      : `${row.label} vs ${control} on ${goal}: not enough data yet`;
  const kind = given && Object.hasOwn(VERDICT_ICONS, given.kind) ? given.kind : VerdictKind.WAIT;
  return { kind, text };
}

function verdictItem(kind, text) {
  return h(
    "li",
    { class: `verdict verdict-${kind}`, "data-kind": kind },
    h("span", { class: "verdict-icon", "aria-hidden": "true", text: VERDICT_ICONS[kind] }),
    h("span", { class: "verdict-text", text }),
  );
}

function verdictList(verdicts, srmMismatch) {
  const list = h(
    "ul",
    { class: "verdicts" },
    [...verdicts.values()].map((v) => verdictItem(v.kind, v.text)),
  );
  if (!verdicts.size) {
    const text = "Only one variant so far: nothing to compare yet.";
    list.append(verdictItem(VerdictKind.WAIT, text));
  } else if (srmMismatch) {
    const text = "Unreliable while the sample ratio mismatch above is unexplained.";
    list.append(h("li", { class: "verdict verdict-suspect", text }));
  }
  return list;
}

export function variantLabel(name, isControl) {
  return [
    h("span", { class: "variant-name", text: name }),
    isControl ? h("span", { class: "badge badge-control", text: "control" }) : null,
  ];
}

// [field, heading, title]; each cell repeats its heading in data-label, which a phone-wide
// page shows beside the figure (app.css stacks a row there instead of scrolling sideways).
const HEADINGS = [
  ["label", "Variant"],
  ["trials", "Participants", "trials: unique participants"],
  ["successes", "Conversions", "successes: unique visitors who reached the goal"],
  ["conversion_rate", "Rate (95% interval)"],
  ["uplift", "Uplift vs control"],
  ["p_value", "p-value", "two-sided, Holm-adjusted across variants when there are several"],
  ["chance_to_beat_control", "Chance to beat control"],
];
const LABELS = Object.fromEntries(HEADINGS.map(([field, text]) => [field, text]));

// The same header for every goal table: built once, cloned (a hundred experiments have
// hundreds of tables, and cloning is much cheaper than building).
let resultsHead = null;

function resultsHeader() {
  resultsHead ||= h(
    "thead",
    {},
    h(
      "tr",
      {},
      HEADINGS.map(([, text, title], i) =>
        h("th", { scope: "col", class: i ? "num" : null, title, text }),
      ),
    ),
  );
  return resultsHead.cloneNode(true);
}

// A numeric cell: the shown text first, an optional second line, the raw value in data-value.
function cell(field, value, text, sub, attrs) {
  const td = h(
    "td",
    { "data-field": field, "data-label": LABELS[field], "data-value": raw(value), ...attrs },
    text,
  );
  if (sub) td.append(h("span", { class: "sub", text: sub }));
  return td;
}

// Under the p-value: its Holm adjustment, or in group-sequential analysis the bound the look's
// |z| had to reach (there the p-value is the look's nominal one, not compared with 0.05).
function pNote(row, isAdjusted) {
  if (typeof row.bound === "number") return `nominal; bound |z| ≥ ${row.bound.toFixed(2)}`;
  return isAdjusted && `adjusted ${pValue(row.p_value_adjusted)}`;
}

function resultRow(row, isControl, kind) {
  const p = row.p_value;
  const adjusted = row.p_value_adjusted;
  const isAdjusted = adjusted !== p && adjusted !== null && adjusted !== undefined;
  const uplift = row.uplift;
  const upliftCi = row.uplift_ci;
  return h(
    "tr",
    { "data-variant": row.label, class: `row-${kind}` },
    h("th", { scope: "row", class: "variant" }, variantLabel(row.label, isControl)),
    cell("trials", row.trials, count(row.trials)),
    cell("successes", row.successes, count(row.successes)),
    cell("conversion_rate", row.conversion_rate, pct(row.conversion_rate), interval(row.ci), {
      "data-low": raw(row.ci && row.ci[0]),
      "data-high": raw(row.ci && row.ci[1]),
    }),
    cell(
      "uplift",
      uplift,
      isControl ? DASH : signedPct(uplift),
      upliftCi && `${signedPct(upliftCi[0])} to ${signedPct(upliftCi[1])}`,
      uplift > 0 ? { class: "pos" } : uplift < 0 ? { class: "neg" } : null,
    ),
    cell("p_value", p, pValue(p), pNote(row, isAdjusted), {
      "data-adjusted": raw(row.p_value_adjusted),
    }),
    cell("chance_to_beat_control", row.chance_to_beat_control, chance(row.chance_to_beat_control)),
  );
}

function roleBadge(goal) {
  const lower = goal.direction === Direction.DECREASE;
  const notes = [ROLE_NOTES[goal.role], lower ? "lower is better" : null];
  const text = notes.filter(Boolean).join(", ");
  return text ? h("span", { class: "badge badge-muted goal-role", text }) : null;
}

export function goalSection(exp, goal) {
  const rows = goal.results || [];
  const control = exp.control;
  const verdicts = new Map();
  for (const row of rows) {
    if (row.label !== control) verdicts.set(row.label, verdictOf(row, control, goal.goal));
  }
  const kindOf = (row) => (row.label === control ? "control" : verdicts.get(row.label).kind);
  const body = rows.map((row) => resultRow(row, row.label === control, kindOf(row)));
  const rated = rows.some((row) => typeof row.conversion_rate === "number");
  return h(
    "section",
    { class: "goal", "data-goal": goal.goal },
    h(
      "h3",
      {},
      h("span", { class: "goal-label", text: "Goal" }),
      h("span", { class: "goal-name", text: goal.goal }),
      roleBadge(goal),
    ),
    verdictList(verdicts, exp.srm && exp.srm.mismatch),
    h(
      "div",
      { class: "table-wrap" },
      h("table", { class: "results" }, resultsHeader(), h("tbody", {}, body)),
    ),
    rated
      ? chart(rows, control, kindOf, goal.goal)
      : h("p", { class: "muted no-chart", text: NO_RATE }),
  );
}
