// What the page remembers: the API key for this tab only (sessionStorage), the namespace and
// the archived switch across visits (localStorage, not secrets), and what it last loaded.

const KEY_STORE = "gimel.apiKey";
const NAMESPACE_STORE = "gimel.namespace";
const ARCHIVED_STORE = "gimel.showArchived";
export const DEFAULT_NAMESPACE = "alephbet";

// Storage may be disabled (reading window.sessionStorage itself throws then): the page still
// works, it just forgets.
function stored(area, op, name, value) {
  try {
    const store = area === "session" ? window.sessionStorage : window.localStorage;
    if (op === "get") return store.getItem(name);
    if (op === "set") store.setItem(name, value);
    if (op === "remove") store.removeItem(name);
  } catch {
    // disabled: nothing kept
  }
  return null;
}

export const state = {
  key: stored("session", "get", KEY_STORE),
  namespace: stored("local", "get", NAMESPACE_STORE) || DEFAULT_NAMESPACE,
  showArchived: stored("local", "get", ARCHIVED_STORE) === "1",
  experiments: [],
  loadSeq: 0, // bumped by each load; an answer to an older one is dropped
};

export function setKey(key) {
  state.key = key;
  if (key) stored("session", "set", KEY_STORE, key);
  else stored("session", "remove", KEY_STORE);
}

export function setNamespace(namespace) {
  state.namespace = namespace;
  state.experiments = [];
  stored("local", "set", NAMESPACE_STORE, namespace);
}

export function setShowArchived(show) {
  state.showArchived = show;
  stored("local", "set", ARCHIVED_STORE, show ? "1" : "0");
}
