// Gimel dashboard: one page, no library, no third-party host, nothing inline (strict CSP).
//
// URLs are relative to this script (…/dashboard/app.js), so the API root is "../": "/" when
// the page is served at /dashboard, "/prod/" at /prod/dashboard on API Gateway.
// Every name shown comes from users (experiments, goals, variants): it only ever reaches the
// page as textContent or an attribute value, never as markup.
"use strict";

(() => {
  const API_ROOT = new URL("../", (document.currentScript && document.currentScript.src) || location.href);
  const KEY_STORE = "gimel.apiKey"; // sessionStorage: this tab only
  const NAMESPACE_STORE = "gimel.namespace"; // localStorage: not a secret
  const ARCHIVED_STORE = "gimel.showArchived";
  const DEFAULT_NAMESPACE = "alephbet";

  // Verdict rules (per goal, each variant against the control).
  const WIN_CHANCE = 0.95; // chance to beat control at least this (or at most 1 - this) ...
  const ALPHA = 0.05; // ... and the Holm-adjusted p-value below this
  const MIN_TRIALS = 100; // below this many participants in either arm: "not enough data yet"

  const SVG_NS = "http://www.w3.org/2000/svg";
  const MINUS = "\u2212";
  const DASH = "\u2014";

  const $ = (id) => document.getElementById(id);
  const ui = {
    toolbar: $("toolbar"),
    namespace: $("namespace"),
    filter: $("filter"),
    showArchived: $("show-archived"),
    refresh: $("refresh"),
    logout: $("logout"),
    login: $("login"),
    loginForm: $("login-form"),
    loginMessage: $("login-message"),
    apiKey: $("api-key"),
    notice: $("notice"),
    board: $("board"),
    summary: $("summary"),
    list: $("experiments"),
    dialog: $("confirm"),
    dialogTitle: $("confirm-title"),
    dialogBody: $("confirm-body"),
    dialogOk: $("confirm-ok"),
    dialogCancel: $("confirm-cancel"),
    toast: $("toast"),
    toastText: $("toast-text"),
    toastUndo: $("toast-undo"),
  };

  const state = {
    key: storage("session", "get", KEY_STORE),
    namespace: storage("local", "get", NAMESPACE_STORE) || DEFAULT_NAMESPACE,
    showArchived: storage("local", "get", ARCHIVED_STORE) === "1",
    experiments: [],
    loadSeq: 0,
    retryTimer: null,
    backoff: 0,
    toastTimer: null,
  };

  function storage(which, op, name, value) {
    try {
      // Reading window.sessionStorage itself throws when storage is disabled.
      const area = which === "session" ? window.sessionStorage : window.localStorage;
      if (op === "get") return area.getItem(name);
      if (op === "set") area.setItem(name, value);
      if (op === "remove") area.removeItem(name);
    } catch (_) {
      // storage disabled: the page still works, it just forgets
    }
    return null;
  }

  // -- DOM helpers ---------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    appendAll(el, children);
    return el;
  }

  function svg(tag, attrs, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    setAttrs(el, attrs);
    appendAll(el, children);
    return el;
  }

  function setAttrs(el, attrs) {
    if (!attrs) return;
    for (const name in attrs) {
      const value = attrs[name];
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") el.setAttribute("class", value);
      else if (name === "text") el.textContent = value;
      else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
      else el.setAttribute(name, value === true ? "" : String(value));
    }
  }

  function appendAll(el, children) {
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
  }

  // -- formatting ----------------------------------------------------------------------

  const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

  function count(n) {
    return n === null || n === undefined ? DASH : integer.format(n);
  }

  function pct(x) {
    if (x === null || x === undefined) return DASH;
    const v = x * 100;
    const digits = v !== 0 && Math.abs(v) < 1 ? 2 : 1;
    return v.toFixed(digits).replace("-", MINUS) + "%";
  }

  function signedPct(x) {
    if (x === null || x === undefined) return DASH;
    const text = pct(x);
    return x > 0 ? "+" + text : text;
  }

  function pValue(p) {
    if (p === null || p === undefined) return DASH;
    if (p < 0.001) return "<0.001";
    return p < 0.1 ? p.toFixed(3) : p.toFixed(2);
  }

  function pText(p) {
    const text = pValue(p);
    return text.startsWith("<") ? `p${text}` : `p=${text}`;
  }

  function chance(c) {
    if (c === null || c === undefined) return DASH;
    if (c >= 0.999) return ">99.9%";
    if (c <= 0.001) return "<0.1%";
    return (c * 100).toFixed(1) + "%";
  }

  function interval(ci) {
    return ci ? `${pct(ci[0])} to ${pct(ci[1])}` : "";
  }

  const dates = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "short", day: "numeric" });

  function day(ts) {
    return ts ? dates.format(new Date(ts * 1000)) : null;
  }

  function raw(x) {
    return x === null || x === undefined ? "" : String(x);
  }

  // -- API -----------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message, retryAfter) {
      super(message);
      this.status = status;
      this.retryAfter = retryAfter;
    }
  }

  function experimentPath(name) {
    // "." and ".." cannot travel in a URL path (browsers remove them), so they are refused
    // up front rather than hitting another URL.
    if (name === "." || name === "..") return null;
    return "experiments/" + encodeURIComponent(name);
  }

  async function api(method, path, params, body) {
    const url = new URL(path, API_ROOT);
    for (const [name, value] of Object.entries(params || {})) url.searchParams.set(name, value);
    const headers = { "x-api-key": state.key, Accept: "application/json" };
    const init = { method, headers, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (_) {
      throw new ApiError(0, "The server could not be reached.");
    }
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      data = null;
    }
    if (!response.ok) {
      const message = (data && typeof data.error === "string" && data.error) || response.statusText;
      const retry = parseInt(response.headers.get("Retry-After") || "", 10);
      throw new ApiError(response.status, message, Number.isFinite(retry) ? retry : null);
    }
    return data;
  }

  // -- key -----------------------------------------------------------------------------

  function showLogin(message) {
    clearRetry();
    ui.toolbar.hidden = true;
    ui.board.hidden = true;
    ui.notice.hidden = true;
    ui.list.replaceChildren();
    ui.login.hidden = false;
    ui.loginMessage.hidden = !message;
    ui.loginMessage.textContent = message || "";
    ui.loginMessage.className = message ? "alert alert-warn" : "alert";
    ui.apiKey.value = "";
    ui.apiKey.focus();
    markReady("login");
  }

  function forgetKey(message) {
    state.key = null;
    storage("session", "remove", KEY_STORE);
    showLogin(message);
  }

  ui.loginForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = ui.apiKey.value.trim();
    if (!key) {
      showLogin("Enter the API key.");
      return;
    }
    if (/[^\x20-\x7e]/.test(key)) {
      showLogin("This key has characters a browser cannot send in a header: check it.");
      return;
    }
    state.key = key;
    storage("session", "set", KEY_STORE, key);
    ui.apiKey.value = "";
    ui.login.hidden = true;
    load();
  });

  ui.logout.addEventListener("click", () => forgetKey("Key forgotten. Enter it again to continue."));

  // -- errors --------------------------------------------------------------------------

  function notice(kind, message, action) {
    ui.notice.hidden = false;
    ui.notice.className = `notice alert alert-${kind}`;
    ui.notice.replaceChildren(h("span", { text: message }), action || "");
  }

  function clearNotice() {
    ui.notice.hidden = true;
    ui.notice.replaceChildren();
  }

  function clearRetry() {
    if (state.retryTimer) clearInterval(state.retryTimer);
    state.retryTimer = null;
  }

  function scheduleRetry(message, seconds) {
    clearRetry();
    // Wait what the server asks (Retry-After), doubling while it keeps failing, at most 60 s.
    let left = Math.min(60, Math.max(2, seconds || 5, state.backoff));
    state.backoff = left * 2;
    const button = h("button", { type: "button", class: "btn btn-small", text: "Retry now", onclick: () => load() });
    const tick = () => notice("warn", `${message} Retrying in ${left} s…`, button);
    tick();
    state.retryTimer = setInterval(() => {
      left -= 1;
      if (left <= 0) load();
      else tick();
    }, 1000);
  }

  // Returns true when the error was handled by leaving the page state (login or retry).
  function failed(error) {
    if (error.status === 401) {
      forgetKey("The server needs an API key: enter it to continue.");
    } else if (error.status === 403) {
      const wrong = /wrong api key/i.test(error.message);
      forgetKey(
        wrong
          ? "The server refused this key (wrong API key). Check it and enter it again."
          : `The server refused access: ${error.message}`,
      );
    } else if (error.status === 503) {
      scheduleRetry("The event store is unavailable right now.", error.retryAfter);
      markReady("error");
    } else if (error.status === 0 || error.status >= 500) {
      scheduleRetry(`${error.message || "The server failed."} (${error.status || "network"})`, 5);
      markReady("error");
    } else {
      return false;
    }
    return true;
  }

  // -- loading -------------------------------------------------------------------------

  function markReady(value) {
    // Set after the browser had a chance to lay out and paint what was just rendered.
    const seq = state.loadSeq;
    requestAnimationFrame(() =>
      setTimeout(() => {
        if (seq !== state.loadSeq) return;
        document.body.dataset.ready = value;
        if (value === "board") performance.mark("gimel:rendered");
      }, 0),
    );
  }

  async function load() {
    clearRetry();
    if (!state.key) {
      showLogin();
      return;
    }
    const seq = ++state.loadSeq;
    delete document.body.dataset.ready;
    ui.login.hidden = true;
    ui.toolbar.hidden = false;
    ui.board.hidden = false;
    ui.board.setAttribute("aria-busy", "true");
    ui.refresh.disabled = true;
    if (!state.experiments.length) ui.summary.textContent = "Loading…";
    const params = { namespace: state.namespace };
    if (state.showArchived) params.archived = "true";
    try {
      const data = await api("GET", "experiments", params);
      if (seq !== state.loadSeq) return;
      performance.mark("gimel:data");
      clearNotice();
      state.backoff = 0;
      state.experiments = Array.isArray(data) ? data.filter((e) => e && typeof e.experiment === "string") : [];
      render();
    } catch (error) {
      if (seq !== state.loadSeq) return;
      if (!state.experiments.length) ui.summary.textContent = "";
      if (!failed(error)) {
        notice("error", `Could not load the experiments: ${error.message}`);
        state.experiments = [];
        render();
      }
    } finally {
      if (seq === state.loadSeq) {
        ui.refresh.disabled = false;
        ui.board.removeAttribute("aria-busy");
      }
    }
  }

  // -- rendering -----------------------------------------------------------------------

  function render() {
    const fragment = document.createDocumentFragment();
    if (!state.experiments.length) fragment.append(emptyState());
    for (const exp of state.experiments) fragment.append(experimentCard(exp));
    performance.mark("gimel:built");
    ui.list.classList.toggle("many", state.experiments.length > 12);
    ui.list.replaceChildren(fragment);
    applyFilter();
    performance.mark("gimel:inserted");
    markReady("board");
  }

  function updateSummary() {
    const total = state.experiments.length;
    const shown = ui.list.querySelectorAll(".exp:not([hidden])").length;
    const time = new Date().toLocaleTimeString();
    const what = total === 1 ? "experiment" : "experiments";
    const counted = shown === total ? `${total} ${what}` : `${shown} of ${total} ${what}`;
    ui.summary.replaceChildren(
      counted + " in namespace ",
      h("strong", { text: state.namespace }),
      state.showArchived ? " (archived included)" : "",
      h("span", { class: "muted", text: ` · updated ${time}` }),
    );
  }

  function applyFilter() {
    const needle = ui.filter.value.trim().toLowerCase();
    for (const card of ui.list.querySelectorAll(".exp")) {
      card.hidden = needle !== "" && !card.dataset.experiment.toLowerCase().includes(needle);
    }
    updateSummary();
  }

  function emptyState() {
    const track = new URL("track", API_ROOT).href;
    const sample = new URL("track", API_ROOT);
    sample.search = new URLSearchParams({
      experiment: "demo",
      variant: "red",
      event: "participate",
      uuid: "visitor-1",
      namespace: state.namespace,
    }).toString();
    return h(
      "div",
      { class: "empty card" },
      h("h2", { text: "No experiments yet" }),
      h("p", {}, "Nothing has been counted in namespace ", h("strong", { text: state.namespace }), " so far."),
      state.showArchived ? null : h("p", { class: "muted", text: "Archived experiments are hidden: tick “Show archived” to see them." }),
      h("p", { text: "Send events from your pages with Alephbet:" }),
      h("pre", { class: "code" }, `const adapter = new AlephBet.GimelAdapter(\n  ${JSON.stringify(track)},\n  ${JSON.stringify(state.namespace)}\n);`),
      h("p", { text: "or count one by hand, then refresh this page:" }),
      h("pre", { class: "code" }, `curl '${sample.href}'`),
    );
  }

  // Verdict of one variant against the control on one goal.
  function verdict(row, controlRow, goal, control) {
    const name = row.label;
    const c = row.chance_to_beat_control;
    const p = row.p_value_adjusted;
    const n = Math.min(row.trials || 0, (controlRow && controlRow.trials) || 0);
    if (c === null || c === undefined || p === null || p === undefined || !controlRow) {
      return { kind: "wait", text: `${name} vs ${control} on ${goal}: not enough data yet` };
    }
    if (c >= WIN_CHANCE && p < ALPHA) {
      return { kind: "win", text: `${name} beats ${control} on ${goal}, ${chance(c)} chance, ${pText(p)}` };
    }
    if (c <= 1 - WIN_CHANCE && p < ALPHA) {
      return { kind: "lose", text: `${control} beats ${name} on ${goal}, ${chance(1 - c)} chance, ${pText(p)}` };
    }
    const detail = `${chance(c)} chance ${name} is better, ${pText(p)}`;
    if (n < MIN_TRIALS) {
      return { kind: "wait", text: `${name} vs ${control} on ${goal}: not enough data yet (${detail})` };
    }
    return { kind: "even", text: `No clear difference between ${name} and ${control} on ${goal} yet (${detail})` };
  }

  const VERDICT_ICONS = { win: "▲", lose: "▼", even: "=", wait: "…" };

  function experimentCard(exp) {
    const archived = !!exp.archived;
    const srm = exp.srm || {};
    const participants = exp.participants || {};
    const total = Object.values(participants).reduce((a, b) => a + (b || 0), 0);
    const meta = [
      exp.created ? `started ${day(exp.created)}` : null,
      exp.reset_at ? `counts reset ${day(exp.reset_at)}` : null,
      `${count(total)} participants`,
      exp.control ? `control: ${exp.control}` : null,
    ].filter(Boolean);

    const card = h(
      "article",
      {
        class: archived ? "exp card is-archived" : "exp card",
        "data-experiment": exp.experiment,
        "data-goals": (exp.goals || []).length,
      },
      h(
        "header",
        { class: "exp-head" },
        h(
          "div",
          { class: "exp-title" },
          h(
            "h2",
            {},
            h("span", { class: "exp-name", text: exp.experiment }),
            archived ? h("span", { class: "badge badge-muted", text: "archived" }) : null,
            h("span", { class: `badge badge-${exp.counting === "exact" ? "exact" : "hll"}`, text: exp.counting === "exact" ? "exact counts" : "HyperLogLog" }),
          ),
          exp.description ? h("p", { class: "exp-desc", text: exp.description }) : null,
          h("p", { class: "exp-meta", text: meta.join(" · ") }),
        ),
        h("div", { class: "exp-actions" }, actionButtons(exp)),
      ),
    );

    if (srm.mismatch) card.append(srmWarning(exp));
    card.append(
      h(
        "p",
        { class: "caveat", "data-counting": exp.counting || "" },
        exp.counting === "exact"
          ? "Exact unique counts: a visitor is counted once within the de-dup window."
          : "HyperLogLog counts: about ±0.8% counting error, already included in the intervals and p-values.",
      ),
    );

    const goals = exp.goals || [];
    if (!goals.length) {
      card.append(h("p", { class: "muted no-goals", text: "No goal has been reached yet: only participants are counted so far." }));
      card.append(participantsTable(exp));
    }
    for (const goal of goals) card.append(goalSection(exp, goal));
    return card;
  }

  function srmWarning(exp) {
    const participants = exp.participants || {};
    const expected = (exp.srm && exp.srm.expected) || {};
    const total = Object.values(participants).reduce((a, b) => a + (b || 0), 0) || 1;
    const split = Object.keys(expected)
      .map((v) => `${v} ${pct((participants[v] || 0) / total)} (expected ${pct(expected[v])})`)
      .join(", ");
    return h(
      "div",
      { class: "alert alert-error srm", role: "alert", "data-srm-p": raw(exp.srm.p_value) },
      h("strong", { text: "Sample ratio mismatch. " }),
      `Participants split ${split}; ${pText(exp.srm.p_value)}. Assignment or tracking is probably broken: ` +
        "do not trust these results until the cause is found.",
    );
  }

  function participantsTable(exp) {
    const participants = exp.participants || {};
    const expected = (exp.srm && exp.srm.expected) || {};
    const total = Object.values(participants).reduce((a, b) => a + (b || 0), 0);
    const rows = Object.keys(participants).map((v) =>
      h(
        "tr",
        { "data-variant": v },
        h("th", { scope: "row", class: "variant" }, variantLabel(v, v === exp.control)),
        h("td", { class: "num", "data-field": "trials", "data-value": raw(participants[v]) }, count(participants[v])),
        h("td", { class: "num" }, total ? pct(participants[v] / total) : DASH),
        h("td", { class: "num" }, expected[v] === undefined ? DASH : pct(expected[v])),
      ),
    );
    return h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "results" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col", text: "Variant" }), h("th", { scope: "col", class: "num", text: "Participants" }), h("th", { scope: "col", class: "num", text: "Share" }), h("th", { scope: "col", class: "num", text: "Expected" }))),
        h("tbody", {}, rows),
      ),
    );
  }

  function variantLabel(name, isControl) {
    return [h("span", { class: "variant-name", text: name }), isControl ? h("span", { class: "badge badge-control", text: "control" }) : null];
  }

  // The same header for every goal table: built once, cloned (a hundred experiments have
  // hundreds of tables, and cloning is much cheaper than building).
  let resultsHead = null;

  function resultsHeader() {
    if (!resultsHead) {
      resultsHead = h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", { scope: "col", text: "Variant" }),
          h("th", { scope: "col", class: "num", title: "trials: unique participants", text: "Participants" }),
          h("th", { scope: "col", class: "num", title: "successes: unique visitors who reached the goal", text: "Conversions" }),
          h("th", { scope: "col", class: "num", text: "Rate (95% interval)" }),
          h("th", { scope: "col", class: "num", text: "Uplift vs control" }),
          h("th", { scope: "col", class: "num", title: "two-sided, Holm-adjusted across variants when there are several", text: "p-value" }),
          h("th", { scope: "col", class: "num", text: "Chance to beat control" }),
        ),
      );
    }
    return resultsHead.cloneNode(true);
  }

  // A numeric cell: the shown text first, an optional second line, the raw value in data-value.
  function cell(field, value, text, sub, attrs) {
    const td = h("td", { "data-field": field, "data-value": raw(value), ...attrs }, text);
    if (sub) td.append(h("span", { class: "sub", text: sub }));
    return td;
  }

  function goalSection(exp, goal) {
    const rows = goal.results || [];
    const control = exp.control;
    const controlRow = rows.find((r) => r.label === control) || null;
    const verdicts = new Map();
    for (const row of rows) {
      if (row.label !== control) verdicts.set(row.label, verdict(row, controlRow, goal.goal, control));
    }

    const verdictList = h(
      "ul",
      { class: "verdicts" },
      [...verdicts.values()].map((v) =>
        h(
          "li",
          { class: `verdict verdict-${v.kind}`, "data-kind": v.kind },
          h("span", { class: "verdict-icon", "aria-hidden": "true", text: VERDICT_ICONS[v.kind] }),
          h("span", { class: "verdict-text", text: v.text }),
        ),
      ),
    );
    if (!verdicts.size) {
      verdictList.append(h("li", { class: "verdict verdict-wait", "data-kind": "wait" }, h("span", { class: "verdict-icon", "aria-hidden": "true", text: VERDICT_ICONS.wait }), h("span", { class: "verdict-text", text: "Only one variant so far: nothing to compare yet." })));
    }
    if (exp.srm && exp.srm.mismatch && verdicts.size) {
      verdictList.append(h("li", { class: "verdict verdict-suspect", text: "Unreliable while the sample ratio mismatch above is unexplained." }));
    }

    const body = rows.map((row) => {
      const isControl = row.label === control;
      const kind = isControl ? "control" : (verdicts.get(row.label) || {}).kind || "wait";
      const adjusted = row.p_value_adjusted !== row.p_value && row.p_value_adjusted !== null && row.p_value_adjusted !== undefined;
      return h(
        "tr",
        { "data-variant": row.label, class: `row-${kind}` },
        h("th", { scope: "row", class: "variant" }, variantLabel(row.label, isControl)),
        cell("trials", row.trials, count(row.trials)),
        cell("successes", row.successes, count(row.successes)),
        cell("conversion_rate", row.conversion_rate, pct(row.conversion_rate), row.ci && interval(row.ci), {
          "data-low": raw(row.ci && row.ci[0]),
          "data-high": raw(row.ci && row.ci[1]),
        }),
        cell(
          "uplift",
          row.uplift,
          isControl ? DASH : signedPct(row.uplift),
          row.uplift_ci && `${signedPct(row.uplift_ci[0])} to ${signedPct(row.uplift_ci[1])}`,
          row.uplift > 0 ? { class: "pos" } : row.uplift < 0 ? { class: "neg" } : null,
        ),
        cell("p_value", row.p_value, pValue(row.p_value), adjusted && `adjusted ${pValue(row.p_value_adjusted)}`, {
          "data-adjusted": raw(row.p_value_adjusted),
        }),
        cell("chance_to_beat_control", row.chance_to_beat_control, chance(row.chance_to_beat_control)),
      );
    });

    return h(
      "section",
      { class: "goal", "data-goal": goal.goal },
      h("h3", {}, h("span", { class: "goal-label", text: "Goal" }), h("span", { class: "goal-name", text: goal.goal })),
      verdictList,
      h("div", { class: "table-wrap" }, h("table", { class: "results" }, resultsHeader(), h("tbody", {}, body))),
      chart(rows, control, verdicts, goal.goal),
    );
  }

  // Rates with their 95% intervals, one row per variant: HTML labels beside one SVG whose x
  // positions are percentages of its width, so it stays crisp and readable at any width.
  const ROW = 30;
  const AXIS = 22;

  // The axis: from 0 to a round top, in 2 to 5 round steps.
  function axis(x) {
    const steps = [0.001, 0.002, 0.0025, 0.005, 0.01, 0.02, 0.025, 0.05, 0.1, 0.2, 0.25];
    const want = Math.min(1, Math.max(x, 0.001) * 1.08);
    for (const step of steps) {
      const count = Math.ceil(want / step - 1e-9);
      if (count <= 5) return { top: Math.max(2, count) * step, step, count: Math.max(2, count) };
    }
    return { top: 1, step: 0.25, count: 4 };
  }

  function tick(v) {
    return pct(v).replace(/(\.\d*?)0+%$/, "$1%").replace(/\.%$/, "%");
  }

  const grids = new Map(); // axis and grid lines by scale and height: built once, cloned

  function chart(rows, control, verdicts, goalName) {
    const highs = rows.map((r) => (r.ci ? r.ci[1] : r.conversion_rate || 0));
    const { top, step, count: ticks } = axis(Math.max(0, ...highs));
    const at = (v) => 2 + (96 * Math.min(v, top)) / top; // percent of the plot's width
    const x = (v) => `${at(v).toFixed(3)}%`;
    const height = rows.length * ROW + AXIS;
    const plot = svg("svg", {
      class: "chart-plot",
      height,
      width: "100%",
      role: "img",
      "aria-label": `Conversion rate of each variant on ${goalName}, with 95% intervals`,
    });
    const gridKey = `${step}/${ticks}/${rows.length}`;
    if (!grids.has(gridKey)) {
      const grid = svg("g", { class: "axis" });
      for (let i = 0; i <= ticks; i++) {
        const v = step * i;
        grid.append(
          svg("line", { class: "grid", x1: x(v), x2: x(v), y1: 0, y2: rows.length * ROW }),
          svg("text", { class: "tick", x: x(v), y: height - 6 }, tick(v)),
        );
      }
      grids.set(gridKey, grid);
    }
    plot.append(grids.get(gridKey).cloneNode(true));
    const controlRow = rows.find((r) => r.label === control);
    if (controlRow && controlRow.conversion_rate !== null && controlRow.conversion_rate !== undefined) {
      plot.append(svg("line", { class: "control-line", x1: x(controlRow.conversion_rate), x2: x(controlRow.conversion_rate), y1: 0, y2: rows.length * ROW }));
    }
    rows.forEach((row, i) => {
      const y = i * ROW + ROW / 2;
      const kind = row.label === control ? "control" : (verdicts.get(row.label) || {}).kind || "wait";
      const rate = row.conversion_rate;
      if (row.ci) {
        const from = at(row.ci[0]);
        plot.append(svg("rect", { class: `ci k-${kind}`, x: `${from.toFixed(3)}%`, width: `${(at(row.ci[1]) - from).toFixed(3)}%`, y: y - 4, height: 8, rx: 4 }));
      }
      if (rate === null || rate === undefined) {
        plot.append(svg("text", { class: "value-label muted", x: x(0), dx: 4, y }, "no participants yet"));
        return;
      }
      plot.append(svg("circle", { class: `dot k-${kind}`, cx: x(rate), cy: y, r: 5.5 }));
      const high = row.ci ? row.ci[1] : rate;
      const right = high / top < 0.8;
      const anchor = right ? high : row.ci ? row.ci[0] : rate;
      plot.append(svg("text", { class: right ? "value-label" : "value-label end", x: x(anchor), dx: right ? 8 : -8, y }, pct(rate)));
    });
    const labels = h(
      "div",
      { class: "chart-labels", "aria-hidden": "true" },
      rows.map((row) => h("div", { class: "chart-label", title: row.label, text: row.label })),
    );
    return h(
      "figure",
      { class: "chart" },
      h("figcaption", { text: "Conversion rate with 95% interval" + (controlRow ? " · dashed line: control" : "") }),
      h("div", { class: "chart-body" }, labels, plot),
    );
  }

  // -- actions -------------------------------------------------------------------------

  function actionButtons(exp) {
    const name = exp.experiment;
    const archived = !!exp.archived;
    return [
      h("button", {
        type: "button",
        class: "btn btn-small",
        "data-action": archived ? "unarchive" : "archive",
        text: archived ? "Unarchive" : "Archive",
        onclick: (e) => act(e.currentTarget, archived ? "unarchive" : "archive", name),
      }),
      h("button", { type: "button", class: "btn btn-small", "data-action": "reset", text: "Reset", onclick: (e) => act(e.currentTarget, "reset", name) }),
      h("button", { type: "button", class: "btn btn-small btn-danger", "data-action": "delete", text: "Delete", onclick: (e) => act(e.currentTarget, "delete", name) }),
    ];
  }

  const ACTIONS = {
    archive: {
      title: (n) => `Archive “${n}”?`,
      body: "It leaves the list (tick “Show archived” to see it again) and keeps counting events. You can unarchive it at any time.",
      ok: "Archive",
      run: (n) => api("PATCH", experimentPath(n), { namespace: state.namespace }, { archived: true }),
      done: (n) => `Archived “${n}”.`,
    },
    unarchive: {
      title: (n) => `Unarchive “${n}”?`,
      body: "It comes back to the main list.",
      ok: "Unarchive",
      run: (n) => api("PATCH", experimentPath(n), { namespace: state.namespace }, { archived: false }),
      done: (n) => `Unarchived “${n}”.`,
    },
    reset: {
      title: (n) => `Reset the counts of “${n}”?`,
      body: "Every participant and conversion count goes back to zero; its settings stay. This cannot be undone.",
      ok: "Reset counts",
      danger: true,
      run: (n) => api("POST", experimentPath(n) + "/reset", { namespace: state.namespace }),
      done: (n) => `Reset “${n}”.`,
    },
    delete: {
      title: (n) => `Delete “${n}”?`,
      body: "The experiment and all its counts are removed for good. If your pages still send events for it, it will reappear, empty. This cannot be undone.",
      ok: "Delete",
      danger: true,
      // "." and ".." cannot be in a path: the query form of the original API takes any name.
      run: (n) =>
        experimentPath(n)
          ? api("DELETE", experimentPath(n), { namespace: state.namespace })
          : api("DELETE", "delete", { namespace: state.namespace, experiment: n }),
      done: (n) => `Deleted “${n}”.`,
    },
  };

  async function act(button, action, name) {
    const spec = ACTIONS[action];
    if (experimentPath(name) === null && action !== "delete") {
      notice("error", `“${name}” can only be deleted from a browser: a name of “.” or “..” cannot appear in a URL path.`);
      return;
    }
    if (!(await confirmAction(spec.title(name), spec.body, spec.ok, spec.danger))) return;
    const card = button.closest(".exp");
    const buttons = card ? card.querySelectorAll("button") : [button];
    buttons.forEach((b) => (b.disabled = true));
    try {
      const result = await spec.run(name);
      applyResult(action, name, result);
      toast(spec.done(name), action === "archive" ? () => unarchiveNow(name) : null);
    } catch (error) {
      if (failed(error)) return;
      if (error.status === 404) {
        toast(`“${name}” no longer exists: the list was refreshed.`);
        load();
      } else {
        notice("error", `Could not ${action} “${name}”: ${error.message}`);
      }
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
  }

  // Undo of an archive: no confirmation (it restores what the user just changed).
  async function unarchiveNow(name) {
    try {
      applyResult("unarchive", name, await ACTIONS.unarchive.run(name));
      toast(ACTIONS.unarchive.done(name));
    } catch (error) {
      if (!failed(error)) notice("error", `Could not unarchive “${name}”: ${error.message}`);
    }
  }

  // Update the list after an action: only the card concerned changes (no full re-render, so
  // the scroll position and the rest of the page stay put).
  function applyResult(action, name, result) {
    const index = state.experiments.findIndex((e) => e.experiment === name);
    const card = [...ui.list.querySelectorAll(".exp")].find((c) => c.dataset.experiment === name);
    const gone = action === "delete" || (action === "archive" && !state.showArchived);
    if (gone) {
      if (index >= 0) state.experiments.splice(index, 1);
      if (card) card.remove();
    } else if (result && typeof result.experiment === "string") {
      if (index >= 0 && card) {
        state.experiments[index] = result;
        card.replaceWith(experimentCard(result));
      } else {
        if (index >= 0) state.experiments[index] = result;
        else state.experiments.push(result);
        state.experiments.sort((a, b) => (a.experiment < b.experiment ? -1 : a.experiment > b.experiment ? 1 : 0));
        const scroll = window.scrollY;
        render();
        window.scrollTo(0, scroll);
        return;
      }
    }
    if (!state.experiments.length) render();
    else applyFilter();
  }

  function confirmAction(title, body, ok, danger) {
    return new Promise((resolve) => {
      ui.dialogTitle.textContent = title;
      ui.dialogBody.textContent = body;
      ui.dialogOk.textContent = ok;
      ui.dialogOk.className = danger ? "btn btn-danger-solid" : "btn btn-primary";
      const finish = (answer) => {
        ui.dialogOk.removeEventListener("click", yes);
        ui.dialogCancel.removeEventListener("click", no);
        ui.dialog.removeEventListener("cancel", no);
        if (ui.dialog.open) ui.dialog.close();
        resolve(answer);
      };
      const yes = () => finish(true);
      const no = (event) => {
        if (event) event.preventDefault();
        finish(false);
      };
      ui.dialogOk.addEventListener("click", yes);
      ui.dialogCancel.addEventListener("click", no);
      ui.dialog.addEventListener("cancel", no);
      ui.dialog.showModal();
      ui.dialogCancel.focus();
    });
  }

  function toast(message, undo) {
    clearTimeout(state.toastTimer);
    ui.toastText.textContent = message;
    ui.toastUndo.hidden = !undo;
    ui.toastUndo.onclick = undo
      ? () => {
          ui.toast.hidden = true;
          undo();
        }
      : null;
    ui.toast.hidden = false;
    state.toastTimer = setTimeout(() => (ui.toast.hidden = true), 6000);
  }

  // -- controls ------------------------------------------------------------------------

  ui.namespace.value = state.namespace;
  ui.showArchived.checked = state.showArchived;

  function setNamespace() {
    const value = ui.namespace.value.trim() || DEFAULT_NAMESPACE;
    ui.namespace.value = value;
    if (value === state.namespace) return;
    state.namespace = value;
    state.experiments = [];
    storage("local", "set", NAMESPACE_STORE, value);
    load();
  }

  ui.namespace.addEventListener("change", setNamespace);
  ui.namespace.addEventListener("keydown", (event) => {
    if (event.key === "Enter") setNamespace();
  });
  ui.filter.addEventListener("input", applyFilter);
  ui.showArchived.addEventListener("change", () => {
    state.showArchived = ui.showArchived.checked;
    storage("local", "set", ARCHIVED_STORE, state.showArchived ? "1" : "0");
    load();
  });
  ui.refresh.addEventListener("click", () => load());

  load();
})();
