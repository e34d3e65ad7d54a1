/* SPDX-License-Identifier: Apache-2.0 */
/* The cplet.io/target annotation: what a controller may ask, and every hostile value refused
 * with a message that names the field. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "macro.h"
#include "target.h"

static const char *const components[] = { "kube-apiserver", "kube-controller-manager", "kube-scheduler", NULL };
static const char *const repositories[] = { "registry.k8s.io", "localhost:5000/k8s", NULL };
static const target_limits limits = { .known_components = components, .allowed_repositories = repositories };

static int parse(const char *text, target **ret, char **ret_error) {
        return target_parse(text, strlen(text), &limits, ret, ret_error);
}

static void test_full_target(void **state) {
        _cleanup_(target_freep) target *t = NULL;
        _cleanup_free_ char *error = NULL;

        assert_int_equal(parse("{\"id\": \"up-135\", \"generation\": 3, \"binaryVersion\": \"v1.35.0\", "
                               "\"emulatedVersion\": \"1.34\", \"minCompatibilityVersion\": \"1.33\", "
                               "\"components\": [\"kube-apiserver\"], \"imageRepository\": \"registry.k8s.io\", "
                               "\"onFailure\": \"stop\", \"stableFor\": \"5s\", \"stepTimeout\": \"2m\", "
                               "\"dropRemoved\": [\"cloud-provider\", \"InTreePluginvSphereUnregister\"]}",
                               &t, &error),
                         0);
        assert_string_equal(t->id, "up-135");
        assert_int_equal(t->generation, 3);
        assert_string_equal(t->binary_version, "v1.35.0");
        assert_string_equal(t->emulated_version, "1.34");
        assert_string_equal(t->min_compat_version, "1.33");
        assert_string_equal(t->components[0], "kube-apiserver");
        assert_null(t->components[1]);
        assert_string_equal(t->image_repository, "registry.k8s.io");
        assert_true(t->on_failure_stop);
        assert_string_equal(t->stable_for, "5s");
        assert_string_equal(t->step_timeout, "2m");
        assert_string_equal(t->drop_removed[0], "cloud-provider");
        assert_string_equal(t->drop_removed[1], "InTreePluginvSphereUnregister");
        assert_null(t->drop_removed[2]);
}

static void test_minimal_target(void **state) {
        _cleanup_(target_freep) target *t = NULL;
        _cleanup_free_ char *error = NULL;

        assert_int_equal(parse("{\"id\":\"a\",\"generation\":1,\"binaryVersion\":\"1.35.0\"}", &t, &error), 0);
        assert_null(t->emulated_version);
        assert_null(t->components);
        assert_null(t->drop_removed);
        assert_null(t->image_repository);
        assert_false(t->on_failure_stop);
}

static void test_hostile_targets(void **state) {
        static const struct {
                const char *text, *says;
        } cases[] = {
                { "not json", "not JSON" },
                { "{\"id\":\"a\",\"generation\":1,\"binaryVersion\":\"v1.35.0\",\"dropRemoved\":[\"--cloud-provider\"]}",
                  "dropRemoved \"--cloud-provider\": expected a flag name without dashes" },
                { "{\"id\":\"a\",\"generation\":1,\"binaryVersion\":\"v1.35.0\",\"dropRemoved\":[\"v=9 --x\"]}",
                  "dropRemoved \"v=9 --x\"" },
                { "{\"id\":\"a\",\"generation\":1,\"binaryVersion\":\"v1.35.0\",\"dropRemoved\":[]}",
                  "dropRemoved []: expected a non-empty list" },
                { "{\"id\":\"a\",\"generation\":1,\"binaryVersion\":\"v1.35.0\",\"dropRemoved\":\"cloud-provider\"}",
                  "dropRemoved \"cloud-provider\": expected a non-empty list" },
                { "{\"id\":\"a\",\"generation\":1,\"binaryVersion\":\"v1.35.0\",\"dropRemoved\":[\"a\",\"a\"]}",
                  "dropRemoved \"a\": named twice" },
                { "[1,2]", "expected a JSON object" },
                { "{\"id\":\"a\",\"generation\":1,\"binaryVersion\":\"v1.35.0\",\"extraArgs\":{\"v\":\"9\"}}",
                  "field \"extraArgs\": unknown" },
                { "{\"generation\":1,\"binaryVersion\":\"v1.35.0\"}", "id: missing" },
                { "{\"id\":\"a b\",\"generation\":1,\"binaryVersion\":\"v1.35.0\"}", "id \"a b\"" },
                { "{\"id\":\"a\",\"generation\":0,\"binaryVersion\":\"v1.35.0\"}", "generation 0" },
                { "{\"id\":\"a\",\"generation\":\"1\",\"binaryVersion\":\"v1.35.0\"}", "generation \"1\"" },
                { "{\"id\":\"a\",\"generation\":1}", "binaryVersion: missing" },
                { "{\"id\":\"a\",\"generation\":1,\"binaryVersion\":\"v1.35.0 --authorization-mode=AlwaysAllow\"}",
                  "binaryVersion \"v1.35.0 --authorization-mode=AlwaysAllow\": expected a release" },
                { "{\"id\":\"a\",\"generation\":1,\"binaryVersion\":\"1.35\"}", "binaryVersion \"1.35\": expected a release" },
                { "{\"id\":\"a\",\"generation\":1,\"binaryVersion\":135}", "binaryVersion 135" },
                { "{\"id\":\"a\",\"generation\":1,\"binaryVersion\":\"v1.35.0\",\"emulatedVersion\":\"1.34.0\"}",
                  "patch version not allowed" },
                { "{\"id\":\"a\",\"generation\":1,\"binaryVersion\":\"v1.35.0\",\"emulatedVersion\":\"kube=1.34\"}",
                  "emulatedVersion \"kube=1.34\"" },
                { "{\"id\":\"a\",\"generation\":1,\"binaryVersion\":\"v1.35.0\",\"emulatedVersion\":\"1.34,x=1\"}",
                  "emulatedVersion" },
                { "{\"id\":\"a\",\"generation\":1,\"binaryVersion\":\"v1.35.0\",\"imageRepository\":\"evil.io\"}",
                  "not on this node's allow-list" },
                { "{\"id\":\"a\",\"generation\":1,\"binaryVersion\":\"v1.35.0\","
                  "\"imageRepository\":\"registry.k8s.io/x:v1@sha256:00\"}",
                  "imageRepository \"registry.k8s.io/x:v1@sha256:00\": expected a registry prefix" },
                { "{\"id\":\"a\",\"generation\":1,\"binaryVersion\":\"v1.35.0\",\"components\":[\"etcd\"]}",
                  "components \"etcd\": not a component" },
                { "{\"id\":\"a\",\"generation\":1,\"binaryVersion\":\"v1.35.0\","
                  "\"components\":[\"kube-scheduler\",\"kube-scheduler\"]}",
                  "named twice" },
                { "{\"id\":\"a\",\"generation\":1,\"binaryVersion\":\"v1.35.0\",\"components\":[]}",
                  "expected a non-empty list" },
                { "{\"id\":\"a\",\"generation\":1,\"binaryVersion\":\"v1.35.0\",\"onFailure\":\"ignore\"}",
                  "onFailure \"ignore\": expected rollback or stop" },
                { "{\"id\":\"a\",\"generation\":1,\"binaryVersion\":\"v1.35.0\",\"stableFor\":\"10\"}",
                  "stableFor \"10\": expected a duration" },
                { "{\"id\":\"a\",\"generation\":1,\"binaryVersion\":\"v1.35.0\",\"stepTimeout\":\"0s\"}",
                  "stepTimeout \"0s\": expected a duration" },
                { "{\"id\":\"a\",\"generation\":1,\"binaryVersion\":\"v1.35.0\",\"stableFor\":\"5m\","
                  "\"stepTimeout\":\"1m\"}",
                  "stableFor \"5m\": not shorter than stepTimeout" },
                { "{\"id\":\"a\",\"id\":\"b\",\"generation\":1,\"binaryVersion\":\"v1.35.0\"}", "not JSON" },
                { "{\"id\":\"a\",\"generation\":1,\"binaryVersion\":\"v1.35.0\",\"emulatedVersion\":\"1.34\\u0000\"}",
                  "not JSON" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(target_freep) target *t = NULL;
                _cleanup_free_ char *error = NULL;

                assert_int_equal(parse(cases[i].text, &t, &error), -EINVAL);
                assert_null(t);
                if (!strstr(error, cases[i].says))
                        fail_msg("case %zu: \"%s\" does not say \"%s\"", i, error, cases[i].says);
        }
}

static void test_size_limit(void **state) {
        _cleanup_(target_freep) target *t = NULL;
        _cleanup_free_ char *error = NULL, *big = malloc(TARGET_SIZE_MAX + 2);

        memset(big, ' ', TARGET_SIZE_MAX + 1);
        big[TARGET_SIZE_MAX + 1] = 0;
        memcpy(big, "{\"id\":\"a\",\"generation\":1,\"binaryVersion\":\"v1.35.0\"}", 49);
        assert_int_equal(target_parse(big, TARGET_SIZE_MAX + 1, &limits, &t, &error), -E2BIG);
        assert_non_null(strstr(error, "16384"));
}

static void test_long_values_are_cut_short(void **state) {
        _cleanup_(target_freep) target *t = NULL;
        _cleanup_free_ char *error = NULL, *text = NULL, *longid = malloc(201);

        memset(longid, 'x', 200);
        longid[200] = 0;
        text = strdup_printf("{\"id\":\"%s\",\"generation\":1,\"binaryVersion\":\"v1.35.0\"}", longid);
        assert_int_equal(parse(text, &t, &error), -EINVAL);
        assert_true(strlen(error) < 160);
        assert_non_null(strstr(error, "..."));
}

/* Whatever part of the code refuses a value (this file, the version and duration parsers of the
 * library, jansson), the message stays short and printable: the status annotation and the
 * journal quote it, and a value may carry escape sequences or newlines. */
static void test_refusals_are_short_and_printable(void **state) {
        static const char *const cases[] = {
                /* Refused by op_parse_target, which quotes the value (twice) in full. */
                "{\"id\":\"a\",\"generation\":1,\"binaryVersion\":\"v1.3+"
                "\\u001b[2J\\nFAKE LOG LINE xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}",
                /* Refused by the duration parser. */
                "{\"id\":\"a\",\"generation\":1,\"binaryVersion\":\"v1.35.0\",\"stableFor\":\"5\\r\\n"
                "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"
                "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\"}",
                /* Refused by jansson, whose message quotes the raw bytes near the error. */
                "{\"id\":\"\x1b[2J\"}",
                "{\"id\":\"a\",\"generation\":1,\"binaryVersion\":\"v1.35.0\",\"\xff\xfe\":1}",
                /* Quoted by this file as JSON, which leaves DEL (0x7f) as it is. */
                "{\"id\":\"a\x7f\",\"generation\":1,\"binaryVersion\":\"v1.35.0\"}",
                "{\"id\":\"a\",\"generation\":1,\"binaryVersion\":\"v1.35.0\",\"x\x7f\":1}",
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(target_freep) target *t = NULL;
                _cleanup_free_ char *error = NULL;

                assert_int_equal(parse(cases[i], &t, &error), -EINVAL);
                if (strlen(error) > 200)
                        fail_msg("case %zu: %zu bytes: %s", i, strlen(error), error);
                for (const char *p = error; *p; p++)
                        if ((unsigned char) *p < 0x20 || (unsigned char) *p >= 0x7f)
                                fail_msg("case %zu: byte 0x%02x in \"%s\"", i, (unsigned char) *p, error);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_full_target),
                cmocka_unit_test(test_minimal_target),
                cmocka_unit_test(test_hostile_targets),
                cmocka_unit_test(test_size_limit),
                cmocka_unit_test(test_long_values_are_cut_short),
                cmocka_unit_test(test_refusals_are_short_and_printable),
        };

        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
