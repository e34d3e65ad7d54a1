/* SPDX-License-Identifier: Apache-2.0 */
/* Versions and flag values: kversion/kminor parse -> format -> parse round trips, the value
 * parser of --emulated-version / --min-compatibility-version, durations, and the rules'
 * results staying inside the ranges FACTS.md gives. */
#include <errno.h>
#include <stdbool.h>

#include "fuzz.h"
#include "macro.h"
#include "version.h"

static void check_kversion(const char *s) {
        char *error = NULL, buf[KVERSION_STRING_MAX], buf2[KVERSION_STRING_MAX];
        kversion v, w;
        int r;

        r = kversion_parse(s, &v, &error);
        if (r < 0) {
                fuzz_check_error(r, error, NULL);
                free(error);
                return;
        }
        kversion_format(&v, buf);
        /* Numbers have no leading zeros and the suffix is kept: the format is the input with 'v'. */
        fuzz_assert(streq(buf, s) || (s[0] != 'v' && buf[0] == 'v' && streq(buf + 1, s)),
                    "kversion \"%s\" formats as \"%s\"", s, buf);
        r = kversion_parse(buf, &w, &error);
        fuzz_assert(r >= 0, "formatted kversion \"%s\" does not parse: %s", buf, error);
        fuzz_assert(kversion_cmp(&v, &w) == 0 && v.has_patch == w.has_patch && streq(v.suffix, w.suffix),
                    "kversion \"%s\" changed through format + parse", s);
        kversion_format(&w, buf2);
        fuzz_assert(streq(buf, buf2), "kversion format not stable: \"%s\" then \"%s\"", buf, buf2);
}

static void check_kminor(const char *s) {
        char *error = NULL, buf[KMINOR_STRING_MAX];
        kminor m, n;
        int r;

        r = kminor_parse(s, &m, &error);
        if (r < 0) {
                fuzz_check_error(r, error, NULL);
                free(error);
                return;
        }
        kminor_format(m, buf);
        fuzz_assert(streq(buf, s[0] == 'v' ? s + 1 : s), "kminor \"%s\" formats as \"%s\"", s, buf);
        r = kminor_parse(buf, &n, &error);
        fuzz_assert(r >= 0 && kminor_eq(m, n), "kminor \"%s\" changed through format + parse", s);
}

static void check_flag(const char *flag, const char *s, const kversion *binary, uint8_t bits) {
        char *error = NULL, buf[KMINOR_STRING_MAX], kube[KMINOR_STRING_MAX + 8];
        bool has_kube = false, has_kube2 = false;
        kminor m, n;
        int r;

        r = kminor_parse_flag(flag, s, &m, &has_kube, &error);
        if (r < 0) {
                fuzz_check_error(r, error, NULL);
                fuzz_assert(strstr(error, flag) || strstr(error, "patch version not allowed"),
                            "message does not name %s: %s", flag, error);
                free(error);
                return;
        }
        if (!has_kube)
                return;
        kminor_format(m, buf);
        r = kminor_parse_flag(flag, buf, &n, &has_kube2, &error);
        fuzz_assert(r >= 0 && has_kube2 && kminor_eq(m, n), "%s=%s: \"%s\" does not parse back", flag, s, buf);
        snprintf(kube, sizeof(kube), "kube=%s", buf);
        r = kminor_parse_flag(flag, kube, &n, &has_kube2, &error);
        fuzz_assert(r >= 0 && has_kube2 && kminor_eq(m, n), "%s=%s: \"%s\" does not parse back", flag, s, kube);

        if (binary) {
                compat_settings cs = {
                        .binary = kversion_minor(binary),
                        .emulated_set = bits & 1,
                        .emulated = m,
                        .min_compat_set = bits & 2,
                        .min_compat = (bits & 4) ? kminor_add(m, -1) : m,
                        .forward_compat_set = bits & 8,
                };
                kminor e, mc;

                r = compat_validate(&cs, &e, &mc, &error);
                if (r < 0) {
                        fuzz_check_error(r, error, NULL);
                        free(error);
                        return;
                }
                /* What the binary accepts (FACTS.md): the flags exist since 1.31, emulated in
                 * [floor, binary], min-compatibility in [floor, emulated]. */
                fuzz_assert(kminor_cmp(cs.binary, KMINOR_EMULATED_FLAG_SINCE) >= 0 || (!cs.emulated_set && !cs.min_compat_set),
                            "binary %u.%u accepted a compatibility flag", cs.binary.major, cs.binary.minor);
                fuzz_assert(kminor_cmp(cs.binary, KMINOR_MIN_COMPAT_FLAG_SINCE) >= 0 || !cs.min_compat_set,
                            "binary %u.%u accepted --min-compatibility-version", cs.binary.major, cs.binary.minor);
                if (kminor_cmp(cs.binary, KMINOR(1, 33)) >= 0) {
                        kminor floor = compat_floor(cs.binary);

                        fuzz_assert(kminor_cmp(e, floor) >= 0 && kminor_cmp(e, cs.binary) <= 0,
                                    "emulated %u.%u outside [floor, binary %u.%u]", e.major, e.minor, cs.binary.major,
                                    cs.binary.minor);
                        fuzz_assert(kminor_cmp(mc, floor) >= 0 && kminor_cmp(mc, e) <= 0,
                                    "min-compatibility %u.%u outside [floor, emulated %u.%u]", mc.major, mc.minor,
                                    e.major, e.minor);
                }
        }
}

static void check_duration(const char *s) {
        uint64_t usec;

        if (parse_duration(s, &usec) >= 0)
                fuzz_assert(usec <= 7ULL * 24 * 3600 * 1000000ULL, "duration \"%s\" is %llu us", s,
                            (unsigned long long) usec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        kversion binary;
        bool have_binary;
        uint8_t bits = 0;
        char *s, *second;

        /* First byte: which compatibility flags are set; the rest: "BINARY VALUE" or one value. */
        if (size > 0) {
                bits = data[0];
                data++;
                size--;
        }
        s = fuzz_strndup(data, size);
        if (!s)
                return 0;

        check_kversion(s);
        check_kminor(s);
        check_flag("--emulated-version", s, NULL, 0);
        check_flag("--min-compatibility-version", s, NULL, 0);
        check_duration(s);

        second = strchr(s, ' ');
        if (second) {
                *second++ = 0;
                have_binary = kversion_parse(s, &binary, NULL) >= 0;
                check_flag("--emulated-version", second, have_binary ? &binary : NULL, bits);
        }
        free(s);
        return 0;
}
