// How numbers, rates, p-values and dates read on the page.

export const DASH = "\u2014"; // a value that does not exist (yet)
const MINUS = "\u2212";

const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const dates = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "short",
  day: "numeric",
});

const missing = (x) => x === null || x === undefined;

export function count(n) {
  return missing(n) ? DASH : integer.format(n);
}

// A count with its noun, singular for exactly one: "1 participant", "1,200 participants".
export function plural(n, one, many = one + "s") {
  return `${count(n)} ${n === 1 ? one : many}`;
}

export function pct(x) {
  if (missing(x)) return DASH;
  const v = x * 100;
  const digits = v !== 0 && Math.abs(v) < 1 ? 2 : 1;
  return v.toFixed(digits).replace("-", MINUS) + "%";
}

// An axis tick: as many decimals as the tick has, up to two ("25%", "2.5%", "0.25%").
export function shortPct(x) {
  if (missing(x)) return DASH;
  return String(Math.round(x * 1e4) / 100).replace("-", MINUS) + "%";
}

export function signedPct(x) {
  if (missing(x)) return DASH;
  const text = pct(x);
  return x > 0 ? "+" + text : text;
}

export function pValue(p) {
  if (missing(p)) return DASH;
  if (p < 0.001) return "<0.001";
  return p < 0.1 ? p.toFixed(3) : p.toFixed(2);
}

// "p=0.034" or "p<0.001", for sentences.
export function pText(p) {
  const text = pValue(p);
  return text.startsWith("<") ? `p${text}` : `p=${text}`;
}

export function chance(c) {
  if (missing(c)) return DASH;
  if (c >= 0.999) return ">99.9%";
  if (c <= 0.001) return "<0.1%";
  return (c * 100).toFixed(1) + "%";
}

export function interval(ci, show = pct) {
  return ci ? `${show(ci[0])} to ${show(ci[1])}` : "";
}

// An amount of a value goal (a sum, a mean per participant): a number, not a percentage;
// two decimals, or three significant figures below 1 so that a small mean is not "0.00".
const cents = new Intl.NumberFormat("en-US", {
  minimumFractionDigits: 2,
  maximumFractionDigits: 2,
});
const figures = new Intl.NumberFormat("en-US", { maximumSignificantDigits: 3 });

export function amount(x) {
  if (missing(x)) return DASH;
  const text = x === 0 || Math.abs(x) >= 1 ? cents.format(x) : figures.format(x);
  return text.replace("-", MINUS);
}

// An axis tick of amounts: as many decimals as the tick has ("5", "2.5", "1,000").
const ticks = new Intl.NumberFormat("en-US", { maximumFractionDigits: 3 });

export function shortAmount(x) {
  return missing(x) ? DASH : ticks.format(x).replace("-", MINUS);
}

// A Unix timestamp as a day in the reader's locale.
export function day(ts) {
  return ts ? dates.format(new Date(ts * 1000)) : null;
}

// A Unix timestamp as a minute in UTC, "2026-01-01 09:30 UTC": the same for every reader, as
// the history's days are.
export function moment(ts) {
  if (missing(ts)) return DASH;
  return new Date(ts * 1000).toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

// The exact value behind a shown one, for data-value attributes.
export function raw(x) {
  return missing(x) ? "" : String(x);
}
