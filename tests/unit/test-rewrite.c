/* SPDX-License-Identifier: Apache-2.0 */
/* Rewrites of every real manifest in tests/data/fixtures: change the emulated version, the
 * verbosity, one existing flag and the image tag; render; parse again. Only the intended values
 * may change: every other field, key order and value stays as it was. */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cmdline.h"
#include "image.h"
#include "macro.h"
#include "manifest.h"

#define NEW_TAG "v1.35.0"
#define NEW_EMULATED "1.33"
#define NEW_V "4"
#define FLAGS_MAX 128

static const char *const component_names[] = {
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
};

static const char *fixtures_dir(void) {
        const char *d = getenv("CPLET_FIXTURES_DIR");

        if (!d || !*d)
                fail_msg("CPLET_FIXTURES_DIR is not set");
        return d;
}

static json_t *pod_containers(json_t *pod) {
        return json_object_get(json_object_get(pod, "spec"), "containers");
}

/* The index in spec.containers of the container named like a component (-1: none), and the
 * component's name. */
static ssize_t find_component(json_t *pod, const char **ret_component) {
        json_t *containers = pod_containers(pod), *c;
        ssize_t found = -1;
        size_t i;

        json_array_foreach(containers, i, c) {
                const char *name = json_string_value(json_object_get(c, "name"));

                if (!name)
                        continue;
                for (size_t k = 0; k < ELEMENTSOF(component_names); k++)
                        if (streq(name, component_names[k])) {
                                if (found >= 0)
                                        fail_msg("two component containers in one pod");
                                found = (ssize_t) i;
                                *ret_component = component_names[k];
                        }
        }
        return found;
}

static bool has_container(json_t *pod, const char *name) {
        json_t *c;
        size_t i;

        json_array_foreach(pod_containers(pod), i, c)
                if (streq(json_string_value(json_object_get(c, "name")) ?: "", name))
                        return true;
        return false;
}

/* ---------------------------------------------------------------------------------------------
 * Comparing trees */

/* Besides json_equal(): the same keys in the same order in every object, and the same JSON
 * types everywhere (json_equal() already tells 1 from 1.0 and "1" from 1). */
static void assert_same_order(const json_t *a, const json_t *b, const char *file, const char *path) {
        if (json_typeof(a) != json_typeof(b))
                fail_msg("%s: %s: type %d became %d", file, path, json_typeof(a), json_typeof(b));

        if (json_is_object(a)) {
                void *ia = json_object_iter((json_t *) a), *ib = json_object_iter((json_t *) b);

                if (json_object_size(a) != json_object_size(b))
                        fail_msg("%s: %s: %zu keys became %zu", file, path, json_object_size(a),
                                 json_object_size(b));
                for (; ia && ib; ia = json_object_iter_next((json_t *) a, ia),
                                 ib = json_object_iter_next((json_t *) b, ib)) {
                        const char *ka = json_object_iter_key(ia), *kb = json_object_iter_key(ib);
                        _cleanup_free_ char *sub = NULL;

                        if (!streq(ka, kb))
                                fail_msg("%s: %s: key order changed: \"%s\" where \"%s\" stood", file, path, kb,
                                         ka);
                        sub = strdup_printf("%s.%s", path, ka);
                        assert_non_null(sub);
                        assert_same_order(json_object_iter_value(ia), json_object_iter_value(ib), file, sub);
                }
                assert_true(!ia && !ib);
        } else if (json_is_array(a)) {
                if (json_array_size(a) != json_array_size(b))
                        fail_msg("%s: %s: %zu items became %zu", file, path, json_array_size(a),
                                 json_array_size(b));
                for (size_t i = 0; i < json_array_size(a); i++) {
                        _cleanup_free_ char *sub = strdup_printf("%s[%zu]", path, i);

                        assert_non_null(sub);
                        assert_same_order(json_array_get(a, i), json_array_get(b, i), file, sub);
                }
        }
}

static void assert_trees_equal(const json_t *want, const json_t *have, const char *file, const char *what) {
        if (!json_equal(want, have)) {
                _cleanup_free_ char *w = json_dumps(want, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
                _cleanup_free_ char *h = json_dumps(have, JSON_INDENT(1) | JSON_PRESERVE_ORDER);

                fail_msg("%s: %s differ\n--- expected\n%s\n--- got\n%s", file, what, w ?: "?", h ?: "?");
        }
        assert_same_order(want, have, file, "$");
}

/* Flag item `s` has the name `name` ("--name", "--name=…", "-name", "-name=…")? */
static bool item_is_flag(const char *s, const char *name, bool *ret_joined) {
        size_t l = strlen(name);

        if (s[0] != '-')
                return false;
        s += s[1] == '-' ? 2 : 1;
        if (!strneq(s, name, l) || (s[l] != '=' && s[l] != 0))
                return false;
        *ret_joined = s[l] == '=';
        return true;
}

/* Removes, independently of cmdline.c, the items of the named flags (with a separate value item)
 * from a container's command and args. */
static void strip_flags(json_t *container, const char *const *names, size_t n_names) {
        static const char *const keys[] = { "command", "args" };

        for (size_t k = 0; k < ELEMENTSOF(keys); k++) {
                json_t *a = json_object_get(container, keys[k]);

                for (size_t i = 0; i < json_array_size(a);) {
                        const char *s = json_string_value(json_array_get(a, i)), *next;
                        bool matched = false, joined = false;

                        assert_non_null(s);
                        for (size_t j = 0; j < n_names && !matched; j++)
                                matched = item_is_flag(s, names[j], &joined);
                        if (!matched) {
                                i++;
                                continue;
                        }
                        next = json_string_value(json_array_get(a, i + 1));
                        if (!joined && next && next[0] != '-')
                                assert_int_equal(json_array_remove(a, i + 1), 0);
                        assert_int_equal(json_array_remove(a, i), 0);
                }
        }
}

/* ---------------------------------------------------------------------------------------------
 * Flags as cmdline_foreach_flag() sees them */

typedef struct flag_list {
        char *items[FLAGS_MAX]; /* "name=value" or "name" */
        size_t n;
} flag_list;

static void flag_list_done(flag_list *l) {
        for (size_t i = 0; i < l->n; i++)
                free(l->items[i]);
        l->n = 0;
}

static int collect_flag(const char *name, size_t name_len, const char *value, void *userdata) {
        flag_list *l = userdata;

        assert_true(l->n < FLAGS_MAX);
        l->items[l->n] = strdup_printf("%.*s%s%s", (int) name_len, name, value ? "=" : "", value ?: "");
        assert_non_null(l->items[l->n]);
        l->n++;
        return 0;
}

static void collect_flags(json_t *container, const char *component, flag_list *ret) {
        _cleanup_free_ char *error = NULL;
        cmdline c;
        int r;

        r = cmdline_open(container, component, &c, &error);
        if (r < 0)
                fail_msg("cmdline_open(%s): %d %s", component, r, error ?: "(no message)");
        assert_int_equal(cmdline_foreach_flag(&c, collect_flag, ret), 0);
}

static bool flag_touched(const char *item, const char *const *names, size_t n_names) {
        for (size_t j = 0; j < n_names; j++) {
                size_t l = strlen(names[j]);

                if (strneq(item, names[j], l) && (item[l] == '=' || item[l] == 0))
                        return true;
        }
        return false;
}

/* ---------------------------------------------------------------------------------------------
 * One rewrite */

typedef struct rewrite {
        json_t *original; /* as parsed from the file */
        json_t *edited;   /* the tree cplet would render */
        json_t *reparsed; /* the rendered text parsed again */
        ssize_t index;    /* of the component container */
        const char *component;
        char unset_name[256];
        char *old_image, *new_image; /* new_image NULL: the image is not a reference (template) */
} rewrite;

static void rewrite_done(rewrite *w) {
        json_decref(w->original);
        json_decref(w->edited);
        json_decref(w->reparsed);
        free(w->old_image);
        free(w->new_image);
        *w = (rewrite) {};
}

static int first_untouched_flag(const char *name, size_t name_len, const char *value, void *userdata) {
        char *ret = userdata;

        if ((name_len == 1 && strneq(name, "v", 1)) ||
            (name_len == strlen("emulated-version") && strneq(name, "emulated-version", name_len)))
                return 0;
        assert_true(name_len > 0 && name_len < 256);
        memcpy(ret, name, name_len);
        ret[name_len] = 0;
        return 1;
}

/* Edits a copy of `pod`, renders it and parses it again; checks that the edits are there and that
 * nothing else changed. Takes a reference on `pod`. */
static void rewrite_pod(const char *file, json_t *pod, rewrite *w) {
        _cleanup_free_ char *error = NULL, *text = NULL;
        json_t *container;
        const char *image, *value;
        image_ref ref = {};
        size_t size = 0;
        cmdline c;
        int r, count;

        *w = (rewrite) { .original = json_incref(pod) };
        w->index = find_component(pod, &w->component);
        assert_true(w->index >= 0);
        w->edited = json_deep_copy(pod);
        assert_non_null(w->edited);
        assert_true(json_equal(w->edited, pod));
        container = json_array_get(pod_containers(w->edited), w->index);

        /* 1. Edit. */
        r = cmdline_open(container, w->component, &c, &error);
        if (r < 0)
                fail_msg("%s: cmdline_open(%s): %d %s", file, w->component, r, error ?: "(no message)");
        assert_int_equal(cmdline_foreach_flag(&c, first_untouched_flag, w->unset_name), 1);
        count = cmdline_get_flag(&c, w->unset_name, NULL);
        assert_true(count >= 1);
        assert_int_equal(cmdline_unset_flag(&c, w->unset_name), count);
        assert_int_equal(cmdline_set_flag(&c, "emulated-version", NEW_EMULATED), 0);
        assert_int_equal(cmdline_set_flag(&c, "v", NEW_V), 0);

        image = json_string_value(json_object_get(container, "image"));
        assert_non_null(image);
        w->old_image = strdup(image);
        assert_non_null(w->old_image);
        if (image_ref_parse(image, &ref, NULL) >= 0) {
                free(ref.tag);
                ref.tag = strdup(NEW_TAG);
                assert_non_null(ref.tag);
                free(ref.digest);
                ref.digest = NULL;
                w->new_image = image_ref_format(&ref);
                image_ref_done(&ref);
                assert_non_null(w->new_image);
                assert_int_equal(json_object_set_new(container, "image", json_string(w->new_image)), 0);
        } else if (!strstr(file, "TEMPLATE"))
                fail_msg("%s: image \"%s\" does not parse", file, image);

        /* 2. Render, parse again: the same tree. */
        assert_int_equal(manifest_render(w->edited, &text, &size), 0);
        assert_non_null(text);
        assert_int_equal(strlen(text), size);
        assert_true(size > 0 && text[size - 1] == '\n');
        r = manifest_parse(text, size, file, &w->reparsed, &error);
        if (r < 0)
                fail_msg("%s: the rendered manifest does not parse: %d %s\n%s", file, r, error ?: "", text);
        assert_trees_equal(w->edited, w->reparsed, file, "edited and re-parsed trees");

        /* The edits are there. */
        container = json_array_get(pod_containers(w->reparsed), w->index);
        r = cmdline_open(container, w->component, &c, &error);
        if (r < 0)
                fail_msg("%s: cmdline_open(%s) after the rewrite: %d %s", file, w->component, r, error ?: "");
        value = NULL;
        assert_int_equal(cmdline_get_flag(&c, "emulated-version", &value), 1);
        assert_string_equal(value, NEW_EMULATED);
        value = NULL;
        assert_int_equal(cmdline_get_flag(&c, "v", &value), 1);
        assert_string_equal(value, NEW_V);
        assert_int_equal(cmdline_get_flag(&c, w->unset_name, NULL), 0);
        assert_string_equal(json_string_value(json_object_get(container, "image")), w->new_image ?: w->old_image);
        if (w->new_image)
                assert_non_null(strstr(w->new_image, ":" NEW_TAG));
}

/* 3. and 4.: apart from the edited items, the re-parsed tree is the original one. */
static void check_only_intended_changes(const char *file, const rewrite *w) {
        const char *const touched[] = { "emulated-version", "v", w->unset_name };
        _cleanup_(json_decrefp) json_t *a = json_deep_copy(w->original), *b = json_deep_copy(w->reparsed);
        _cleanup_(flag_list_done) flag_list before = {}, after = {};
        json_t *ca, *cb;
        size_t i, j;

        assert_non_null(a);
        assert_non_null(b);
        ca = json_array_get(pod_containers(a), w->index);
        cb = json_array_get(pod_containers(b), w->index);
        assert_non_null(ca);
        assert_non_null(cb);

        /* The image may differ only as intended; keep the key where it stood. */
        assert_string_equal(json_string_value(json_object_get(ca, "image")), w->old_image);
        assert_int_equal(json_object_set_new(ca, "image", json_null()), 0);
        assert_int_equal(json_object_set_new(cb, "image", json_null()), 0);
        strip_flags(ca, touched, ELEMENTSOF(touched));
        strip_flags(cb, touched, ELEMENTSOF(touched));
        assert_trees_equal(a, b, file, "original and rewritten trees (edited values left out)");

        /* The flags not touched keep their relative order, as the component reads them. */
        collect_flags(json_array_get(pod_containers(w->original), w->index), w->component, &before);
        collect_flags(json_array_get(pod_containers(w->reparsed), w->index), w->component, &after);
        for (i = 0, j = 0;; i++, j++) {
                while (i < before.n && flag_touched(before.items[i], touched, ELEMENTSOF(touched)))
                        i++;
                while (j < after.n && flag_touched(after.items[j], touched, ELEMENTSOF(touched)))
                        j++;
                if (i >= before.n || j >= after.n)
                        break;
                if (!streq(before.items[i], after.items[j]))
                        fail_msg("%s: flag #%zu was \"%s\", is \"%s\" after the rewrite", file, i, before.items[i],
                                 after.items[j]);
        }
        if (i < before.n || j < after.n)
                fail_msg("%s: untouched flags differ in number (%zu of %zu vs %zu of %zu consumed)", file, i,
                         before.n, j, after.n);
}

/* ---------------------------------------------------------------------------------------------
 * Tests */

static int name_cmp(const void *x, const void *y) {
        return strcmp(*(char *const *) x, *(char *const *) y);
}

static void test_rewrite_all_fixtures(void **state) {
        const char *dir = fixtures_dir();
        _cleanup_strv_free_ char **names = NULL;
        _cleanup_close_ int dfd = -EBADF;
        unsigned processed = 0, components = 0, etcd = 0, skipped = 0, unparsed = 0;
        unsigned per_component[ELEMENTSOF(component_names)] = {};
        struct dirent *de;
        size_t n = 0;
        DIR *d;

        dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                fail_msg("%s: %s", dir, strerror(errno));
        d = opendir(dir);
        if (!d)
                fail_msg("%s: %s", dir, strerror(errno));
        names = calloc(1, sizeof(char *));
        assert_non_null(names);
        while ((de = readdir(d))) {
                size_t l = strlen(de->d_name);
                char **grown;

                if (de->d_name[0] == '.' || l < 5 || !streq(de->d_name + l - 5, ".yaml"))
                        continue;
                grown = realloc(names, (n + 2) * sizeof(char *));
                assert_non_null(grown);
                names = grown;
                names[n] = strdup(de->d_name);
                assert_non_null(names[n]);
                names[++n] = NULL;
        }
        closedir(d);
        qsort(names, n, sizeof(char *), name_cmp);

        for (size_t i = 0; i < n; i++) {
                _cleanup_(json_decrefp) json_t *pod = NULL;
                _cleanup_free_ char *error = NULL;
                const char *component = NULL;
                rewrite w = {};
                int r;

                if (strstr(names[i], "BROKEN") || strstr(names[i], "openshift-TEMPLATE")) {
                        skipped++;
                        continue;
                }
                r = manifest_load(dfd, names[i], &pod, &error);
                if (r < 0) {
                        printf("# %s does not parse, left out: %s\n", names[i], error ?: "(no message)");
                        unparsed++;
                        continue;
                }
                processed++;

                if (find_component(pod, &component) < 0) {
                        if (!has_container(pod, "etcd"))
                                fail_msg("%s: neither a component nor etcd", names[i]);
                        etcd++;
                        continue;
                }
                for (size_t k = 0; k < ELEMENTSOF(component_names); k++)
                        if (streq(component, component_names[k]))
                                per_component[k]++;

                rewrite_pod(names[i], pod, &w);
                check_only_intended_changes(names[i], &w);
                printf("# %s: %s rewritten (--%s unset, image %s)\n", names[i], w.component, w.unset_name,
                       w.new_image ?: "kept");
                rewrite_done(&w);
                components++;
        }

        printf("# %u fixtures processed: %u components rewritten, %u etcd; %u skipped, %u did not parse\n",
               processed, components, etcd, skipped, unparsed);
        assert_true(processed >= 25);
        assert_true(components >= 20);
        assert_true(etcd >= 5);
        for (size_t k = 0; k < ELEMENTSOF(component_names); k++)
                if (per_component[k] < 3)
                        fail_msg("only %u %s manifests", per_component[k], component_names[k]);
}

static json_t *load_fixture(const char *name) {
        _cleanup_free_ char *path = strdup_printf("%s/%s", fixtures_dir(), name), *error = NULL;
        json_t *j = NULL;
        int r;

        assert_non_null(path);
        r = manifest_load(AT_FDCWD, path, &j, &error);
        if (r < 0)
                fail_msg("%s: %d %s", name, r, error ?: "(no message)");
        return j;
}

/* The position of the item equal to s in the container's command (-1: none), and how often. */
static ssize_t command_index(json_t *container, const char *s, unsigned *ret_count) {
        json_t *v;
        ssize_t found = -1;
        size_t i;

        *ret_count = 0;
        json_array_foreach(json_object_get(container, "command"), i, v)
                if (streq(json_string_value(v) ?: "", s)) {
                        if (found < 0)
                                found = (ssize_t) i;
                        (*ret_count)++;
                }
        return found;
}

static void test_rewrite_boolflag(void **state) {
        static const char file[] = "kubeadm-v1.26.3-kube-apiserver-boolflag.yaml";
        static const char bare[] = "--encryption-provider-config-automatic-reload", empty[] = "--runtime-config=";
        _cleanup_(json_decrefp) json_t *pod = load_fixture(file);
        _cleanup_free_ char *error = NULL;
        json_t *before, *after;
        ssize_t bare_before, empty_before, bare_after, empty_after, emulated_after;
        unsigned count;
        const char *value;
        rewrite w = {};
        cmdline c;

        before = json_array_get(pod_containers(pod), 0);
        bare_before = command_index(before, bare, &count);
        assert_int_equal(count, 1);
        empty_before = command_index(before, empty, &count);
        assert_int_equal(count, 1);
        assert_true(empty_before < bare_before);

        rewrite_pod(file, pod, &w);
        assert_string_equal(w.component, "kube-apiserver");
        assert_string_equal(w.unset_name, "advertise-address");
        assert_string_equal(w.new_image, "registry.k8s.io/kube-apiserver:" NEW_TAG);
        check_only_intended_changes(file, &w);

        after = json_array_get(pod_containers(w.reparsed), w.index);
        bare_after = command_index(after, bare, &count);
        assert_int_equal(count, 1);
        empty_after = command_index(after, empty, &count);
        assert_int_equal(count, 1);
        /* One item (--advertise-address) before both went away. */
        assert_int_equal(bare_after, bare_before - 1);
        assert_int_equal(empty_after, empty_before - 1);
        /* The new flags come after the bare one, which stays bare. */
        emulated_after = command_index(after, "--emulated-version=" NEW_EMULATED, &count);
        assert_int_equal(count, 1);
        assert_int_equal(emulated_after, bare_after + 1);
        assert_int_equal(json_array_size(json_object_get(after, "command")), (size_t) bare_after + 3);
        assert_string_equal(json_string_value(json_array_get(json_object_get(after, "command"), bare_after + 2)),
                            "--v=" NEW_V);

        assert_int_equal(cmdline_open(after, "kube-apiserver", &c, &error), 0);
        value = "untouched";
        assert_int_equal(cmdline_get_flag(&c, "encryption-provider-config-automatic-reload", &value), 1);
        assert_null(value);
        value = NULL;
        assert_int_equal(cmdline_get_flag(&c, "runtime-config", &value), 1);
        assert_non_null(value);
        assert_string_equal(value, "");
        value = NULL;
        assert_int_equal(cmdline_get_flag(&c, "feature-gates", &value), 1);
        assert_string_equal(value, "KubeletInUserNamespace=true");

        rewrite_done(&w);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_rewrite_all_fixtures),
                cmocka_unit_test(test_rewrite_boolflag),
        };

        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
