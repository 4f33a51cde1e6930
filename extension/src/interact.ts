// Wheel zoom, drag pan and click on a pane, with listeners removed by the returned function.

export interface Gestures {
  pan(dx: number, dy: number): void;
  zoom(px: number, py: number, factor: number, event: WheelEvent): void;
  click(px: number, py: number, event: MouseEvent): void;
  hover(px: number, py: number): void;
  leave(): void;
}

/** A press that moves less than this many pixels is a click, not a drag. */
const CLICK_SLOP = 4;

export function attachGestures(el: HTMLElement, gestures: Gestures): () => void {
  let drag: { x: number; y: number; moved: boolean } | null = null;
  const local = (event: MouseEvent): [number, number] => {
    const box = el.getBoundingClientRect();
    return [event.clientX - box.left, event.clientY - box.top];
  };
  const onWheel = (event: WheelEvent): void => {
    event.preventDefault();
    const [px, py] = local(event);
    const delta = event.deltaMode === 1 ? event.deltaY * 16 : event.deltaY;
    gestures.zoom(px, py, Math.exp(-Math.max(-300, Math.min(300, delta)) * 0.0015), event);
  };
  const onDown = (event: MouseEvent): void => {
    // Buttons laid over the pane (Fit, Graph) are not the pane.
    if (event.button !== 0 || (event.target as Element | null)?.closest?.("button, input")) return;
    drag = { x: event.clientX, y: event.clientY, moved: false };
    el.ownerDocument.addEventListener("mousemove", onMove);
    el.ownerDocument.addEventListener("mouseup", onUp);
  };
  const onMove = (event: MouseEvent): void => {
    if (drag === null) return;
    const dx = event.clientX - drag.x;
    const dy = event.clientY - drag.y;
    if (!drag.moved && Math.hypot(dx, dy) < CLICK_SLOP) return;
    if (!drag.moved) el.classList.add("wb-dragging");
    drag.moved = true;
    drag.x = event.clientX;
    drag.y = event.clientY;
    gestures.pan(dx, dy);
  };
  const onUp = (event: MouseEvent): void => {
    el.ownerDocument.removeEventListener("mousemove", onMove);
    el.ownerDocument.removeEventListener("mouseup", onUp);
    el.classList.remove("wb-dragging");
    const wasClick = drag !== null && !drag.moved;
    drag = null;
    if (wasClick) {
      const [px, py] = local(event);
      gestures.click(px, py, event);
    }
  };
  const onHover = (event: MouseEvent): void => {
    if (drag !== null) return;
    const [px, py] = local(event);
    gestures.hover(px, py);
  };
  const onLeave = (): void => gestures.leave();
  el.addEventListener("wheel", onWheel, { passive: false });
  el.addEventListener("mousedown", onDown);
  el.addEventListener("mousemove", onHover);
  el.addEventListener("mouseleave", onLeave);
  return () => {
    el.removeEventListener("wheel", onWheel);
    el.removeEventListener("mousedown", onDown);
    el.removeEventListener("mousemove", onHover);
    el.removeEventListener("mouseleave", onLeave);
    el.ownerDocument.removeEventListener("mousemove", onMove);
    el.ownerDocument.removeEventListener("mouseup", onUp);
  };
}

/** Keeps a canvas's backing store at its CSS size times the device pixel ratio; calls
 * `onResize` when it changed. */
export function watchSize(el: HTMLElement, onResize: () => void): () => void {
  if (typeof ResizeObserver === "undefined") return () => undefined;
  const observer = new ResizeObserver(() => onResize());
  observer.observe(el);
  return () => observer.disconnect();
}

export function sizeCanvas(canvas: HTMLCanvasElement): { w: number; h: number; ratio: number } {
  const ratio = Math.min(3, Math.max(1, window.devicePixelRatio || 1));
  const w = Math.max(1, canvas.clientWidth);
  const h = Math.max(1, canvas.clientHeight);
  const bw = Math.round(w * ratio);
  const bh = Math.round(h * ratio);
  if (canvas.width !== bw) canvas.width = bw;
  if (canvas.height !== bh) canvas.height = bh;
  return { w, h, ratio };
}
