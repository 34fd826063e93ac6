// An experiment's history (GET /experiments/<name>/history) as columns for its charts: one x
// value per point (the UTC day, in Unix seconds), one column per variant and measure. The
// server computes every figure; this module only reads them out and subtracts day totals.
import { GoalType } from "./vocabulary.js";

// "2026-11-28" -> the Unix seconds of that UTC midnight, and back.
export function dayStart(date) {
  const [year, month, day] = date.split("-").map(Number);
  return Date.UTC(year, month - 1, day) / 1000;
}

export function isoDay(seconds) {
  return new Date(seconds * 1000).toISOString().slice(0, 10);
}

const missing = (x) => x === null || x === undefined;

// Whether a column has anything to draw: a chart of nothing but gaps is no chart.
export const drawable = (column) => column.some((v) => !missing(v));

// Names in the order the server lists them, across every point (a variant may start late),
// with the control first.
function ordered(lists, first) {
  const names = [];
  for (const list of lists) for (const name of list) if (!names.includes(name)) names.push(name);
  return names.includes(first) ? [first, ...names.filter((n) => n !== first)] : names;
}

// An interval excludes 0 when both ends lie on the same side of it.
export const excludesZero = (ci) => Array.isArray(ci) && (ci[0] > 0 || ci[1] < 0);

// Where the intervals stopped containing 0: `first`, the first index that excludes it, and
// `since`, where the last run of such days began when the latest day still excludes 0 (the
// same day as `first` unless a fixed-horizon interval went back across 0 in between).
export function exclusion(intervals) {
  const first = intervals.findIndex(excludesZero);
  let since = null;
  if (first >= 0 && excludesZero(intervals[intervals.length - 1])) {
    since = intervals.length - 1;
    while (since > first && excludesZero(intervals[since - 1])) since -= 1;
  }
  return { first: first >= 0 ? first : null, since };
}

// New participants of each day: the difference between consecutive cumulative counts. A
// count that went down was reset in between, so it counts from zero again.
function perDay(cumulative) {
  return cumulative.map((n, i) => {
    if (missing(n)) return null;
    const before = i > 0 && !missing(cumulative[i - 1]) ? cumulative[i - 1] : 0;
    return n >= before ? n - before : n;
  });
}

function goalColumns(points, goal, variants, control) {
  const rows = points.map((point) => {
    const found = (point.goals || []).find((g) => g.goal === goal);
    return new Map(((found && found.results) || []).map((row) => [row.label, row]));
  });
  const column = (label, pick) =>
    rows.map((byLabel) => {
      const row = byLabel.get(label);
      const value = row ? pick(row) : null;
      return missing(value) ? null : value;
    });
  // A value goal's "rate" is its mean per participant.
  const valued = points.some((p) =>
    (p.goals || []).some((g) => g.goal === goal && g.type === GoalType.VALUE),
  );
  const rate = valued ? (r) => r.mean : (r) => r.conversion_rate;
  const rates = variants.map((label) => ({
    label,
    rate: column(label, rate),
    last: rows[rows.length - 1].get(label) || null,
  }));
  const uplifts = variants
    .filter((label) => label !== control)
    .map((label) => {
      // The running intersection when the server sends one (sequential analysis): it only
      // narrows, so once it leaves 0 it stays out; else each day's own interval.
      const intervals = column(label, (r) => r.running_uplift_ci || r.uplift_ci);
      return {
        label,
        running: column(label, (r) => r.running_uplift_ci).some(Boolean),
        uplift: column(label, (r) => r.uplift),
        low: intervals.map((ci) => (ci ? ci[0] : null)),
        high: intervals.map((ci) => (ci ? ci[1] : null)),
        last: rows[rows.length - 1].get(label) || null,
        lastInterval: intervals[intervals.length - 1],
        ...exclusion(intervals),
      };
    });
  return {
    goal,
    valued,
    rate,
    rates,
    uplifts,
    rated: rates.some((r) => drawable(r.rate)),
    compared: uplifts.some((u) => drawable(u.uplift) || drawable(u.low)),
  };
}

// The whole history, ready to draw: null when it has no participant yet (no point, or only
// points of a declared experiment that nobody has reached).
export function timeline(history, control) {
  const points = Array.isArray(history && history.points) ? history.points : [];
  const someone = (p) => Object.values(p.participants || {}).some((n) => n > 0);
  if (!points.some(someone)) return null;
  const variants = ordered(
    points.map((p) => [
      ...Object.keys(p.participants || {}),
      ...(p.goals || []).flatMap((g) => (g.results || []).map((r) => r.label)),
    ]),
    control,
  );
  const goals = ordered(points.map((p) => (p.goals || []).map((g) => g.goal)));
  return {
    analysis: history.analysis,
    dates: points.map((p) => p.date),
    x: points.map((p) => dayStart(p.date)),
    variants,
    control: variants.includes(control) ? control : null,
    participants: variants.map((label) => {
      const cumulative = points.map((p) => (p.participants || {})[label] ?? null);
      return { label, daily: perDay(cumulative), total: cumulative[cumulative.length - 1] };
    }),
    goals: goals.map((goal) => goalColumns(points, goal, variants, control)),
  };
}
