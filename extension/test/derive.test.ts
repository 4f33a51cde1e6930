import assert from "node:assert/strict";
import { test } from "node:test";
import { edgeKey, faultsAsOf, faultTraceback, graphEdges, inboxAsOf, lastResult, stateAsOf, StepCursor, withLive } from "../src/derive";
import { doc, msg, result, step } from "./fixtures";

const steps = [
  step(0, { a: result({ state: 1, out: [msg("b", 0, "x")] }), b: result({ state: 10 }) }, [msg("a", 0, "hi")]),
  step(1, { a: result({ state: 2, out: [msg("b", 1, "y"), msg("b", 2, "z")], tokens: 5 }) }),
  step(2, { b: result({ state: 11, status: "faulted", fault: { kind: "fuel", detail: "out" } }) }),
  step(3, { a: result({ state: 3, status: "done", out: [msg("b", 3, "w")] }) }),
];

test("the cursor gives each agent's status as of a step, forwards and back", () => {
  const d = doc(["a", "b"], steps);
  const cursor = new StepCursor();
  cursor.moveTo(d, 0, 1);
  assert.equal(cursor.agents.get("a")?.status, "ready");
  assert.equal(cursor.agents.get("a")?.tokens, 5);
  assert.equal(cursor.edges.get(edgeKey("a", "b")), 3);
  cursor.moveTo(d, 0, 3);
  assert.equal(cursor.agents.get("a")?.status, "done");
  assert.equal(cursor.agents.get("b")?.status, "faulted");
  assert.equal(cursor.edges.get(edgeKey("a", "b")), 4);
  cursor.moveTo(d, 0, 0);
  assert.equal(cursor.agents.get("b")?.status, "ready");
  assert.equal(cursor.edges.get(edgeKey("a", "b")), 1);
  assert.equal(cursor.agents.get("a")?.lastRan, 0);
});

test("before any step every agent is ready", () => {
  const cursor = new StepCursor();
  cursor.moveTo(doc(["a", "b"], steps), 0, -1);
  assert.deepEqual([...cursor.agents.values()].map((v) => v.status), ["ready", "ready"]);
});

test("the live overlay marks running and waiting agents; none without it", () => {
  const cursor = new StepCursor();
  const d = doc(["a", "b"], steps);
  cursor.moveTo(d, 0, Infinity);
  const live = { running: ["a"], waiting: ["b", "ghost"], streaming: {} };
  assert.deepEqual([...withLive(cursor.agents, live)], [["a", "running"], ["b", "waiting"]]);
  assert.deepEqual([...withLive(cursor.agents, null)], [["a", "done"], ["b", "faulted"]]);
});

test("state as of a step is the last result's state, else the initial state", () => {
  const d = doc(["a", "b"], steps);
  assert.deepEqual(stateAsOf(d, 2, "a", false), { known: true, state: 2, step: 1 });
  assert.deepEqual(stateAsOf(d, -1, "a", false), { known: true, state: { init: "a" }, step: null });
  assert.deepEqual(stateAsOf(d, 5, "b", false), { known: true, state: 11, step: 2 });
});

test("a trimmed result or dropped earlier steps make the state unknown", () => {
  const trimmed = doc(["a"], [step(0, { a: result({ state: null, trimmed: true }) })]);
  const state = stateAsOf(trimmed, 0, "a", false);
  assert.equal(state.known, false);
  const lost = doc(["a"], [step(5, { b: result() })]);
  assert.equal(stateAsOf(lost, 5, "a", true).known, false);
});

test("the inbox holds messages sent since the agent last ran, in delivery order", () => {
  const d = doc(["a", "b"], steps);
  // b last ran at step 2: a's message of step 3 waits, for step 4.
  assert.deepEqual(inboxAsOf(d, 3, "b", false, 10).messages.map((m) => [m.from, m.seq, m.delivered]), [["a", 3, 4]]);
  // as of step 1, b last ran at step 0: a's sends of steps 0 and 1 wait.
  assert.deepEqual(inboxAsOf(d, 1, "b", false, 10).messages.map((m) => m.seq), [0, 1, 2]);
  // a ran at step 0 and read the user's message sent before it.
  assert.deepEqual(inboxAsOf(d, 0, "a", false, 10).messages, []);
  // before step 0 ran nothing was read... the user's message is listed when a never ran.
  const fresh = doc(["a"], [step(0, { b: result() }, [msg("a", 7, "u")])]);
  assert.deepEqual(inboxAsOf(fresh, 0, "a", false, 10).messages.map((m) => [m.from, m.seq, m.delivered]), [[null, 7, 0]]);
});

test("the inbox is capped and says how many more there are", () => {
  const many = [step(0, { a: result({ out: Array.from({ length: 7 }, (_, i) => msg("b", i)) }) })];
  const inbox = inboxAsOf(doc(["a", "b"], many), 0, "b", false, 3);
  assert.equal(inbox.messages.length, 3);
  assert.equal(inbox.more, 4);
});

test("the inbox is partial when the agent never ran in the kept steps and earlier ones are gone", () => {
  const d = doc(["a", "b"], [step(4, { a: result({ out: [msg("b", 0)] }) })]);
  assert.equal(inboxAsOf(d, 4, "b", true, 10).partial, true);
  assert.equal(inboxAsOf(d, 4, "b", false, 10).partial, false);
});

test("last result and faults as of a step", () => {
  const d = doc(["a", "b"], steps);
  assert.equal(lastResult(d, 2, "a")?.step, 1);
  assert.equal(lastResult(d, -1, "a"), null);
  assert.deepEqual(faultsAsOf(d, 3, "b", 5), [{ step: 2, kind: "fuel", detail: "out", traceback: "" }]);
  assert.deepEqual(faultsAsOf(d, 1, "b", 5), []);
});

test("a fault's traceback: text or lines from its data, nothing from anything else", () => {
  assert.equal(faultTraceback({ traceback: "  step line 3: 1 // 0\n" }), "  step line 3: 1 // 0\n");
  assert.equal(faultTraceback({ traceback: ["a", "b"] }), "a\nb");
  assert.equal(faultTraceback({ limit: "fuel" }), "");
  assert.equal(faultTraceback(null), "");
  assert.equal(faultTraceback("traceback"), "");
  assert.equal(faultTraceback([{ traceback: "x" }]), "");
});

test("graph edges: channels first, then routes sorted, unknown agents skipped, capped", () => {
  const d = doc(["a", "b", "c"], [step(0, { c: result({ out: [msg("a", 0), msg("ghost", 1)] }), a: result({ out: [msg("b", 0)] }) })]);
  d.header.channels = [["b", "c"], ["a", "b"]];
  assert.deepEqual(graphEdges(d, 10), { edges: [["b", "c"], ["a", "b"], ["c", "a"]], more: 0 });
  assert.deepEqual(graphEdges(d, 2), { edges: [["b", "c"], ["a", "b"]], more: 1 });
});
