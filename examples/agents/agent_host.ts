// The ABI v1 glue for AssemblyScript agents: host imports and step input/output.
//
// Not an agent itself; an agent file imports it and exports `alloc` and `step`:
//
//   export { alloc } from "./agent_host";
//   export function step(ptr: i32, len: i32): i64 { ... return output(result); }
//
// Built with the stub runtime, nothing is ever freed: each step runs in a fresh instance.

import { Value, parse, stringify } from "./agent_json";

@external("host", "log") declare function host_log(ptr: i32, len: i32): void;
@external("host", "infer") declare function host_infer(ptr: i32, len: i32): i64;
@external("host", "random") declare function host_random(): i64;
@external("host", "now") declare function host_now(): i64;

/** ABI export: `size` bytes of guest memory for the host to write into. */
export function alloc(size: i32): i32 {
  return size < 0 ? 0 : <i32>heap.alloc(<usize>size);
}

/** The step input `{"agent", "step", "state", "inbox"}`, read from guest memory. */
export function input(ptr: i32, len: i32): Value {
  return parse(String.UTF8.decodeUnsafe(<usize>ptr, <usize>len));
}

/** Encodes the step output and packs its address and length for the host. */
export function output(result: Value): i64 {
  const bytes = String.UTF8.encode(stringify(result));
  return (<i64>changetype<usize>(bytes) << 32) | <i64>bytes.byteLength;
}

/** `{"state": state, "outbox": outbox, "status": status}`. */
export function result(state: Value, outbox: Value, status: string): Value {
  return Value.obj().set("state", state).set("outbox", outbox).set("status", Value.str(status));
}

/** One outbox entry `{"to": to, "payload": payload}`. */
export function message(to: string, payload: Value): Value {
  return Value.obj().set("to", Value.str(to)).set("payload", payload);
}

/** A line in the run's journal (the host bounds its length). */
export function log(text: string): void {
  const bytes = String.UTF8.encode(text);
  host_log(<i32>changetype<usize>(bytes), bytes.byteLength);
}

/** Asks the model; blocks until the step's inference batch is done. Needs capability `infer`. */
export function infer(request: Value): Value {
  const bytes = String.UTF8.encode(stringify(request));
  const packed = host_infer(<i32>changetype<usize>(bytes), bytes.byteLength);
  return parse(String.UTF8.decodeUnsafe(<usize>(packed >>> 32), <usize>(packed & 0xffffffff)));
}

/** 64 seeded random bits: the same for the same (run seed, agent, step, call). */
export function random(): u64 { return <u64>host_random(); }

/** Logical time in nanoseconds: `step * 1e9 + call index`, never the wall clock. */
export function now(): i64 { return host_now(); }
