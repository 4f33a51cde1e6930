/* counter: counts its steps and echoes every message back, stamped with host time and a
 * seeded random nonce. Stops (status "done") after state.limit steps (default 3).
 *
 * State: {"count": n, "limit": m}. For each message it replies to the sender with
 * {"echo": <payload as received>, "count": n, "nonce": <random u64>, "at": <now ns>}.
 * random() and now() are pure functions of (run seed, agent, step, call index), so the
 * replies are identical on every replay. Capabilities: random, now.
 *
 *   workbench build-agent examples/agents/counter.c
 */
#include <stdlib.h>

#include "agent_json.h"
#include "workbench_agent.h"

WB_EXPORT("alloc") uint32_t wb_alloc(uint32_t size) {
    return (uint32_t)(uintptr_t)malloc(size ? size : 1); /* NULL (0) when out of memory */
}

WB_EXPORT("step") uint64_t wb_step(uint32_t ptr, uint32_t len) {
    json_value *input = json_input(ptr, len);
    json_value *state = json_get(input, "state");
    json_value *inbox = json_get(input, "inbox");
    long long count = (long long)json_number(json_get(state, "count"), 0) + 1;
    long long limit = (long long)json_number(json_get(state, "limit"), 3);

    json_writer out = {0};
    json_write(&out, "{\"state\":{\"count\":");
    json_write_int(&out, count);
    json_write(&out, ",\"limit\":");
    json_write_int(&out, limit);
    json_write(&out, "},\"outbox\":[");
    for (json_value *m = inbox ? inbox->first : NULL; m != NULL; m = m->next) {
        char nonce[24];
        snprintf(nonce, sizeof nonce, "%llu", (unsigned long long)host_random());
        if (m != inbox->first) json_write(&out, ",");
        json_write(&out, "{\"to\":");
        json_write_cstring(&out, json_string(json_get(m, "from"), "@user"));
        json_write(&out, ",\"payload\":{\"echo\":");
        json_write_value(&out, json_get(m, "payload"));
        json_write(&out, ",\"count\":");
        json_write_int(&out, count);
        json_write(&out, ",\"nonce\":");
        json_write_cstring(&out, nonce); /* a string: JSON numbers lose bits above 2^53 */
        json_write(&out, ",\"at\":");
        json_write_int(&out, (long long)host_now());
        json_write(&out, "}}");
    }
    json_write(&out, "],\"status\":");
    json_write(&out, count >= limit ? "\"done\"}" : "\"ready\"}");
    return json_output(&out);
}
