/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* What the libFuzzer targets share. A broken invariant calls fuzz_fail(), which aborts: libFuzzer
 * then saves the input as a crash artifact. */

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define fuzz_fail(...)                                                         \
        do {                                                                   \
                fprintf(stderr, "%s:%d: invariant broken: ", __FILE__, __LINE__); \
                fprintf(stderr, __VA_ARGS__);                                  \
                fputc('\n', stderr);                                           \
                abort();                                                       \
        } while (0)

#define fuzz_assert(cond, ...)                  \
        do {                                    \
                if (!(cond))                    \
                        fuzz_fail(__VA_ARGS__); \
        } while (0)

/* The input as a C string (the parsers of command-line values see one). NULL when it holds a
 * NUL byte: no argv item can. */
static inline char *fuzz_strndup(const uint8_t *data, size_t size) {
        if (memchr(data, 0, size))
                return NULL;
        char *s = malloc(size + 1);
        if (!s)
                abort();
        memcpy(s, data, size);
        s[size] = 0;
        return s;
}

/* A refusal must say why, and name the input the way the caller named it. */
static inline void fuzz_check_error(int r, const char *error, const char *name) {
        if (r == -ENOMEM)
                return;
        fuzz_assert(error, "refused (%d) without a message", r);
        if (name)
                fuzz_assert(strncmp(error, name, strlen(name)) == 0, "message does not start with \"%s\": %s", name,
                            error);
}
