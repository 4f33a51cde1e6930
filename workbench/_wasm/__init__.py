"""Sandboxed WebAssembly agents: ABI v1, the wasmtime sandbox and the worker pool."""
