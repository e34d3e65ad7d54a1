/* SPDX-License-Identifier: Apache-2.0 */
/* The cplet.io/status annotation: the fields docs/protocol.md promises, from the example node. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "status.h"

static plugin_set *plugins;
static node *example;

static int setup(void **state) {
        const char *dir = getenv("CPLET_PLUGIN_BUILD_DIR"), *examples = getenv("CPLET_EXAMPLES_DIR");
        _cleanup_free_ char *root = NULL;

        if (!dir || !examples || plugin_set_load(dir, &plugins, NULL) < 0)
                return -1;
        root = strdup_printf("%s/node", examples);
        return root && node_load(root, plugins, &example, NULL) >= 0 ? 0 : -1;
}

static int teardown(void **state) {
        node_free(example);
        plugin_set_free(plugins);
        return 0;
}

static void test_progressing_with_components(void **state) {
        unsigned revisions[3] = { 2, 1, 0 };
        int healthy[3] = { 1, 0, -1 };
        status_report r = {
                .id = "up-135",
                .generation = 4,
                .phase = STATUS_PROGRESSING,
                .step = { .index = 2, .total = 6, .component = "kube-controller-manager", .kind = "binary",
                          .waiting_for = "health" },
                .agent_version = "0.1.0",
                .node = example,
                .revisions = revisions,
                .healthy = healthy,
        };
        json_auto_t *j = status_to_json(&r, "2026-12-01T08:00:00Z");
        json_t *c, *step;

        assert_non_null(j);
        assert_string_equal(json_string_value(json_object_get(j, "id")), "up-135");
        assert_int_equal(json_integer_value(json_object_get(j, "generation")), 4);
        assert_string_equal(json_string_value(json_object_get(j, "phase")), "Progressing");
        assert_string_equal(json_string_value(json_object_get(j, "updated")), "2026-12-01T08:00:00Z");
        assert_string_equal(json_string_value(json_object_get(j, "agentVersion")), "0.1.0");
        assert_true(json_is_null(json_object_get(j, "message")));
        step = json_object_get(j, "step");
        assert_int_equal(json_integer_value(json_object_get(step, "index")), 2);
        assert_int_equal(json_integer_value(json_object_get(step, "total")), 6);
        assert_string_equal(json_string_value(json_object_get(step, "waitingFor")), "health");
        assert_int_equal(json_array_size(json_object_get(j, "components")), 3);
        c = json_array_get(json_object_get(j, "components"), 0);
        assert_string_equal(json_string_value(json_object_get(c, "name")), "kube-apiserver");
        assert_string_equal(json_string_value(json_object_get(c, "binaryVersion")), "v1.34.2");
        assert_string_equal(json_string_value(json_object_get(c, "emulatedVersion")), "1.34");
        assert_string_equal(json_string_value(json_object_get(c, "minCompatibilityVersion")), "1.33");
        assert_int_equal(json_integer_value(json_object_get(c, "revision")), 2);
        assert_true(json_is_true(json_object_get(c, "healthy")));
        c = json_array_get(json_object_get(j, "components"), 1);
        assert_true(json_is_false(json_object_get(c, "healthy")));
        c = json_array_get(json_object_get(j, "components"), 2);
        assert_true(json_is_null(json_object_get(c, "revision")));
        assert_true(json_is_null(json_object_get(c, "healthy")));
}

static void test_idle_without_target(void **state) {
        status_report r = { .phase = STATUS_IDLE, .agent_version = "0.1.0", .node = example };
        json_auto_t *j = status_to_json(&r, "2026-12-01T08:00:00Z");
        static const char *const keys[] = { "id", "generation", "phase", "step", "message", "updated",
                                            "agentVersion", "components" };

        assert_non_null(j);
        /* Exactly the fields of docs/protocol.md's schema. */
        assert_int_equal(json_object_size(j), ELEMENTSOF(keys));
        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                assert_non_null(json_object_get(j, keys[i]));
        assert_true(json_is_null(json_object_get(j, "id")));
        assert_true(json_is_null(json_object_get(j, "generation")));
        assert_true(json_is_null(json_object_get(j, "step")));
        assert_string_equal(json_string_value(json_object_get(j, "phase")), "Idle");
}

/* A refused target whose generation was not a valid one: its id is named, its generation is
 * null (not 0, which no target can have). */
static void test_refused_generation_unknown(void **state) {
        status_report r = { .id = "up-135", .generation = 0, .phase = STATUS_REFUSED, .agent_version = "0.1.0",
                            .node = example };
        json_auto_t *j = status_to_json(&r, "2026-12-01T08:00:00Z");

        assert_non_null(j);
        assert_string_equal(json_string_value(json_object_get(j, "id")), "up-135");
        assert_true(json_is_null(json_object_get(j, "generation")));
}

static void test_every_phase_named(void **state) {
        static const char *const names[] = { "Idle",     "Pending",    "Progressing", "Succeeded",
                                             "Failed",   "RolledBack", "Refused",     "Interrupted" };

        for (status_phase p = 0; p < _STATUS_PHASE_MAX; p++)
                assert_string_equal(status_phase_to_string(p), names[p]);
        assert_null(status_phase_to_string(_STATUS_PHASE_MAX));
}

static void test_long_message_cut_on_a_character(void **state) {
        _cleanup_free_ char *m = malloc(3 * STATUS_MESSAGE_MAX + 1);
        status_report r = { .phase = STATUS_REFUSED, .node = example, .message = m };
        json_auto_t *j = NULL;
        size_t n;

        /* "é" is two bytes: the limit falls inside one of them at an odd offset. */
        m[0] = 'x';
        for (size_t i = 1; i + 1 < 3 * STATUS_MESSAGE_MAX; i += 2)
                memcpy(m + i, "\xc3\xa9", 2);
        m[3 * STATUS_MESSAGE_MAX - 1] = 0;
        j = status_to_json(&r, "2026-12-01T08:00:00Z");
        assert_non_null(j);
        n = json_string_length(json_object_get(j, "message"));
        assert_true(n <= STATUS_MESSAGE_MAX && n >= STATUS_MESSAGE_MAX - 1);
        assert_int_equal(n % 2, 1); /* 'x' plus whole characters */
}

static void test_invalid_phase(void **state) {
        status_report r = { .phase = _STATUS_PHASE_MAX, .node = example };

        assert_null(status_to_json(&r, "2026-12-01T08:00:00Z"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_progressing_with_components),
                cmocka_unit_test(test_idle_without_target),
                cmocka_unit_test(test_refused_generation_unknown),
                cmocka_unit_test(test_every_phase_named),
                cmocka_unit_test(test_long_message_cut_on_a_character),
                cmocka_unit_test(test_invalid_phase),
        };

        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, setup, teardown);
}
