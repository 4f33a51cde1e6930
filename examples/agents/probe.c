/* probe: tries to leave the sandbox in every way a C program on wasi-libc can express, and
 * reports what happened. Used by tests/test_wasm_isolation.py; every attempt must fail.
 *
 * Output state: {"checks": {<name>: {"denied": bool, "errno": n, "detail": str}},
 * "printed": n, "clock": {"realtime_ns": n, "monotonic_ns": n}, "entropy": str}. Status "done". Capabilities: random, now (the seeded clock and
 * entropy that WASI's clock_time_get and random_get are served from).
 *
 * What cannot even be written: socket(), connect(), bind(), fork(), execve(), popen() are
 * not declared by wasi-libc (a compile error), and system() is declared but not defined (a
 * link error). See examples/agents/README.md.
 */
#define _GNU_SOURCE /* declares environ */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <wasi/api.h>

#include "agent_json.h"
#include "workbench_agent.h"

#define MAX_FD 64 /* file descriptors scanned for preopened directories */

WB_EXPORT("alloc") uint32_t wb_alloc(uint32_t size) {
    return (uint32_t)(uintptr_t)malloc(size ? size : 1);
}

static int first_check = 1;

/* Appends "name": {"denied": denied, "errno": err, "detail": detail}. */
static void report(json_writer *out, const char *name, int denied, int err, const char *detail) {
    if (!first_check) json_write(out, ",");
    first_check = 0;
    json_write_cstring(out, name);
    json_write(out, ":{\"denied\":");
    json_write(out, denied ? "true" : "false");
    json_write(out, ",\"errno\":");
    json_write_int(out, err);
    json_write(out, ",\"detail\":");
    json_write_cstring(out, detail);
    json_write(out, "}");
}

static void try_fopen(json_writer *out, const char *name, const char *path, const char *mode) {
    errno = 0;
    FILE *f = fopen(path, mode);
    report(out, name, f == NULL, errno, path);
    if (f != NULL) fclose(f);
}

static void try_opendir(json_writer *out, const char *name, const char *path) {
    errno = 0;
    DIR *d = opendir(path);
    report(out, name, d == NULL, errno, path);
    if (d != NULL) closedir(d);
}

static void try_preopens(json_writer *out) {
    int found = 0;
    for (__wasi_fd_t fd = 3; fd < MAX_FD; fd++) {
        __wasi_prestat_t prestat;
        if (__wasi_fd_prestat_get(fd, &prestat) == __WASI_ERRNO_SUCCESS) found++;
    }
    char detail[48];
    snprintf(detail, sizeof detail, "%d preopened directories in fds 3..%d", found, MAX_FD - 1);
    report(out, "preopened_dirs", found == 0, 0, detail);
}

static void try_raw_path_open(json_writer *out) {
    __wasi_fd_t fd;
    __wasi_errno_t err = __wasi_path_open(3, 0, "etc/passwd", 0, __WASI_RIGHTS_FD_READ, 0, 0, &fd);
    report(out, "path_open_fd3", err != __WASI_ERRNO_SUCCESS, err, "path_open(3, \"etc/passwd\")");
}

static void try_accept(json_writer *out, const char *name, int fd) {
    errno = 0;
    int conn = accept(fd, NULL, NULL);
    char detail[24];
    snprintf(detail, sizeof detail, "accept(%d)", fd);
    report(out, name, conn < 0, errno, detail);
    if (conn >= 0) close(conn);
}

static void try_environment(json_writer *out) {
    const char *names[] = {"PATH", "HOME", "USER"};
    int leaked = 0;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) leaked += getenv(names[i]) != NULL;
    report(out, "getenv", leaked == 0, 0, "getenv(PATH|HOME|USER)");
    int count = 0;
    for (char **e = environ; e != NULL && *e != NULL; e++) count++;
    char detail[32];
    snprintf(detail, sizeof detail, "%d variables in environ", count);
    report(out, "environ", count == 0, 0, detail);
}

static void try_args(json_writer *out) {
    __wasi_size_t argc = 0, size = 0;
    __wasi_errno_t err = __wasi_args_sizes_get(&argc, &size);
    char detail[32];
    snprintf(detail, sizeof detail, "%u arguments", (unsigned)argc);
    report(out, "args", argc == 0, err, detail);
}

static void try_stdin(json_writer *out) {
    char buf[16];
    errno = 0;
    ssize_t n = read(0, buf, sizeof buf);
    char detail[32];
    snprintf(detail, sizeof detail, "read(0) returned %d", (int)n);
    report(out, "stdin", n <= 0, errno, detail);
}

/* stdout and stderr are discarded by the host: the write "succeeds" and reaches nobody.
 * Writes "printed": <printf's result>; the test checks the host's own output. */
static void write_print(json_writer *out) {
    int n = printf("workbench-probe: stdout\n");
    fflush(stdout);
    fprintf(stderr, "workbench-probe: stderr\n");
    json_write(out, "\"printed\":");
    json_write_int(out, n);
    json_write(out, ",");
}

static void try_sleep(json_writer *out) {
    struct timespec pause = {0, 1000000};
    errno = 0;
    int rc = nanosleep(&pause, NULL);
    report(out, "sleep", rc != 0, errno, "nanosleep(1 ms)");
}

/* The WASI clocks and entropy must be the seeded host values, not the machine's. */
static void write_clock_and_entropy(json_writer *out) {
    struct timespec realtime, monotonic;
    clock_gettime(CLOCK_REALTIME, &realtime);
    clock_gettime(CLOCK_MONOTONIC, &monotonic);
    json_write(out, "\"clock\":{\"realtime_ns\":");
    json_write_int(out, (long long)realtime.tv_sec * 1000000000LL + realtime.tv_nsec);
    json_write(out, ",\"monotonic_ns\":");
    json_write_int(out, (long long)monotonic.tv_sec * 1000000000LL + monotonic.tv_nsec);
    unsigned char bytes[8];
    uint64_t value = 0;
    int rc = getentropy(bytes, sizeof bytes);
    for (int i = 7; i >= 0; i--) value = value << 8 | bytes[i]; /* little-endian */
    char text[24];
    snprintf(text, sizeof text, "%llu", (unsigned long long)value);
    json_write(out, "},\"entropy\":");
    json_write_cstring(out, rc == 0 ? text : "failed");
}

WB_EXPORT("step") uint64_t wb_step(uint32_t ptr, uint32_t len) {
    (void)ptr;
    (void)len;
    json_writer out = {0};
    json_write(&out, "{\"state\":{\"checks\":{");
    try_fopen(&out, "read_absolute", "/etc/passwd", "r");
    try_fopen(&out, "read_relative", "pyproject.toml", "r");
    try_fopen(&out, "read_parent", "../../../../etc/passwd", "r");
    try_fopen(&out, "write_file", "/tmp/workbench-probe.txt", "w");
    try_opendir(&out, "list_root", "/");
    try_opendir(&out, "list_cwd", ".");
    try_preopens(&out);
    try_raw_path_open(&out);
    try_accept(&out, "accept_fd3", 3);
    try_accept(&out, "accept_stdin", 0);
    try_environment(&out);
    try_args(&out);
    try_stdin(&out);
    try_sleep(&out);
    json_write(&out, "},");
    write_print(&out);
    write_clock_and_entropy(&out);
    json_write(&out, "},\"status\":\"done\"}");
    return json_output(&out);
}
