// A collapsible JSON tree. Keys and values are text nodes; children of a closed branch are
// built only when it is opened, and each branch lists at most MAX_CHILDREN entries.

import { h } from "./dom";
import type { Json } from "./doc";
import { displayText, oneLine } from "./text";

const MAX_CHILDREN = 200;
const OPEN_DEPTH = 2;
const MAX_STRING = 4000;

/** Which branches the user opened or closed, by path; kept across rebuilds of one agent's
 * tree so live updates do not fold what the user unfolded. */
export type TreeState = Map<string, boolean>;

export function jsonTree(value: Json | undefined, state: TreeState = new Map()): HTMLElement {
  const root = h("div", { class: "wb-json" });
  root.appendChild(entry(null, value ?? null, 0, "$", state));
  return root;
}

function entry(key: string | null, value: Json, depth: number, path: string, state: TreeState): HTMLElement {
  if (value !== null && typeof value === "object") return branch(key, value, depth, path, state);
  const leaf = h("div", { class: "wb-leaf" });
  if (key !== null) leaf.append(h("span", { class: "wb-k" }, `${oneLine(key, 200)}: `));
  leaf.append(scalar(value));
  return leaf;
}

function scalar(value: Json): HTMLElement {
  if (typeof value === "string") return h("span", { class: "wb-s" }, JSON.stringify(displayText(value, MAX_STRING)));
  if (typeof value === "number") return h("span", { class: "wb-n" }, String(value));
  if (typeof value === "boolean") return h("span", { class: "wb-b" }, String(value));
  return h("span", { class: "wb-z" }, "null");
}

function branch(key: string | null, value: Json[] | { [key: string]: Json }, depth: number, path: string, state: TreeState): HTMLElement {
  const isArray = Array.isArray(value);
  const entries: [string, Json][] = isArray
    ? (value as Json[]).map((item, i) => [String(i), item])
    : Object.entries(value as { [key: string]: Json });
  const summary = h("summary", {});
  if (key !== null) summary.append(h("span", { class: "wb-k" }, `${oneLine(key, 200)}: `));
  summary.append(h("span", { class: "wb-z" }, isArray ? `[${entries.length}]` : `{${entries.length}}`));
  const details = h("details", {}, summary);
  let built = false;
  const build = (): void => {
    if (built) return;
    built = true;
    for (const [k, v] of entries.slice(0, MAX_CHILDREN)) details.append(entry(k, v, depth + 1, `${path}\u0000${k}`, state));
    if (entries.length > MAX_CHILDREN) {
      details.append(h("div", { class: "wb-leaf wb-z" }, `… ${entries.length - MAX_CHILDREN} more`));
    }
  };
  if (entries.length > 0 && (state.get(path) ?? depth < OPEN_DEPTH)) {
    details.open = true;
    build();
  }
  details.addEventListener("toggle", () => {
    state.set(path, details.open);
    build();
  });
  return details;
}
