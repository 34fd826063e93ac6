// Rates (or a value goal's means) with their 95% intervals, one row per variant: HTML labels
// beside one SVG whose x positions are percentages of its width, so it stays crisp and
// readable at any width.
import { h, svg } from "./dom.js";
import { amount, pct, shortAmount } from "./format.js";

const ROW = 30;
const AXIS = 22;
const STEPS = [0.001, 0.002, 0.0025, 0.005, 0.01, 0.02, 0.025, 0.05, 0.1, 0.2, 0.25];

// The axis: from 0 to a round top, in 2 to 5 round steps.
function firstFitting(want, steps) {
  for (const step of steps) {
    const n = Math.ceil(want / step - 1e-9);
    if (n <= 5) return { top: Math.max(2, n) * step, step, ticks: Math.max(2, n) };
  }
  return null;
}

function rateAxis(x) {
  const want = Math.min(1, Math.max(x, 0.001) * 1.08);
  return firstFitting(want, STEPS) || { top: 1, step: 0.25, ticks: 4 };
}

// A mean has no ceiling: 1, 2, 2.5 or 5 times the power of ten that fits.
function amountAxis(x) {
  const want = Math.max(x, 1e-6) * 1.08;
  const power = 10 ** Math.floor(Math.log10(want / 5));
  return firstFitting(want, [1, 2, 2.5, 5, 10].map((m) => m * power));
}

// What a chart shows of each row: a binary goal's rate, or a value goal's mean.
export const RATE = {
  key: "rate",
  of: (row) => row.conversion_rate,
  show: pct,
  tick: (v) => pct(v).replace(/(\.\d*?)0+%$/, "$1%").replace(/\.%$/, "%"),
  axis: rateAxis,
  name: "Conversion rate",
};
export const MEAN = {
  key: "mean",
  of: (row) => row.mean,
  show: amount,
  tick: shortAmount,
  axis: amountAxis,
  name: "Mean per participant",
};

const grids = new Map(); // axis and grid lines by scale and height: built once, cloned

function grid(measure, step, ticks, rows, x) {
  const key = `${measure.key}/${step}/${ticks}/${rows}`;
  if (!grids.has(key)) {
    const g = svg("g", { class: "axis" });
    for (let i = 0; i <= ticks; i++) {
      const v = step * i;
      g.append(
        svg("line", { class: "grid", x1: x(v), x2: x(v), y1: 0, y2: rows * ROW }),
        svg("text", { class: "tick", x: x(v), y: rows * ROW + AXIS - 6 }, measure.tick(v)),
      );
    }
    grids.set(key, g);
  }
  return grids.get(key).cloneNode(true);
}

// kindOf(row): "control", "win", "lose", "even" or "wait", which colours the row.
export function chart(rows, control, kindOf, goalName, measure = RATE) {
  const highs = rows.map((r) => (r.ci ? r.ci[1] : measure.of(r) || 0));
  const { top, step, ticks } = measure.axis(Math.max(0, ...highs));
  const at = (v) => 2 + (96 * Math.min(v, top)) / top; // percent of the plot's width
  const x = (v) => `${at(v).toFixed(3)}%`;
  const plot = svg("svg", {
    class: "chart-plot",
    height: rows.length * ROW + AXIS,
    width: "100%",
    role: "img",
    "aria-label": `${measure.name} of each variant on ${goalName}, with 95% intervals`,
  });
  plot.append(grid(measure, step, ticks, rows.length, x));
  const controlRow = rows.find((r) => r.label === control);
  const controlRate = controlRow ? measure.of(controlRow) : null;
  if (controlRate !== null && controlRate !== undefined) {
    const cx = x(controlRate);
    const line = { class: "control-line", x1: cx, x2: cx, y1: 0, y2: rows.length * ROW };
    plot.append(svg("line", line));
  }
  rows.forEach((row, i) =>
    plot.append(...marks(row, i * ROW + ROW / 2, kindOf(row), top, at, x, measure)),
  );
  const labels = h(
    "div",
    { class: "chart-labels", "aria-hidden": "true" },
    rows.map((row) => h("div", { class: "chart-label", title: row.label, text: row.label })),
  );
  const caption =
    `${measure.name} with 95% interval` + (controlRow ? " · dashed line: control" : "");
  return h(
    "figure",
    { class: "chart" },
    h("figcaption", { text: caption }),
    h("div", { class: "chart-body" }, labels, plot),
  );
}

// One variant's interval bar, dot and value label, at height y.
function marks(row, y, kind, top, at, x, measure) {
  const out = [];
  const rate = measure.of(row);
  if (row.ci) {
    const from = at(row.ci[0]);
    const width = `${(at(row.ci[1]) - from).toFixed(3)}%`;
    const bar = { class: `ci k-${kind}`, x: `${from.toFixed(3)}%`, width, y: y - 4, height: 8 };
    out.push(svg("rect", { ...bar, rx: 4 }));
  }
  if (rate === null || rate === undefined) {
    const muted = { class: "value-label muted", x: x(0), dx: 4, y };
    out.push(svg("text", muted, "no participants yet"));
    return out;
  }
  out.push(svg("circle", { class: `dot k-${kind}`, cx: x(rate), cy: y, r: 5.5 }));
  const high = row.ci ? row.ci[1] : rate;
  const right = high / top < 0.8;
  const anchor = right ? high : row.ci ? row.ci[0] : rate;
  const dx = right ? 8 : -8;
  const label = { class: right ? "value-label" : "value-label end", x: x(anchor), dx, y };
  out.push(svg("text", label, measure.show(rate)));
  return out;
}
