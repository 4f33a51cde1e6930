// The controls pane: run / pause / step, the status line, the step slider, rewind and fork
// (each confirmed inside the widget), and the notice line for errors and confirmations.

import type { Doc } from "./doc";
import { clear, h, setAttr, setText } from "./dom";
import { formatCount, jsonLine, oneLine } from "./text";

export interface ControlsInput {
  doc: Doc;
  /** Whether a kernel is attached (false for renderDocument). */
  kernel: boolean;
  /** No document yet (the kernel's is on its way). */
  loading: boolean;
  /** Index into doc.steps of the step shown (-1: none yet). */
  index: number;
  following: boolean;
  agentsTotal: number;
  /** Steps and spans this view dropped to stay within its limits. */
  dropped: { steps: number; spans: number };
}

export interface ControlsActions {
  control(action: "run" | "pause" | "step"): void;
  /** Show the step at this index, or follow the latest (null). */
  seek(index: number | null): void;
  rewind(step: number): void;
  fork(step: number): void;
}

export class ControlsView {
  readonly el: HTMLElement;
  private readonly title = h("span", { class: "wb-title" });
  private readonly pill = h("span", { class: "wb-pill", "data-run-state": "" });
  private readonly statusText = h("span", { class: "wb-status" });
  private readonly runButton = button("Run", "wb-btn wb-primary", "Run in the background until paused or finished");
  private readonly pauseButton = button("Pause", "wb-btn", "Pause at the next step boundary");
  private readonly stepButton = button("Step", "wb-btn", "Run one step");
  private readonly slider = h("input", { class: "wb-slider", type: "range", min: "0", max: "0", value: "0", "aria-label": "Step shown" });
  private readonly stepLabel = h("span", { class: "wb-steplabel", "data-step-label": "" });
  private readonly latestButton = button("Latest", "wb-btn", "Follow the latest step");
  private readonly rewindButton = button("Rewind here", "wb-btn", "Rewind the run to the step shown");
  private readonly forkButton = button("Fork here", "wb-btn", "Start a new run from the step shown");
  private readonly notice = h("div", { class: "wb-notice", "data-notice": "" });
  private input: ControlsInput | null = null;
  private confirming = false;

  constructor(private readonly actions: ControlsActions) {
    this.el = h(
      "section",
      { class: "wb-pane wb-controls", "data-pane": "controls" },
      h("div", { class: "wb-bar" }, this.title, this.pill, this.statusText, h("span", { class: "wb-spacer" }), this.runButton, this.pauseButton, this.stepButton),
      h("div", { class: "wb-bar" }, this.slider, this.stepLabel, this.latestButton, this.rewindButton, this.forkButton),
      this.notice,
    );
    this.runButton.setAttribute("data-action", "run");
    this.pauseButton.setAttribute("data-action", "pause");
    this.stepButton.setAttribute("data-action", "step");
    this.rewindButton.setAttribute("data-action", "rewind");
    this.forkButton.setAttribute("data-action", "fork");
    this.runButton.addEventListener("click", () => actions.control("run"));
    this.pauseButton.addEventListener("click", () => actions.control("pause"));
    this.stepButton.addEventListener("click", () => actions.control("step"));
    this.slider.addEventListener("input", () => {
      const index = Number(this.slider.value);
      const last = (this.input?.doc.steps.length ?? 0) - 1;
      actions.seek(index >= last ? null : index);
    });
    this.latestButton.addEventListener("click", () => actions.seek(null));
    this.rewindButton.addEventListener("click", () => this.confirm("rewind"));
    this.forkButton.addEventListener("click", () => this.confirm("fork"));
  }

  update(input: ControlsInput): void {
    this.input = input;
    const { doc } = input;
    const journal = doc.source === "journal";
    const state = journal ? "journal" : doc.status.state;
    setText(this.title, oneLine(doc.title || "run", 60));
    setAttr(this.pill, "data-state", state);
    setText(this.pill, journal ? "journal" : input.loading ? "…" : doc.status.state);
    setText(this.statusText, this.statusLine(input));
    const live = input.kernel && !journal && !input.loading;
    const open = doc.status.state !== "finished" && doc.status.state !== "closed";
    const going = doc.status.state === "running" || doc.status.state === "pausing";
    this.runButton.disabled = !live || !open || going;
    this.pauseButton.disabled = !live || doc.status.state !== "running";
    this.stepButton.disabled = !live || !open || going;
    const count = doc.steps.length;
    setAttr(this.slider, "max", String(Math.max(0, count - 1)));
    this.slider.disabled = count < 2;
    const value = String(Math.max(0, input.index));
    if (this.slider.value !== value) this.slider.value = value;
    const shown = input.index >= 0 ? doc.steps[input.index].t : -1;
    const lastT = count > 0 ? doc.steps[count - 1].t : -1;
    setText(this.stepLabel, count === 0 ? "no steps yet" : `step ${shown} of ${lastT}${input.following ? " (latest)" : ""}`);
    this.latestButton.disabled = input.following;
    const canTravel = live && input.index >= 0 && !going && doc.status.state !== "closed";
    this.rewindButton.disabled = !canTravel || this.confirming;
    this.forkButton.disabled = !canTravel || this.confirming;
    this.rewindButton.style.display = input.kernel && !journal ? "" : "none";
    this.forkButton.style.display = input.kernel && !journal ? "" : "none";
    if (!this.confirming && this.notice.getAttribute("data-kind") !== "error") this.showInfo(input);
  }

  showError(message: string): void {
    this.confirming = false;
    clear(this.notice);
    this.notice.setAttribute("data-kind", "error");
    const dismiss = button("Dismiss", "wb-btn", "Hide this message");
    dismiss.addEventListener("click", () => {
      this.notice.setAttribute("data-kind", "info");
      if (this.input) this.update(this.input);
    });
    this.notice.append(h("span", { "data-error": "" }, oneLine(message, 300)), dismiss);
  }

  private statusLine(input: ControlsInput): string {
    const { doc } = input;
    if (input.loading) return "waiting for the document";
    const parts: string[] = [];
    parts.push(doc.status.step >= 0 ? `step ${doc.status.step}` : "no steps yet");
    parts.push(`${formatCount(input.agentsTotal)} agents`);
    if (doc.header.engine) parts.push(`${oneLine(doc.header.engine.model, 40)} on ${oneLine(doc.header.engine.provider, 30)}`);
    parts.push(`policy ${oneLine(doc.header.policy, 20)}`, `seed ${doc.header.seed}`);
    if (doc.status.reason) parts.push(oneLine(doc.status.reason, 80));
    return parts.join(" · ");
  }

  private showInfo(input: ControlsInput): void {
    const { doc } = input;
    let text: string;
    if (input.loading) text = "Waiting for the run's document from the kernel…";
    else if (doc.source === "journal") text = "A finished journal: move the slider to see any step; run controls need a live run.";
    else if (!input.kernel) text = "Offline copy: move the slider to see any step; run controls need the notebook's kernel.";
    else if (doc.steps.length === 0) text = "No steps yet: start the run with run.start() or press Run or Step.";
    else if (!input.following) text = "Showing an earlier step: the graph and inspector are as of that step.";
    else text = "";
    const trimmed = doc.trimmed.steps + doc.trimmed.spans;
    if (trimmed > 0) text = `${text}${text ? " " : ""}Older details trimmed: ${doc.trimmed.steps} steps, ${doc.trimmed.spans} spans.`;
    const warnings = input.index >= 0 ? (doc.steps[input.index].warnings ?? []) : [];
    if (warnings.length > 0) {
      const first = warnings.slice(0, 3).map((w) => jsonLine(w, 100)).join("; ");
      text = `${text}${text ? " " : ""}Step ${doc.steps[input.index].t}: ${warnings.length} warning${warnings.length > 1 ? "s" : ""}: ${first}${warnings.length > 3 ? "; …" : ""}`;
    }
    const { dropped } = input;
    if (dropped.steps + dropped.spans > 0) {
      text = `${text}${text ? " " : ""}This view keeps the newest steps and spans: ${dropped.steps} steps and ${dropped.spans} spans dropped.`;
    }
    if (this.notice.getAttribute("data-kind") === "info" && this.notice.textContent === text) return;
    clear(this.notice);
    this.notice.setAttribute("data-kind", "info");
    this.notice.textContent = text;
  }

  private confirm(kind: "rewind" | "fork"): void {
    const input = this.input;
    if (input === null || input.index < 0) return;
    const step = input.doc.steps[input.index].t;
    this.confirming = true;
    clear(this.notice);
    this.notice.setAttribute("data-kind", "confirm");
    const yes = button(kind === "rewind" ? `Rewind to step ${step}` : `Fork at step ${step}`, "wb-btn wb-danger", "");
    yes.setAttribute("data-confirm", kind);
    const no = button("Cancel", "wb-btn", "");
    no.setAttribute("data-cancel", "");
    yes.addEventListener("click", () => {
      this.confirming = false;
      this.notice.setAttribute("data-kind", "info");
      if (kind === "rewind") this.actions.rewind(step);
      else this.actions.fork(step);
      this.update(input);
    });
    no.addEventListener("click", () => {
      this.confirming = false;
      this.notice.setAttribute("data-kind", "info");
      this.update(this.input ?? input);
    });
    const question =
      kind === "rewind"
        ? `Rewind the run to step ${step}? The steps after it are undone.`
        : `Fork a new run from step ${step}? This run stays as it is.`;
    this.notice.append(h("span", {}, question), yes, no);
    this.rewindButton.disabled = true;
    this.forkButton.disabled = true;
  }
}

function button(label: string, className: string, title: string): HTMLButtonElement {
  const node = h("button", { class: className, type: "button" }, label);
  if (title) node.title = title;
  return node;
}
