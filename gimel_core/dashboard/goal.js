// One goal of an experiment: the server's verdicts in words, the results table, the chart.
import { MEAN, RATE, chart } from "./chart.js";
import { h } from "./dom.js";
import { DASH, amount, chance, count, interval, pct, pValue, raw, signedPct } from "./format.js";
import { Direction, GoalType, Role, VerdictKind } from "./vocabulary.js";

const VERDICT_ICONS = {
  [VerdictKind.WIN]: "▲",
  [VerdictKind.LOSE]: "▼",
  [VerdictKind.EVEN]: "=",
  [VerdictKind.WAIT]: "…",
  [VerdictKind.HARM]: "▼",
  [VerdictKind.SAFE]: "✓",
};
const NO_RATE = "No participants yet: the chart of rates starts with the first.";
const NO_MEAN = "No participants yet: the chart of means starts with the first.";
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
const COMPARED = [
  ["uplift", "Uplift vs control"],
  ["p_value", "p-value", "two-sided, Holm-adjusted across variants when there are several"],
  ["chance_to_beat_control", "Chance to beat control"],
];
// With a covariate, the comparison is the CUPED one, on which the server decides; the
// unadjusted figures are in each cell's title.
const CUPED = [
  ["adjusted_uplift", "Uplift vs control, CUPED", "regression-adjusted on the covariate"],
  ["adjusted_p_value", "p-value, CUPED", "two-sided, Holm-adjusted across variants"],
  ["adjusted_chance", "Chance to beat control, CUPED"],
  ["variance_reduction", "Variance reduction", "of the uplift's variance, by the adjustment"],
];
const BINARY = [
  ["label", "Variant"],
  ["trials", "Participants", "trials: unique participants"],
  ["successes", "Conversions", "successes: unique visitors who reached the goal"],
  ["conversion_rate", "Rate (95% interval)"],
];
// A value goal: an amount per participant, those who sent no value counting 0.
const VALUED = [
  ["label", "Variant"],
  ["trials", "Participants", "trials: unique participants"],
  ["successes", "Value events", "successes: events with a value, each counted once"],
  ["sum", "Sum", "of the participants' totals, each capped at the plan's cap"],
  ["mean", "Mean per visitor (95% interval)", "participants without a value count 0"],
];
const LABELS = Object.fromEntries(
  [...BINARY, ...VALUED, ...COMPARED, ...CUPED].map(([field, text]) => [field, text]),
);

// The same header for every goal table of a kind: built once, cloned (a hundred experiments
// have hundreds of tables, and cloning is much cheaper than building).
const resultsHeads = new Map();

// covariate: the name the CUPED columns adjust on, or null for the unadjusted ones.
function resultsHeader(valued, covariate) {
  const key = JSON.stringify([valued, covariate]);
  if (!resultsHeads.has(key)) {
    const [uplift, ...cuped] = CUPED;
    const named = [uplift[0], `Uplift vs control (CUPED, ${covariate})`, uplift[2]];
    const compared = covariate === null ? COMPARED : [named, ...cuped];
    const shown = [...(valued ? VALUED : BINARY), ...compared];
    const row = shown.map(([field, text, title], i) =>
      h("th", { scope: "col", class: i ? "num" : null, "data-field": field, title, text }),
    );
    resultsHeads.set(key, h("thead", {}, h("tr", {}, row)));
  }
  return resultsHeads.get(key).cloneNode(true);
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

const isHolm = (p, adjusted) => adjusted !== p && adjusted !== null && adjusted !== undefined;
const sign = (x) => (x > 0 ? { class: "pos" } : x < 0 ? { class: "neg" } : null);

function upliftCell(field, uplift, ci, isControl) {
  const sub = ci && `${signedPct(ci[0])} to ${signedPct(ci[1])}`;
  return cell(field, uplift, isControl ? DASH : signedPct(uplift), sub, sign(uplift));
}

// The binary goal's rate, or the value goal's sum and mean, each with its 95% interval.
function measured(row, valued) {
  const bounds = { "data-low": raw(row.ci && row.ci[0]), "data-high": raw(row.ci && row.ci[1]) };
  if (!valued) {
    const rate = row.conversion_rate;
    return [cell("conversion_rate", rate, pct(rate), interval(row.ci), bounds)];
  }
  return [
    cell("sum", row.sum, amount(row.sum)),
    cell("mean", row.mean, amount(row.mean), interval(row.ci, amount), bounds),
  ];
}

// The CUPED figures of a row (the control has its adjusted mean only: nothing to show), with
// the unadjusted ones in the titles.
function adjustedCells(row, isControl) {
  const cuped = row.adjusted || {};
  const p = cuped.p_value;
  const reduction = cuped.variance_reduction;
  const holm = isHolm(p, cuped.p_value_adjusted) && `Holm ${pValue(cuped.p_value_adjusted)}`;
  const unadjusted = (text) => (isControl ? null : `unadjusted: ${text}`);
  const uplift = upliftCell("adjusted_uplift", cuped.uplift, cuped.uplift_ci, isControl);
  if (!isControl) uplift.title = unadjusted(signedPct(row.uplift));
  const beat = cuped.chance_to_beat_control;
  return [
    uplift,
    cell("adjusted_p_value", p, pValue(p), holm, {
      "data-adjusted": raw(cuped.p_value_adjusted),
      title: unadjusted(pValue(row.p_value)),
    }),
    cell("adjusted_chance", beat, chance(beat), null, {
      title: unadjusted(chance(row.chance_to_beat_control)),
    }),
    cell("variance_reduction", reduction, isControl ? DASH : pct(reduction)),
  ];
}

function comparedCells(row, isControl) {
  const p = row.p_value;
  return [
    upliftCell("uplift", row.uplift, row.uplift_ci, isControl),
    cell("p_value", p, pValue(p), pNote(row, isHolm(p, row.p_value_adjusted)), {
      "data-adjusted": raw(row.p_value_adjusted),
    }),
    cell("chance_to_beat_control", row.chance_to_beat_control, chance(row.chance_to_beat_control)),
  ];
}

function resultRow(row, isControl, kind, valued, adjusted) {
  return h(
    "tr",
    { "data-variant": row.label, class: `row-${kind}` },
    h("th", { scope: "row", class: "variant" }, variantLabel(row.label, isControl)),
    cell("trials", row.trials, count(row.trials)),
    cell("successes", row.successes, count(row.successes)),
    measured(row, valued),
    adjusted ? adjustedCells(row, isControl) : comparedCells(row, isControl),
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
  const valued = goal.type === GoalType.VALUE;
  const adjusted = rows.some((row) => row.adjusted);
  const covariate = adjusted ? (exp.covariate && exp.covariate.name) || "covariate" : null;
  const body = rows.map((row) =>
    resultRow(row, row.label === control, kindOf(row), valued, adjusted),
  );
  const measure = valued ? MEAN : RATE;
  const rated = rows.some((row) => typeof measure.of(row) === "number");
  return h(
    "section",
    { class: "goal", "data-goal": goal.goal, "data-type": goal.type || GoalType.BINARY },
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
      h("table", { class: "results" }, resultsHeader(valued, covariate), h("tbody", {}, body)),
    ),
    rated
      ? chart(rows, control, kindOf, goal.goal, measure)
      : h("p", { class: "muted no-chart", text: valued ? NO_MEAN : NO_RATE }),
  );
}
