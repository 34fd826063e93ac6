// An experiment's history, on demand: a closed <details> at the end of its card. Opening it
// fetches GET /experiments/<name>/history (and uPlot, the first time), then shows the new
// participants per day, and per goal the cumulative rates and the uplifts over time, each
// chart with a caption that says its figures in words.
import { api } from "./api.js";
import { h } from "./dom.js";
import { DASH, amount, count, pct, plural, raw, signedPct } from "./format.js";
import { onDemandSection } from "./ondemand.js";
import { loadPlotting, participantsPlot, ratePlot, upliftPlot, variantColours } from "./plots.js";
import { state } from "./state.js";
import { timeline } from "./timeline.js";
import { Analysis } from "./vocabulary.js";

// Canvas colours are read from app.css when drawn: the histories on the page are drawn
// again when the reader's colour scheme changes.
const drawn = new WeakMap();
matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
  for (const details of document.querySelectorAll('details.history[data-state="ready"]')) {
    if (drawn.has(details)) drawn.get(details)();
  }
});

// The card's section; data-state: "closed" (not fetched), "loading", "ready" or "error".
export function historySection(exp) {
  const show = async (path, details, body) => {
    const [history, uPlot] = await Promise.all([
      api("GET", path + "/history", { namespace: state.namespace }),
      loadPlotting(),
    ]);
    draw(body, uPlot, exp, history);
    drawn.set(details, () => draw(body, uPlot, exp, history));
  };
  return onDemandSection("history", "History", " · day by day, UTC", exp, show);
}

function swatch(colour, dashed) {
  const kind = dashed ? "swatch swatch-dashed" : "swatch";
  const el = h("span", { class: kind, "aria-hidden": "true" });
  el.style.setProperty("--swatch", colour); // CSSOM, which the CSP allows (no style attribute)
  return el;
}

function fact(colour, dashed, attrs, ...text) {
  return h("li", attrs, swatch(colour, dashed), ...text);
}

// A chart: its title and caption first (what a screen reader reads), then uPlot's drawing.
function figure(kind, title, note, facts) {
  const plot = h("div", { class: "history-plot", role: "img", "aria-label": title });
  const caption = h(
    "figcaption",
    {},
    h("span", { class: "history-chart-title", text: title }),
    note ? h("span", { class: "history-note", text: note }) : null,
    h("ul", { class: "facts" }, facts),
  );
  return { el: h("figure", { class: "history-chart", "data-chart": kind }, caption, plot), plot };
}

function participantsFigure(line, colours) {
  const last = line.dates[line.dates.length - 1];
  const facts = line.participants.map((p) =>
    fact(
      colours.get(p.label),
      false,
      { "data-variant": p.label, "data-last": raw(p.daily[p.daily.length - 1]) },
      `${p.label}: ${count(p.daily[p.daily.length - 1])} on ${last}, `,
      h("span", { "data-total": raw(p.total), text: `${count(p.total)} in all` }),
    ),
  );
  const note = "The difference between the cumulative counts of consecutive days with events.";
  return figure("participants", "New participants per day", note, facts);
}

// A binary goal's rate, "12.0% (24 of 200)"; a value goal's mean, "5.20 (200 participants)".
function rateText(row, valued) {
  if (!row) return DASH;
  if (valued) return `${amount(row.mean)} (${plural(row.trials, "participant")})`;
  return `${pct(row.conversion_rate)} (${count(row.successes)} of ${count(row.trials)})`;
}

function rateFigure(line, goal, colours) {
  const last = line.dates[line.dates.length - 1];
  const facts = goal.rates.map(({ label, last: row }) =>
    fact(
      colours.get(label),
      label === line.control,
      { "data-variant": label, "data-rate": raw(row && goal.rate(row)) },
      `${label}${label === line.control ? " (control, dashed)" : ""}: `,
      rateText(row, goal.valued),
    ),
  );
  const title = goal.valued ? "Mean per participant, cumulative" : "Conversion rate, cumulative";
  return figure("rates", title, `As of ${last}:`, facts);
}

// In words, where the interval stands against 0 and since when.
function exclusionText(line, u) {
  const day = (i) => line.dates[i];
  if (u.first === null) return "its interval still contains 0";
  if (u.since === u.first) return `interval excludes 0 since ${day(u.since)}`;
  if (u.since !== null) {
    return `interval excludes 0 since ${day(u.since)} (first on ${day(u.first)}, then not)`;
  }
  return `interval excluded 0 on ${day(u.first)} but contains it again`;
}

function upliftFigure(line, history, goal, colours) {
  const running = goal.uplifts.some((u) => u.running);
  const band = running
    ? "Band: the always-valid 95% interval, narrowed day by day (running intersection)."
    : history.analysis === Analysis.SEQUENTIAL
      ? "Band: the always-valid 95% interval at each day's totals."
      : "Band: the 95% interval at each day's totals (fixed horizon).";
  const facts = goal.uplifts.map((u) => {
    const ci = u.lastInterval;
    const since = u.since === null ? "" : line.dates[u.since];
    return fact(
      colours.get(u.label),
      false,
      { "data-variant": u.label, "data-uplift": raw(u.last && u.last.uplift) },
      `${u.label}: ${signedPct(u.last && u.last.uplift)}`,
      ci ? ` (${signedPct(ci[0])} to ${signedPct(ci[1])})` : "",
      "; ",
      h("span", { class: "since", "data-since": since, text: exclusionText(line, u) }),
    );
  });
  const note = `${band} Dashed line: the day since which it excludes 0.`;
  return figure("uplift", `Uplift over ${line.control}`, note, facts);
}

const empty = (chart, text) => h("p", { class: "muted no-chart", "data-chart": chart, text });

function draw(body, uPlot, exp, history) {
  const line = timeline(history, exp.control);
  if (!line) {
    body.replaceChildren(h("p", { class: "muted", text: "No events counted yet." }));
    return;
  }
  const colours = variantColours(line.variants, line.control);
  const range = `${line.dates[0]} to ${line.dates[line.dates.length - 1]}`;
  const span = `${plural(line.dates.length, "day")} with events, ${range}`;
  const participants = participantsFigure(line, colours);
  body.replaceChildren(
    h("p", { class: "history-range", text: `${span} (UTC), as of the end of each day.` }),
    participants.el,
  );
  participantsPlot(uPlot, participants.plot, line, colours);
  if (!line.goals.length) body.append(h("p", { class: "muted", text: "No goal reached yet." }));
  for (const goal of line.goals) {
    // A chart with nothing to draw says so instead: no rate before a variant has a
    // participant, no uplift before the control and another variant both have one.
    const rates = goal.rated ? rateFigure(line, goal, colours) : null;
    const compared = line.control && goal.compared;
    const uplift = compared ? upliftFigure(line, history, goal, colours) : null;
    const charts = h("div", { class: "history-charts" });
    if (rates) charts.append(rates.el);
    else {
      const what = goal.valued ? "mean" : "rate";
      charts.append(empty("rates", `No participant in any variant yet: no ${what} to chart.`));
    }
    if (uplift) charts.append(uplift.el);
    else if (rates && line.control) {
      charts.append(empty("uplift", `No uplift over ${line.control} to chart yet.`));
    }
    body.append(
      h(
        "section",
        { class: "history-goal", "data-goal": goal.goal },
        h("h4", {}, h("span", { class: "goal-label", text: "Goal" }), ` ${goal.goal}`),
        charts,
      ),
    );
    if (rates) ratePlot(uPlot, rates.plot, line, goal, colours);
    if (uplift) upliftPlot(uPlot, uplift.plot, line, goal, colours);
  }
}
