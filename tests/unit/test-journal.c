/* SPDX-License-Identifier: Apache-2.0 */
/* The rollout journal: what cplet writes parses back equal; everything else is refused,
 * naming the file and the field; the store check and the file's limits. */

#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <sys/stat.h>

#include "fs-util.h"
#include "journal.h"
#include "macro.h"
#include "rollout.h"
#include "test-util.h"

/* A journal as cplet writes it: a gated upgrade whose step 2 failed and was restored, killed
 * while the API server's unwind step waited. */
static const char base_json[] =
        "{\"planId\": \"plan-1a2b3c4d\", \"command\": \"upgrade\", \"started\": \"2026-12-01T21:05:17Z\","
        " \"target\": {\"binaryVersion\": \"v1.35.0\", \"emulatedVersion\": null,"
        "  \"minCompatibilityVersion\": null, \"imageRepository\": null},"
        " \"options\": {\"stableForUsec\": 0, \"stepTimeoutUsec\": 10000000, \"onFailure\": \"rollback\"},"
        " \"phase\": \"unwinding\", \"message\": null, \"steps\": ["
        "  {\"component\": \"kube-apiserver\", \"manifest\": \"kube-apiserver.yaml\", \"kind\": \"binary\","
        "   \"from\": 1, \"to\": 2, \"state\": \"done\", \"binaryVersion\": \"v1.35.0\","
        "   \"emulatedVersion\": \"1.34\", \"minCompatibilityVersion\": \"1.33\", \"message\": null,"
        "   \"swapTicks\": 63986, \"bootId\": \"eda4f6d9-9a0b-4ed9-b91f-646bfbb1d8a3\"},"
        "  {\"component\": \"kube-controller-manager\", \"manifest\": \"kube-controller-manager.yaml\","
        "   \"kind\": \"binary\", \"from\": 1, \"to\": 2, \"state\": \"failed\", \"binaryVersion\": \"v1.35.0\","
        "   \"emulatedVersion\": \"1.34\", \"minCompatibilityVersion\": \"1.33\","
        "   \"message\": \"timed out\\nafter 2s\", \"swapTicks\": 64062, \"bootId\": null},"
        "  {\"component\": \"kube-controller-manager\", \"manifest\": \"kube-controller-manager.yaml\","
        "   \"kind\": \"restore\", \"from\": 2, \"to\": 3, \"state\": \"done\", \"binaryVersion\": \"v1.34.2\","
        "   \"emulatedVersion\": \"1.34\", \"minCompatibilityVersion\": \"1.33\", \"message\": null,"
        "   \"swapTicks\": 64100, \"bootId\": \"eda4f6d9-9a0b-4ed9-b91f-646bfbb1d8a3\", \"undoes\": 2},"
        "  {\"component\": \"kube-apiserver\", \"manifest\": \"kube-apiserver.yaml\", \"kind\": \"unwind\","
        "   \"from\": 2, \"to\": 3, \"state\": \"waiting\", \"binaryVersion\": \"v1.34.2\","
        "   \"emulatedVersion\": \"1.34\", \"minCompatibilityVersion\": \"1.33\", \"message\": null,"
        "   \"swapTicks\": 64211, \"bootId\": \"eda4f6d9-9a0b-4ed9-b91f-646bfbb1d8a3\", \"undoes\": 1}"
        " ], \"updated\": \"2026-12-01T21:05:20Z\"}";

static int parse(const char *text, journal **ret, char **ret_error) {
        return journal_parse(text, strlen(text), "/x/var/lib/cplet/rollout.json", ret, ret_error);
}

static char *dump(json_t *o) {
        char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

        assert_non_null(text);
        return text;
}

static void test_parses_what_cplet_writes(void **state) {
        _cleanup_(journal_freep) journal *j = NULL, *again = NULL;
        _cleanup_free_ char *err = NULL, *text = NULL, *text2 = NULL;
        json_auto_t *o = NULL, *o2 = NULL;
        const journal_step *st;

        assert_int_equal(parse(base_json, &j, &err), 0);
        assert_string_equal(j->plan_id, "plan-1a2b3c4d");
        assert_string_equal(j->command, "upgrade");
        assert_string_equal(j->target.binary_version, "v1.35.0");
        assert_null(j->target.emulated_version);
        assert_int_equal(j->options.step_timeout_usec, 10000000);
        assert_true(j->options.unwind_on_failure);
        assert_int_equal(j->phase, JOURNAL_UNWINDING);
        assert_true(journal_in_progress(j));
        assert_int_equal(j->n_steps, 4);
        st = j->steps[1];
        assert_int_equal(st->kind, JOURNAL_KIND_BINARY);
        assert_int_equal(st->state, JOURNAL_STEP_FAILED);
        assert_string_equal(st->message, "timed out\nafter 2s");
        assert_null(st->boot_id);
        assert_int_equal(j->steps[3]->kind, JOURNAL_KIND_UNWIND);
        assert_int_equal(j->steps[3]->undoes, 1);
        assert_int_equal(j->steps[3]->swap_ticks, 64211);

        /* Serialised and parsed again: equal, and the text is stable. */
        o = journal_to_json(j);
        assert_non_null(o);
        text = dump(o);
        assert_int_equal(parse(text, &again, &err), 0);
        assert_true(journal_equal(j, again));
        o2 = journal_to_json(again);
        text2 = dump(o2);
        assert_string_equal(text, text2);
        /* The fields older cplets wrote, under the same names. */
        assert_int_equal(json_integer_value(json_object_get(json_array_get(json_object_get(o, "steps"), 0), "to")), 2);
        assert_string_equal(json_string_value(json_object_get(o, "phase")), "unwinding");

        /* A finished journal is not in progress. */
        j->phase = JOURNAL_ABORTED;
        assert_false(journal_in_progress(j));
        assert_false(journal_equal(j, again));
}

/* Sets (or with value NULL removes) the member at a dotted path ("steps.1.state") of o. */
static void set_path(json_t *o, const char *path, json_t *value) {
        _cleanup_free_ char *copy = strdup(path);
        json_t *parent = o;
        char *key = copy, *dot;

        assert_non_null(copy);
        while ((dot = strchr(key, '.'))) {
                *dot = 0;
                parent = json_is_array(parent) ? json_array_get(parent, strtoul(key, NULL, 10))
                                               : json_object_get(parent, key);
                assert_non_null(parent);
                key = dot + 1;
        }
        if (json_is_array(parent) && value)
                assert_int_equal(json_array_set_new(parent, strtoul(key, NULL, 10), value), 0);
        else if (json_is_array(parent))
                assert_int_equal(json_array_remove(parent, strtoul(key, NULL, 10)), 0);
        else if (value)
                assert_int_equal(json_object_set_new(parent, key, value), 0);
        else
                assert_int_equal(json_object_del(parent, key), 0);
}

/* The base journal with one member set (or removed); returns its text. */
static char *mutated(const char *path, json_t *value) {
        json_auto_t *o = json_loads(base_json, 0, NULL);

        assert_non_null(o);
        set_path(o, path, value);
        return dump(o);
}

static void test_refuses(void **state) {
        static const struct {
                const char *path;
                const char *value; /* JSON; NULL: remove the member */
                const char *needle;
        } cases[] = {
                { "phase", "\"runing\"", "phase: unknown value \"runing\"" },
                { "phase", NULL, "phase: missing" },
                { "planId", "7", "planId: expected a string" },
                { "command", "\"up\\ngrade\"", "command: expected a short printable string" },
                { "stepz", "[]", "stepz: unknown field" },
                { "steps", "{}", "steps: expected a list" },
                { "steps.0", "[]", "steps[0]: expected an object" },
                { "steps.0.extra", "1", "steps[0].extra: unknown field" },
                { "steps.1.state", "\"wating\"", "steps[1].state: unknown value \"wating\"" },
                { "steps.0.kind", "\"binaries\"", "steps[0].kind: unknown value" },
                { "steps.0.component", "\"../kube-apiserver\"", "steps[0].component" },
                { "steps.0.component", "\"Kube\"", "is not a component name" },
                { "steps.0.manifest", "\"../../x.yaml\"", "steps[0].manifest" },
                { "steps.0.manifest", "\".hidden.yaml\"", "not a manifest file name" },
                { "steps.0.from", "0", "steps[0].from: 0 is out of range" },
                { "steps.0.from", "-1", "steps[0].from" },
                { "steps.0.from", "1.5", "expected an integer" },
                { "steps.0.from", "1000000000", "out of range" },
                { "steps.0.to", "1", "does not come after from" },
                { "steps.0.to", "0", "steps[0].to: 0 in state done" },
                { "steps.0.binaryVersion", "\"1.35.x\"", "steps[0].binaryVersion" },
                { "steps.0.emulatedVersion", "\"1.34.1\"", "steps[0].emulatedVersion" },
                { "steps.0.minCompatibilityVersion", NULL, "minCompatibilityVersion: missing" },
                { "steps.0.swapTicks", "-4", "swapTicks" },
                { "steps.0.state", "\"waiting\"", "only the last step can be in flight" },
                { "steps.0.undoes", "1", "only restore and unwind steps undo" },
                { "steps.3.undoes", "4", "is not an earlier plan step" },
                { "steps.3.undoes", "2", "is not an earlier plan step of kube-apiserver" },
                { "steps.3.undoes", "0", "undoes: 0 is out of range" },
                { "steps.2.state", "\"unwound\"", "a restore step is never unwound" },
                { "unwindStoppedAt", "9", "unwindStoppedAt: 9 is not the index" },
                { "unwindStoppedAt", "100000000", "unwindStoppedAt: 100000000 is not the index" },
                { "unwindStoppedAt", "3", "is not the index of a plan step" },
                { "options.onFailure", "\"maybe\"", "options.onFailure: unknown value" },
                { "options.stepTimeoutUsec", "0", "options.stepTimeoutUsec" },
                { "options", NULL, "options: expected an object" },
                { "target.binaryVersion", "\"latest\"", "target.binaryVersion" },
                { "target.binaryVersion", "null", "target.binaryVersion: missing while other" },
                { "target.imageRepository", "\"a b\"", "target.imageRepository" },
                { "target.components", "[]", "target.components: expected a list of 1 to 16 component names" },
                { "target.components", "\"kube-apiserver\"", "target.components: expected a list" },
                { "target.components", "[\"Kube\"]", "target.components: item 0 is not a component name" },
                { "target.components", "[\"kube-apiserver\", 7]", "item 1 is not a component name" },
                { "target.components", "[\"kube-apiserver\", \"kube-apiserver\"]", "kube-apiserver named twice" },
                { "target.dropRemoved", "[]", "target.dropRemoved: expected a list of 1 to 64 names" },
                { "target.dropRemoved", "[\"cloud-provider\", \"\"]", "target.dropRemoved: item 1 is not a flag" },
                { "target.dropRemoved", "[\"a=b\"]", "target.dropRemoved: item 0 is not a flag" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(journal_freep) journal *j = NULL;
                _cleanup_free_ char *err = NULL, *text = NULL;
                json_t *value = NULL;
                int r;

                if (cases[i].value) {
                        value = json_loads(cases[i].value, JSON_DECODE_ANY, NULL);
                        assert_non_null(value);
                }
                /* One that needs another member changed first. */
                if (streq(cases[i].path, "target.binaryVersion") && cases[i].value && streq(cases[i].value, "null")) {
                        json_auto_t *o = json_loads(base_json, 0, NULL);

                        json_object_set_new(json_object_get(o, "target"), "emulatedVersion", json_string("1.35"));
                        json_object_set_new(json_object_get(o, "target"), "binaryVersion", value);
                        text = dump(o);
                } else
                        text = mutated(cases[i].path, value);
                r = parse(text, &j, &err);
                if (r != -EINVAL || !err || !strstr(err, cases[i].needle) ||
                    !strstr(err, "/x/var/lib/cplet/rollout.json"))
                        fail_msg("case %zu (%s = %s): %d %s (want -EINVAL and \"%s\")", i, cases[i].path,
                                 cases[i].value ?: "(removed)", r, err ?: "(no message)", cases[i].needle);
                assert_null(j);
        }
}

/* The target's components (--components) parse back as written, so that resume moves no
 * other component; a journal without them moves all. */
static void test_target_components(void **state) {
        _cleanup_(journal_freep) journal *j = NULL, *again = NULL, *all = NULL;
        _cleanup_free_ char *err = NULL, *text = NULL, *text2 = NULL;
        json_auto_t *o = NULL;

        text = mutated("target.components", json_pack("[ss]", "kube-controller-manager", "kube-scheduler"));
        assert_int_equal(parse(text, &j, &err), 0);
        assert_non_null(j->target.components);
        assert_string_equal(j->target.components[0], "kube-controller-manager");
        assert_string_equal(j->target.components[1], "kube-scheduler");
        assert_null(j->target.components[2]);

        o = journal_to_json(j);
        assert_non_null(o);
        text2 = dump(o);
        assert_int_equal(parse(text2, &again, &err), 0);
        assert_true(journal_equal(j, again));
        assert_non_null(again->target.components);
        assert_string_equal(again->target.components[1], "kube-scheduler");

        /* Without them: every component; not equal to a journal with them. */
        assert_int_equal(parse(base_json, &all, &err), 0);
        assert_null(all->target.components);
        assert_false(journal_equal(j, all));
        free(again->target.components[1]);
        again->target.components[1] = NULL;
        assert_false(journal_equal(j, again));
        /* ... and a single write (no binaryVersion) has no components to move. */
        free(text);
        {
                json_auto_t *w = json_loads(text2, 0, NULL);

                assert_non_null(w);
                json_object_set_new(json_object_get(w, "target"), "binaryVersion", json_null());
                text = dump(w);
        }
        journal_free(TAKE_PTR(again));
        free(TAKE_PTR(err));
        assert_int_equal(parse(text, &again, &err), -EINVAL);
        assert_non_null(strstr(err, "target.binaryVersion: missing while other target versions are set"));
}

/* The target's dropRemoved (--drop-removed) parses back as written: resume's steps drop them too. */
static void test_target_drop_removed(void **state) {
        _cleanup_(journal_freep) journal *j = NULL, *again = NULL, *none = NULL;
        _cleanup_free_ char *err = NULL, *text = NULL, *text2 = NULL;
        json_auto_t *o = NULL;

        text = mutated("target.dropRemoved", json_pack("[ss]", "cloud-provider", "InTreePluginvSphereUnregister"));
        assert_int_equal(parse(text, &j, &err), 0);
        assert_non_null(j->target.drop_removed);
        assert_string_equal(j->target.drop_removed[0], "cloud-provider");
        assert_string_equal(j->target.drop_removed[1], "InTreePluginvSphereUnregister");
        assert_null(j->target.drop_removed[2]);

        o = journal_to_json(j);
        assert_non_null(o);
        text2 = dump(o);
        assert_int_equal(parse(text2, &again, &err), 0);
        assert_true(journal_equal(j, again));
        assert_string_equal(again->target.drop_removed[1], "InTreePluginvSphereUnregister");

        assert_int_equal(parse(base_json, &none, &err), 0);
        assert_null(none->target.drop_removed);
        assert_false(journal_equal(j, none));
        free(again->target.drop_removed[1]);
        again->target.drop_removed[1] = NULL;
        assert_false(journal_equal(j, again));
}

/* A restore or unwind names the step it undoes; a later step cannot be undone yet, even one
 * of the same component that would otherwise fit (here the restore at 2 names step 3). */
static void test_refuses_undoing_a_later_step(void **state) {
        static const char later[] =
                "{\"planId\": \"plan-1a2b3c4d\", \"command\": \"upgrade\", \"started\": \"2026-12-01T21:05:17Z\","
                " \"target\": {\"binaryVersion\": \"v1.35.0\", \"emulatedVersion\": null,"
                "  \"minCompatibilityVersion\": null, \"imageRepository\": null},"
                " \"options\": {\"stableForUsec\": 0, \"stepTimeoutUsec\": 10000000, \"onFailure\": \"rollback\"},"
                " \"phase\": \"unwinding\", \"message\": null, \"steps\": ["
                "  {\"component\": \"kube-controller-manager\", \"manifest\": \"kube-controller-manager.yaml\","
                "   \"kind\": \"binary\", \"from\": 1, \"to\": 2, \"state\": \"done\", \"binaryVersion\": \"v1.35.0\","
                "   \"emulatedVersion\": \"1.34\", \"minCompatibilityVersion\": \"1.33\", \"message\": null},"
                "  {\"component\": \"kube-controller-manager\", \"manifest\": \"kube-controller-manager.yaml\","
                "   \"kind\": \"restore\", \"from\": 2, \"to\": 3, \"state\": \"done\", \"binaryVersion\": \"v1.34.2\","
                "   \"emulatedVersion\": \"1.34\", \"minCompatibilityVersion\": \"1.33\", \"message\": null,"
                "   \"undoes\": 3},"
                "  {\"component\": \"kube-controller-manager\", \"manifest\": \"kube-controller-manager.yaml\","
                "   \"kind\": \"binary\", \"from\": 3, \"to\": 4, \"state\": \"done\", \"binaryVersion\": \"v1.35.0\","
                "   \"emulatedVersion\": \"1.34\", \"minCompatibilityVersion\": \"1.33\", \"message\": null}"
                " ]}";
        _cleanup_(journal_freep) journal *j = NULL;
        _cleanup_free_ char *error = NULL;

        assert_int_equal(parse(later, &j, &error), -EINVAL);
        assert_null(j);
        assert_non_null(strstr(error, "undoes: 3 is not an earlier plan step"));
}

static void test_refuses_what_is_not_a_journal(void **state) {
        static const char *const texts[] = { "", "[]", "\"running\"", "{\"phase\": \"running\"", "null",
                                             "{\"planId\": \"a\", \"planId\": \"b\"}", "{\"planId\": \"a\\u0000b\"}" };

        for (size_t i = 0; i < ELEMENTSOF(texts); i++) {
                _cleanup_(journal_freep) journal *j = NULL;
                _cleanup_free_ char *err = NULL;

                assert_int_equal(parse(texts[i], &j, &err), -EINVAL);
                assert_non_null(strstr(err, "rollout.json"));
        }
}

/* Whether a rollout may close the base journal after the edits (pairs of dotted path and
 * JSON value, "-" to remove; NULL-terminated), in `phase`, with the unwind policy. */
static bool may_close_after(journal_phase phase, bool unwind, ...) {
        _cleanup_(journal_freep) journal *j = NULL;
        _cleanup_free_ char *text = NULL;
        json_auto_t *o = json_loads(base_json, 0, NULL);
        rollout r = { .options = { .unwind_on_failure = unwind } };
        const char *path;
        va_list ap;

        va_start(ap, unwind);
        while ((path = va_arg(ap, const char *))) {
                const char *value = va_arg(ap, const char *);

                set_path(o, path, streq(value, "-") ? NULL : json_loads(value, JSON_DECODE_ANY, NULL));
        }
        va_end(ap);
        text = dump(o);
        assert_int_equal(parse(text, &j, NULL), 0);
        j->phase = phase;
        r.journal = j;
        return rollout_may_close(&r);
}

static void test_may_close(void **state) {
        /* The base journal: the API server's unwind step is in flight. */
        assert_false(may_close_after(JOURNAL_UNWINDING, true, NULL));
        /* Its unwind done: everything settled (step 2 failed and was restored). */
        assert_true(may_close_after(JOURNAL_UNWINDING, true, "steps.3.state", "\"done\"", NULL));
        /* An unwind that ran to its end unhealthy is a verdict too (the node needs attention). */
        assert_true(may_close_after(JOURNAL_UNWINDING, true, "steps.3.state", "\"failed\"", NULL));
        /* Never swapped in: the API server's step 1 is still to be unwound... */
        assert_false(may_close_after(JOURNAL_UNWINDING, true, "steps.3.state", "\"abandoned\"", NULL));
        /* ... as the policy asks after a failure, even before the unwind began; */
        assert_false(may_close_after(JOURNAL_RUNNING, true, "steps.3", "-", NULL));
        /* with --on-failure stop it stays. */
        assert_true(may_close_after(JOURNAL_RUNNING, false, "steps.3", "-", NULL));
        /* The failed step's restore did not happen: never closed, whatever the policy. */
        assert_false(may_close_after(JOURNAL_RUNNING, false, "steps.3", "-", "steps.2.state", "\"abandoned\"", NULL));
        assert_false(may_close_after(JOURNAL_RUNNING, false, "steps.3", "-", "steps.2", "-", NULL));
        /* An interrupted plan step (abort took it over) not unwound yet. */
        assert_false(may_close_after(JOURNAL_UNWINDING, true, "steps.3", "-", "steps.2", "-", "steps.1.state",
                                     "\"interrupted\"", "steps.0.state", "\"unwound\"", NULL));
        assert_true(may_close_after(JOURNAL_UNWINDING, true, "steps.3", "-", "steps.2", "-", "steps.1.state",
                                    "\"unwound\"", "steps.0.state", "\"unwound\"", NULL));
}

/* ---- the file, against a store */

typedef struct fixture {
        char root[64];
        int rootfd;
        store *store;
} fixture;

static int setup(void **state) {
        fixture *f = calloc(1, sizeof(*f));

        if (!f)
                return -1;
        strcpy(f->root, "/tmp/cplet-test-journal-XXXXXX");
        f->rootfd = scratch_root(f->root);
        if (f->rootfd < 0 || store_open(f->root, 0, true, &f->store, NULL) < 0)
                return -1;
        *state = f;
        return 0;
}

static int teardown(void **state) {
        fixture *f = *state;

        store_free(f->store);
        close(f->rootfd);
        rm_rf(f->root);
        free(f);
        return 0;
}

static void write_journal(fixture *f, const void *data, size_t size) {
        assert_int_equal(write_file_atomic(f->store->state_fd, JOURNAL_FILE, data, size, 0600), 0);
}

/* Revision metadata is what makes a revision exist. */
static void add_revision(fixture *f, const char *who, unsigned n) {
        _cleanup_free_ char *dir = strdup_printf(STORE_REVISIONS_DIR "/%s", who), *meta = NULL;
        char name[32];
        int dfd;

        (void) mkdirat(f->rootfd, dir, 0700);
        dfd = openat(f->rootfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(dfd >= 0);
        meta = strdup_printf("{\"revision\": %u, \"component\": \"%s\", \"sha256\": "
                             "\"%064d\", \"reason\": \"test\", \"parent\": 0}",
                             n, who, 0);
        snprintf(name, sizeof(name), "%u.json", n);
        assert_int_equal(write_file_atomic(dfd, name, meta, strlen(meta), 0600), 0);
        snprintf(name, sizeof(name), "%u.yaml", n);
        assert_int_equal(write_file_atomic(dfd, name, "x", 1, 0600), 0);
        close(dfd);
}

static void test_load_checks_the_store(void **state) {
        fixture *f = *state;
        _cleanup_(journal_freep) journal *j = NULL;
        _cleanup_free_ char *err = NULL;

        assert_int_equal(journal_load(f->store, &j, &err), -ENOENT);
        write_journal(f, base_json, strlen(base_json));

        /* In progress, but the store has none of its revisions. */
        assert_int_equal(journal_load(f->store, &j, &err), -EINVAL);
        assert_non_null(strstr(err, "names revision 1 of kube-apiserver"));
        assert_non_null(strstr(err, "/var/lib/cplet/rollout.json"));
        assert_non_null(strstr(err, "move it aside"));

        for (unsigned n = 1; n <= 3; n++) {
                add_revision(f, "kube-apiserver", n);
                add_revision(f, "kube-controller-manager", n);
        }
        free(err);
        err = NULL;
        assert_int_equal(journal_load(f->store, &j, &err), 0);
        assert_int_equal(j->n_steps, 4);

        /* Saved and loaded back: equal. */
        {
                _cleanup_(journal_freep) journal *back = NULL;

                assert_int_equal(journal_save(f->store, j, &err), 0);
                assert_int_equal(journal_load(f->store, &back, &err), 0);
                assert_true(journal_equal(j, back));
        }
}

static void test_load_finished_needs_no_revisions(void **state) {
        fixture *f = *state;
        _cleanup_(journal_freep) journal *j = NULL;
        _cleanup_free_ char *err = NULL, *text = mutated("phase", json_string("failed"));

        /* Retention may have pruned what a finished rollout named. */
        write_journal(f, text, strlen(text));
        assert_int_equal(journal_load(f->store, &j, &err), 0);
        assert_false(journal_in_progress(j));
}

static void test_load_limits(void **state) {
        fixture *f = *state;
        _cleanup_(journal_freep) journal *j = NULL;
        _cleanup_free_ char *err = NULL, *big = NULL, *path = NULL;
        size_t size = JOURNAL_SIZE_MAX + 16;

        big = malloc(size);
        assert_non_null(big);
        memset(big, ' ', size);
        big[0] = '{';
        big[size - 1] = '}';
        write_journal(f, big, size);
        assert_int_equal(journal_load(f->store, &j, &err), -EINVAL);
        assert_non_null(strstr(err, "larger than 4 MiB"));
        assert_null(strstr(err, "Argument list too long"));

        /* Not followed through a symbolic link. */
        assert_int_equal(unlinkat(f->store->state_fd, JOURNAL_FILE, 0), 0);
        path = strdup_printf("%s/elsewhere.json", f->root);
        assert_int_equal(symlinkat(path, f->store->state_fd, JOURNAL_FILE), 0);
        free(err);
        err = NULL;
        assert_true(journal_load(f->store, &j, &err) < 0);
        assert_non_null(strstr(err, "symbolic link"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parses_what_cplet_writes),
                cmocka_unit_test(test_refuses),
                cmocka_unit_test(test_refuses_undoing_a_later_step),
                cmocka_unit_test(test_target_components),
                cmocka_unit_test(test_target_drop_removed),
                cmocka_unit_test(test_refuses_what_is_not_a_journal),
                cmocka_unit_test(test_may_close),
                cmocka_unit_test_setup_teardown(test_load_checks_the_store, setup, teardown),
                cmocka_unit_test_setup_teardown(test_load_finished_needs_no_revisions, setup, teardown),
                cmocka_unit_test_setup_teardown(test_load_limits, setup, teardown),
        };

        umask(022);
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
