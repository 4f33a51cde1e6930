// Summarizer: asks the model for a one-line summary of every text it receives.
//
// A message payload {"text": "..."} (or a plain string) becomes one infer() request; the
// reply {"summary": <model text>, "tokens": <count>,
// "asked_at": <now ns>, "ticket": <random u64 as a string>} goes back to the sender. A rejected
// request ({"error": ...}) is logged and answered with {"error": ...}.
// State: {"summarized": <count>}. Capabilities: infer, log, random, now.
//
//   workbench build-agent examples/agents/summarizer.ts

import { Kind, Value } from "./agent_json";
import { infer, input, log, message, now, output, random, result } from "./agent_host";

export { alloc } from "./agent_host";

const MAX_TOKENS: f64 = 32;

export function step(ptr: i32, len: i32): i64 {
  const request = input(ptr, len);
  const state = request.get("state");
  const done = state != null ? (<Value>state).get("summarized") : null;
  let count = done != null ? (<Value>done).number(0) : 0;

  const outbox = Value.arr();
  const inbox = (<Value>request.get("inbox")).items;
  for (let i = 0; i < inbox.length; i++) {
    const sender = (<Value>inbox[i].get("from")).str();
    const reply = summarize(textOf(<Value>inbox[i].get("payload")));
    outbox.push(message(sender, reply));
    count += 1;
  }
  return output(result(Value.obj().set("summarized", Value.num(count)), outbox, "idle"));
}

function summarize(text: string): Value {
  const asked = now();
  const ticket = random();
  const prompt = Value.arr().push(Value.obj()
    .set("role", Value.str("user"))
    .set("content", Value.str("Summarize in one line: " + text)));
  const answer = infer(Value.obj()
    .set("messages", prompt)
    .set("max_tokens", Value.num(MAX_TOKENS)));
  const error = answer.get("error");
  if (error != null) {
    log("summary refused: " + (<Value>error).str());
    return Value.obj().set("error", <Value>error);
  }
  const tokens = answer.get("tokens");
  return Value.obj()
    .set("summary", (<Value>answer.get("text")))
    .set("tokens", Value.num(tokens != null ? (<Value>tokens).items.length : 0))
    .set("asked_at", Value.num(<f64>asked))
    .set("ticket", Value.str(ticket.toString()));
}

function textOf(payload: Value): string {
  if (payload.kind == Kind.Str) return payload.text;
  const text = payload.get("text");
  return text != null ? (<Value>text).str() : "";
}
