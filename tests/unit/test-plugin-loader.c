/* SPDX-License-Identifier: Apache-2.0 */
/* The plugin loader: the built-in plugins load; every malformed module is refused with its
 * file and reason named, and never crashes the host. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <dlfcn.h>
#include <ftw.h>
#include <link.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "macro.h"
#include "plugin-loader.h"
#include "test-util.h"

static const char *env(const char *name) {
        const char *v = getenv(name);

        if (!v)
                fail_msg("%s is not set (run under meson test)", name);
        return v;
}

static void copy_file(const char *from, const char *dir, const char *name, mode_t mode) {
        _cleanup_free_ char *to = strdup_printf("%s/%s", dir, name);
        _cleanup_fclose_ FILE *in = fopen(from, "re"), *out = NULL;
        char buf[65536];
        size_t n;

        if (!in)
                fail_msg("cannot open %s", from);
        out = fopen(to, "we");
        assert_non_null(out);
        while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
                assert_int_equal(fwrite(buf, 1, n, out), n);
        assert_int_equal(fchmod(fileno(out), mode), 0);
}

static char *make_dir_with_builtins(void) {
        char tmpl[] = "/tmp/cplet-test-plugins-XXXXXX";
        const char *builtin = env("CPLET_PLUGIN_BUILD_DIR");
        static const char *const names[] = { "kube-apiserver.so", "kube-controller-manager.so", "kube-scheduler.so" };

        assert_non_null(mkdtemp(tmpl));
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                _cleanup_free_ char *from = strdup_printf("%s/%s", builtin, names[i]);

                copy_file(from, tmpl, names[i], 0644);
        }
        return strdup(tmpl);
}

static void remove_dir(char *dir) {
        rm_rf(dir);
        free(dir);
}

static void test_builtins_load(void **state) {
        _cleanup_(plugin_set_freep) plugin_set *s = NULL;
        char *dir = make_dir_with_builtins();
        const plugin *api;

        /* A file that is not a module is ignored. */
        {
                _cleanup_free_ char *readme = strdup_printf("%s/README", dir);
                _cleanup_fclose_ FILE *f = fopen(readme, "we");

                assert_non_null(f);
        }
        assert_int_equal(plugin_set_load(dir, &s, NULL), 0);
        assert_int_equal(s->n, 3);
        /* Sorted by rank: the API server first. */
        assert_string_equal(s->items[0].name, "kube-apiserver");
        assert_string_equal(s->items[1].name, "kube-controller-manager");
        assert_string_equal(s->items[2].name, "kube-scheduler");

        api = plugin_set_find(s, "kube-apiserver");
        assert_non_null(api);
        assert_string_equal(api->manifest_file, "kube-apiserver.yaml");
        assert_true(kminor_eq(api->emulated_version_since, KMINOR(1, 31)));
        assert_true(kminor_eq(api->min_compatibility_version_since, KMINOR(1, 35)));
        assert_true(kminor_eq(api->emulation_forward_compatible_since, KMINOR(1, 33)));
        assert_string_equal(api->forward_compatible_flags[0], "emulation-forward-compatible");
        assert_int_equal(api->health_endpoints[0].port, 6443);
        assert_non_null(api->read_versions);
        assert_string_equal(api->version_path, "/version");
        assert_null(plugin_set_find(s, "kube-scheduler")->read_versions);
        assert_int_equal(plugin_set_find(s, "kube-controller-manager")->health_endpoints[0].port, 10257);
        remove_dir(dir);
}

/* The API server plugin reads /version as the real server writes it. */
static void test_apiserver_read_versions(void **state) {
        _cleanup_(plugin_set_freep) plugin_set *s = NULL;
        char *dir = make_dir_with_builtins();
        const plugin *api;
        struct cplet_reported_versions v;
        static const char old[] = "{\"major\":\"1\",\"minor\":\"32\",\"gitVersion\":\"v1.32.3\",\"platform\":\"linux/arm64\"}";
        static const char k3s[] = "    {\n    \"major\": \"1\",\n    \"minor\": \"34\",\n    \"emulationMajor\": \"1\",\n"
                                  "    \"emulationMinor\": \"34\",\n    \"minCompatibilityMajor\": \"1\",\n"
                                  "    \"minCompatibilityMinor\": \"33\",\n    \"gitVersion\": \"v1.34.1+k3s1\"\n    }\n";

        assert_int_equal(plugin_set_load(dir, &s, NULL), 0);
        api = plugin_set_find(s, "kube-apiserver");

        assert_int_equal(api->read_versions(old, strlen(old), &v), 0);
        assert_int_equal(v.binary.minor, 32);
        assert_false(v.has_emulation);
        assert_false(v.has_min_compat);
        assert_string_equal(v.git_version, "v1.32.3");

        assert_int_equal(api->read_versions(k3s, strlen(k3s), &v), 0);
        assert_int_equal(v.binary.minor, 34);
        assert_true(v.has_emulation);
        assert_int_equal(v.emulated.minor, 34);
        assert_true(v.has_min_compat);
        assert_int_equal(v.min_compat.minor, 33);
        assert_string_equal(v.git_version, "v1.34.1+k3s1");

        assert_true(api->read_versions("not json", 8, &v) < 0);
        assert_true(api->read_versions("[]", 2, &v) < 0);
        assert_true(api->read_versions("{\"major\":\"1\",\"minor\":\"x\"}", 25, &v) < 0);
        assert_true(api->read_versions("{\"major\":\"1\"}", 13, &v) < 0);
        remove_dir(dir);
}

typedef struct refusal {
        const char *module;
        const char *reason;
} refusal;

static const refusal refusals[] = {
        { "abi-major-99.so", "plugin ABI 99.0, this cplet speaks 1.x" },
        { "size-too-small.so", "plugin struct is 12 bytes" },
        { "no-entry-symbol.so", "missing symbol cplet_plugin_entry" },
        { "null-entry.so", "entry point returned no plugin" },
        { "duplicate-scheduler.so", "component \"kube-scheduler\" is already provided by" },
        { "bad-name.so", "invalid component name" },
};

static void test_refused(void **state) {
        const refusal *r = *state;
        _cleanup_free_ char *from = strdup_printf("%s/%s", env("CPLET_TEST_PLUGIN_DIR"), r->module);
        _cleanup_free_ char *error = NULL, *named = NULL;
        plugin_set *s = NULL;
        char *dir = make_dir_with_builtins();

        copy_file(from, dir, r->module, 0644);
        assert_int_equal(plugin_set_load(dir, &s, &error) < 0, true);
        assert_null(s);
        named = strdup_printf("%s/%s", dir, r->module);
        if (!strstr(error, named) || !strstr(error, r->reason))
                fail_msg("error \"%s\" should name %s and say \"%s\"", error, named, r->reason);
        remove_dir(dir);
}

static void test_future_minor_accepted(void **state) {
        _cleanup_free_ char *from = strdup_printf("%s/future-minor.so", env("CPLET_TEST_PLUGIN_DIR"));
        _cleanup_(plugin_set_freep) plugin_set *s = NULL;
        char *dir = make_dir_with_builtins();

        copy_file(from, dir, "future-minor.so", 0644);
        assert_int_equal(plugin_set_load(dir, &s, NULL), 0);
        assert_int_equal(s->n, 4);
        assert_string_equal(s->items[3].name, "test-future");
        remove_dir(dir);
}

static void test_writable_module_refused(void **state) {
        _cleanup_free_ char *error = NULL;
        plugin_set *s = NULL;
        char *dir = make_dir_with_builtins();
        _cleanup_free_ char *path = strdup_printf("%s/kube-scheduler.so", dir);

        assert_int_equal(chmod(path, 0666), 0);
        assert_int_equal(plugin_set_load(dir, &s, &error), -EINVAL);
        assert_non_null(strstr(error, "world-writable"));
        assert_non_null(strstr(error, path));
        remove_dir(dir);
}

static void test_directory_checks(void **state) {
        _cleanup_free_ char *error = NULL;
        char tmpl[] = "/tmp/cplet-test-empty-XXXXXX";
        plugin_set *s = NULL;

        assert_int_equal(plugin_set_load("build/plugins", &s, &error), -EINVAL);
        assert_non_null(strstr(error, "absolute"));
        free(error);
        error = NULL;
        assert_true(plugin_set_load("/nonexistent/cplet-plugins", &s, &error) < 0);
        assert_non_null(strstr(error, "/nonexistent/cplet-plugins"));
        free(error);
        error = NULL;
        assert_non_null(mkdtemp(tmpl));
        assert_int_equal(plugin_set_load(tmpl, &s, &error), -ENOENT);
        assert_non_null(strstr(error, "no plugins"));
        rmdir(tmpl);
}

/* Anyone who can write the directory or the module could make cplet run their code as root. */
static void test_unsafe_directory_refused(void **state) {
        _cleanup_free_ char *error = NULL;
        plugin_set *s = NULL;
        char *dir = make_dir_with_builtins();

        assert_int_equal(chmod(dir, 0777), 0);
        assert_int_equal(plugin_set_load(dir, &s, &error), -EPERM);
        assert_null(s);
        if (!strstr(error, dir) || !strstr(error, "group- or world-writable"))
                fail_msg("error \"%s\" should name %s as group- or world-writable", error, dir);
        free(error);
        error = NULL;
        assert_int_equal(chmod(dir, 0775), 0);
        assert_int_equal(plugin_set_load(dir, &s, &error), -EPERM);
        assert_non_null(strstr(error, "group- or world-writable"));
        free(error);
        error = NULL;
        assert_int_equal(chmod(dir, 0755), 0);

        /* Another owner (neither root nor the caller): only root can make one. */
        if (geteuid() == 0) {
                assert_int_equal(chown(dir, 65534, 65534), 0);
                assert_int_equal(plugin_set_load(dir, &s, &error), -EPERM);
                if (!strstr(error, dir) || !strstr(error, "owned by uid 65534"))
                        fail_msg("error \"%s\" should name %s and its owner", error, dir);
                free(error);
                error = NULL;
        }
        remove_dir(dir);
}

static void test_foreign_module_refused(void **state) {
        _cleanup_free_ char *error = NULL;
        plugin_set *s = NULL;
        char *dir = make_dir_with_builtins();
        _cleanup_free_ char *path = strdup_printf("%s/kube-scheduler.so", dir);

        assert_int_equal(chmod(path, 0664), 0);
        assert_int_equal(plugin_set_load(dir, &s, &error), -EINVAL);
        if (!strstr(error, path) || !strstr(error, "group- or world-writable"))
                fail_msg("error \"%s\" should name %s as group-writable", error, path);
        free(error);
        error = NULL;
        assert_int_equal(chmod(path, 0644), 0);
        if (geteuid() == 0) {
                assert_int_equal(chown(path, 65534, 65534), 0);
                assert_int_equal(plugin_set_load(dir, &s, &error), -EINVAL);
                if (!strstr(error, path) || !strstr(error, "owned by uid 65534"))
                        fail_msg("error \"%s\" should name %s and its owner", error, path);
        }
        remove_dir(dir);
}

/* A symbolic link, a FIFO or a socket named like a module is refused without following or
 * blocking on it. */
static void test_special_module_refused(void **state) {
        static const char *const kinds[] = { "symlink", "fifo", "socket" };

        for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
                _cleanup_free_ char *error = NULL;
                plugin_set *s = NULL;
                char *dir = make_dir_with_builtins();
                _cleanup_free_ char *path = strdup_printf("%s/extra.so", dir);
                _cleanup_free_ char *target = strdup_printf("%s/kube-scheduler.so", env("CPLET_PLUGIN_BUILD_DIR"));

                if (streq(kinds[i], "symlink"))
                        assert_int_equal(symlink(target, path), 0);
                else if (streq(kinds[i], "fifo"))
                        assert_int_equal(mkfifo(path, 0644), 0);
                else
                        make_socket_file(path);
                assert_int_equal(plugin_set_load(dir, &s, &error), -EINVAL);
                if (!strstr(error, path) || !strstr(error, "not a regular file"))
                        fail_msg("%s: error \"%s\" should name %s as not a regular file", kinds[i], error, path);
                remove_dir(dir);
        }
}

/* The module loaded is the file that was checked: dlopen goes through the checked fd, never
 * the path again (which someone could have swapped in between). */
static void test_loads_the_checked_file(void **state) {
        _cleanup_(plugin_set_freep) plugin_set *s = NULL;
        char *dir = make_dir_with_builtins();

        assert_int_equal(plugin_set_load(dir, &s, NULL), 0);
        for (size_t i = 0; i < s->n; i++) {
                struct link_map *lm = NULL;

                assert_non_null(s->items[i].handle);
                assert_int_equal(dlinfo(s->items[i].handle, RTLD_DI_LINKMAP, &lm), 0);
                if (!startswith(lm->l_name, "/proc/self/fd/"))
                        fail_msg("%s was loaded as %s, not through its checked descriptor", s->items[i].path,
                                 lm->l_name);
        }
        remove_dir(dir);
}

static void test_from_struct_reads_within_size(void **state) {
        struct cplet_plugin p = {
                .abi_major = CPLET_PLUGIN_ABI_MAJOR,
                .size = sizeof(struct cplet_plugin),
                .name = "kube-example",
                .manifest_file = "kube-example.yaml",
                .rank = 50,
                .version_path = "/version",
                .read_versions = NULL,
        };
        _cleanup_free_ char *error = NULL;
        plugin v;

        /* version_path without a reader makes no sense. */
        assert_int_equal(plugin_from_struct(&p, "test", &v, &error), -EINVAL);
        p.version_path = NULL;
        assert_int_equal(plugin_from_struct(&p, "test", &v, NULL), 0);
        assert_string_equal(v.name, "kube-example");
        p.manifest_file = ".hidden.yaml";
        assert_int_equal(plugin_from_struct(&p, "test", &v, NULL), -EINVAL);
        p.manifest_file = "a/b.yaml";
        assert_int_equal(plugin_from_struct(&p, "test", &v, NULL), -EINVAL);
        p.manifest_file = "kube-example.yaml";
        p.rank = -1;
        assert_int_equal(plugin_from_struct(&p, "test", &v, NULL), -EINVAL);
        p.rank = 1;
        p.n_health_endpoints = 2; /* with no array */
        assert_int_equal(plugin_from_struct(&p, "test", &v, NULL), -EINVAL);
}

int main(void) {
        struct CMUnitTest tests[ELEMENTSOF(refusals) + 10] = {
                cmocka_unit_test(test_builtins_load),
                cmocka_unit_test(test_apiserver_read_versions),
                cmocka_unit_test(test_future_minor_accepted),
                cmocka_unit_test(test_writable_module_refused),
                cmocka_unit_test(test_directory_checks),
                cmocka_unit_test(test_from_struct_reads_within_size),
                cmocka_unit_test(test_unsafe_directory_refused),
                cmocka_unit_test(test_foreign_module_refused),
                cmocka_unit_test(test_special_module_refused),
                cmocka_unit_test(test_loads_the_checked_file),
        };

        ADD_TABLE_CASES(tests, 10, refusals, module, test_refused);
        return RUN_TAP_GROUP("test-plugin-loader", tests, NULL, NULL);
}
