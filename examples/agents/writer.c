/* writer: drafts a short text on a topic, sends it to a critic, revises on each critique.
 *
 * A message {"topic": "..."} (from the user) starts a draft; a critique
 * {"critique": "...", "draft": "..."} (from the critic) asks for a revision. Each draft
 * or revision is one infer() request and goes to state.critic as {"draft": <text>}.
 * After state.rounds revisions the writer logs its final text and is done.
 * State: {"critic": name, "rounds": n, "round": i, "topic": "...", "final": "..."}.
 * Capabilities: infer, log.
 *
 *   workbench build-agent examples/agents/writer.c
 */
#include <stdlib.h>

#include "agent_json.h"
#include "workbench_agent.h"

#define MAX_TOKENS 40

WB_EXPORT("alloc") uint32_t wb_alloc(uint32_t size) {
    return (uint32_t)(uintptr_t)malloc(size ? size : 1); /* NULL (0) when out of memory */
}

/* One chat request: a fixed system prompt and `ask` as the user turn. */
static const char *ask_model(const char *ask) {
    json_writer req = {0};
    json_write(&req, "{\"messages\":[{\"role\":\"system\",\"content\":");
    json_write_cstring(&req, "You are a concise writer. Answer with at most two sentences.");
    json_write(&req, "},{\"role\":\"user\",\"content\":");
    json_write_cstring(&req, ask);
    json_write(&req, "}],\"max_tokens\":");
    json_write_int(&req, MAX_TOKENS);
    json_write(&req, "}");
    if (req.failed) return NULL;
    uint64_t packed = host_infer(req.data, (uint32_t)req.len);
    if (packed == 0) return NULL;
    json_value *result = json_parse((const char *)(uintptr_t)WB_PTR(packed), WB_LEN(packed));
    return json_string(json_get(result, "text"), NULL);
}

/* The user turn: a first draft on the topic, or a revision answering a critique. */
static const char *prompt_for(const char *topic, const json_value *payload) {
    json_writer ask = {0};
    const char *critique = json_string(json_get(payload, "critique"), NULL);
    if (critique == NULL) {
        json_write(&ask, "Write about: ");
        json_write(&ask, topic);
    } else {
        json_write(&ask, "Text: \"");
        json_write(&ask, json_string(json_get(payload, "draft"), ""));
        json_write(&ask, "\"\nEditor's advice: \"");
        json_write(&ask, critique);
        json_write(&ask, "\"\nWrite a better two-sentence version of the text about ");
        json_write(&ask, topic);
        json_write(&ask, ".");
    }
    json_write_raw(&ask, "", 1); /* NUL-terminate */
    return ask.failed ? "" : ask.data;
}

WB_EXPORT("step") uint64_t wb_step(uint32_t ptr, uint32_t len) {
    json_value *input = json_input(ptr, len);
    json_value *state = json_get(input, "state");
    json_value *inbox = json_get(input, "inbox");
    const char *critic = json_string(json_get(state, "critic"), "critic");
    const char *topic = json_string(json_get(state, "topic"), "");
    const char *final = json_string(json_get(state, "final"), "");
    long long rounds = (long long)json_number(json_get(state, "rounds"), 2);
    long long round = (long long)json_number(json_get(state, "round"), 0);
    int done = 0;

    json_writer out = {0};
    json_write(&out, "{\"outbox\":[");
    int first = 1;
    for (json_value *m = inbox ? inbox->first : NULL; m != NULL && !done; m = m->next) {
        json_value *payload = json_get(m, "payload");
        const char *new_topic = json_string(json_get(payload, "topic"), NULL);
        if (new_topic != NULL) topic = new_topic;
        const char *text = ask_model(prompt_for(topic, payload));
        if (text == NULL) text = "";
        final = text;
        if (round >= rounds) {
            host_log(text, (uint32_t)strlen(text));
            done = 1;
            break;
        }
        if (!first) json_write(&out, ",");
        first = 0;
        json_write(&out, "{\"to\":");
        json_write_cstring(&out, critic);
        json_write(&out, ",\"payload\":{\"draft\":");
        json_write_cstring(&out, text);
        json_write(&out, "}}");
        round++;
    }
    json_write(&out, "],\"state\":{\"critic\":");
    json_write_cstring(&out, critic);
    json_write(&out, ",\"rounds\":");
    json_write_int(&out, rounds);
    json_write(&out, ",\"round\":");
    json_write_int(&out, round);
    json_write(&out, ",\"topic\":");
    json_write_cstring(&out, topic);
    json_write(&out, ",\"final\":");
    json_write_cstring(&out, final);
    json_write(&out, done ? "},\"status\":\"done\"}" : "},\"status\":\"idle\"}");
    return json_output(&out);
}
