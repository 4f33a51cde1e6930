/*
 * workbench_agent.h: the workbench agent ABI, version 1, for C guests.
 *
 * The full specification is docs/abi.md. In short: an agent is a core WebAssembly module
 * (wasm32, one exported linear memory) that exports
 *
 *     memory                              its linear memory
 *     alloc(size) -> ptr                  size writable bytes, 0 on failure
 *     step(ptr, len) -> (out_ptr << 32) | out_len
 *     _initialize()                       optional; called once after instantiation
 *
 * and may import, from module "host", only the functions it was granted (capabilities):
 *
 *     infer(ptr, len) -> (res_ptr << 32) | res_len    blocking model call
 *     log(ptr, len)                                   one UTF-8 log line
 *     random() -> u64                                 seeded, reproducible
 *     now() -> u64                                    logical nanoseconds
 *
 * Every payload is UTF-8 JSON. The host writes the step input and every infer result into
 * guest memory through the guest's own `alloc`, so the guest owns all memory. A fresh
 * instance runs every step: keep nothing in globals between steps, put it in "state".
 *
 * Build a reactor (no main) with `workbench build-agent agent.c`, which runs
 *     clang --target=wasm32-wasi -O2 -mexec-model=reactor \
 *           -Wl,--export-if-defined=alloc -Wl,--export-if-defined=step ...
 */
#ifndef WORKBENCH_AGENT_H
#define WORKBENCH_AGENT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WB_ABI_VERSION 1

/* Pack and unpack the (pointer, length) pairs returned by step() and host_infer(). */
#define WB_PACK(ptr, len) ((((uint64_t)(uint32_t)(ptr)) << 32) | (uint64_t)(uint32_t)(len))
#define WB_PTR(packed) ((uint32_t)((uint64_t)(packed) >> 32))
#define WB_LEN(packed) ((uint32_t)((uint64_t)(packed) & 0xffffffffu))

#define WB_IMPORT(name) __attribute__((import_module("host"), import_name(name)))
#define WB_EXPORT(name) __attribute__((export_name(name)))

/*
 * Host imports. Import only what the agent is granted: an import that is not granted is
 * not linked, and instantiation fails with CapabilityError naming it.
 */

/* Run one model request, `req` being UTF-8 JSON of length `len` (at most the host-call
 * payload limit, 1 MiB by default), e.g. {"prompt": "...", "max_tokens": 32} or
 * {"messages": [{"role": "user", "content": "..."}]}. Blocks until the step's inference
 * batch ran. Returns WB_PACK(ptr, len) of the result JSON, which the host wrote into
 * memory obtained from the guest's alloc():
 *     {"text": "...", "tokens": [...], "finish_reason": "stop"|"length"|"error",
 *      "provider": "...", "prompt_tokens": n}
 * or {"error": "..."} when the request was rejected. Returns 0 when alloc() returned 0
 * (out of memory). */
WB_IMPORT("infer") uint64_t host_infer(const char *req, uint32_t len);

/* Journal one log line (UTF-8; invalid bytes are replaced; at most the host-call payload
 * limit). */
WB_IMPORT("log") void host_log(const char *text, uint32_t len);

/* A uniform 64-bit value derived from (run seed, agent, step, call index). */
WB_IMPORT("random") uint64_t host_random(void);

/* Logical time in nanoseconds: step * 1e9 + call index. Not wall-clock time. */
WB_IMPORT("now") uint64_t host_now(void);

/*
 * Guest exports. Define them in exactly one translation unit:
 *
 *     WB_EXPORT("alloc") uint32_t wb_alloc(uint32_t size) { ... return ptr or 0; }
 *     WB_EXPORT("step")  uint64_t wb_step(uint32_t ptr, uint32_t len) {
 *         ... parse the input JSON at ptr/len, build the output JSON ...
 *         return WB_PACK(out, out_len);
 *     }
 *
 * Input JSON:  {"agent": str, "step": int, "state": any,
 *               "inbox": [{"from": str, "seq": int, "step": int, "to": str,
 *                          "payload": any}, ...]}
 * Output JSON: {"state": any, "outbox": [{"to": str, "payload": any}, ...],
 *               "status": "ready" | "idle" | "done"}
 * ("outbox" defaults to [], "status" to "ready"; no other keys.)
 */
uint32_t wb_alloc(uint32_t size);
uint64_t wb_step(uint32_t ptr, uint32_t len);

#ifdef __cplusplus
}
#endif

#endif /* WORKBENCH_AGENT_H */
