"""The notebook views' costs: the front end alone, the kernel side (benchmarks/views_kernel.py)
and end to end in JupyterLab (benchmarks/views_lab.py).

Front end: the bundle (workbench/static/views.js) in headless Chromium on
synthetic view documents of 16 and 1,000 agents and 1,000 and 10,000 timeline spans:

- frames per second while deltas arrive (DELTA_HZ per second, each one step and SPANS_PER_DELTA
  spans), and while the timeline is panned (zoomed to a quarter, one drag move per frame);
- the lag from a delta's arrival (the custom message handed to the view) to its appearance in
  the DOM (a MutationObserver sees the step label show the new step), p50 and p95;
- the graph layout time (dagre) and the graph's mode (SVG or canvas);
- one timeline frame's drawing time while panning and for the whole run in view.

Run with `python benchmarks/views.py`; needs Playwright and Debian's `chromium` package. The
figures depend on the machine: headless Chromium without a GPU draws canvases in software.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.views_harness import views_page

DELTA_HZ = 20
SPANS_PER_DELTA = 10
AGENT_COUNTS = (16, 1000)
SPAN_COUNTS = (1000, 10000)


def synthetic_doc(agents: int, spans: int, steps: int = 40) -> dict[str, Any]:
    """A view document: a tree of channels, `steps` steps where a tenth of the agents (at most
    100) run, and `spans` timeline spans spread over the agents' lanes and the engine lane."""
    names = [f"agent-{i:04d}" for i in range(agents)]
    channels = [[names[(i - 1) // 4], names[i]] for i in range(1, agents)]
    step_list = []
    for t in range(steps):
        ran = [n for i, n in enumerate(names) if i % 10 == t % 10][:100]
        results = {n: result(n, names, t) for n in ran}
        step_list.append({"t": t, "time": (t + 1) * 0.25, "ran": ran, "sends": [],
                          "results": results, "warnings": []})
    span_list = []
    kinds = ("queue", "prefill", "decode")
    duration = steps * 0.25
    for i in range(spans):
        t0 = duration * i / spans
        lane = "engine" if i % 4 == 0 else names[i % agents]
        span_list.append({"lane": lane, "kind": kinds[i % 3], "t0": t0,
                          "t1": t0 + duration / spans * 3, "step": int(t0 / 0.25),
                          "agent": names[i % agents], "batch": (i // 8) % 4,
                          "provider": "CPUExecutionProvider", "tokens": 12, "fallback": False})
    return {"format": 1, "seq": 1, "source": "live", "title": f"{agents} agents",
            "clock": "measured",
            "header": {"seed": 0, "policy": "parallel", "max_batch": 8,
                       "engine": {"model": "synthetic", "provider": "CPUExecutionProvider"},
                       "agents": [{"name": n, "kind": "wasm", "caps": ["infer"], "fuel": 10**6,
                                   "memory": 1 << 20, "state": 0} for n in names],
                       "channels": channels},
            "steps": step_list, "spans": span_list,
            "status": {"state": "running", "step": steps - 1, "reason": None},
            "live": {"running": [], "waiting": [], "streaming": {}},
            "trimmed": {"steps": 0, "spans": 0}}


def result(name: str, names: list[str], t: int) -> dict[str, Any]:
    parent = names[(names.index(name) - 1) // 4] if name != names[0] else names[0]
    return {"status": "ready", "fault": None, "state": {"t": t}, "out": [
        {"to": parent, "seq": t, "payload": {"n": t}}], "logs": [], "infer": [], "tokens": 10 * t,
        "requests": t, "fuel": 1000 + t, "memory": 65536, "trimmed": False}


MEASURE_JS = Path(__file__).with_name("views_measure.js")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure_front_end(page: Any, agents: int, spans: int, seconds: float) -> dict[str, Any]:
    """Mounts a synthetic document and measures it (see the module's docstring)."""
    doc = synthetic_doc(agents, spans)
    page.evaluate("(doc) => harness.mount(doc)", doc)
    page.wait_for_function("() => harness.stats().timeline.spansDrawn > 0")
    page.evaluate("() => harness.frame()")
    graph = page.evaluate("() => harness.stats().graph")
    full = page.evaluate("() => harness.stats().timeline")
    page.add_script_tag(content=MEASURE_JS.read_text())
    deltas = page.evaluate("(args) => viewsBench.deltas(args)",
                           [DELTA_HZ, seconds * 1000, SPANS_PER_DELTA])
    pan = page.evaluate("(ms) => viewsBench.pan(ms)", seconds * 1000)
    page.evaluate("() => harness.unmount()")
    return {
        "agents": agents, "spans": spans, "graph": graph["mode"], "layout_ms": graph["layoutMs"],
        "fps_deltas": deltas["fps"], "lag_p50": statistics.median(deltas["lags"]),
        "lag_p95": percentile(deltas["lags"], 0.95), "deltas": deltas["deltas"],
        "lags": len(deltas["lags"]), "hellos": deltas["hellos"], "fps_pan": pan["fps"],
        "draws_pan": pan["draws"], "frame_p95": pan["p95Frame"], "draw_ms": pan["drawMs"],
        "full_draw_ms": full["lastDrawMs"], "full_spans": full["spansDrawn"],
    }


def front_end_rows(seconds: float) -> list[dict[str, Any]]:
    rows = []
    with views_page() as page:
        for agents in AGENT_COUNTS:
            for spans in SPAN_COUNTS:
                rows.append(measure_front_end(page, agents, spans, seconds))
        if page.errors:
            raise RuntimeError(f"the page raised: {page.errors}")
    return rows


def print_front_end(rows: list[dict[str, Any]]) -> None:
    print(f"front end, headless Chromium, {DELTA_HZ} deltas/s of one step and "
          f"{SPANS_PER_DELTA} spans each")
    print(f"{'agents':>6} {'spans':>6} {'graph':>6} {'layout':>8} {'fps deltas':>10} "
          f"{'lag p50':>8} {'lag p95':>8} {'fps pan':>8} {'draws/s':>8} {'frame p95':>9} "
          f"{'draw':>7} {'full draw':>10}")
    for r in rows:
        print(f"{r['agents']:>6} {r['spans']:>6} {r['graph']:>6} {r['layout_ms']:>6.0f}ms "
              f"{r['fps_deltas']:>10.1f} {r['lag_p50']:>6.1f}ms {r['lag_p95']:>6.1f}ms "
              f"{r['fps_pan']:>8.1f} {r['draws_pan']:>8.1f} {r['frame_p95']:>7.1f}ms "
              f"{r['draw_ms']:>5.1f}ms {r['full_draw_ms']:>8.1f}ms")
        if r["lags"] < r["deltas"] * 0.9 or r["hellos"]:
            print(f"       (only {r['lags']} of {r['deltas']} deltas were timed; "
                  f"{r['hellos']} hello)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="how long each measurement runs (deltas, then panning)")
    parser.add_argument("--pairs", type=int, default=3,
                        help="alternating runs without and with a view (kernel side)")
    parser.add_argument("--no-main-job", action="store_true",
                        help="skip the main job (it needs the default model)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import views_kernel
    import views_lab

    print_front_end(front_end_rows(args.seconds))
    print()
    views_kernel.print_kernel(views_kernel.kernel_figures(pairs=args.pairs,
                                                          main_job=not args.no_main_job))
    print()
    views_lab.print_lab(views_lab.measure(60, 15, 0.1))


if __name__ == "__main__":
    main()
