// Asking before an action (the <dialog> in index.html) and telling after it (the toast).
import { ui } from "./ui.js";

const TOAST_MS = 6000;
let toastTimer = null;

// Resolves true when confirmed; false on Cancel or Escape.
export function confirmAction(title, body, ok, danger) {
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

// A message for a few seconds, with an Undo button when undo() is given.
export function toast(message, undo) {
  clearTimeout(toastTimer);
  ui.toastText.textContent = message;
  ui.toastUndo.hidden = !undo;
  ui.toastUndo.onclick = undo
    ? () => {
        ui.toast.hidden = true;
        undo();
      }
    : null;
  ui.toast.hidden = false;
  toastTimer = setTimeout(() => (ui.toast.hidden = true), TOAST_MS);
}
