// Generated from gimel_core/vocabulary.py by `make vocabulary`: do not edit by hand.
// Each concept maps its Python member names to the strings the API sends, frozen.

// How an experiment counts unique events.
export const Mode = Object.freeze({
  HLL: "hll",
  EXACT: "exact",
});

// Which experiments public traffic is counted in.
export const Registration = Object.freeze({
  OPEN: "open",
  DECLARED: "declared",
});

// How p-values and intervals are computed.
export const Analysis = Object.freeze({
  SEQUENTIAL: "sequential",
  FIXED: "fixed",
  GROUP_SEQUENTIAL: "group_sequential",
});

// How a group-sequential plan spends its alpha over the looks.
export const Spending = Object.freeze({
  OBRIEN_FLEMING: "obrien_fleming",
  POCOCK: "pocock",
});

// What a goal is for in the decision.
export const Role = Object.freeze({
  PRIMARY: "primary",
  GUARDRAIL: "guardrail",
  SECONDARY: "secondary",
});

// Which way is better for a goal.
export const Direction = Object.freeze({
  INCREASE: "increase",
  DECREASE: "decrease",
});

// The verdict on a variant against the control, for one goal.
export const VerdictKind = Object.freeze({
  WIN: "win",
  LOSE: "lose",
  EVEN: "even",
  WAIT: "wait",
  HARM: "harm",
  SAFE: "safe",
});

// The experiment's one decision line.
export const DecisionKind = Object.freeze({
  CHECK_SPLIT: "check_split",
  SHIP: "ship",
  KEEP_CONTROL: "keep_control",
  NO_DIFFERENCE: "no_difference",
  KEEP_RUNNING: "keep_running",
});

// What a goal counts.
export const GoalType = Object.freeze({
  BINARY: "binary",
  VALUE: "value",
});

// What an alert announces about an experiment.
export const AlertKind = Object.freeze({
  DECIDED: "decided",
  HARM: "harm",
  SRM: "srm",
  SILENT: "silent",
  SIZE_REACHED: "size_reached",
});

// Seconds in a UTC day: the history's interval, as the server counts it.
export const DAY = 86400;
