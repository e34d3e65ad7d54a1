/* SPDX-License-Identifier: Apache-2.0 */
#include <stdarg.h>
#include <time.h>
#include <string.h>
#include <sys/random.h>

#include "macro.h"

int set_error(char **ret_error, int r, const char *fmt, ...) {
        if (ret_error) {
                va_list ap;
                char *s;

                /* Formatted before the old message is freed: it may be one of the arguments. */
                va_start(ap, fmt);
                s = strdup_vprintf(fmt, ap);
                va_end(ap);
                free(*ret_error);
                *ret_error = s;
        }
        return r;
}

char *strdup_vprintf(const char *fmt, va_list ap) {
        char *s;

        return vasprintf(&s, fmt, ap) < 0 ? NULL : s;
}

char *strdup_printf(const char *fmt, ...) {
        va_list ap;
        char *s;

        va_start(ap, fmt);
        s = strdup_vprintf(fmt, ap);
        va_end(ap);
        return s;
}

const char *startswith(const char *s, const char *prefix) {
        size_t l = strlen(prefix);

        return strncmp(s, prefix, l) == 0 ? s + l : NULL;
}

int parse_duration(const char *s, uint64_t *ret_usec) {
        static const struct {
                const char *unit;
                uint64_t usec;
        } units[] = {
                { "ms", 1000ULL }, { "h", 3600ULL * 1000000ULL }, { "m", 60ULL * 1000000ULL }, { "s", 1000000ULL },
        };
        uint64_t total = 0;
        const char *p = s;

        if (!s || !*s)
                return -EINVAL;
        while (*p) {
                uint64_t n = 0;
                size_t k;
                bool matched = false;

                if (*p < '0' || *p > '9')
                        return -EINVAL;
                for (; *p >= '0' && *p <= '9'; p++) {
                        n = n * 10 + (uint64_t) (*p - '0');
                        if (n > 1000000000ULL)
                                return -ERANGE;
                }
                for (k = 0; k < ELEMENTSOF(units); k++)
                        if (startswith(p, units[k].unit)) {
                                total += n * units[k].usec;
                                p += strlen(units[k].unit);
                                matched = true;
                                break;
                        }
                if (!matched)
                        return -EINVAL;
                if (total > 7ULL * 24 * 3600 * 1000000ULL)
                        return -ERANGE;
        }
        *ret_usec = total;
        return 0;
}

uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
}

uint64_t random_u64(void) {
        uint64_t v = 0;

        if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != sizeof(v))
                v = now_usec() * 6364136223846793005ULL;
        return v;
}

void now_rfc3339(char buf[static 32]) {
        time_t t = time(NULL);
        struct tm tm;

        gmtime_r(&t, &tm);
        strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
