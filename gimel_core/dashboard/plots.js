// The history charts, drawn by uPlot (vendor/uplot.js, the pinned release, fetched the first
// time a history is opened): x in UTC days shared by every chart, colours from app.css, the
// width of the card. uPlot styles its elements through CSSOM only, which the page's CSP
// (style-src 'self') allows; its stylesheet is vendor/uplot.css.
import { DASH, amount, count, pct, shortAmount, shortPct, signedPct } from "./format.js";
import { isoDay } from "./timeline.js";
import { DAY } from "./vocabulary.js";

const HEIGHT = 220;
const DAY_STEPS = [1, 2, 3, 7, 14, 28, 56, 91, 182, 364].map((days) => days * DAY);
// Whole numbers of participants on the count axis.
const COUNT_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 1e6];
const dayLabel = new Intl.DateTimeFormat("en-US", {
  month: "short",
  day: "numeric",
  timeZone: "UTC",
});

// How a series' values read in the legend (uPlot's `value` option, set by shorthand).
function legend(format) {
  const value = (u, v) => format(v);
  return { value };
}
const signed = legend(signedPct);

// The x values in the legend, as in the captions: "2026-11-28".
const DAY_SERIES = {
  label: "Day (UTC)",
  ...legend((t) => (Number.isFinite(t) ? isoDay(t) : DASH)),
};

let library = null;

// uPlot's module, loaded once (a failed load is tried again next time).
export function loadPlotting() {
  library ||= import("./uplot.js").then(
    (module) => module.default,
    (error) => {
      library = null;
      throw error;
    },
  );
  return library;
}

function cssColours() {
  const css = getComputedStyle(document.documentElement);
  const value = (name) => css.getPropertyValue(name).trim();
  return {
    text: value("--text"),
    muted: value("--muted"),
    grid: value("--chart-grid"),
    control: value("--control"),
    series: [1, 2, 3, 4, 5, 6].map((i) => value(`--series-${i}`)),
  };
}

// One colour per variant, the same in every chart: the control grey, the others in turn
// from a palette chosen to stay apart for colour-blind readers too.
export function variantColours(variants, control) {
  const { control: grey, series } = cssColours();
  const others = variants.filter((v) => v !== control);
  return new Map(variants.map((v) => [v, v === control ? grey : series[others.indexOf(v) % 6]]));
}

const translucent = (colour, alpha) =>
  /^#[0-9a-f]{6}$/i.test(colour) ? colour + alpha : colour;

// Ticks on whole days, labelled "Nov 28" in UTC, at least 64 px apart.
function daySplits(u, axis, min, max, step) {
  const anchor = u.data[0][0];
  const splits = [];
  for (let t = anchor + Math.ceil((min - anchor) / step) * step; t <= max; t += step) {
    splits.push(t);
  }
  return splits;
}

function options(el, { values, yRange, yIncrs, series, bands, draw, points = true }) {
  const colours = cssColours();
  const font = `12px ${getComputedStyle(el).fontFamily}`;
  const axis = { stroke: colours.muted, font, grid: { stroke: colours.grid, width: 1 } };
  return {
    width: Math.max(240, Math.floor(el.clientWidth)),
    height: HEIGHT,
    // Every day, and half a day either side, so that a single day and the bars of the first
    // and last days show whole, and the three charts of a history line up. (From the data:
    // uPlot pads a single value its own way before asking.)
    scales: {
      x: { time: false, range: (u) => [u.data[0][0] - DAY / 2, u.data[0].at(-1) + DAY / 2] },
      y: { range: yRange },
    },
    axes: [
      {
        ...axis,
        incrs: DAY_STEPS,
        space: 64,
        splits: daySplits,
        values: (u, splits) => splits.map((t) => dayLabel.format(new Date(t * 1000))),
        ticks: { stroke: colours.grid, width: 1 },
      },
      { ...axis, size: 64, incrs: yIncrs, values: (u, splits) => splits.map(values) },
    ],
    series: [DAY_SERIES, ...series],
    bands,
    // Filled legend keys in each series' colour; the values of the last day until hovered.
    legend: { live: true, markers: { fill: (u, i) => (i ? series[i - 1].stroke : null) } },
    cursor: { drag: { x: false, y: false }, points: { show: points } },
    hooks: {
      ready: [(u) => u.setLegend({ idx: u.data[0].length - 1 })],
      draw: draw ? [draw] : [],
    },
  };
}

// Rounded ranges that keep 0 in view: rates and counts start at 0, uplifts straddle it.
const fromZero = (uPlot) => (u, min, max) => [0, uPlot.rangeNum(0, max || 1, 0.1, true)[1]];
const aroundZero = (uPlot) => (u, min, max) =>
  uPlot.rangeNum(Math.min(0, min ?? 0), Math.max(0, max ?? 0) || 0.01, 0.1, true);

// The chart follows its box's width, and is destroyed (its window listeners removed) once
// its box has left the page: a refreshed card or a redrawn history.
function mount(uPlot, el, opts, data) {
  const plot = new uPlot(opts, data, el);
  let width = opts.width;
  const observer = new ResizeObserver(() => {
    if (!el.isConnected) {
      observer.disconnect();
      plot.destroy();
      return;
    }
    const now = Math.max(240, Math.floor(el.clientWidth));
    if (now !== width && el.clientWidth > 0) plot.setSize({ width: (width = now), height: HEIGHT });
  });
  observer.observe(el);
  return plot;
}

// 1. The cumulative conversion rate (a value goal: mean) of each variant; the control dashed.
export function ratePlot(uPlot, el, line, goal, colours) {
  const [shown, tick] = goal.valued ? [amount, shortAmount] : [pct, shortPct];
  const series = goal.rates.map(({ label }) => ({
    label: label === line.control ? `${label} (control)` : label,
    stroke: colours.get(label),
    width: 2,
    dash: label === line.control ? [6, 4] : undefined,
    points: { size: 5 },
    ...legend(shown),
  }));
  const opts = options(el, { values: tick, yRange: fromZero(uPlot), series });
  return mount(uPlot, el, opts, [line.x, ...goal.rates.map((r) => r.rate)]);
}

// 2. Each variant's uplift over the control, its interval as a band, the zero line, and a
// dashed vertical line on the day since which its interval excludes 0.
export function upliftPlot(uPlot, el, line, goal, colours) {
  const series = [];
  const bands = [];
  for (const u of goal.uplifts) {
    const colour = colours.get(u.label);
    const at = series.length + 1;
    const edge = { stroke: translucent(colour, "80"), width: 1, points: { show: false } };
    series.push(
      { label: `${u.label} uplift`, stroke: colour, width: 2, ...signed },
      { ...edge, label: `${u.label} low`, class: "band-edge", ...signed },
      { ...edge, label: `${u.label} high`, class: "band-edge", ...signed },
    );
    bands.push({ series: [at + 2, at + 1], fill: translucent(colour, "2e") });
  }
  const draw = (plot) => drawZeroAndSince(plot, uPlot.pxRatio, line, goal, colours);
  const yRange = aroundZero(uPlot);
  const opts = options(el, { values: signedShort, yRange, series, bands, draw });
  const data = [line.x, ...goal.uplifts.flatMap((u) => [u.uplift, u.low, u.high])];
  return mount(uPlot, el, opts, data);
}

const signedShort = (v) => (v > 0 ? "+" : "") + shortPct(v);

// On the canvas, in device pixels (px of them per CSS pixel).
function drawZeroAndSince(plot, px, line, goal, colours) {
  const { ctx, bbox } = plot;
  const { text } = cssColours();
  ctx.save();
  const zero = Math.round(plot.valToPos(0, "y", true)) + 0.5;
  ctx.strokeStyle = text;
  ctx.lineWidth = px;
  ctx.beginPath();
  ctx.moveTo(bbox.left, zero);
  ctx.lineTo(bbox.left + bbox.width, zero);
  ctx.stroke();
  ctx.font = `${12 * px}px ${getComputedStyle(plot.root).fontFamily}`;
  ctx.textBaseline = "top";
  ctx.textAlign = "left";
  goal.uplifts.forEach((u, i) => {
    if (u.since === null) return;
    const x = Math.round(plot.valToPos(line.x[u.since], "x", true)) + 0.5;
    ctx.strokeStyle = ctx.fillStyle = colours.get(u.label);
    ctx.setLineDash([4 * px, 3 * px]);
    ctx.beginPath();
    ctx.moveTo(x, bbox.top);
    ctx.lineTo(x, bbox.top + bbox.height);
    ctx.stroke();
    const who = goal.uplifts.length > 1 ? `${u.label}: ` : "";
    const since = dayLabel.format(new Date(line.x[u.since] * 1000));
    labelLine(ctx, bbox, px, x, bbox.top + (4 + 16 * i) * px, [
      `${who}excludes 0 from ${since}`,
      `${who}since ${since}`,
    ]);
  });
  ctx.restore();
}

// The first of the texts that fits beside the line at x, right of it else left of it; the
// last one at the plot's left edge when none does.
function labelLine(ctx, bbox, px, x, y, texts) {
  const gap = 4 * px;
  for (const text of texts) {
    const width = ctx.measureText(text).width;
    if (x + gap + width <= bbox.left + bbox.width) return ctx.fillText(text, x + gap, y);
    if (x - gap - width >= bbox.left) {
      ctx.textAlign = "right";
      ctx.fillText(text, x - gap, y);
      ctx.textAlign = "left";
      return;
    }
  }
  ctx.fillText(texts[texts.length - 1], bbox.left + gap, y);
}

// 3. New participants of each day, one bar per variant side by side.
export function participantsPlot(uPlot, el, line, colours) {
  const n = line.participants.length;
  const width = (0.8 * DAY) / n;
  const bars = (i) =>
    uPlot.paths.bars({
      disp: {
        x0: { unit: 1, values: () => line.x.map((t) => t - 0.4 * DAY + i * width) },
        size: { unit: 1, values: () => [width * 0.9] },
      },
    });
  const series = line.participants.map(({ label }, i) => ({
    label: label === line.control ? `${label} (control)` : label,
    stroke: colours.get(label),
    fill: colours.get(label),
    width: 0,
    paths: bars(i),
    points: { show: false },
    ...legend(count),
  }));
  const yRange = fromZero(uPlot);
  const opts = options(el, { values: count, yRange, yIncrs: COUNT_STEPS, series, points: false });
  return mount(uPlot, el, opts, [line.x, ...line.participants.map((p) => p.daily)]);
}
