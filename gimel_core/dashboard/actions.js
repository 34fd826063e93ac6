// Archive, unarchive, reset and delete: confirmed first, then sent, then shown on the card.
import { api, experimentPath } from "./api.js";
import { applyResult } from "./board.js";
import { confirmAction, toast } from "./dialog.js";
import { failed } from "./errors.js";
import { notice } from "./notice.js";
import { state } from "./state.js";
import { ui } from "./ui.js";

const inNamespace = () => ({ namespace: state.namespace });

const ACTIONS = {
  archive: {
    title: (n) => `Archive “${n}”?`,
    body:
      "It leaves the list (tick “Show archived” to see it again) and keeps counting events. " +
      "You can unarchive it at any time.",
    ok: "Archive",
    run: (n) => api("PATCH", experimentPath(n), inNamespace(), { archived: true }),
    done: (n) => `Archived “${n}”.`,
  },
  unarchive: {
    title: (n) => `Unarchive “${n}”?`,
    body: "It comes back to the main list.",
    ok: "Unarchive",
    run: (n) => api("PATCH", experimentPath(n), inNamespace(), { archived: false }),
    done: (n) => `Unarchived “${n}”.`,
  },
  reset: {
    title: (n) => `Reset the counts of “${n}”?`,
    body:
      "Every participant and conversion count goes back to zero; its settings stay. " +
      "This cannot be undone.",
    ok: "Reset counts",
    danger: true,
    run: (n) => api("POST", experimentPath(n) + "/reset", inNamespace()),
    done: (n) => `Reset “${n}”.`,
  },
  delete: {
    title: (n) => `Delete “${n}”?`,
    body:
      "The experiment and all its counts are removed for good. If your pages still send " +
      "events for it, it will reappear, empty. This cannot be undone.",
    ok: "Delete",
    danger: true,
    // "." and ".." cannot be in a path: the query form of the original API takes any name.
    run: (n) =>
      experimentPath(n)
        ? api("DELETE", experimentPath(n), inNamespace())
        : api("DELETE", "delete", { ...inNamespace(), experiment: n }),
    done: (n) => `Deleted “${n}”.`,
  },
};

let reload = () => {};

async function act(button, action, name) {
  const spec = ACTIONS[action];
  if (experimentPath(name) === null && action !== "delete") {
    notice(
      "error",
      `“${name}” can only be deleted from a browser: ` +
        "a name of “.” or “..” cannot appear in a URL path.",
    );
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
    if (failed(error, reload)) return;
    if (error.status === 404) {
      toast(`“${name}” no longer exists: the list was refreshed.`);
      reload();
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
    if (failed(error, reload)) return;
    notice("error", `Could not unarchive “${name}”: ${error.message}`);
  }
}

// One listener for every card's buttons (cards come and go); reloadList() refetches the list.
export function initActions(reloadList) {
  reload = reloadList;
  ui.list.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    const card = button && button.closest(".exp");
    if (!card || !Object.hasOwn(ACTIONS, button.dataset.action)) return;
    act(button, button.dataset.action, card.dataset.experiment);
  });
}
