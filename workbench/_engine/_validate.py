"""Open untrusted model files in a child process with a time limit.

A malformed or hostile ``.onnx`` or ``.gguf`` must never take the kernel down, so the parsing
(protobuf, GGUF), ORT session creation, a one-token smoke run and the GGUF conversion all run
in a :class:`Validator` child. The child answers one JSON line per job; if it dies (a crash in
native code, the memory limit) or overruns the time limit, the job fails with
:class:`~workbench.errors.ModelLoadError` and the next job gets a fresh child. One child serves
many jobs (start-up, about a second, is paid once).

ONNX checks, in order: external-data locations must stay inside the model's folder (no
absolute paths, no ``..``, no symlinks out); the graph must have ``input_ids``,
``attention_mask`` and matching ``past_key_values.{i}.key|value`` / ``present.{i}.key|value``
and ``logits`` (a symbolic KV head size is read from the folder's config, see
``_model.kv_cache_dims``); ORT must build a CPU session; one token must run.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

from workbench._engine._model import kv_cache_dims
from workbench.errors import ModelLoadError

__all__ = ["DEFAULT_MEMORY_BYTES", "DEFAULT_TIMEOUT_S", "Validator", "check_onnx_file"]

DEFAULT_TIMEOUT_S = 120.0
DEFAULT_MEMORY_BYTES = 8 << 30  # address-space limit of the child
MAX_REPLY_BYTES = 1 << 20
PAST = "past_key_values."


class Validator:
    """A restartable child process that checks or converts one model file per job.

    Use as a context manager; :meth:`close` is idempotent. Jobs run one at a time.
    """

    def __init__(self, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                 memory_bytes: int = DEFAULT_MEMORY_BYTES, show_progress: bool = False,
                 command: list[str] | None = None) -> None:
        self.timeout_s = timeout_s
        self.memory_bytes = memory_bytes
        self.show_progress = show_progress  # the child draws conversion bars on our stderr
        self.command = command or [sys.executable, "-m", "workbench._engine._validate"]
        self._proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def check_onnx(self, path: Path) -> dict[str, Any]:
        """I/O summary of a decoder ONNX model (``layers``, ``kv_heads``, ``head_dim``, ...)."""
        return self._job({"op": "onnx", "path": str(path)}, str(path))

    def convert_gguf(self, path: Path, folder: Path, variant: str,
                     model_id: str, sha256: str) -> dict[str, Any]:
        """Convert ``path`` into ``folder`` in the child; then smoke-run the result there."""
        return self._job({"op": "gguf", "path": str(path), "folder": str(folder),
                          "variant": variant, "model_id": model_id, "sha256": sha256,
                          "progress": self.show_progress}, str(path))

    def _job(self, job: dict[str, Any], source: str) -> dict[str, Any]:
        proc = self._ensure()
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(json.dumps(job).encode() + b"\n")
            proc.stdin.flush()
            line = _read_line(proc.stdout, self.timeout_s)
        except (BrokenPipeError, TimeoutError, OSError) as exc:
            reason = self._kill_reason(proc, exc)
            raise ModelLoadError(source, reason) from None
        if not line:
            raise ModelLoadError(source, self._kill_reason(proc, None))
        try:
            reply: dict[str, Any] = json.loads(line)
        except ValueError:
            raise ModelLoadError(source, self._kill_reason(proc, None)) from None
        if not reply.get("ok"):
            raise ModelLoadError(source, str(reply.get("reason", "unknown failure")))
        info: dict[str, Any] = reply.get("info", {})
        return info

    def _kill_reason(self, proc: subprocess.Popen[bytes], exc: BaseException | None) -> str:
        if proc.poll() is None:
            proc.kill()
        code = proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):  # unflushed bytes to a dead child
                    stream.close()
        self._proc = None
        self.restarts += 1
        if isinstance(exc, TimeoutError):
            return f"loading took longer than {self.timeout_s:g} s and was stopped"
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals.__members__.values() \
                else str(-code)
            return f"the file crashed the model loader ({name}); it is malformed or hostile"
        return f"the model loader exited with code {code} (out of memory or malformed file)"

    def _ensure(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            env = {k: v for k, v in os.environ.items() if k != "PYTHONSTARTUP"}
            env["WORKBENCH_VALIDATOR_MEMORY"] = str(self.memory_bytes)
            env["OMP_NUM_THREADS"] = "1"
            self._proc = subprocess.Popen(
                self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=None if self.show_progress else subprocess.DEVNULL, env=env)
        return self._proc

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()

    def __enter__(self) -> Validator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_line(stream: IO[bytes], timeout_s: float) -> bytes:
    """One reply line, or TimeoutError; b"" when the child died."""
    deadline = time.monotonic() + timeout_s
    buf = b""
    fd = stream.fileno()
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError
        chunk = os.read(fd, 65536)
        if not chunk:
            return b""
        buf += chunk
        if len(buf) > MAX_REPLY_BYTES:
            raise OSError("reply too long")
    return buf


# --- the child ------------------------------------------------------------------------------


def check_onnx_file(path: Path) -> dict[str, Any]:
    """Run the ONNX checks in THIS process (the child calls it). Raises ModelLoadError."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelLoadError(str(path), f"not a readable ONNX file ({exc})") from exc
    _check_external_data(model, path.parent)
    info = _io_summary(model, path)
    _smoke_run(path, info)
    return info


def _graphs(graph: Any) -> Any:
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _graphs(attr.g)
            for sub in attr.graphs:
                yield from _graphs(sub)


def _check_external_data(model: Any, folder: Path) -> None:
    root = folder.resolve()
    for graph in _graphs(model.graph):
        tensors = list(graph.initializer) + [s.values for s in graph.sparse_initializer]
        for tensor in tensors:
            if tensor.data_location != 1:  # TensorProto.EXTERNAL
                continue
            entries = {e.key: e.value for e in tensor.external_data}
            location = entries.get("location", "")
            target = (root / location).resolve()
            if not location or Path(location).is_absolute() or not target.is_relative_to(root):
                raise ModelLoadError(str(folder), f"tensor {tensor.name!r} points at external "
                                     f"data {location!r} outside the model folder; refused")


def _dims(value_info: Any) -> list[int | str]:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]


def _io_summary(model: Any, path: Path) -> dict[str, Any]:
    inputs = {v.name: v for v in model.graph.input}
    outputs = {v.name for v in model.graph.output}
    missing = [n for n in ("input_ids", "attention_mask") if n not in inputs]
    if missing or "logits" not in outputs:
        raise ModelLoadError(str(path), f"not a decoder model: needs inputs input_ids and "
                             f"attention_mask and output logits (missing {missing or 'logits'})")
    layers = sum(1 for n in inputs if n.startswith(PAST) and n.endswith(".key"))
    for i in range(layers):
        for part in ("key", "value"):
            if f"{PAST}{i}.{part}" not in inputs or f"present.{i}.{part}" not in outputs:
                raise ModelLoadError(str(path), f"KV cache input/output pair {i}.{part} missing")
    if layers == 0:
        raise ModelLoadError(str(path), "no past_key_values.{i}.key inputs: the decode loop "
                                        "needs a model exported with a KV cache")
    kv_heads, head_dim = kv_cache_dims(_dims(inputs[f"{PAST}0.key"]), path)
    elem = inputs[f"{PAST}0.key"].type.tensor_type.elem_type
    return {"layers": layers, "kv_heads": kv_heads, "head_dim": head_dim,
            "position_ids": "position_ids" in inputs, "kv_dtype": int(elem),
            "vocab": None}  # filled in by the smoke run


def _smoke_run(path: Path, info: dict[str, Any]) -> None:
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 4
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        dtype = np.float16 if info["kv_dtype"] == 10 else np.float32
        feeds: dict[str, Any] = {"input_ids": np.zeros((1, 1), np.int64),
                                 "attention_mask": np.ones((1, 1), np.int64)}
        if info["position_ids"]:
            feeds["position_ids"] = np.zeros((1, 1), np.int64)
        empty = np.zeros((1, info["kv_heads"], 0, info["head_dim"]), dtype)
        for i in range(info["layers"]):
            feeds[f"{PAST}{i}.key"] = feeds[f"{PAST}{i}.value"] = empty
        logits = session.run(["logits"], feeds)[0]
    except Exception as exc:
        raise ModelLoadError(str(path), f"onnxruntime cannot run it ({_first_line(exc)})") \
            from exc
    if logits.ndim != 3 or logits.shape[:2] != (1, 1):
        raise ModelLoadError(str(path), f"logits have shape {logits.shape}, expected [1, 1, V]")
    info["vocab"] = int(logits.shape[-1])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:500]


def _onnx_job(job: dict[str, Any]) -> dict[str, Any]:
    return check_onnx_file(Path(job["path"]))


def _convert_job(job: dict[str, Any]) -> dict[str, Any]:
    from workbench._engine._convert import convert_gguf

    files = convert_gguf(Path(job["path"]), Path(job["folder"]), variant=job["variant"],
                         model_id=job["model_id"], source_sha256=job["sha256"],
                         progress=bool(job.get("progress")))
    _smoke_run(files.onnx_path, check_onnx_info(files.onnx_path))
    return {"model_hash": files.model_hash}


def check_onnx_info(path: Path) -> dict[str, Any]:
    import onnx

    return _io_summary(onnx.load(str(path), load_external_data=False), path)


def _serve() -> None:
    import resource

    limit = int(os.environ.get("WORKBENCH_VALIDATOR_MEMORY", DEFAULT_MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    # Native code (ORT, protobuf) may print to fd 1: keep a private copy for the replies and
    # point fd 1 at /dev/null.
    out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    for raw in sys.stdin.buffer:
        job = json.loads(raw)
        try:
            run = _onnx_job if job["op"] == "onnx" else _convert_job
            info = run(job)
            reply: dict[str, Any] = {"ok": True, "info": info}
        except ModelLoadError as exc:
            reply = {"ok": False, "reason": exc.reason}
        except (Exception, MemoryError) as exc:
            reply = {"ok": False, "reason": f"{type(exc).__name__}: {_first_line(exc)}"}
        out.write(json.dumps(reply).encode() + b"\n")
        out.flush()


if __name__ == "__main__":
    _serve()
