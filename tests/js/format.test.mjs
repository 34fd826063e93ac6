// format.js: how numbers read on the page, without a browser (node --test).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  DASH,
  amount,
  chance,
  count,
  interval,
  moment,
  pct,
  plural,
  pText,
  pValue,
  raw,
  shortPct,
  signedPct,
} from "../../gimel_core/dashboard/format.js";

const MINUS = "\u2212";

test("a count takes the singular for exactly one", () => {
  assert.equal(plural(1, "participant"), "1 participant");
  assert.equal(plural(0, "participant"), "0 participants");
  assert.equal(plural(2, "day"), "2 days");
  assert.equal(plural(1200, "experiment"), "1,200 experiments");
  assert.equal(plural(3, "analysis", "analyses"), "3 analyses");
  assert.equal(plural(1, "analysis", "analyses"), "1 analysis");
});

test("counts group thousands and show a dash for nothing", () => {
  assert.equal(count(1234567), "1,234,567");
  assert.equal(count(0), "0");
  assert.equal(count(null), DASH);
  assert.equal(count(undefined), DASH);
});

test("percentages keep two decimals under 1% and a true minus sign", () => {
  assert.equal(pct(0.1234), "12.3%");
  assert.equal(pct(0.005), "0.50%");
  assert.equal(pct(0), "0.0%");
  assert.equal(pct(-0.25), `${MINUS}25.0%`);
  assert.equal(pct(null), DASH);
  assert.equal(signedPct(0.139), "+13.9%");
  assert.equal(signedPct(-0.773), `${MINUS}77.3%`);
  assert.equal(signedPct(0), "0.0%");
  assert.equal(shortPct(0.025), "2.5%");
  assert.equal(shortPct(0.0025), "0.25%");
  assert.equal(shortPct(-0.1), `${MINUS}10%`);
});

test("p-values: three decimals below 0.1, a floor at 0.001", () => {
  assert.equal(pValue(0.0004), "<0.001");
  assert.equal(pValue(0.034), "0.034");
  assert.equal(pValue(0.5), "0.50");
  assert.equal(pValue(null), DASH);
  assert.equal(pText(0.034), "p=0.034");
  assert.equal(pText(0.0001), "p<0.001");
});

test("chance to beat and intervals", () => {
  assert.equal(chance(0.9995), ">99.9%");
  assert.equal(chance(0.0005), "<0.1%");
  assert.equal(chance(0.702), "70.2%");
  assert.equal(chance(undefined), DASH);
  assert.equal(interval([0.035, 0.07]), "3.5% to 7.0%");
  assert.equal(interval(null), "");
});

test("a value goal's amounts are numbers, not percentages", () => {
  assert.equal(amount(5.234), "5.23");
  assert.equal(amount(12345.678), "12,345.68");
  assert.equal(amount(0), "0.00");
  assert.equal(amount(0.01234), "0.0123");
  assert.equal(amount(-2.5), `${MINUS}2.50`);
  assert.equal(amount(null), DASH);
  assert.equal(interval([4.1, 6.35], amount), "4.10 to 6.35");
});

test("raw values for data attributes", () => {
  assert.equal(raw(0.5), "0.5");
  assert.equal(raw(0), "0");
  assert.equal(raw(null), "");
});

test("a moment is a minute in UTC, whatever the reader's time zone", () => {
  assert.equal(moment(1767225600), "2026-01-01 00:00 UTC");
  assert.equal(moment(1767225600 + 3600 * 9 + 61), "2026-01-01 09:01 UTC");
  assert.equal(moment(null), DASH);
});
