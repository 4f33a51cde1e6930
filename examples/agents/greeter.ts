// Greeter: answers every message with a greeting and counts whom it has greeted.
//
// State: {"greeted": <count>}. A message payload {"name": "Ada"} (or just "Ada") gets the
// reply {"text": "hello, Ada", "count": <n>} sent back to its sender. The agent then waits
// for the next message (status "idle"). Capabilities: log.
//
//   workbench build-agent examples/agents/greeter.ts

import { Kind, Value } from "./agent_json";
import { input, log, message, output, result } from "./agent_host";

export { alloc } from "./agent_host";

export function step(ptr: i32, len: i32): i64 {
  const request = input(ptr, len);
  const state = request.get("state");
  let greeted = state != null ? (<Value>state).get("greeted") : null;
  let count = greeted != null ? (<Value>greeted).number(0) : 0;

  const outbox = Value.arr();
  const inbox = (<Value>request.get("inbox")).items;
  for (let i = 0; i < inbox.length; i++) {
    const sender = (<Value>inbox[i].get("from")).str();
    const name = nameOf(<Value>inbox[i].get("payload"));
    count += 1;
    log("greeting " + name);
    const reply = Value.obj()
      .set("text", Value.str("hello, " + name))
      .set("count", Value.num(count));
    outbox.push(message(sender, reply));
  }
  return output(result(Value.obj().set("greeted", Value.num(count)), outbox, "idle"));
}

function nameOf(payload: Value): string {
  if (payload.kind == Kind.Str) return payload.text;
  const name = payload.get("name");
  return name != null ? (<Value>name).str("stranger") : "stranger";
}
