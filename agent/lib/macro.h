/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Small helpers shared by the whole library, in systemd's spirit
 * (src/fundamental/cleanup-fundamental.h). */

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _warn_unused_result_ __attribute__((warn_unused_result))

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))

/* Hands ownership out of a _cleanup_ variable. */
#define TAKE_PTR(p)                                                                                        \
        ({                                                                                                 \
                __typeof__(p) _ptr_ = (p);                                                                 \
                (p) = NULL;                                                                                \
                _ptr_;                                                                                     \
        })

#define TAKE_FD(fd)                                                                                        \
        ({                                                                                                 \
                int _fd_ = (fd);                                                                           \
                (fd) = -EBADF;                                                                             \
                _fd_;                                                                                      \
        })

static inline void freep(void *p) {
        free(*(void **) p);
}
#define _cleanup_free_ _cleanup_(freep)

static inline void closep(int *fd) {
        if (*fd >= 0)
                close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

static inline void fclosep(FILE **f) {
        if (*f)
                fclose(*f);
}
#define _cleanup_fclose_ _cleanup_(fclosep)

static inline void strv_free(char **l) {
        if (!l)
                return;
        for (char **i = l; *i; i++)
                free(*i);
        free(l);
}
static inline void strv_freep(char ***l) {
        strv_free(*l);
}
#define _cleanup_strv_free_ _cleanup_(strv_freep)

/* jansson ships json_auto_t and json_decrefp() for _cleanup_(json_decrefp). */

#define streq(a, b) (strcmp((a), (b)) == 0)
#define strneq(a, b, n) (strncmp((a), (b), (n)) == 0)

/* Sets *ret_error (when non-NULL) to a newly formatted message and returns r (a negative errno).
 * Library functions use it to hand a sentence up to the CLI, which prints it once. */
int set_error(char **ret_error, int r, const char *fmt, ...) _printf_(3, 4);

/* Formats into a newly allocated string; NULL on OOM. */
char *strdup_printf(const char *fmt, ...) _printf_(1, 2);
char *strdup_vprintf(const char *fmt, va_list ap) _printf_(1, 0);

/* True when s starts with prefix; returns the rest or NULL. */
const char *startswith(const char *s, const char *prefix);

/* CLOCK_MONOTONIC in microseconds. */
uint64_t now_usec(void);
/* The wall-clock time as RFC 3339 in UTC ("2026-11-28T08:00:00Z"). */
void now_rfc3339(char buf[static 32]);
/* 64 random bits from getrandom(), or from the clock when it cannot give them without blocking
 * (for jitter and unique names, never for secrets). */
uint64_t random_u64(void);

/* Parses a duration as Kubernetes users write them: "0s", "30s", "5m", "1m30s", "500ms",
 * "1h". A bare number is refused (seconds or milliseconds? say which). */
int parse_duration(const char *s, uint64_t *ret_usec);
