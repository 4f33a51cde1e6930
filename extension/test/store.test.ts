import assert from "node:assert/strict";
import { test } from "node:test";
import { readDoc, readKernelMessage } from "../src/doc";
import { applyDelta, createStore, hasLostSteps, replaceDoc } from "../src/store";
import { delta, doc, result, span, step } from "./fixtures";

test("deltas apply in seq order and append steps and spans", () => {
  const store = createStore(doc(["a"]));
  const first = applyDelta(store, delta(1, [step(0, { a: result() })], [span("a", "step", 0, 1)]));
  assert.equal(first.kind, "applied");
  const second = applyDelta(store, delta(2, [step(1, { a: result({ status: "done" }) })]));
  assert.equal(second.kind, "applied");
  assert.deepEqual(store.doc.steps.map((s) => s.t), [0, 1]);
  assert.equal(store.doc.spans.length, 1);
  assert.equal(store.doc.seq, 2);
});

test("a delta past seq + 1 is a gap and changes nothing", () => {
  const store = createStore(doc(["a"]));
  applyDelta(store, delta(1, [step(0, { a: result() })]));
  const outcome = applyDelta(store, delta(3, [step(2, { a: result() })]));
  assert.deepEqual(outcome, { kind: "gap", expected: 2, got: 3 });
  assert.equal(store.doc.seq, 1);
  assert.equal(store.doc.steps.length, 1);
});

test("a delta at or below seq is stale and ignored", () => {
  const store = createStore(doc(["a"]));
  applyDelta(store, delta(1, [step(0, { a: result() })]));
  assert.equal(applyDelta(store, delta(1, [step(0, { a: result() })])).kind, "stale");
  assert.equal(store.doc.steps.length, 1);
});

test("a step already present is not appended twice", () => {
  const store = createStore(doc(["a"], [step(0, { a: result() })]));
  const outcome = applyDelta(store, delta(1, [step(0, { a: result() }), step(1, { a: result() })]));
  assert.equal(outcome.kind, "applied");
  assert.deepEqual(store.doc.steps.map((s) => s.t), [0, 1]);
});

test("buffers keep the newest steps and spans and count what they drop", () => {
  const store = createStore(doc(["a"]), { steps: 3, spans: 2 });
  for (let t = 0; t < 5; t++) applyDelta(store, delta(t + 1, [step(t, { a: result() })], [span("a", "step", t, t + 1)]));
  assert.deepEqual(store.doc.steps.map((s) => s.t), [2, 3, 4]);
  assert.deepEqual(store.doc.spans.map((s) => s.t0), [3, 4]);
  assert.deepEqual(store.dropped, { steps: 2, spans: 3 });
  assert.equal(hasLostSteps(store), true);
});

test("a new document replaces everything and resets the drop counts", () => {
  const store = createStore(doc(["a"]), { steps: 1, spans: 1 });
  applyDelta(store, delta(1, [step(0, { a: result() }), step(1, { a: result() })]));
  assert.equal(store.dropped.steps, 1);
  const generation = store.generation;
  replaceDoc(store, doc(["b"], [step(0, { b: result() })]));
  assert.equal(store.generation, generation + 1);
  assert.deepEqual(store.dropped, { steps: 0, spans: 0 });
  assert.equal(hasLostSteps(store), false);
});

test("readDoc refuses what is no format-1 document and fills absent parts", () => {
  assert.equal(readDoc(null), null);
  assert.equal(readDoc({ format: 2, header: {} }), null);
  const minimal = readDoc({ format: 1, header: { agents: [{ name: "a" }, { nope: 1 }, "x"] } });
  assert.ok(minimal);
  assert.deepEqual(minimal.header.agents.map((a) => a.name), ["a"]);
  assert.deepEqual(minimal.steps, []);
  assert.equal(minimal.status.step, -1);
});

test("readDoc copies the arrays it is given, so applying deltas leaves the input alone", () => {
  const input = doc(["a"]);
  const store = createStore(readDoc(input)!);
  applyDelta(store, delta(1, [step(0, { a: result() })]));
  assert.equal(input.steps.length, 0);
});

test("readKernelMessage accepts the three kinds and nothing else", () => {
  assert.equal(readKernelMessage({ type: "delta", seq: 1 })?.type, "delta");
  assert.equal(readKernelMessage({ type: "doc", doc: doc(["a"]) })?.type, "doc");
  assert.equal(readKernelMessage({ type: "doc", doc: { format: 9 } }), null);
  const reply = readKernelMessage({ type: "reply", id: 4, ok: false, error: "no" });
  assert.deepEqual(reply, { type: "reply", id: 4, ok: false, error: "no", result: null });
  assert.equal(readKernelMessage({ type: "eval", code: "1" }), null);
  assert.equal(readKernelMessage("delta"), null);
});
