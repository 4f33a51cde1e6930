// The front-end measurements of benchmarks/views.py, run in the harness page
// (scripts/views_harness.py): window.viewsBench.deltas and window.viewsBench.pan.

window.viewsBench = {
  // Sends deltas at `hz` for `ms` (one step and `spansPerDelta` spans each), counting frames and
  // each delta's lag to the DOM (the step label showing the new step).
  deltas: async ([hz, ms, spansPerDelta]) => {
    const stats = harness.stats();
    const model = harness.model;
    const doc = model.doc;
    const names = doc.header.agents.map((a) => a.name);
    const label = document.querySelector('[data-step-label]');
    let seq = doc.seq, t = doc.steps[doc.steps.length - 1].t, time = doc.steps[doc.steps.length - 1].time;
    const lags = [];
    let pending = null;
    const observer = new MutationObserver(() => {
        if (pending !== null && label.textContent.startsWith(`step ${pending.t} `)) {
            lags.push(performance.now() - pending.at);
            pending = null;
        }
    });
    observer.observe(label, { childList: true, characterData: true, subtree: true });
    let frames = 0, running = true;
    const count = () => { frames++; if (running) requestAnimationFrame(count); };
    requestAnimationFrame(count);
    const started = performance.now();
    const statuses = ["ready", "idle", "ready", "done"];
    while (performance.now() - started < ms) {
        t += 1; seq += 1; time += 0.25;
        const ran = names.filter((_, i) => i % 10 === t % 10).slice(0, 100);
        const results = {};
        for (const n of ran) {
            results[n] = { status: statuses[t % 4], fault: null, state: { t }, out: [{ to: names[0], seq: t, payload: { t } }],
                logs: [], infer: [], tokens: t, requests: t, fuel: 1000, memory: 65536, trimmed: false };
        }
        const spans = [];
        for (let i = 0; i < spansPerDelta; i++) {
            const t0 = time - 0.25 + (0.25 * i) / spansPerDelta;
            spans.push({ lane: names[(t + i) % names.length], kind: "decode", t0, t1: t0 + 0.02, step: t,
                agent: names[(t + i) % names.length], batch: 0, provider: "CPUExecutionProvider", tokens: 5, fallback: false });
        }
        const delta = { type: "delta", seq, steps: [{ t, time, ran, sends: [], results, warnings: [] }], spans,
            status: { state: "running", step: t, reason: null }, live: { running: ran.slice(0, 3), waiting: [], streaming: {} } };
        pending = { t, at: performance.now() };
        model.custom(delta);
        await new Promise((resolve) => setTimeout(resolve, 1000 / hz));
    }
    running = false;
    observer.disconnect();
    const elapsed = performance.now() - started;
    return { fps: (frames * 1000) / elapsed, lags, deltas: seq - doc.seq, hellos: stats.hellos };
},

  // Zooms the timeline to a quarter, then drags it one move per frame for `ms`.
  pan: async (ms) => {
    const body = document.querySelector('.wb-timeline-body');
    const box = body.getBoundingClientRect();
    const x = box.left + box.width * 0.6, y = box.top + 40;
    for (let i = 0; i < 4; i++) body.dispatchEvent(new WheelEvent('wheel', { deltaY: -300, clientX: x, clientY: y, bubbles: true, cancelable: true }));
    await harness.frame();
    const stats = harness.stats().timeline;
    const draws0 = stats.draws;
    body.dispatchEvent(new MouseEvent('mousedown', { button: 0, clientX: x, clientY: y, bubbles: true }));
    let frames = 0, px = x, dir = -1;
    const intervals = [];
    let last = performance.now();
    const started = last;
    await new Promise((resolve) => {
        const tick = () => {
            const now = performance.now();
            intervals.push(now - last); last = now;
            frames++;
            px += dir * 6;
            if (px < box.left + 200 || px > box.right - 50) dir = -dir;
            document.dispatchEvent(new MouseEvent('mousemove', { clientX: px, clientY: y, bubbles: true }));
            if (now - started < ms) requestAnimationFrame(tick); else resolve();
        };
        requestAnimationFrame(tick);
    });
    document.dispatchEvent(new MouseEvent('mouseup', { button: 0, clientX: px, clientY: y, bubbles: true }));
    const elapsed = performance.now() - started;
    intervals.sort((a, b) => a - b);
    return { fps: (frames * 1000) / elapsed, draws: ((stats.draws - draws0) * 1000) / elapsed,
             p95Frame: intervals[Math.floor(intervals.length * 0.95)], drawMs: stats.lastDrawMs, spansDrawn: stats.spansDrawn };
},
};
