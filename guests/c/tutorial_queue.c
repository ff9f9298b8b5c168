/*
 * Section 3 of the tutorial in C: `tutorial_queue writer QUEUE` puts 'A'..'D' with pauses,
 * `tutorial_queue reader QUEUE` prints each message until the host closes the queue and it
 * is drained. Plain wasi-libc + wasmp.h, built as a WASI preview-1 command:
 *
 *     clang --target=wasm32-wasi -O2 -I guests/c guests/c/tutorial_queue.c -o tutorial_queue.wasm
 *     wasmp run --queue q tutorial_queue.wasm writer q
 *
 * Exit codes: 0 done, 1 a queue call failed (the message says which), 2 bad arguments.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "wasmp.h"

static int writer(const char *queue) {
    printf("write start... (pid %u, host %u)\n", wasmp_getpid(), wasmp_getppid());
    const char *values[] = {"A", "B", "C", "D"};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        wasmp_status status = wasmp_put(queue, values[i], strlen(values[i]));
        if (status != WASMP_OK) {
            fprintf(stderr, "put %s on %s: %s\n", values[i], queue, wasmp_status_str(status));
            return 1;
        }
        struct timespec pause = {0, 200 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    printf("write end...\n");
    return 0;
}

static int reader(const char *queue) {
    char *name = wasmp_process_name();
    printf("read start... (%s)\n", name);
    free(name);
    for (;;) {
        uint8_t *msg;
        size_t len;
        wasmp_status status = wasmp_get(queue, -1, &msg, &len);
        if (status == WASMP_CLOSED) break;
        if (status != WASMP_OK) {
            fprintf(stderr, "get from %s: %s\n", queue, wasmp_status_str(status));
            return 1;
        }
        printf("read value %.*s\n", (int)len, (const char *)msg);
        free(msg);
    }
    printf("read end...\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "writer") == 0) return writer(argv[2]);
    if (argc == 3 && strcmp(argv[1], "reader") == 0) return reader(argv[2]);
    fprintf(stderr, "usage: tutorial_queue writer|reader QUEUE\n");
    return 2;
}
