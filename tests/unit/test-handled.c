/* SPDX-License-Identifier: Apache-2.0 */
/* The record of the last target handled: the same (id, generation) never runs twice. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "handled.h"
#include "macro.h"

static char root[] = "/tmp/cplet-handled-XXXXXX";

static store *open_store(bool writable) {
        store *s = NULL;

        assert_int_equal(store_open(root, 0, writable, &s, NULL), 0);
        return s;
}

static void write_record(const char *text) {
        _cleanup_free_ char *path = strdup_printf("%s/%s/%s", root, STORE_STATE_DIR, HANDLED_FILE);
        FILE *f = fopen(path, "we");

        assert_non_null(f);
        fputs(text, f);
        fclose(f);
}

static void test_none_yet(void **state) {
        _cleanup_(store_freep) store *s = open_store(false);
        handled h = {};

        assert_int_equal(handled_load(s, &h, NULL), -ENOENT);
        assert_null(h.id);
}

static void test_save_and_load(void **state) {
        _cleanup_(store_freep) store *w = open_store(true), *s = NULL;
        _cleanup_(handled_done) handled h = {};

        assert_int_equal(handled_save(w, "up-135", 3, 6, NULL), 0);
        s = open_store(false);
        assert_int_equal(handled_load(s, &h, NULL), 0);
        assert_string_equal(h.id, "up-135");
        assert_int_equal(h.generation, 3);
        assert_int_equal(h.n_steps, 6);
}

static void test_corrupt_record_refused(void **state) {
        static const char *const bad[] = { "not json", "{\"id\": \"a\"}", "{\"id\": \"\", \"generation\": 1}",
                                           "{\"id\": \"a\", \"generation\": 0}",
                                           "{\"id\": \"a\", \"generation\": 1, \"extra\": true}",
                                           "{\"id\": \"a\", \"generation\": 1, \"steps\": -1}",
                                           "{\"id\": \"a\", \"generation\": 1, \"steps\": \"6\"}",
                                           "{\"id\": \"a\", \"generation\": 1, \"steps\": 6, \"extra\": 1}" };
        _cleanup_(store_freep) store *w = open_store(true);

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_(handled_done) handled h = {};
                _cleanup_free_ char *error = NULL;

                write_record(bad[i]);
                assert_int_equal(handled_load(w, &h, &error), -EINVAL);
                assert_non_null(strstr(error, HANDLED_FILE));
                assert_null(h.id);
        }
}

static void test_should_run(void **state) {
        handled none = {}, last = { .id = (char *) "up-135", .generation = 3 };
        target same = { .id = (char *) "up-135", .generation = 3 }, newer = { .id = (char *) "up-135", .generation = 4 },
               older = { .id = (char *) "up-135", .generation = 2 }, other = { .id = (char *) "up-136", .generation = 1 };

        assert_true(handled_should_run(&none, &same));
        assert_false(handled_should_run(&last, &same));
        assert_true(handled_should_run(&last, &newer));
        assert_false(handled_should_run(&last, &older));
        assert_true(handled_should_run(&last, &other));
}

static int setup(void **state) {
        _cleanup_free_ char *cmd = NULL;

        if (!mkdtemp(root))
                return -1;
        cmd = strdup_printf("mkdir -p '%s/%s' && chmod 700 '%s/%s'", root, STORE_MANIFEST_DIR, root,
                            STORE_MANIFEST_DIR);
        return cmd && system(cmd) == 0 ? 0 : -1;
}

static int teardown(void **state) {
        _cleanup_free_ char *cmd = strdup_printf("rm -rf '%s'", root);

        return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_none_yet),
                cmocka_unit_test(test_save_and_load),
                cmocka_unit_test(test_corrupt_record_refused),
                cmocka_unit_test(test_should_run),
        };

        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, setup, teardown);
}
