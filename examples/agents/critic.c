/* critic: asks the model to critique every draft it receives and sends the critique on.
 *
 * A message payload {"draft": "..."} (or a plain string) becomes one infer() request; the
 * reply {"critique": <model text>, "draft": <the draft>, "finish_reason": ...} goes to
 * state.forward_to if set, else back to the sender. A rejected request ({"error": ...})
 * is logged and forwarded as {"error": ...}. Drafts are asked one after another; each
 * request joins the batch of every other agent blocked in infer at that moment.
 * State: {"reviewed": n, "forward_to": name?}. Capabilities: infer, log.
 *
 *   workbench build-agent examples/agents/critic.c
 */
#include <stdlib.h>

#include "agent_json.h"
#include "workbench_agent.h"

#define MAX_TOKENS 48

WB_EXPORT("alloc") uint32_t wb_alloc(uint32_t size) {
    return (uint32_t)(uintptr_t)malloc(size ? size : 1); /* NULL (0) when out of memory */
}

/* Asks the model about one draft; returns the parsed result, or NULL if none came back. */
static json_value *ask_model(const char *draft) {
    json_writer req = {0};
    json_write(&req, "{\"messages\":[{\"role\":\"system\",\"content\":");
    json_write_cstring(&req, "You are a terse critic. Name the main weakness in one sentence.");
    json_write(&req, "},{\"role\":\"user\",\"content\":");
    json_writer ask = {0};
    json_write(&ask, "Here is a short text: \"");
    json_write(&ask, draft);
    json_write(&ask, "\" In one sentence, what should the writer improve?");
    json_write_string(&req, ask.data ? ask.data : "", ask.failed ? 0 : ask.len);
    json_write(&req, "}],\"max_tokens\":");
    json_write_int(&req, MAX_TOKENS);
    json_write(&req, "}");
    if (req.failed) return NULL;
    uint64_t packed = host_infer(req.data, (uint32_t)req.len);
    if (packed == 0) return NULL;
    return json_parse((const char *)(uintptr_t)WB_PTR(packed), WB_LEN(packed));
}

static void write_critique(json_writer *out, const char *draft, const json_value *result) {
    const char *error = result ? json_string(json_get(result, "error"), NULL) : "no result";
    if (error != NULL) {
        host_log(error, (uint32_t)strlen(error));
        json_write(out, "{\"error\":");
        json_write_cstring(out, error);
        json_write(out, "}");
        return;
    }
    json_write(out, "{\"critique\":");
    json_write_cstring(out, json_string(json_get(result, "text"), ""));
    json_write(out, ",\"draft\":");
    json_write_cstring(out, draft);
    json_write(out, ",\"finish_reason\":");
    json_write_value(out, json_get(result, "finish_reason"));
    json_write(out, "}");
}

WB_EXPORT("step") uint64_t wb_step(uint32_t ptr, uint32_t len) {
    json_value *input = json_input(ptr, len);
    json_value *state = json_get(input, "state");
    json_value *inbox = json_get(input, "inbox");
    const char *forward_to = json_string(json_get(state, "forward_to"), NULL);
    long long reviewed = (long long)json_number(json_get(state, "reviewed"), 0);

    json_writer out = {0};
    json_write(&out, "{\"outbox\":[");
    for (json_value *m = inbox ? inbox->first : NULL; m != NULL; m = m->next) {
        json_value *payload = json_get(m, "payload");
        const char *draft = json_string(json_get(payload, "draft"), json_string(payload, ""));
        if (m != inbox->first) json_write(&out, ",");
        json_write(&out, "{\"to\":");
        json_write_cstring(&out, forward_to ? forward_to : json_string(json_get(m, "from"), "@user"));
        json_write(&out, ",\"payload\":");
        write_critique(&out, draft, ask_model(draft));
        json_write(&out, "}");
        reviewed++;
    }
    json_write(&out, "],\"state\":{\"reviewed\":");
    json_write_int(&out, reviewed);
    if (forward_to != NULL) {
        json_write(&out, ",\"forward_to\":");
        json_write_cstring(&out, forward_to);
    }
    json_write(&out, "},\"status\":\"idle\"}");
    return json_output(&out);
}
