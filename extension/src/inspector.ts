// The inspector pane: the selected agent as of the selected step. All agent text goes in as
// text nodes, stripped of terminal escapes, cut to a stated length.

import type { AgentStatus, Doc } from "./doc";
import { faultsAsOf, inboxAsOf, lastResult, stateAsOf } from "./derive";
import { clear, h } from "./dom";
import { jsonTree, type TreeState } from "./jsontree";
import { STATUS_LABEL } from "./palette";
import { displayText, formatBytes, formatCount, jsonLine, oneLine } from "./text";

const MAX_INBOX = 100;
const MAX_FAULTS = 20;
const MAX_LOGS = 200;

export interface InspectorInput {
  doc: Doc;
  agent: string | null;
  /** The step shown (the last committed one unless the slider moved), -1 before any. */
  step: number;
  status: AgentStatus | null;
  lostSteps: boolean;
}

export class InspectorView {
  readonly el: HTMLElement;
  private readonly body: HTMLElement;
  private readonly head: HTMLElement;
  private shownKey = "";
  private shownAgent: string | null = null;
  private treeState: TreeState = new Map();

  constructor() {
    this.head = h("span", { class: "wb-muted" });
    this.body = h("div", { class: "wb-inspector-body" });
    this.el = h(
      "section",
      { class: "wb-pane wb-inspector", "data-pane": "inspector" },
      h("div", { class: "wb-pane-head" }, h("span", { class: "wb-pane-title" }, "Inspector"), h("span", { class: "wb-spacer" }), this.head),
      this.body,
    );
  }

  /** Rebuilds only when the agent, the step, its status or the document's content changed
 * (`dataKey`), so streaming deltas for other steps leave an open tree alone. */
  update(input: InspectorInput, dataKey: string): void {
    const key = `${input.agent}\u0000${input.step}\u0000${input.status}\u0000${dataKey}`;
    if (key === this.shownKey) return;
    this.shownKey = key;
    // The same agent again (a new step, a status change): keep the scroll position and the
    // branches the user opened or closed.
    const sameAgent = input.agent === this.shownAgent;
    const scroll = sameAgent ? this.body.scrollTop : 0;
    if (!sameAgent) this.treeState = new Map();
    this.shownAgent = input.agent;
    clear(this.body);
    if (input.agent === null) {
      this.head.textContent = "";
      this.body.append(h("div", { class: "wb-muted", "data-empty": "inspector" }, "Click an agent in the graph to see its state, inbox, output, logs and inference."));
      return;
    }
    this.head.textContent = input.step >= 0 ? `as of step ${input.step}` : "before the first step";
    this.render(input, input.agent);
    this.body.scrollTop = scroll;
  }

  private render(input: InspectorInput, agent: string): void {
    const { doc, step } = input;
    const header = doc.header.agents.find((a) => a.name === agent);
    const status = input.status ?? "ready";
    const statusTag = h("span", { class: "wb-status-tag", style: `background: var(--wb-st-${status})` }, STATUS_LABEL[status]);
    statusTag.setAttribute("data-inspector-status", status);
    this.body.append(
      h(
        "div",
        { class: "wb-agent-head" },
        h("span", { class: "wb-agent-name", "data-inspector-agent": "" }, oneLine(agent, 60)),
        h("span", { class: "wb-tag" }, header?.kind === "wasm" ? "WebAssembly" : header?.kind === "python" ? "Python" : oneLine(header?.kind ?? "?", 12)),
        statusTag,
      ),
    );
    const last = lastResult(doc, step, agent);
    const facts = h("div", { class: "wb-kv" });
    const fact = (name: string, value: string): void => {
      facts.append(h("span", {}, name), h("span", {}, value));
    };
    if (header?.caps?.length) fact("capabilities", header.caps.map((c) => oneLine(c, 20)).join(", "));
    fact("last ran", last ? `step ${last.step}` : "not yet");
    if (last) {
      fact("tokens", `${formatCount(last.result.tokens ?? 0)} in ${formatCount(last.result.requests ?? 0)} requests`);
      if (last.result.fuel !== null && last.result.fuel !== undefined) fact("fuel, last step", `${formatCount(last.result.fuel)}${header?.fuel ? ` of ${formatCount(header.fuel)}` : ""}`);
      if (last.result.memory !== null && last.result.memory !== undefined) fact("memory, last step", `${formatBytes(last.result.memory)}${header?.memory ? ` of ${formatBytes(header.memory)}` : ""}`);
    }
    this.body.append(section("Agent", facts));

    const faults = faultsAsOf(doc, step, agent, MAX_FAULTS);
    if (faults.length > 0) {
      this.body.append(
        section(
          `Faults (${faults.length}${faults.length === MAX_FAULTS ? "+" : ""})`,
          ...faults.map((f) => h("div", { class: "wb-fault", "data-fault": "" }, h("b", {}, `step ${f.step} · ${oneLine(f.kind, 60)}`), "\n", displayText(f.detail, 1500), ...(f.traceback ? [h("div", { class: "wb-pre", "data-traceback": "" }, displayText(f.traceback, 3000))] : []))),
        ),
      );
    }

    const state = stateAsOf(doc, step, agent, input.lostSteps);
    this.body.append(
      state.known
        ? section(`State${state.step === null ? " (initial)" : ` after step ${state.step}`}`, jsonTree(state.state, this.treeState))
        : section("State", h("div", { class: "wb-note", "data-trimmed": "state" }, `Not available: ${state.reason}.`)),
    );

    const inbox = inboxAsOf(doc, step, agent, input.lostSteps, MAX_INBOX);
    const inboxItems = inbox.messages.map((m) =>
      h("li", {}, h("span", { class: "wb-muted" }, `${m.from === null ? "user" : oneLine(m.from, 40)} #${m.seq} · for step ${m.delivered}  `), h("span", { class: "wb-mono" }, jsonLine(m.payload, 300))),
    );
    this.body.append(
      section(
        `Inbox (${inbox.messages.length + inbox.more})`,
        inbox.partial ? h("div", { class: "wb-note" }, "Older steps were dropped: messages sent before them are not listed.") : null,
        inboxItems.length > 0 ? h("ul", { class: "wb-list", "data-inbox": "" }, ...inboxItems) : h("div", { class: "wb-muted" }, "Empty."),
        inbox.more > 0 ? h("div", { class: "wb-muted" }, `… ${inbox.more} more`) : null,
      ),
    );

    if (last === null) return;
    const result = last.result;
    const trimmedNote = result.trimmed
      ? h("div", { class: "wb-note", "data-trimmed": "result" }, `Details of step ${last.step} were trimmed to keep the view bounded; the journal has them.`)
      : null;
    if (trimmedNote) this.body.append(trimmedNote);
    const out = result.out ?? [];
    this.body.append(
      section(
        `Output of step ${last.step} (${out.length})`,
        out.length > 0
          ? h("ul", { class: "wb-list", "data-out": "" }, ...out.slice(0, MAX_INBOX).map((m) => h("li", {}, h("span", { class: "wb-muted" }, `to ${oneLine(m.to, 40)} #${m.seq}  `), h("span", { class: "wb-mono" }, jsonLine(m.payload, 300)))))
          : h("div", { class: "wb-muted" }, "No messages."),
        out.length > MAX_INBOX ? h("div", { class: "wb-muted" }, `… ${out.length - MAX_INBOX} more`) : null,
      ),
    );
    const logs = result.logs ?? [];
    if (logs.length > 0) {
      this.body.append(
        section(`Logs of step ${last.step} (${logs.length})`, h("div", { "data-logs": "" }, ...logs.slice(0, MAX_LOGS).map((line) => h("div", { class: "wb-pre" }, displayText(line, 2000))))),
      );
    }
    const infer = result.infer ?? [];
    if (infer.length > 0) {
      this.body.append(
        section(
          `Inference of step ${last.step} (${infer.length})`,
          ...infer.slice(0, MAX_LOGS).map((call) =>
            h(
              "div",
              { class: "wb-section", "data-infer": "" },
              h("div", { class: "wb-muted" }, `call ${call.call} · ${formatCount(call.tokens ?? 0)} tokens${call.finish ? ` · ${oneLine(call.finish, 20)}` : ""}${call.provider ? ` · ${oneLine(call.provider, 40)}` : ""}`),
              call.error ? h("div", { class: "wb-fault" }, displayText(call.error, 1500)) : null,
              h("div", { class: "wb-pre" }, displayText(call.text ?? "", 4000)),
            ),
          ),
        ),
      );
    }
  }
}

function section(title: string, ...children: (Node | null)[]): HTMLElement {
  return h("div", { class: "wb-section" }, h("div", { class: "wb-section-title" }, title), ...children);
}
