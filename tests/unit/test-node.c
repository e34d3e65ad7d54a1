/* SPDX-License-Identifier: Apache-2.0 */
/* Reading a node: which files are components (by content, whatever their names), which are
 * left alone, and which make cplet refuse. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <ftw.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include "macro.h"
#include "node.h"
#include "test-plugins.h"
#include "test-util.h"

/* A node root in /tmp with an empty manifest directory. */
typedef struct root {
        char path[64];
        char manifests[128];
} root;

static void root_make(root *r) {
        int fd;

        strcpy(r->path, "/tmp/cplet-test-node-XXXXXX");
        fd = scratch_root(r->path);
        assert_true(fd >= 0);
        close(fd);
        snprintf(r->manifests, sizeof(r->manifests), "%s/etc/kubernetes/manifests", r->path);
}

static void root_remove(root *r) {
        rm_rf(r->path);
}

static void write_file(const root *r, const char *name, const char *content) {
        _cleanup_free_ char *path = strdup_printf("%s/%s", r->manifests, name);
        _cleanup_fclose_ FILE *f = fopen(path, "we");

        assert_non_null(f);
        assert_int_equal(fputs(content, f) >= 0, true);
}

static char *pod(const char *container, const char *image, const char *argv_yaml) {
        return strdup_printf("apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n  namespace: kube-system\n"
                             "spec:\n  containers:\n  - name: %s\n    image: %s\n%s",
                             container, image, argv_yaml);
}

static const char kubeadm_argv[] = "    command:\n    - %s\n    - --secure-port=1\n";

static void write_component(const root *r, const char *file, const char *name, const char *tag) {
        _cleanup_free_ char *argv = strdup_printf(kubeadm_argv, name);
        _cleanup_free_ char *image = strdup_printf("registry.k8s.io/%s:%s", name, tag);
        _cleanup_free_ char *text = pod(name, image, argv);

        write_file(r, file, text);
}

static void test_kubeadm_node(void **state) {
        _cleanup_(node_freep) node *n = NULL;
        root r;

        root_make(&r);
        write_component(&r, "kube-scheduler.yaml", "kube-scheduler", "v1.34.2");
        write_component(&r, "kube-apiserver.yaml", "kube-apiserver", "v1.34.2");
        write_component(&r, "kube-controller-manager.yaml", "kube-controller-manager", "v1.34.2");
        write_file(&r, "etcd.yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\nspec:\n  containers:\n  - name: etcd\n"
                                    "    image: registry.k8s.io/etcd:3.6.4-0\n    command: [etcd]\n");

        assert_int_equal(node_load(r.path, plugins, &n, NULL), 0);
        assert_int_equal(n->n_components, 3);
        assert_string_equal(n->components[0].plugin->name, "kube-apiserver");
        assert_string_equal(n->components[1].plugin->name, "kube-controller-manager");
        assert_string_equal(n->components[2].plugin->name, "kube-scheduler");
        assert_string_equal(n->components[0].file, "kube-apiserver.yaml");
        assert_string_equal(n->unmanaged[0], "etcd.yaml");
        assert_null(n->unmanaged[1]);
        assert_true(n->components[0].versions_known);
        assert_int_equal(n->components[0].emulated.minor, 34);
        assert_int_equal(n->components[0].min_compat.minor, 33);
        assert_false(n->components[0].emulated_explicit);
        root_remove(&r);
}

static void test_identified_by_content(void **state) {
        _cleanup_(node_freep) node *n = NULL;
        _cleanup_free_ char *by_binary = NULL, *by_image = NULL;
        root r;

        root_make(&r);
        /* Container renamed, binary in the command: found by the binary. */
        by_binary = pod("apiserver", "registry.k8s.io/kube-apiserver:v1.35.0",
                        "    command: [/usr/local/bin/kube-apiserver, --emulated-version=1.34]\n");
        write_file(&r, "api-pod.manifest", by_binary);
        /* No command, container renamed: found by the image name (arch suffix). */
        by_image = pod("main", "registry.example.com/kube-scheduler-amd64:v1.35.0",
                       "    args: [--emulated-version=kube=1.34, --min-compatibility-version=1.33]\n");
        write_file(&r, "sched", by_image);

        assert_int_equal(node_load(r.path, plugins, &n, NULL), 0);
        assert_int_equal(n->n_components, 2);
        assert_string_equal(n->components[0].file, "api-pod.manifest");
        assert_true(n->components[0].emulated_explicit);
        assert_int_equal(n->components[0].emulated.minor, 34);
        assert_string_equal(n->components[1].plugin->name, "kube-scheduler");
        assert_true(n->components[1].cmdline.entrypoint);
        assert_true(n->components[1].min_compat_explicit);
        assert_int_equal(n->components[1].min_compat.minor, 33);
        root_remove(&r);
}

static void test_backup_in_manifest_dir_refused(void **state) {
        _cleanup_free_ char *error = NULL;
        node *n = NULL;
        root r;

        root_make(&r);
        write_component(&r, "kube-apiserver.yaml", "kube-apiserver", "v1.34.2");
        write_component(&r, "kube-apiserver.yaml.bak", "kube-apiserver", "v1.33.0");
        assert_int_equal(node_load(r.path, plugins, &n, &error), -EEXIST);
        assert_null(n);
        assert_non_null(strstr(error, "kube-apiserver.yaml.bak"));
        assert_non_null(strstr(error, "/kube-apiserver.yaml "));
        assert_non_null(strstr(error, "the kubelet runs every file"));
        root_remove(&r);
}

static void test_dot_files_ignored(void **state) {
        _cleanup_(node_freep) node *n = NULL;
        root r;

        root_make(&r);
        write_component(&r, "kube-apiserver.yaml", "kube-apiserver", "v1.34.2");
        write_component(&r, ".kube-apiserver.yaml.bak", "kube-apiserver", "v1.33.0");
        write_file(&r, ".swp", "not yaml: [");
        assert_int_equal(node_load(r.path, plugins, &n, NULL), 0);
        assert_int_equal(n->n_components, 1);
        assert_string_equal(n->components[0].image, "registry.k8s.io/kube-apiserver:v1.34.2");
        root_remove(&r);
}

static void test_broken_file_refused(void **state) {
        _cleanup_free_ char *error = NULL;
        node *n = NULL;
        root r;

        root_make(&r);
        write_component(&r, "kube-apiserver.yaml", "kube-apiserver", "v1.34.2");
        write_file(&r, "kube-scheduler.yaml", "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n- name: x\n   bad: [\n");
        assert_int_equal(node_load(r.path, plugins, &n, &error), -EINVAL);
        assert_non_null(strstr(error, "/kube-scheduler.yaml:"));
        root_remove(&r);
}

static void test_symlink_refused(void **state) {
        _cleanup_free_ char *error = NULL, *link = NULL;
        node *n = NULL;
        root r;

        root_make(&r);
        write_component(&r, "real.yaml.txt", "kube-apiserver", "v1.34.2");
        link = strdup_printf("%s/kube-apiserver.yaml", r.manifests);
        assert_int_equal(symlink("/etc/passwd", link), 0);
        assert_true(node_load(r.path, plugins, &n, &error) < 0);
        assert_non_null(strstr(error, "kube-apiserver.yaml"));
        assert_non_null(strstr(error, "symbolic link"));
        root_remove(&r);
}

static void test_unplannable_components_told(void **state) {
        _cleanup_(node_freep) node *n = NULL;
        _cleanup_free_ char *shell = NULL, *digest = NULL, *invalid = NULL;
        const char *why;
        root r;

        root_make(&r);
        shell = pod("kube-apiserver", "registry.k8s.io/kube-apiserver:v1.35.0",
                    "    command: [/bin/bash, -ec]\n    args:\n    - |\n      exec kube-apiserver --v=2\n");
        write_file(&r, "kube-apiserver.yaml", shell);
        digest = pod("kube-controller-manager",
                     "registry.k8s.io/kube-controller-manager@sha256:"
                     "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                     "    command: [kube-controller-manager]\n");
        write_file(&r, "kube-controller-manager.yaml", digest);
        invalid = pod("kube-scheduler", "registry.k8s.io/kube-scheduler:v1.35.0",
                      "    command: [kube-scheduler, --emulated-version=1.31]\n");
        write_file(&r, "kube-scheduler.yaml", invalid);

        assert_int_equal(node_load(r.path, plugins, &n, NULL), 0);
        assert_int_equal(n->n_components, 3);
        assert_false(component_is_plannable(&n->components[0], &why));
        assert_non_null(strstr(why, "shell script"));
        assert_false(component_is_plannable(&n->components[1], &why));
        assert_non_null(strstr(why, "digest only"));
        assert_false(n->components[1].binary_known);
        assert_false(component_is_plannable(&n->components[2], &why));
        assert_non_null(strstr(why, "emulation version 1.31 is not between [1.32, 1.35]"));
        root_remove(&r);
}

static void test_sidecar_and_multi_component(void **state) {
        _cleanup_free_ char *error = NULL;
        node *n = NULL;
        root r;

        root_make(&r);
        /* A sidecar next to the API server: the container named like the component wins. */
        write_file(&r, "kube-apiserver.yaml",
                   "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\nspec:\n  containers:\n"
                   "  - name: audit-shipper\n    image: example.com/kube-apiserver-audit:v1\n    command: [ship]\n"
                   "  - name: kube-apiserver\n    image: registry.k8s.io/kube-apiserver:v1.34.2\n"
                   "    command: [kube-apiserver, --secure-port=6443]\n");
        assert_int_equal(node_load(r.path, plugins, &n, NULL), 0);
        assert_string_equal(container_name(n->components[0].container), "kube-apiserver");
        n = node_free(n);

        /* One pod running two components cannot be edited step by step. */
        write_file(&r, "kube-apiserver.yaml",
                   "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\nspec:\n  containers:\n"
                   "  - name: kube-scheduler\n    image: registry.k8s.io/kube-scheduler:v1.34.2\n"
                   "  - name: kube-apiserver\n    image: registry.k8s.io/kube-apiserver:v1.34.2\n");
        assert_int_equal(node_load(r.path, plugins, &n, &error), -EINVAL);
        assert_non_null(strstr(error, "one pod holds both"));
        root_remove(&r);
}

static void test_json_manifest(void **state) {
        _cleanup_(node_freep) node *n = NULL;
        root r;

        root_make(&r);
        write_file(&r, "kube-apiserver.json",
                   "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"kube-apiserver\"},\"spec\":{\"containers\":[{\"name\":\"kube-apiserver\","
                   "\"image\":\"registry.k8s.io/kube-apiserver:v1.35.0\",\"command\":[\"kube-apiserver\","
                   "\"--emulated-version\",\"1.33\"]}]}}");
        assert_int_equal(node_load(r.path, plugins, &n, NULL), 0);
        assert_int_equal(n->n_components, 1);
        assert_true(n->components[0].emulated_explicit);
        assert_int_equal(n->components[0].emulated.minor, 33);
        assert_int_equal(n->components[0].min_compat.minor, 32);
        root_remove(&r);
}

/* Files the kubelet would try to load but would not run as the pod cplet thinks it is. The
 * strict load refuses each, naming the file; the status load keeps them as broken entries. */
typedef struct unusable {
        const char *name;
        const char *text;
        const char *reason;
} unusable;

static const unusable unusables[] = {
        { "empty containers",
          "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\nspec:\n  containers: []\n",
          "spec.containers" },
        { "containers as a mapping",
          "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\nspec:\n  containers:\n"
          "    kube-apiserver:\n      image: registry.k8s.io/kube-apiserver:v1.34.2\n",
          "spec.containers" },
        { "a Deployment",
          "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: kube-apiserver\nspec:\n  containers:\n"
          "  - name: kube-apiserver\n    image: registry.k8s.io/kube-apiserver:v1.34.2\n    command: [kube-apiserver]\n",
          "kind" },
        { "apiVersion v2",
          "apiVersion: v2\nkind: Pod\nmetadata:\n  name: kube-apiserver\nspec:\n  containers:\n"
          "  - name: kube-apiserver\n    image: registry.k8s.io/kube-apiserver:v1.34.2\n    command: [kube-apiserver]\n",
          "apiVersion" },
        { "no metadata.name",
          "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n"
          "  - name: kube-apiserver\n    image: registry.k8s.io/kube-apiserver:v1.34.2\n    command: [kube-apiserver]\n",
          "metadata.name" },
        { "a container without a name",
          "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\nspec:\n  containers:\n"
          "  - image: registry.k8s.io/kube-apiserver:v1.34.2\n    command: [kube-apiserver]\n",
          "spec.containers[0].name" },
        { "a container that is a string",
          "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\nspec:\n  containers:\n  - kube-apiserver\n",
          "spec.containers[0]" },
        { "a pod running something else",
          "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\nspec:\n  containers:\n"
          "  - name: web\n    image: nginx:1.27\n",
          "no container runs kube-apiserver" },
        { "not YAML",
          "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n- name: x\n   bad: [\n",
          "kube-apiserver.yaml:" },
};

static void test_unusable_manifest(void **state) {
        const unusable *u = *state;
        _cleanup_free_ char *error = NULL, *path = NULL;
        _cleanup_(node_freep) node *kept = NULL;
        node *n = NULL;
        root r;

        root_make(&r);
        path = strdup_printf("%s/kube-apiserver.yaml", r.manifests);
        write_file(&r, "kube-apiserver.yaml", u->text);
        write_component(&r, "kube-controller-manager.yaml", "kube-controller-manager", "v1.34.2");
        write_component(&r, "kube-scheduler.yaml", "kube-scheduler", "v1.34.2");

        /* Planning or writing from this node would skip the API server (or edit a pod the
         * kubelet does not run): refused, naming the file and what is wrong. */
        assert_int_equal(node_load(r.path, plugins, &n, &error), -EINVAL);
        assert_null(n);
        if (!strstr(error, path) || !strstr(error, u->reason))
                fail_msg("%s: error \"%s\" should name %s and say \"%s\"", u->name, error, path, u->reason);

        /* status sees the same node and tells which component cannot be read. */
        assert_int_equal(node_load_full(r.path, plugins, NODE_LOAD_KEEP_BROKEN, &kept, NULL), 0);
        assert_int_equal(kept->n_components, 2);
        assert_int_equal(kept->n_broken, 1);
        assert_string_equal(kept->broken[0].file, "kube-apiserver.yaml");
        assert_non_null(kept->broken[0].expected);
        assert_string_equal(kept->broken[0].expected->name, "kube-apiserver");
        if (!strstr(kept->broken[0].error, u->reason))
                fail_msg("%s: broken entry \"%s\" should say \"%s\"", u->name, kept->broken[0].error, u->reason);
        root_remove(&r);
}

/* Not a component and not a pod: still a file the kubelet would try to run. */
static void test_unusable_other_file(void **state) {
        _cleanup_free_ char *error = NULL;
        _cleanup_(node_freep) node *kept = NULL;
        node *n = NULL;
        root r;

        root_make(&r);
        write_component(&r, "kube-apiserver.yaml", "kube-apiserver", "v1.34.2");
        write_file(&r, "notes.yaml", "todo: upgrade\n");
        assert_int_equal(node_load(r.path, plugins, &n, &error), -EINVAL);
        assert_non_null(strstr(error, "/notes.yaml"));
        assert_int_equal(node_load_full(r.path, plugins, NODE_LOAD_KEEP_BROKEN, &kept, NULL), 0);
        assert_int_equal(kept->n_broken, 1);
        assert_null(kept->broken[0].expected);
        assert_int_equal(kept->n_components, 1);
        root_remove(&r);
}

/* A name that is not UTF-8 cannot be shown in JSON nor stored as a revision's manifest name:
 * refused up front, named with the bad bytes escaped. */
static void test_non_utf8_name_refused(void **state) {
        _cleanup_free_ char *error = NULL;
        node *n = NULL;
        root r;

        root_make(&r);
        write_component(&r, "kube-apiserver.yaml", "kube-apiserver", "v1.34.2");
        write_component(&r, "kube\xff.yaml", "kube-scheduler", "v1.34.2");
        assert_int_equal(node_load(r.path, plugins, &n, &error), -EINVAL);
        assert_null(n);
        if (!strstr(error, "kube\\xff.yaml") || !strstr(error, "UTF-8"))
                fail_msg("error \"%s\" should name kube\\xff.yaml (escaped) and say it is not UTF-8", error);
        assert_null(strchr(error, '\xff'));
        free(error);
        error = NULL;
        /* Not even for status. */
        assert_int_equal(node_load_full(r.path, plugins, NODE_LOAD_KEEP_BROKEN, &n, &error), -EINVAL);
        /* Overlong encodings and lone continuation bytes are not UTF-8 either. */
        root_remove(&r);
        root_make(&r);
        write_component(&r, "a\xc0\xaf.yaml", "kube-scheduler", "v1.34.2");
        assert_int_equal(node_load(r.path, plugins, &n, NULL), -EINVAL);
        root_remove(&r);
        root_make(&r);
        write_component(&r, "\xe2\x82.yaml", "kube-scheduler", "v1.34.2");
        assert_int_equal(node_load(r.path, plugins, &n, NULL), -EINVAL);
        root_remove(&r);
        /* Valid multi-byte UTF-8 is a name like any other. */
        root_make(&r);
        write_component(&r, "kube-\xc3\xa9t\xc3\xa9.yaml", "kube-scheduler", "v1.34.2");
        assert_int_equal(node_load(r.path, plugins, &n, NULL), 0);
        n = node_free(n);
        root_remove(&r);
}

/* A FIFO, a socket or a device in the manifest directory is refused as invalid input,
 * without blocking on it (nobody writes to the FIFO). */
static void test_special_file_refused(void **state) {
        static const char *const kinds[] = { "FIFO", "socket", "device" };

        for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
                _cleanup_free_ char *error = NULL, *path = NULL;
                node *n = NULL;
                root r;

                root_make(&r);
                write_component(&r, "kube-apiserver.yaml", "kube-apiserver", "v1.34.2");
                path = strdup_printf("%s/kube-scheduler.yaml", r.manifests);
                if (streq(kinds[i], "FIFO"))
                        assert_int_equal(mkfifo(path, 0600), 0);
                else if (streq(kinds[i], "socket"))
                        make_socket_file(path);
                else if (mknod(path, S_IFCHR | 0600, makedev(1, 3)) < 0) {
                        root_remove(&r); /* not root: no device to test with */
                        continue;
                }
                assert_int_equal(node_load(r.path, plugins, &n, &error), -EINVAL);
                if (!strstr(error, path) || !strstr(error, kinds[i]))
                        fail_msg("error \"%s\" should name %s as a %s", error, path, kinds[i]);
                root_remove(&r);
        }
}

static void test_missing_manifest_dir(void **state) {
        _cleanup_free_ char *error = NULL;
        node *n = NULL;

        assert_int_equal(node_load("/nonexistent-root", plugins, &n, &error), -ENOENT);
        assert_non_null(strstr(error, "/nonexistent-root/etc/kubernetes/manifests"));
}

int main(void) {
        struct CMUnitTest tests[ELEMENTSOF(unusables) + 13] = {
                cmocka_unit_test(test_kubeadm_node),
                cmocka_unit_test(test_identified_by_content),
                cmocka_unit_test(test_backup_in_manifest_dir_refused),
                cmocka_unit_test(test_dot_files_ignored),
                cmocka_unit_test(test_broken_file_refused),
                cmocka_unit_test(test_symlink_refused),
                cmocka_unit_test(test_unplannable_components_told),
                cmocka_unit_test(test_sidecar_and_multi_component),
                cmocka_unit_test(test_json_manifest),
                cmocka_unit_test(test_missing_manifest_dir),
                cmocka_unit_test(test_unusable_other_file),
                cmocka_unit_test(test_non_utf8_name_refused),
                cmocka_unit_test(test_special_file_refused),
        };

        ADD_TABLE_CASES(tests, 13, unusables, name, test_unusable_manifest);
        return RUN_TAP_GROUP("test-node", tests, plugins_setup, plugins_teardown);
}
