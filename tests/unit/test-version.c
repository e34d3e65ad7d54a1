/* SPDX-License-Identifier: Apache-2.0 */
/* Versions and the compatibility-version rules of FACTS.md, row by row and edge by edge. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "macro.h"
#include "version.h"

static void test_kversion_parse_accepts(void **state) {
        static const struct {
                const char *in, *out;
                uint32_t major, minor, patch;
                bool has_patch;
                const char *suffix;
        } cases[] = {
                { "v1.35.1", "v1.35.1", 1, 35, 1, true, "" },
                { "1.35.1", "v1.35.1", 1, 35, 1, true, "" },
                { "1.35", "v1.35", 1, 35, 0, false, "" },
                { "v1.34.0-rc.1", "v1.34.0-rc.1", 1, 34, 0, true, "-rc.1" },
                { "v1.34.2-eks-1-34", "v1.34.2-eks-1-34", 1, 34, 2, true, "-eks-1-34" },
                { "v1.34.1+k3s1", "v1.34.1+k3s1", 1, 34, 1, true, "+k3s1" },
                { "v0.0.0", "v0.0.0", 0, 0, 0, true, "" },
                { "v1.100.20", "v1.100.20", 1, 100, 20, true, "" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char buf[KVERSION_STRING_MAX];
                kversion v;

                assert_int_equal(kversion_parse(cases[i].in, &v, NULL), 0);
                assert_int_equal(v.major, cases[i].major);
                assert_int_equal(v.minor, cases[i].minor);
                assert_int_equal(v.patch, cases[i].patch);
                assert_int_equal(v.has_patch, cases[i].has_patch);
                assert_string_equal(v.suffix, cases[i].suffix);
                kversion_format(&v, buf);
                assert_string_equal(buf, cases[i].out);
        }
}

static void test_kversion_parse_refuses(void **state) {
        static const char *const bad[] = {
                "", "1", "1.x", "x.1", "1.34 --foo", " 1.34", "1.34 ", "01.34", "1.034", "1.34.01",
                "kube=1.34", "1.34.", "1..34", "v", "vv1.34", "1.34-", "1.34.1-a/b", "1.-1",
                "99999999999.1", "1.4294967296", "1.34.1.2", "V1.34",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_free_ char *error = NULL;
                kversion v;

                if (kversion_parse(bad[i], &v, &error) != -EINVAL)
                        fail_msg("accepted \"%s\"", bad[i]);
                assert_non_null(error);
        }
}

static void test_kversion_cmp(void **state) {
        kversion a, b;

        assert_int_equal(kversion_parse("v1.34.2", &a, NULL), 0);
        assert_int_equal(kversion_parse("v1.35.0", &b, NULL), 0);
        assert_true(kversion_cmp(&a, &b) < 0);
        assert_true(kversion_cmp(&b, &a) > 0);
        assert_int_equal(kversion_parse("1.34.2", &b, NULL), 0);
        assert_int_equal(kversion_cmp(&a, &b), 0);
        assert_int_equal(kversion_parse("v1.34.10", &b, NULL), 0);
        assert_true(kversion_cmp(&a, &b) < 0); /* numeric, not lexical */
}

static void test_flag_parse(void **state) {
        static const struct {
                const char *value;
                uint32_t minor;
                bool has_kube;
        } good[] = {
                { "1.34", 34, true },
                { "v1.34", 34, true },
                { "kube=1.34", 34, true },
                { "kube=v1.33", 33, true },
                { "wardle=1.2,kube=1.33", 33, true },
                { "kube=1.33,wardle=1.2", 33, true },
                { "wardle=1.2", 0, false },
        };
        static const struct {
                const char *value, *needle;
        } bad[] = {
                { "kube=1.34.1", "patch version not allowed, got: kube=1.34.1" },
                { "1.34.1", "patch version not allowed, got: kube=1.34.1" },
                { "", "empty" },
                { "kube=", "not a major.minor" },
                { "=1.34", "empty component" },
                { "kube=1.x", "not a major.minor" },
                { "1.34,", "trailing comma" },
                { "kube=1.34,kube=1.33", "twice" },
                { "1.34 --foo", "not a major.minor" },
        };

        for (size_t i = 0; i < ELEMENTSOF(good); i++) {
                bool has_kube = !good[i].has_kube;
                kminor v = {};

                assert_int_equal(kminor_parse_flag("--emulated-version", good[i].value, &v, &has_kube, NULL), 0);
                assert_int_equal(has_kube, good[i].has_kube);
                if (has_kube) {
                        assert_int_equal(v.major, 1);
                        assert_int_equal(v.minor, good[i].minor);
                }
        }
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_free_ char *error = NULL;
                kminor v;

                assert_int_equal(kminor_parse_flag("--emulated-version", bad[i].value, &v, NULL, &error), -EINVAL);
                if (!strstr(error, bad[i].needle))
                        fail_msg("\"%s\": error \"%s\" lacks \"%s\"", bad[i].value, error, bad[i].needle);
                assert_non_null(strstr(error, "--emulated-version"));
        }
}

/* One row of FACTS.md's "Allowed values" table: binary 1.B accepts emulated [lo, hi] and, when
 * the flag exists, min-compatibility [lo, emulated]. lo == 0: the flag is unknown. */
typedef struct rule_row {
        uint32_t binary, lo, hi;
        bool min_compat_flag;
} rule_row;

static int validate(uint32_t binary, int emulated, int min_compat, char **error) {
        compat_settings s = {
                .binary = KMINOR(1, binary),
                .emulated_set = emulated >= 0,
                .emulated = KMINOR(1, emulated < 0 ? 0 : (uint32_t) emulated),
                .min_compat_set = min_compat >= 0,
                .min_compat = KMINOR(1, min_compat < 0 ? 0 : (uint32_t) min_compat),
        };

        return compat_validate(&s, NULL, NULL, error);
}

static void test_rules_table(void **state) {
        static const rule_row rows[] = {
                { 28, 0, 0, false }, { 29, 0, 0, false }, { 30, 0, 0, false },
                { 31, 31, 31, false }, { 32, 31, 32, false }, { 33, 31, 33, false },
                { 34, 31, 34, false }, { 35, 32, 35, true }, { 36, 33, 36, true },
                { 37, 34, 37, true }, { 40, 37, 40, true },
        };

        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                const rule_row *r = &rows[i];
                _cleanup_free_ char *error = NULL;

                /* No flags at all: every binary starts. */
                assert_int_equal(validate(r->binary, -1, -1, NULL), 0);

                if (r->lo == 0) {
                        assert_int_equal(validate(r->binary, (int) r->binary, -1, &error), -EINVAL);
                        assert_non_null(strstr(error, "unknown flag: --emulated-version"));
                        continue;
                }
                /* Both edges in, one step past each edge out. */
                assert_int_equal(validate(r->binary, (int) r->lo, -1, NULL), 0);
                assert_int_equal(validate(r->binary, (int) r->hi, -1, NULL), 0);
                assert_int_equal(validate(r->binary, (int) r->lo - 1, -1, &error), -EINVAL);
                {
                        char expect[80];

                        snprintf(expect, sizeof(expect), "emulation version 1.%u is not between [1.%u, 1.%u]",
                                 r->lo - 1, r->lo, r->hi);
                        assert_string_equal(error, expect);
                }
                assert_int_equal(validate(r->binary, (int) r->hi + 1, -1, NULL), -EINVAL);

                if (!r->min_compat_flag) {
                        free(error);
                        error = NULL;
                        assert_int_equal(validate(r->binary, -1, (int) r->lo, &error), -EINVAL);
                        assert_non_null(strstr(error, "unknown flag: --min-compatibility-version"));
                        continue;
                }
                /* min-compatibility: [floor, emulated], for the lowest and highest emulated. */
                for (uint32_t e = r->lo; e <= r->hi; e += r->hi - r->lo) {
                        assert_int_equal(validate(r->binary, (int) e, (int) r->lo, NULL), 0);
                        assert_int_equal(validate(r->binary, (int) e, (int) e, NULL), 0);
                        assert_int_equal(validate(r->binary, (int) e, (int) e + 1, NULL), -EINVAL);
                        free(error);
                        error = NULL;
                        assert_int_equal(validate(r->binary, (int) e, (int) r->lo - 1, &error), -EINVAL);
                        assert_non_null(strstr(error, "minCompatibilityVersion version"));
                }
        }
}

static void test_defaults(void **state) {
        static const struct {
                uint32_t binary, emulated, min_compat;
        } cases[] = {
                { 30, 30, 29 }, /* no compatibility versions: one minor back */
                { 31, 31, 30 }, /* fixed */
                { 32, 32, 31 }, { 32, 31, 31 }, /* fixed at 1.31 */
                { 33, 33, 32 }, { 33, 31, 31 }, /* emulated - 1, raised to the floor 1.31 */
                { 34, 34, 33 }, { 34, 32, 31 },
                { 35, 35, 34 }, { 35, 34, 33 }, { 35, 32, 32 }, /* floor 1.32 */
                { 36, 33, 33 },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                kminor e, m;
                compat_settings s = {
                        .binary = KMINOR(1, cases[i].binary),
                        .emulated_set = cases[i].emulated != cases[i].binary,
                        .emulated = KMINOR(1, cases[i].emulated),
                };

                assert_int_equal(compat_validate(&s, &e, &m, NULL), 0);
                assert_int_equal(e.minor, cases[i].emulated);
                if (m.minor != cases[i].min_compat)
                        fail_msg("binary 1.%u emulating 1.%u: default min-compatibility 1.%u, want 1.%u",
                                 cases[i].binary, cases[i].emulated, m.minor, cases[i].min_compat);
        }
}

static void test_forward_compatible(void **state) {
        _cleanup_free_ char *error = NULL;
        compat_settings s = { .binary = KMINOR(1, 35), .forward_compat_set = true };

        /* An error when emulation == binary. */
        assert_int_equal(compat_validate(&s, NULL, NULL, &error), -EINVAL);
        assert_non_null(strstr(error, "emulation-forward-compatible"));
        /* Fine while emulating below. */
        s.emulated_set = true;
        s.emulated = KMINOR(1, 34);
        assert_int_equal(compat_validate(&s, NULL, NULL, NULL), 0);
        /* Unknown before 1.33. */
        s.binary = KMINOR(1, 32);
        s.emulated = KMINOR(1, 31);
        assert_int_equal(compat_validate(&s, NULL, NULL, NULL), -EINVAL);
}

static void test_floor(void **state) {
        assert_int_equal(compat_floor(KMINOR(1, 31)).minor, 31);
        assert_int_equal(compat_floor(KMINOR(1, 32)).minor, 31);
        assert_int_equal(compat_floor(KMINOR(1, 34)).minor, 31);
        assert_int_equal(compat_floor(KMINOR(1, 35)).minor, 32);
        assert_int_equal(compat_floor(KMINOR(1, 50)).minor, 47);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_kversion_parse_accepts),
                cmocka_unit_test(test_kversion_parse_refuses),
                cmocka_unit_test(test_kversion_cmp),
                cmocka_unit_test(test_flag_parse),
                cmocka_unit_test(test_rules_table),
                cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_forward_compatible),
                cmocka_unit_test(test_floor),
        };

        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
