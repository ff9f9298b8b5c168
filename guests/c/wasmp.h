/*
 * wasmp.h — the wasmp guest contract (wit/worker.wit) for C programs built with wasi-libc.
 *
 * Header-only. Build a worker as an ordinary WASI preview-1 command:
 *
 *     clang --target=wasm32-wasi -O2 -I guests/c worker.c -o worker.wasm
 *     wasmp run --queue jobs worker.wasm
 *
 * The raw imports below follow the component model's canonical ABI for the
 * `wasmp:worker/{process,queue}@0.1.0` interfaces; wasmp embeds the matching WIT types when
 * it adapts the module into a component, so no bindings generator is needed. The wrappers
 * (`wasmp_put`, `wasmp_get`, …) are the API to use. Functions the host *invokes*
 * (`--invoke`, Pool tasks) need typed exports: generate them with `wit-bindgen c`.
 */
#ifndef WASMP_H
#define WASMP_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* What a queue call ended with. `WASMP_OK` is 0; the others mirror `queue-error`. */
typedef enum wasmp_status {
    WASMP_OK = 0,
    WASMP_CLOSED,    /* the queue is closed (and, for getters, drained) */
    WASMP_TIMEOUT,   /* the deadline passed */
    WASMP_FULL,      /* full, and the call may not wait (try-put) */
    WASMP_TOO_LARGE, /* the message is over the host's limit */
    WASMP_UNKNOWN,   /* no queue of this name was granted to this worker */
} wasmp_status;

/* ---- raw imports (canonical ABI) ------------------------------------------------------ */

#define WASMP_IMPORT(iface, name) \
    __attribute__((import_module("wasmp:worker/" iface "@0.1.0"), import_name(name)))

WASMP_IMPORT("process", "pid") extern uint32_t wasmp_raw_pid(void);
WASMP_IMPORT("process", "ppid") extern uint32_t wasmp_raw_ppid(void);
WASMP_IMPORT("process", "name") extern void wasmp_raw_name(uint8_t *ret);
WASMP_IMPORT("queue", "put")
extern void wasmp_raw_put(const char *q, size_t qlen, const uint8_t *m, size_t mlen, uint8_t *ret);
WASMP_IMPORT("queue", "try-put")
extern void wasmp_raw_try_put(const char *q, size_t qlen, const uint8_t *m, size_t mlen,
                              uint8_t *ret);
WASMP_IMPORT("queue", "get")
extern void wasmp_raw_get(const char *q, size_t qlen, int32_t has_timeout, int64_t timeout_ms,
                          uint8_t *ret);
WASMP_IMPORT("queue", "close") extern void wasmp_raw_close(const char *q, size_t qlen, uint8_t *ret);
WASMP_IMPORT("queue", "len") extern void wasmp_raw_len(const char *q, size_t qlen, uint8_t *ret);

/*
 * The host allocates returned lists and strings in guest memory through this export;
 * the wrappers hand them to the caller, who frees them with free().
 */
__attribute__((weak, export_name("cabi_realloc"))) void *
cabi_realloc(void *ptr, size_t old_size, size_t align, size_t new_size) {
    (void)old_size;
    if (new_size == 0) return (void *)align;
    void *grown = realloc(ptr, new_size);
    if (!grown) abort();
    return grown;
}

/*
 * Every queue call returns `result<T, queue-error>` through a 24-byte, 8-aligned area:
 * byte 0 is 0 for ok and 1 for an error; an error's case is the byte at offset 8 and its
 * payload (the size limit, or the unknown name) is at offset 16.
 */
typedef struct { _Alignas(8) uint8_t bytes[24]; } wasmp_ret;

static inline uint32_t wasmp_u32_at(const wasmp_ret *r, size_t at) {
    uint32_t v;
    memcpy(&v, r->bytes + at, sizeof v);
    return v;
}

static inline wasmp_status wasmp_status_of(const wasmp_ret *r) {
    if (r->bytes[0] == 0) return WASMP_OK;
    uint8_t error = r->bytes[8];
    if (error == 4) free((void *)(uintptr_t)wasmp_u32_at(r, 16)); /* unknown(name) */
    return (wasmp_status)(error + 1);
}

/* ---- the API ---------------------------------------------------------------------------- */

/* This worker's OS process id, and its host's: Python's os.getpid() / os.getppid(). */
static inline uint32_t wasmp_getpid(void) { return wasmp_raw_pid(); }
static inline uint32_t wasmp_getppid(void) { return wasmp_raw_ppid(); }

/* The name the host gave this worker, NUL-terminated; free() it. */
static inline char *wasmp_process_name(void) {
    wasmp_ret r;
    wasmp_raw_name(r.bytes);
    uint32_t ptr = wasmp_u32_at(&r, 0), len = wasmp_u32_at(&r, 4);
    char *name = malloc(len + 1);
    if (!name) abort();
    memcpy(name, (const void *)(uintptr_t)ptr, len);
    name[len] = '\0';
    free((void *)(uintptr_t)ptr);
    return name;
}

/* Appends a message to `queue`; blocks while the queue is full. */
static inline wasmp_status wasmp_put(const char *queue, const void *msg, size_t len) {
    wasmp_ret r;
    wasmp_raw_put(queue, strlen(queue), msg, len, r.bytes);
    return wasmp_status_of(&r);
}

/* Appends a message or answers WASMP_FULL at once. */
static inline wasmp_status wasmp_try_put(const char *queue, const void *msg, size_t len) {
    wasmp_ret r;
    wasmp_raw_try_put(queue, strlen(queue), msg, len, r.bytes);
    return wasmp_status_of(&r);
}

/* Takes the oldest message: blocks until one arrives, `timeout_ms` passes (a negative
 * value waits without limit), or the queue is closed and drained (WASMP_CLOSED). On
 * WASMP_OK, `*msg` (free() it) and `*len` hold the message. */
static inline wasmp_status wasmp_get(const char *queue, int64_t timeout_ms, uint8_t **msg,
                                     size_t *len) {
    wasmp_ret r;
    wasmp_raw_get(queue, strlen(queue), timeout_ms >= 0, timeout_ms < 0 ? 0 : timeout_ms,
                  r.bytes);
    wasmp_status status = wasmp_status_of(&r);
    if (status == WASMP_OK) {
        *msg = (uint8_t *)(uintptr_t)wasmp_u32_at(&r, 8);
        *len = wasmp_u32_at(&r, 12);
    }
    return status;
}

/* Closes the queue: no more puts; getters drain what is left, then see WASMP_CLOSED. */
static inline wasmp_status wasmp_close(const char *queue) {
    wasmp_ret r;
    wasmp_raw_close(queue, strlen(queue), r.bytes);
    return wasmp_status_of(&r);
}

/* How many messages wait in the queue. */
static inline wasmp_status wasmp_len(const char *queue, uint64_t *len) {
    wasmp_ret r;
    wasmp_raw_len(queue, strlen(queue), r.bytes);
    wasmp_status status = wasmp_status_of(&r);
    if (status == WASMP_OK) memcpy(len, r.bytes + 8, sizeof *len);
    return status;
}

/* A short English name for a status, for messages. */
static inline const char *wasmp_status_str(wasmp_status status) {
    static const char *const names[] = {"ok", "closed", "timeout", "full", "too large",
                                        "unknown queue"};
    return status <= WASMP_UNKNOWN ? names[status] : "?";
}

#endif /* WASMP_H */
