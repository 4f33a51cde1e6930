/* agent_json.h: a small JSON reader and writer for C agents (header-only, C11).
 *
 * Reading: json_parse() turns the step input into a tree of json_value. Each value keeps
 * its source text (raw, raw_len), so a payload can be forwarded verbatim.
 * Writing: a json_writer is a growing buffer; json_write_string() escapes, the rest append.
 * ABI glue: json_input() reads the step input at (ptr, len); json_output() packs the
 * written text as step()'s return value (0, a malformed_output fault, if malloc failed).
 *
 * Memory comes from malloc and is never freed: every step runs in a fresh instance.
 * Limits: nesting deeper than JSON_MAX_DEPTH is refused (json_parse returns NULL).
 */
#ifndef AGENT_JSON_H
#define AGENT_JSON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 64

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_kind;

typedef struct json_value {
    json_kind kind;
    int boolean;               /* JSON_BOOL */
    double number;             /* JSON_NUMBER */
    char *string;              /* JSON_STRING: unescaped UTF-8, NUL-terminated */
    size_t length;             /* bytes of string, or number of items/members */
    char *key;                 /* member name, when this value is inside an object */
    struct json_value *first;  /* first item/member of an array/object */
    struct json_value *next;   /* next sibling */
    const char *raw;           /* the value's JSON text in the input */
    size_t raw_len;
} json_value;

/* --- reading ------------------------------------------------------------------------- */

typedef struct { const char *at, *end; } json_reader;

static inline json_value *json__value(json_reader *r, int depth);

static inline void json__space(json_reader *r) {
    while (r->at < r->end && (*r->at == ' ' || *r->at == '\n' || *r->at == '\r' || *r->at == '\t'))
        r->at++;
}

static inline int json__literal(json_reader *r, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(r->end - r->at) < n || memcmp(r->at, word, n) != 0) return 0;
    r->at += n;
    return 1;
}

static inline int json__hex4(const char *s, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

static inline size_t json__utf8(unsigned cp, char *out) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) { out[0] = (char)(0xC0 | cp >> 6); out[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12); out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F)); return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18); out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); out[3] = (char)(0x80 | (cp & 0x3F)); return 4;
}

/* Reads a string starting at the opening quote; returns its unescaped copy or NULL. */
static inline char *json__string(json_reader *r, size_t *length) {
    const char *end = ++r->at;
    while (end < r->end && *end != '"') end += (*end == '\\') ? 2 : 1;
    if (end >= r->end) return NULL;
    char *out = malloc((size_t)(end - r->at) + 1), *w = out;
    if (out == NULL) return NULL;
    while (r->at < end) {
        char c = *r->at++;
        if (c != '\\') { *w++ = c; continue; }
        c = *r->at++;
        if (c == 'n') *w++ = '\n';
        else if (c == 't') *w++ = '\t';
        else if (c == 'r') *w++ = '\r';
        else if (c == 'b') *w++ = '\b';
        else if (c == 'f') *w++ = '\f';
        else if (c != 'u') *w++ = c; /* \" \\ \/ */
        else {
            unsigned cp, low;
            if (end - r->at < 4 || !json__hex4(r->at, &cp)) return NULL;
            r->at += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && end - r->at >= 6 && r->at[0] == '\\'
                && r->at[1] == 'u' && json__hex4(r->at + 2, &low) && low >= 0xDC00 && low < 0xE000) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                r->at += 6;
            }
            w += json__utf8(cp, w); /* 6 escaped bytes never need more than 4 */
        }
    }
    r->at = end + 1;
    *w = '\0';
    *length = (size_t)(w - out);
    return out;
}

/* Reads the items of an array or the members of an object, up to the closing bracket. */
static inline int json__items(json_reader *r, json_value *v, int depth, char close) {
    json_value **tail = &v->first;
    r->at++;
    json__space(r);
    if (r->at < r->end && *r->at == close) { r->at++; return 1; }
    for (;;) {
        char *key = NULL;
        size_t key_len;
        json__space(r);
        if (close == '}') {
            if (r->at >= r->end || *r->at != '"' || !(key = json__string(r, &key_len))) return 0;
            json__space(r);
            if (r->at >= r->end || *r->at++ != ':') return 0;
        }
        json_value *item = json__value(r, depth + 1);
        if (item == NULL) return 0;
        item->key = key;
        *tail = item;
        tail = &item->next;
        v->length++;
        json__space(r);
        if (r->at < r->end && *r->at == ',') { r->at++; continue; }
        if (r->at < r->end && *r->at == close) { r->at++; return 1; }
        return 0;
    }
}

static inline json_value *json__value(json_reader *r, int depth) {
    json__space(r);
    if (depth > JSON_MAX_DEPTH || r->at >= r->end) return NULL;
    json_value *v = calloc(1, sizeof *v);
    if (v == NULL) return NULL;
    v->raw = r->at;
    char c = *r->at;
    int ok = 1;
    if (c == '{') { v->kind = JSON_OBJECT; ok = json__items(r, v, depth, '}'); }
    else if (c == '[') { v->kind = JSON_ARRAY; ok = json__items(r, v, depth, ']'); }
    else if (c == '"') { v->kind = JSON_STRING; ok = (v->string = json__string(r, &v->length)) != NULL; }
    else if (json__literal(r, "true")) { v->kind = JSON_BOOL; v->boolean = 1; }
    else if (json__literal(r, "false")) { v->kind = JSON_BOOL; }
    else if (json__literal(r, "null")) { v->kind = JSON_NULL; }
    else {
        char number[64], *stop;
        size_t n = 0;
        while (r->at + n < r->end && n < sizeof number - 1 && strchr("0123456789+-.eE", r->at[n]))
            n++;
        memcpy(number, r->at, n);
        number[n] = '\0';
        v->kind = JSON_NUMBER;
        v->number = strtod(number, &stop);
        ok = n > 0 && stop == number + n;
        r->at += n;
    }
    v->raw_len = (size_t)(r->at - v->raw);
    return ok ? v : NULL;
}

/* Parses len bytes of JSON text; NULL when it is malformed or nested too deeply. */
static inline json_value *json_parse(const char *text, size_t len) {
    json_reader r = {text, text + len};
    json_value *v = json__value(&r, 0);
    json__space(&r);
    return (v != NULL && r.at == r.end) ? v : NULL;
}

/* The member `key` of an object; NULL when absent or when obj is not an object. */
static inline json_value *json_get(const json_value *obj, const char *key) {
    if (obj == NULL || obj->kind != JSON_OBJECT) return NULL;
    for (json_value *m = obj->first; m != NULL; m = m->next)
        if (strcmp(m->key, key) == 0) return m;
    return NULL;
}

static inline const char *json_string(const json_value *v, const char *fallback) {
    return (v != NULL && v->kind == JSON_STRING) ? v->string : fallback;
}

static inline double json_number(const json_value *v, double fallback) {
    return (v != NULL && v->kind == JSON_NUMBER) ? v->number : fallback;
}

/* --- writing ------------------------------------------------------------------------- */

typedef struct {
    char *data;
    size_t len, cap;
    int failed; /* set when malloc failed; the text is then truncated */
} json_writer;

static inline void json_write_raw(json_writer *w, const char *text, size_t n) {
    if (w->failed) return;
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (cap < w->len + n) cap *= 2;
        char *grown = realloc(w->data, cap);
        if (grown == NULL) { w->failed = 1; return; }
        w->data = grown;
        w->cap = cap;
    }
    memcpy(w->data + w->len, text, n);
    w->len += n;
}

static inline void json_write(json_writer *w, const char *text) { json_write_raw(w, text, strlen(text)); }

static inline void json_write_int(json_writer *w, long long n) {
    char digits[24];
    json_write_raw(w, digits, (size_t)snprintf(digits, sizeof digits, "%lld", n));
}

/* Writes s (n bytes of UTF-8) as a quoted, escaped JSON string. */
static inline void json_write_string(json_writer *w, const char *s, size_t n) {
    json_write_raw(w, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '"' || c == '\\') { esc[0] = '\\'; esc[1] = (char)c; json_write_raw(w, esc, 2); }
        else if (c == '\n') json_write_raw(w, "\\n", 2);
        else if (c < 0x20) json_write_raw(w, esc, (size_t)snprintf(esc, sizeof esc, "\\u%04x", c));
        else json_write_raw(w, (const char *)&c, 1);
    }
    json_write_raw(w, "\"", 1);
}

static inline void json_write_cstring(json_writer *w, const char *s) { json_write_string(w, s, strlen(s)); }

/* Writes a parsed value back out exactly as it was received. */
static inline void json_write_value(json_writer *w, const json_value *v) {
    if (v == NULL) json_write_raw(w, "null", 4);
    else json_write_raw(w, v->raw, v->raw_len);
}

/* --- ABI v1 glue -------------------------------------------------------------------- */

/* The step input at (ptr, len) in this module's memory; NULL if it is not JSON. */
static inline json_value *json_input(uint32_t ptr, uint32_t len) {
    return json_parse((const char *)(uintptr_t)ptr, len);
}

/* The packed (pointer << 32) | length that step() returns for the written text. */
static inline uint64_t json_output(const json_writer *w) {
    if (w->failed || w->data == NULL) return 0;
    return ((uint64_t)(uintptr_t)w->data << 32) | (uint64_t)(uint32_t)w->len;
}

#endif /* AGENT_JSON_H */
