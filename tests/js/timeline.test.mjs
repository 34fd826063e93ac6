// timeline.js: an experiment's history as chart columns, without a browser (node --test).
import assert from "node:assert/strict";
import { test } from "node:test";

import {
  dayStart,
  drawable,
  excludesZero,
  exclusion,
  isoDay,
  timeline,
} from "../../gimel_core/dashboard/timeline.js";
import { Analysis, DAY, GoalType } from "../../gimel_core/dashboard/vocabulary.js";

test("UTC days to Unix seconds and back, one DAY apart", () => {
  assert.equal(dayStart("2026-11-28"), Date.UTC(2026, 10, 28) / 1000);
  assert.equal(isoDay(dayStart("2026-11-28")), "2026-11-28");
  assert.equal(isoDay(dayStart("2026-12-31") + DAY), "2027-01-01");
  assert.equal(DAY, 86400);
});

test("where intervals leave 0, and since when", () => {
  assert.equal(excludesZero([0.01, 0.2]), true);
  assert.equal(excludesZero([-0.3, -0.01]), true);
  assert.equal(excludesZero([-0.1, 0.2]), false);
  assert.equal(excludesZero(null), false);
  const inside = [-0.1, 0.1];
  const above = [0.01, 0.1];
  assert.deepEqual(exclusion([inside, inside]), { first: null, since: null });
  assert.deepEqual(exclusion([inside, above, above]), { first: 1, since: 1 });
  assert.deepEqual(exclusion([above, inside, above]), { first: 0, since: 2 });
  assert.deepEqual(exclusion([above, inside]), { first: 0, since: null });
});

test("a column is drawable when it holds one value", () => {
  assert.equal(drawable([null, undefined]), false);
  assert.equal(drawable([]), false);
  assert.equal(drawable([null, 0]), true);
});

const row = (label, trials, rate, extra = {}) => ({
  label,
  trials,
  successes: Math.round(trials * (rate || 0)),
  conversion_rate: rate,
  uplift: null,
  uplift_ci: null,
  running_uplift_ci: null,
  ...extra,
});

test("no history, or nobody in it yet, is nothing to draw", () => {
  assert.equal(timeline(null, "a"), null);
  assert.equal(timeline({ points: [] }, "a"), null);
  const declared = {
    points: [
      {
        date: "2026-11-28",
        participants: { a: 0, b: 0 },
        goals: [{ goal: "signup", results: [row("a", 0, null), row("b", 0, null)] }],
      },
    ],
  };
  assert.equal(timeline(declared, "a"), null);
});

test("columns per variant: new participants per day, rates, uplifts", () => {
  const history = {
    analysis: Analysis.SEQUENTIAL,
    points: [
      {
        date: "2026-11-28",
        participants: { b: 10, a: 12 },
        goals: [{ goal: "signup", results: [row("a", 12, 0.25), row("b", 10, null)] }],
      },
      {
        date: "2026-11-29",
        participants: { a: 30, b: 25 },
        goals: [
          {
            goal: "signup",
            results: [
              row("a", 30, 0.2),
              row("b", 25, 0.4, { uplift: 1, uplift_ci: [-0.2, 2], running_uplift_ci: [0.1, 2] }),
            ],
          },
        ],
      },
      // The counts were reset: a count that went down starts from zero again.
      { date: "2026-11-30", participants: { a: 5, b: 4 }, goals: [] },
    ],
  };
  const line = timeline(history, "a");
  assert.equal(line.analysis, Analysis.SEQUENTIAL);
  assert.deepEqual(line.variants, ["a", "b"]); // the control first
  assert.equal(line.control, "a");
  assert.deepEqual(line.dates, ["2026-11-28", "2026-11-29", "2026-11-30"]);
  assert.deepEqual(line.x, [0, 1, 2].map((i) => dayStart("2026-11-28") + i * DAY));
  assert.deepEqual(line.participants, [
    { label: "a", daily: [12, 18, 5], total: 5 },
    { label: "b", daily: [10, 15, 4], total: 4 },
  ]);
  const [signup] = line.goals;
  assert.equal(signup.goal, "signup");
  assert.deepEqual(signup.rates[0].rate, [0.25, 0.2, null]);
  assert.deepEqual(signup.rates[1].rate, [null, 0.4, null]);
  assert.equal(signup.rated, true);
  assert.equal(signup.compared, true);
  const [uplift] = signup.uplifts;
  assert.equal(uplift.label, "b");
  assert.equal(uplift.running, true);
  assert.deepEqual(uplift.low, [null, 0.1, null]); // the running interval when there is one
  assert.equal(uplift.first, 1);
});

test("a goal nobody reached, or with no uplift yet, says so through its flags", () => {
  const history = {
    points: [
      {
        date: "2026-11-28",
        participants: { a: 3, b: 0 },
        goals: [{ goal: "signup", results: [row("a", 3, 0), row("b", 0, null)] }],
      },
    ],
  };
  const [signup] = timeline(history, "a").goals;
  assert.equal(signup.rated, true); // a's 0% is a rate
  assert.equal(signup.compared, false); // b has nobody: no uplift to draw
});

test("a value goal's chart of rates plots its mean per participant", () => {
  const history = {
    analysis: Analysis.FIXED,
    points: [
      {
        date: "2026-11-28",
        participants: { a: 10, b: 12 },
        goals: [
          {
            goal: "revenue",
            type: GoalType.VALUE,
            results: [row("a", 10, null, { mean: 4.5 }), row("b", 12, null, { mean: 6.25 })],
          },
          { goal: "signup", results: [row("a", 10, 0.1), row("b", 12, 0.25)] },
        ],
      },
    ],
  };
  const [revenue, signup] = timeline(history, "a").goals;
  assert.equal(revenue.valued, true);
  assert.equal(revenue.rated, true);
  assert.deepEqual(
    revenue.rates.map((r) => r.rate),
    [[4.5], [6.25]],
  );
  assert.equal(signup.valued, false);
  assert.deepEqual(
    signup.rates.map((r) => r.rate),
    [[0.1], [0.25]],
  );
});
