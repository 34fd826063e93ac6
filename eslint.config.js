// ESLint for the dashboard (gimel_core/dashboard/*.js: browser ES modules, no build step) and
// the unit tests of its pure modules (tests/js/*.test.mjs, run by node --test).
// CommonJS here because package.json does not declare "type": "module".
"use strict";

const js = require("@eslint/js");
const globals = require("globals");

const rules = {
  ...js.configs.recommended.rules,
  "max-len": ["error", { code: 100, ignoreUrls: true }],
  curly: ["error", "multi-line"],
  eqeqeq: ["error", "always"],
  "no-var": "error",
  "prefer-const": "error",
  "no-shadow": "error",
  "no-eval": "error",
  "no-implied-eval": "error",
  "no-new-func": "error",
};

module.exports = [
  // The pinned libraries' release files (uPlot), kept byte for byte as published.
  { ignores: ["gimel_core/dashboard/vendor/"] },
  {
    files: ["tests/js/**/*.mjs"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: globals.node },
    linterOptions: { reportUnusedDisableDirectives: "error" },
    rules,
  },
  {
    files: ["gimel_core/dashboard/**/*.js"],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: "module",
      globals: globals.browser,
    },
    linterOptions: { reportUnusedDisableDirectives: "error" },
    rules: {
      ...rules,
      // Names from users reach the page as text only, never as markup (see dom.js).
      "no-restricted-properties": [
        "error",
        { property: "innerHTML", message: "Build elements with h() from dom.js." },
        { property: "outerHTML", message: "Build elements with h() from dom.js." },
        { property: "insertAdjacentHTML", message: "Build elements with h() from dom.js." },
        { object: "document", property: "write", message: "Build elements with h()." },
      ],
    },
  },
];
