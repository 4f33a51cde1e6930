// Small documents for the unit tests.
import type { Delta, Doc, Message, Result, Span, Step } from "../src/doc";

export function result(partial: Partial<Result> = {}): Result {
  return {
    status: "ready", fault: null, state: null, out: [], logs: [], infer: [], tokens: 0, requests: 0,
    fuel: null, memory: null, trimmed: false, ...partial,
  };
}

export function step(t: number, results: Record<string, Result>, sends: Message[] = []): Step {
  return { t, time: t + 0.5, ran: Object.keys(results), sends, results, warnings: [] };
}

export function msg(to: string, seq: number, payload: unknown = null): Message {
  return { to, seq, payload: payload as Message["payload"] };
}

export function span(lane: string, kind: Span["kind"], t0: number, t1: number, extra: Partial<Span> = {}): Span {
  return { lane, kind, t0, t1, step: 0, agent: null, batch: null, provider: null, tokens: null, fallback: false, ...extra };
}

export function doc(agents: string[], steps: Step[] = [], spans: Span[] = []): Doc {
  return {
    format: 1, seq: 0, source: "live", title: "t.wbj", clock: "measured",
    header: {
      seed: 0, policy: "parallel", max_batch: 4, engine: null,
      agents: agents.map((name) => ({ name, kind: "python", caps: [], fuel: null, memory: null, state: { init: name } })),
      channels: [],
    },
    steps, spans,
    status: { state: "running", step: steps.length - 1, reason: null },
    live: { running: [], waiting: [], streaming: {} },
    trimmed: { steps: 0, spans: 0 },
  };
}

export function delta(seq: number, steps: Step[] = [], spans: Span[] = []): Delta {
  return {
    type: "delta", seq, steps, spans,
    status: { state: "running", step: steps.length ? steps[steps.length - 1].t : -1, reason: null },
    live: { running: [], waiting: [], streaming: {} },
  };
}
