// A collapsible JSON tree. Keys and values are text nodes; children of a closed branch are
// built only when it is opened, and each branch lists at most MAX_CHILDREN entries.

import { h } from "./dom";
import type { Json } from "./doc";
import { displayText, oneLine } from "./text";

const MAX_CHILDREN = 200;
const OPEN_DEPTH = 2;
const MAX_STRING = 4000;

export function jsonTree(value: Json | undefined): HTMLElement {
  const root = h("div", { class: "wb-json" });
  root.appendChild(entry(null, value ?? null, 0));
  return root;
}

function entry(key: string | null, value: Json, depth: number): HTMLElement {
  if (value !== null && typeof value === "object") return branch(key, value, depth);
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

function branch(key: string | null, value: Json[] | { [key: string]: Json }, depth: number): HTMLElement {
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
    for (const [k, v] of entries.slice(0, MAX_CHILDREN)) details.append(entry(isArray ? `${k}` : k, v, depth + 1));
    if (entries.length > MAX_CHILDREN) {
      details.append(h("div", { class: "wb-leaf wb-z" }, `… ${entries.length - MAX_CHILDREN} more`));
    }
  };
  if (depth < OPEN_DEPTH && entries.length > 0) {
    details.open = true;
    build();
  }
  details.addEventListener("toggle", build);
  return details;
}
