// The front end's copy of the document: deltas applied in seq order, bounded buffers.
// No DOM here.

import type { Delta, Doc, Span, Step } from "./doc";

/** The most steps and spans the front end keeps; the oldest go first, counted in `dropped`. */
export const MAX_STEPS = 5000;
export const MAX_SPANS = 20000;

export interface Limits {
  steps: number;
  spans: number;
}

export interface Store {
  doc: Doc;
  /** Steps and spans this front end dropped to stay within its limits (the kernel's own
   * trimming is in doc.trimmed). */
  dropped: { steps: number; spans: number };
  limits: Limits;
  /** Bumped whenever the document is replaced (not by deltas): views re-derive everything. */
  generation: number;
}

export type DeltaOutcome =
  | { kind: "applied"; newSteps: Step[]; newSpans: Span[] }
  | { kind: "stale" } // already included (seq not above the document's)
  | { kind: "gap"; expected: number; got: number };

export function createStore(doc: Doc, limits: Limits = { steps: MAX_STEPS, spans: MAX_SPANS }): Store {
  const store: Store = { doc, dropped: { steps: 0, spans: 0 }, limits, generation: 0 };
  enforceLimits(store);
  return store;
}

/** Replaces the whole document (a `doc` message or a new `doc` traitlet). */
export function replaceDoc(store: Store, doc: Doc): void {
  store.doc = doc;
  store.dropped = { steps: 0, spans: 0 };
  store.generation += 1;
  enforceLimits(store);
}

/** Applies one delta. Deltas must come in seq order: one at or below the document's seq is
 * ignored (stale); one above seq + 1 is a gap, and nothing is applied (send `hello`). */
export function applyDelta(store: Store, delta: Delta): DeltaOutcome {
  const doc = store.doc;
  if (delta.seq <= doc.seq) return { kind: "stale" };
  if (delta.seq !== doc.seq + 1) return { kind: "gap", expected: doc.seq + 1, got: delta.seq };
  const lastT = doc.steps.length > 0 ? doc.steps[doc.steps.length - 1].t : -Infinity;
  const newSteps = delta.steps.filter((step) => typeof step.t === "number" && step.t > lastT);
  for (const step of newSteps) doc.steps.push(step);
  for (const span of delta.spans) doc.spans.push(span);
  doc.seq = delta.seq;
  doc.status = delta.status;
  doc.live = delta.live;
  enforceLimits(store);
  return { kind: "applied", newSteps, newSpans: delta.spans };
}

function enforceLimits(store: Store): void {
  const doc = store.doc;
  const extraSteps = doc.steps.length - store.limits.steps;
  if (extraSteps > 0) {
    doc.steps.splice(0, extraSteps);
    store.dropped.steps += extraSteps;
  }
  const extraSpans = doc.spans.length - store.limits.spans;
  if (extraSpans > 0) {
    doc.spans.splice(0, extraSpans);
    store.dropped.spans += extraSpans;
  }
}

/** Whether steps before the first kept one are missing (dropped here, or left out by the
 * kernel): what is derived from all earlier steps (state, inbox) may then be incomplete. */
export function hasLostSteps(store: Store): boolean {
  const first = store.doc.steps[0];
  return store.dropped.steps > 0 || (first !== undefined && first.t > 0);
}
