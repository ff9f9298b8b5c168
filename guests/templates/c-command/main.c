/*
 * A wasmp worker in C: a WASI command that takes every message of the queue `jobs` and
 * puts an answer on `results`. The host owns both queues and grants them by name; the loop
 * ends when the host closes `jobs` and it is drained (`--stdin-to-queue` closes it at the
 * end of its input). wasmp.h (vendored beside this file) is the guest contract for C.
 *
 * Exit codes: 0 done, 1 a queue call failed (the message says which).
 */
#include <ctype.h>
#include <stdio.h>

#include "wasmp.h"

int main(void) {
    char *name = wasmp_process_name();
    fprintf(stderr, "%s started (pid %u, host pid %u)\n", name, wasmp_getpid(), wasmp_getppid());
    unsigned done = 0;
    for (;;) {
        uint8_t *job;
        size_t len;
        wasmp_status status = wasmp_get("jobs", -1, &job, &len); /* -1: no time limit */
        if (status == WASMP_CLOSED) break;                     /* closed and drained */
        if (status != WASMP_OK) {
            fprintf(stderr, "get from jobs: %s\n", wasmp_status_str(status));
            return 1;
        }
        for (size_t i = 0; i < len; i++) job[i] = (uint8_t)toupper(job[i]);
        status = wasmp_put("results", job, len);
        free(job);
        if (status != WASMP_OK) {
            fprintf(stderr, "put on results: %s\n", wasmp_status_str(status));
            return 1;
        }
        done++;
    }
    fprintf(stderr, "%s done: %u jobs\n", name, done);
    free(name);
    return 0;
}
