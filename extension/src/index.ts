// The anywidget module of workbench.RunView, and renderDocument for pages without a kernel.
//
//   export default { render({ model, el }) }   anywidget's entry point (docs/views.md)
//   renderDocument(el, doc)                     the same views from a document alone

import { App } from "./app";
import type { FrontMessage } from "./doc";

/** The part of anywidget's model this module uses. */
export interface WidgetModel {
  get(name: "doc"): unknown;
  on(event: string, callback: (...args: unknown[]) => void): void;
  off(event: string, callback: (...args: unknown[]) => void): void;
  send(message: FrontMessage): void;
}

export interface ViewHandle {
  /** Replaces the document shown. */
  setDocument(doc: unknown): void;
  /** Removes the views and their listeners. */
  destroy(): void;
}

/** Renders the views of `doc` (a view document, docs/views.md) into `el` with no kernel: run
 * controls are hidden or disabled; the slider, graph, timeline and inspector work. */
export function renderDocument(el: HTMLElement, doc: unknown): ViewHandle {
  const app = new App(el, null);
  app.setDocValue(doc);
  return { setDocument: (next) => app.setDocValue(next), destroy: () => app.destroy() };
}

function render({ model, el }: { model: WidgetModel; el: HTMLElement }): () => void {
  const app = new App(el, { send: (message) => model.send(message) });
  const onDoc = (): void => {
    app.setDocValue(model.get("doc"));
  };
  const onMessage = (message: unknown): void => app.onMessage(message);
  model.on("change:doc", onDoc);
  model.on("msg:custom", onMessage);
  if (!app.setDocValue(model.get("doc"))) app.hello();
  return () => {
    model.off("change:doc", onDoc);
    model.off("msg:custom", onMessage);
    app.destroy();
  };
}

export default { render };
