/* SPDX-License-Identifier: Apache-2.0 */
/* A component's flags across a container's command + args (agent/lib/cmdline.h), and container image
 * references (agent/lib/image.h). */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cmdline.h"
#include "image.h"
#include "macro.h"
#include "manifest.h"

/* A value no library call would ever hand out: proves an out parameter was left alone. */
static const char untouched[] = "untouched";

/* Parses a small YAML (or JSON) container mapping; it must parse. */
static json_t *container_new(const char *yaml) {
        _cleanup_free_ char *error = NULL;
        json_t *c = NULL;
        int r;

        r = manifest_parse(yaml, strlen(yaml), "container.yaml", &c, &error);
        if (r < 0)
                fail_msg("container does not parse (%d): %s\n%s", r, error ?: "(no message)", yaml);
        assert_true(json_is_object(c));
        return c;
}

/* Opens the command line of `binary`; it must succeed. */
static void open_ok(json_t *container, const char *binary, cmdline *ret) {
        _cleanup_free_ char *error = NULL;
        int r;

        r = cmdline_open(container, binary, ret, &error);
        if (r < 0)
                fail_msg("cmdline_open(%s) failed (%d): %s", binary, r, error ?: "(no message)");
        assert_null(error);
        assert_ptr_equal(ret->container, container);
}

/* The container's `key` must equal the JSON text `expected` ("null": the key is absent). */
static void assert_argv(json_t *container, const char *key, const char *expected) {
        _cleanup_(json_decrefp) json_t *want = NULL;
        json_error_t jerr;
        json_t *have = json_object_get(container, key);

        want = json_loads(expected, JSON_DECODE_ANY, &jerr);
        if (!want)
                fail_msg("bad expectation %s: %s", expected, jerr.text);
        if (json_is_null(want)) {
                if (have) {
                        _cleanup_free_ char *h = json_dumps(have, JSON_COMPACT | JSON_ENCODE_ANY);

                        fail_msg("%s: expected no such key, got %s", key, h);
                }
                return;
        }
        if (!have || !json_equal(have, want)) {
                _cleanup_free_ char *h = have ? json_dumps(have, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;

                fail_msg("%s:\n  expected %s\n  got      %s", key, expected, h ?: "(absent)");
        }
}

/* Reads a flag that must occur `count` times with value `value` (NULL: bare). */
static void assert_flag(const cmdline *c, const char *name, int count, const char *value) {
        const char *v = untouched;
        int n;

        n = cmdline_get_flag(c, name, &v);
        if (n != count)
                fail_msg("--%s: expected %d occurrences, got %d", name, count, n);
        if (count == 0) {
                assert_ptr_equal(v, untouched);
                return;
        }
        if (!value) {
                if (v)
                        fail_msg("--%s: expected a bare flag, got value \"%s\"", name, v);
                return;
        }
        if (!v || v == untouched)
                fail_msg("--%s: expected \"%s\", got %s", name, value, v ? "nothing" : "a bare flag");
        if (!streq(v, value))
                fail_msg("--%s: expected \"%s\", got \"%s\"", name, value, v);
}

typedef struct flag_list {
        char text[1024];
        size_t n;
} flag_list;

static int collect_flag(const char *name, size_t name_len, const char *value, void *userdata) {
        flag_list *l = userdata;
        size_t used = strlen(l->text);

        snprintf(l->text + used, sizeof(l->text) - used, "%s%.*s%s%s", l->n > 0 ? " " : "", (int) name_len,
                 name, value ? "=" : "", value ?: "");
        l->n++;
        return 0;
}

/* The flags as cmdline_foreach_flag() sees them, space separated, "name=value" or "name". */
static void assert_flags(const cmdline *c, const char *expected) {
        flag_list l = {};

        assert_int_equal(cmdline_foreach_flag(c, collect_flag, &l), 0);
        if (!streq(l.text, expected))
                fail_msg("flags:\n  expected \"%s\"\n  got      \"%s\"", expected, l.text);
}

/* ---------------------------------------------------------------------------------------------
 * Where the binary and its flags are */

static void test_open_kubeadm_form(void **state) {
        _cleanup_(json_decrefp) json_t *ct = container_new(
                "name: kube-apiserver\n"
                "image: registry.k8s.io/kube-apiserver:v1.34.2\n"
                "command:\n"
                "- kube-apiserver\n"
                "- --advertise-address=10.0.0.1\n"
                "- --secure-port=6443\n"
                "- --v=2\n");
        cmdline c;

        open_ok(ct, "kube-apiserver", &c);
        assert_false(c.entrypoint);
        assert_int_equal(c.flags_start, 1);
        assert_non_null(c.command);
        assert_null(c.args);
        assert_int_equal(cmdline_size(&c), 4);
        assert_string_equal(cmdline_item(&c, 0), "kube-apiserver");
        assert_string_equal(cmdline_item(&c, 3), "--v=2");
        assert_null(cmdline_item(&c, 4));
        assert_null(cmdline_item(&c, 100));
        assert_flag(&c, "advertise-address", 1, "10.0.0.1");
        assert_flag(&c, "secure-port", 1, "6443");
        assert_flag(&c, "v", 1, "2");
        assert_flag(&c, "kube-apiserver", 0, NULL);
        assert_flags(&c, "advertise-address=10.0.0.1 secure-port=6443 v=2");
}

static void test_open_command_plus_args(void **state) {
        _cleanup_(json_decrefp) json_t *ct = container_new(
                "name: kube-scheduler\n"
                "command: [kube-scheduler]\n"
                "args:\n"
                "- --kubeconfig=/etc/kubernetes/scheduler.conf\n"
                "- --leader-elect=true\n");
        cmdline c;

        open_ok(ct, "kube-scheduler", &c);
        assert_false(c.entrypoint);
        assert_int_equal(c.flags_start, 1);
        assert_int_equal(cmdline_size(&c), 3);
        assert_string_equal(cmdline_item(&c, 0), "kube-scheduler");
        assert_string_equal(cmdline_item(&c, 1), "--kubeconfig=/etc/kubernetes/scheduler.conf");
        assert_string_equal(cmdline_item(&c, 2), "--leader-elect=true");
        assert_flag(&c, "kubeconfig", 1, "/etc/kubernetes/scheduler.conf");
        assert_flag(&c, "leader-elect", 1, "true");
        assert_flags(&c, "kubeconfig=/etc/kubernetes/scheduler.conf leader-elect=true");

        /* A path to the binary is matched by its basename. */
        json_array_set_new(json_object_get(ct, "command"), 0, json_string("/usr/local/bin/kube-scheduler"));
        open_ok(ct, "kube-scheduler", &c);
        assert_int_equal(c.flags_start, 1);
        assert_flag(&c, "leader-elect", 1, "true");
}

static void test_open_go_runner(void **state) {
        _cleanup_(json_decrefp) json_t *ct = container_new(
                "name: kube-apiserver\n"
                "command: [/go-runner]\n"
                "args:\n"
                "- --log-file=/var/log/kube-apiserver.log\n"
                "- --also-stdout\n"
                "- /usr/local/bin/kube-apiserver\n"
                "- --v=2\n"
                "- --secure-port=443\n");
        cmdline c;

        open_ok(ct, "kube-apiserver", &c);
        assert_false(c.entrypoint);
        assert_int_equal(c.flags_start, 4);
        assert_int_equal(cmdline_size(&c), 6);

        /* The wrapper's flags are not the component's. */
        assert_flag(&c, "log-file", 0, NULL);
        assert_flag(&c, "also-stdout", 0, NULL);
        assert_flag(&c, "v", 1, "2");
        assert_flag(&c, "secure-port", 1, "443");
        assert_flags(&c, "v=2 secure-port=443");

        /* …and are never touched. */
        assert_int_equal(cmdline_unset_flag(&c, "also-stdout"), 0);
        assert_int_equal(cmdline_unset_flag(&c, "log-file"), 0);
        assert_argv(ct, "args",
                    "[\"--log-file=/var/log/kube-apiserver.log\", \"--also-stdout\", \"/usr/local/bin/kube-apiserver\","
                    " \"--v=2\", \"--secure-port=443\"]");

        /* Setting a flag of the same name is a new component flag, after the last one. */
        assert_int_equal(cmdline_set_flag(&c, "log-file", "/tmp/component.log"), 0);
        assert_int_equal(cmdline_set_flag(&c, "v", "4"), 0);
        assert_argv(ct, "command", "[\"/go-runner\"]");
        assert_argv(ct, "args",
                    "[\"--log-file=/var/log/kube-apiserver.log\", \"--also-stdout\", \"/usr/local/bin/kube-apiserver\","
                    " \"--v=4\", \"--secure-port=443\", \"--log-file=/tmp/component.log\"]");
        assert_flag(&c, "log-file", 1, "/tmp/component.log");

        /* Unsetting it again removes only the component's. */
        assert_int_equal(cmdline_unset_flag(&c, "log-file"), 1);
        assert_argv(ct, "args",
                    "[\"--log-file=/var/log/kube-apiserver.log\", \"--also-stdout\", \"/usr/local/bin/kube-apiserver\","
                    " \"--v=4\", \"--secure-port=443\"]");
}

static void test_open_hyperkube(void **state) {
        _cleanup_(json_decrefp) json_t *ct = container_new(
                "name: kube-apiserver\n"
                "command: [hyperkube, kube-apiserver, --x=1, --y=2]\n");
        cmdline c;

        open_ok(ct, "kube-apiserver", &c);
        assert_false(c.entrypoint);
        assert_int_equal(c.flags_start, 2);
        assert_flag(&c, "x", 1, "1");
        assert_flags(&c, "x=1 y=2");

        assert_int_equal(cmdline_set_flag(&c, "z", "3"), 0);
        assert_int_equal(cmdline_set_flag(&c, "x", "9"), 0);
        assert_argv(ct, "command", "[\"hyperkube\", \"kube-apiserver\", \"--x=9\", \"--y=2\", \"--z=3\"]");
        assert_argv(ct, "args", "null");
}

static void test_open_args_only(void **state) {
        _cleanup_(json_decrefp) json_t *ct = container_new(
                "name: kube-controller-manager\n"
                "image: registry.k8s.io/kube-controller-manager:v1.34.2\n"
                "args:\n"
                "- --leader-elect=true\n"
                "- --v=2\n");
        _cleanup_(json_decrefp) json_t *bare = container_new(
                "name: kube-controller-manager\n"
                "image: registry.k8s.io/kube-controller-manager:v1.34.2\n");
        cmdline c;

        /* No command: the image's entrypoint is the binary and every args item is a flag. */
        open_ok(ct, "kube-controller-manager", &c);
        assert_true(c.entrypoint);
        assert_int_equal(c.flags_start, 0);
        assert_null(c.command);
        assert_int_equal(cmdline_size(&c), 2);
        assert_flag(&c, "leader-elect", 1, "true");
        assert_flag(&c, "v", 1, "2");
        assert_flags(&c, "leader-elect=true v=2");

        assert_int_equal(cmdline_set_flag(&c, "emulated-version", "1.33"), 0);
        assert_argv(ct, "args", "[\"--leader-elect=true\", \"--v=2\", \"--emulated-version=1.33\"]");
        assert_argv(ct, "command", "null");

        /* Neither command nor args: setting a flag creates args. */
        open_ok(bare, "kube-controller-manager", &c);
        assert_true(c.entrypoint);
        assert_int_equal(cmdline_size(&c), 0);
        assert_flag(&c, "v", 0, NULL);
        assert_int_equal(cmdline_unset_flag(&c, "v"), 0);
        assert_int_equal(cmdline_set_flag(&c, "v", "4"), 0);
        assert_argv(bare, "args", "[\"--v=4\"]");
        assert_argv(bare, "command", "null");
        assert_flag(&c, "v", 1, "4");
}

/* ---------------------------------------------------------------------------------------------
 * Reading */

static void test_get_forms(void **state) {
        _cleanup_(json_decrefp) json_t *ct = container_new(
                "name: kube-apiserver\n"
                "command:\n"
                "- kube-apiserver\n"
                "- --a=1\n"
                "- --b\n"
                "- two\n"
                "- --bare\n"
                "- --c=3\n"
                "- --emulated-version=kube=1.33\n"
                "- --runtime-config=\n"
                "- --feature-gates=A=true,B=false\n"
                "- --v=2\n"
                "- --v\n"
                "- \"3\"\n"
                "- --last-bare\n");
        cmdline c;

        open_ok(ct, "kube-apiserver", &c);
        assert_flag(&c, "a", 1, "1");
        assert_flag(&c, "b", 1, "two");
        assert_flag(&c, "bare", 1, NULL);
        assert_flag(&c, "c", 1, "3");
        assert_flag(&c, "emulated-version", 1, "kube=1.33");
        assert_flag(&c, "runtime-config", 1, "");
        assert_flag(&c, "feature-gates", 1, "A=true,B=false");
        assert_flag(&c, "v", 2, "3");
        assert_flag(&c, "last-bare", 1, NULL);
        assert_flag(&c, "absent", 0, NULL);
        /* Names match whole: no prefixes, no dashes in the name. */
        assert_flag(&c, "emulated", 0, NULL);
        assert_flag(&c, "bar", 0, NULL);
        assert_flag(&c, "--a", 0, NULL);
        /* The separate value "two" is not a flag of its own. */
        assert_flag(&c, "two", 0, NULL);
        assert_flags(&c, "a=1 b=two bare c=3 emulated-version=kube=1.33 runtime-config= "
                         "feature-gates=A=true,B=false v=2 v=3 last-bare");
        /* ret_value may be NULL. */
        assert_int_equal(cmdline_get_flag(&c, "v", NULL), 2);
}

static void test_get_last_wins(void **state) {
        _cleanup_(json_decrefp) json_t *ct = container_new(
                "name: kube-apiserver\n"
                "command: [kube-apiserver, --feature-gates=A=true, --v=1]\n"
                "args: [--feature-gates=B=true, --x, --feature-gates, C=true]\n");
        cmdline c;

        open_ok(ct, "kube-apiserver", &c);
        assert_flag(&c, "feature-gates", 3, "C=true");
        assert_flag(&c, "v", 1, "1");
        assert_flag(&c, "x", 1, NULL);

        /* A bare last occurrence wins over an earlier value, and the other way round. */
        json_array_append_new(json_object_get(ct, "args"), json_string("--v"));
        assert_flag(&c, "v", 2, NULL);
        json_array_append_new(json_object_get(ct, "args"), json_string("--x=false"));
        assert_flag(&c, "x", 2, "false");
}

/* ---------------------------------------------------------------------------------------------
 * Writing */

static void test_set_first_occurrence(void **state) {
        _cleanup_(json_decrefp) json_t *ct = container_new(
                "name: kube-apiserver\n"
                "command:\n"
                "- kube-apiserver\n"
                "- --a=1\n"
                "- --v=2\n"
                "- --b\n"
                "- x\n"
                "- --v\n"
                "- \"3\"\n"
                "- --c=1\n"
                "- --v=5\n"
                "- --d\n");
        cmdline c;

        open_ok(ct, "kube-apiserver", &c);
        assert_int_equal(cmdline_set_flag(&c, "v", "4"), 0);
        assert_argv(ct, "command", "[\"kube-apiserver\", \"--a=1\", \"--v=4\", \"--b\", \"x\", \"--c=1\", \"--d\"]");
        assert_flag(&c, "v", 1, "4");
        assert_flags(&c, "a=1 v=4 b=x c=1 d");

        /* Setting the same value again changes nothing. */
        assert_int_equal(cmdline_set_flag(&c, "v", "4"), 0);
        assert_argv(ct, "command", "[\"kube-apiserver\", \"--a=1\", \"--v=4\", \"--b\", \"x\", \"--c=1\", \"--d\"]");
}

static void test_set_across_command_and_args(void **state) {
        _cleanup_(json_decrefp) json_t *ct = container_new(
                "name: kube-apiserver\n"
                "command: [kube-apiserver, --v=2, --a=1]\n"
                "args: [--v=3, --b=2, --v=7]\n");
        cmdline c;

        open_ok(ct, "kube-apiserver", &c);
        assert_int_equal(cmdline_set_flag(&c, "v", "4"), 0);
        assert_argv(ct, "command", "[\"kube-apiserver\", \"--v=4\", \"--a=1\"]");
        assert_argv(ct, "args", "[\"--b=2\"]");
        assert_flag(&c, "v", 1, "4");
        assert_int_equal(cmdline_size(&c), 4);
}

static void test_set_keeps_separate_form(void **state) {
        _cleanup_(json_decrefp) json_t *ct = container_new(
                "name: kube-apiserver\n"
                "command: [kube-apiserver]\n"
                "args: [--a=1, --v, \"2\", --b=2, --v=9, --c, --v, \"8\"]\n");
        cmdline c;

        open_ok(ct, "kube-apiserver", &c);
        assert_int_equal(cmdline_set_flag(&c, "v", "4"), 0);
        assert_argv(ct, "command", "[\"kube-apiserver\"]");
        assert_argv(ct, "args", "[\"--a=1\", \"--v\", \"4\", \"--b=2\", \"--c\"]");
        assert_flag(&c, "v", 1, "4");
        assert_flag(&c, "c", 1, NULL);
}

static void test_set_appends_kubeadm_form(void **state) {
        _cleanup_(json_decrefp) json_t *ct = container_new(
                "name: kube-apiserver\n"
                "command: [kube-apiserver, --b=2, --a=1, --z=26]\n");
        cmdline c;

        open_ok(ct, "kube-apiserver", &c);
        assert_int_equal(cmdline_set_flag(&c, "emulated-version", "1.33"), 0);
        assert_int_equal(cmdline_set_flag(&c, "m", "x=y"), 0);
        assert_argv(ct, "command",
                    "[\"kube-apiserver\", \"--b=2\", \"--a=1\", \"--z=26\", \"--emulated-version=1.33\", \"--m=x=y\"]");
        assert_argv(ct, "args", "null");
        assert_flag(&c, "emulated-version", 1, "1.33");
        assert_flag(&c, "m", 1, "x=y");
}

static void test_set_appends_into_args(void **state) {
        _cleanup_(json_decrefp) json_t *ct = container_new(
                "name: kube-apiserver\n"
                "command: [kube-apiserver]\n"
                "args: [--b=2, --a=1]\n");
        cmdline c;

        open_ok(ct, "kube-apiserver", &c);
        assert_int_equal(cmdline_set_flag(&c, "emulated-version", "1.33"), 0);
        assert_argv(ct, "command", "[\"kube-apiserver\"]");
        assert_argv(ct, "args", "[\"--b=2\", \"--a=1\", \"--emulated-version=1.33\"]");
}

static void test_set_empty_value(void **state) {
        _cleanup_(json_decrefp) json_t *ct = container_new(
                "name: kube-apiserver\n"
                "command: [kube-apiserver, --runtime-config=api/all=true, --a=1]\n");
        cmdline c;

        open_ok(ct, "kube-apiserver", &c);
        assert_int_equal(cmdline_set_flag(&c, "runtime-config", ""), 0);
        assert_int_equal(cmdline_set_flag(&c, "new-empty", ""), 0);
        assert_argv(ct, "command", "[\"kube-apiserver\", \"--runtime-config=\", \"--a=1\", \"--new-empty=\"]");
        assert_flag(&c, "runtime-config", 1, "");
        assert_flag(&c, "new-empty", 1, "");
}

static void test_set_bare_boolean(void **state) {
        _cleanup_(json_decrefp) json_t *ct = container_new(
                "name: kube-apiserver\n"
                "command:\n"
                "- kube-apiserver\n"
                "- --p=false\n"
                "- --q\n"
                "- \"yes\"\n"
                "- --r\n"
                "- --s=1\n");
        cmdline c;

        open_ok(ct, "kube-apiserver", &c);
        /* New bare flag: appended without '='. */
        assert_int_equal(cmdline_set_flag(&c, "encryption-provider-config-automatic-reload", NULL), 0);
        /* --p=false → --p */
        assert_int_equal(cmdline_set_flag(&c, "p", NULL), 0);
        /* --q yes → --q, the value item goes. */
        assert_int_equal(cmdline_set_flag(&c, "q", NULL), 0);
        assert_argv(ct, "command",
                    "[\"kube-apiserver\", \"--p\", \"--q\", \"--r\", \"--s=1\","
                    " \"--encryption-provider-config-automatic-reload\"]");
        assert_flag(&c, "encryption-provider-config-automatic-reload", 1, NULL);
        assert_flag(&c, "p", 1, NULL);
        assert_flag(&c, "q", 1, NULL);

        /* Bare --r followed by another flag takes a value as --r=value. */
        assert_int_equal(cmdline_set_flag(&c, "r", "true"), 0);
        assert_argv(ct, "command",
                    "[\"kube-apiserver\", \"--p\", \"--q\", \"--r=true\", \"--s=1\","
                    " \"--encryption-provider-config-automatic-reload\"]");
        assert_flag(&c, "r", 1, "true");
}

/* ---------------------------------------------------------------------------------------------
 * Removing */

static void test_unset(void **state) {
        _cleanup_(json_decrefp) json_t *ct = container_new(
                "name: kube-apiserver\n"
                "command: [kube-apiserver, --a=1, --v=2, --b]\n"
                "args: [--v, \"3\", --c=1, --v, --d=4, --v=5]\n");
        cmdline c;

        open_ok(ct, "kube-apiserver", &c);
        assert_int_equal(cmdline_unset_flag(&c, "v"), 4);
        assert_argv(ct, "command", "[\"kube-apiserver\", \"--a=1\", \"--b\"]");
        assert_argv(ct, "args", "[\"--c=1\", \"--d=4\"]");
        assert_flag(&c, "v", 0, NULL);
        assert_flags(&c, "a=1 b c=1 d=4");

        /* Absent: nothing happens. */
        assert_int_equal(cmdline_unset_flag(&c, "v"), 0);
        assert_int_equal(cmdline_unset_flag(&c, "nothing"), 0);
        assert_int_equal(cmdline_unset_flag(&c, "kube-apiserver"), 0);
        assert_argv(ct, "command", "[\"kube-apiserver\", \"--a=1\", \"--b\"]");
        assert_argv(ct, "args", "[\"--c=1\", \"--d=4\"]");

        /* A bare flag and a separate-value flag. */
        assert_int_equal(cmdline_unset_flag(&c, "b"), 1);
        assert_argv(ct, "command", "[\"kube-apiserver\", \"--a=1\"]");
        assert_int_equal(cmdline_unset_flag(&c, "a"), 1);
        assert_int_equal(cmdline_unset_flag(&c, "c"), 1);
        assert_int_equal(cmdline_unset_flag(&c, "d"), 1);
        assert_argv(ct, "command", "[\"kube-apiserver\"]");
        assert_argv(ct, "args", "[]");
        assert_int_equal(cmdline_size(&c), 1);
        assert_flags(&c, "");
}

static void test_unset_separate_value(void **state) {
        _cleanup_(json_decrefp) json_t *ct = container_new(
                "name: kube-apiserver\n"
                "command: [kube-apiserver, --audit-log-path, /var/log/audit.log, --v=2,"
                " --audit-log-path=/x, --audit-log-maxage, \"30\"]\n");
        cmdline c;

        open_ok(ct, "kube-apiserver", &c);
        assert_int_equal(cmdline_unset_flag(&c, "audit-log-path"), 2);
        assert_argv(ct, "command", "[\"kube-apiserver\", \"--v=2\", \"--audit-log-maxage\", \"30\"]");
        assert_flag(&c, "audit-log-maxage", 1, "30");
}

/* ---------------------------------------------------------------------------------------------
 * Refusals */

static void assert_open_refused(const char *yaml, const char *binary, int want, const char *needle) {
        _cleanup_(json_decrefp) json_t *ct = container_new(yaml);
        _cleanup_(json_decrefp) json_t *copy = json_deep_copy(ct);
        _cleanup_free_ char *error = NULL;
        cmdline c = {};
        int r;

        r = cmdline_open(ct, binary, &c, &error);
        if (want != 0 ? r != want : r >= 0)
                fail_msg("cmdline_open(%s) returned %d, expected %d, on\n%s", binary, r, want, yaml);
        if (!error)
                fail_msg("no reason given for refusing\n%s", yaml);
        if (needle && !strstr(error, needle))
                fail_msg("reason \"%s\" does not mention \"%s\"", error, needle);
        /* Nothing was touched. */
        assert_true(json_equal(ct, copy));
}

static void test_refuse_shell(void **state) {
        assert_open_refused("name: kube-apiserver\n"
                            "command: [/bin/bash, -ec]\n"
                            "args:\n"
                            "- |\n"
                            "  exec kube-apiserver --v=2 \\\n"
                            "    --secure-port=6443\n",
                            "kube-apiserver", -EOPNOTSUPP, "shell script");
        assert_open_refused("name: kube-apiserver\n"
                            "command: [sh, -c, \"kube-apiserver --x\"]\n",
                            "kube-apiserver", -EOPNOTSUPP, "shell script");
        /* Even when the script's binary is a separate item. */
        assert_open_refused("name: kube-apiserver\n"
                            "command: [/bin/sh, -c, 'exec \"$0\" \"$@\"', kube-apiserver, --v=2]\n",
                            "kube-apiserver", -EOPNOTSUPP, "shell script");
        assert_open_refused("name: kube-apiserver\n"
                            "command: [/bin/bash]\n"
                            "args: [-c, kube-apiserver --v=2]\n",
                            "kube-apiserver", -EOPNOTSUPP, "shell script");
}

static void test_refuse_non_string(void **state) {
        assert_open_refused("name: kube-apiserver\n"
                            "command: [kube-apiserver, --v=2, 3]\n",
                            "kube-apiserver", 0, NULL);
        assert_open_refused("name: kube-apiserver\n"
                            "command: [kube-apiserver]\n"
                            "args: [--v=2, true]\n",
                            "kube-apiserver", 0, NULL);
        assert_open_refused("name: kube-apiserver\n"
                            "command: [kube-apiserver]\n"
                            "args: [--v=2, {a: b}]\n",
                            "kube-apiserver", 0, NULL);
        assert_open_refused("name: kube-apiserver\n"
                            "command: [kube-apiserver, null]\n",
                            "kube-apiserver", 0, NULL);
        /* Not a list at all. */
        assert_open_refused("name: kube-apiserver\n"
                            "command: kube-apiserver --v=2\n",
                            "kube-apiserver", 0, NULL);
        assert_open_refused("name: kube-apiserver\n"
                            "command: [kube-apiserver]\n"
                            "args: {v: 2}\n",
                            "kube-apiserver", 0, NULL);
}

static void test_refuse_other_command(void **state) {
        assert_open_refused("name: kube-apiserver\n"
                            "command: [/usr/bin/other]\n",
                            "kube-apiserver", 0, NULL);
        assert_open_refused("name: kube-apiserver\n"
                            "command: [/usr/bin/other]\n"
                            "args: [--v=2]\n",
                            "kube-apiserver", 0, NULL);
        /* Another component's binary. */
        assert_open_refused("name: kube-apiserver\n"
                            "command: [kube-scheduler, --v=2]\n",
                            "kube-apiserver", 0, NULL);
        /* A renamed binary does not count. */
        assert_open_refused("name: kube-apiserver\n"
                            "command: [/usr/local/bin/kube-apiserver-amd64, --v=2]\n",
                            "kube-apiserver", 0, NULL);
}

/* An item that starts with '-' is a flag, whatever its value's basename: it is never the binary. */
static void test_open_flag_value_is_not_binary(void **state) {
        _cleanup_(json_decrefp) json_t *wrapped = container_new(
                "name: kube-apiserver\n"
                "command: [/go-runner]\n"
                "args:\n"
                "- --log-file=/var/log/kube-apiserver\n"
                "- --also-stdout\n"
                "- /usr/local/bin/kube-apiserver\n"
                "- --v=2\n");
        _cleanup_(json_decrefp) json_t *entry = container_new(
                "name: kube-apiserver\n"
                "args:\n"
                "- --v=2\n"
                "- --cert-dir=/var/lib/kube-apiserver\n"
                "- --secure-port=6443\n");
        cmdline c;

        open_ok(wrapped, "kube-apiserver", &c);
        if (c.flags_start != 4)
                fail_msg("go-runner: the binary was taken to be \"%s\" (flags start at %zu, expected 4)",
                         cmdline_item(&c, c.flags_start - 1) ?: "?", c.flags_start);
        assert_flag(&c, "also-stdout", 0, NULL);
        assert_flags(&c, "v=2");

        open_ok(entry, "kube-apiserver", &c);
        if (!c.entrypoint || c.flags_start != 0)
                fail_msg("args only: the binary was taken to be \"%s\" (flags start at %zu, expected 0)",
                         c.flags_start > 0 ? cmdline_item(&c, c.flags_start - 1) : "(entrypoint)", c.flags_start);
        assert_flag(&c, "v", 1, "2");
        assert_flags(&c, "v=2 cert-dir=/var/lib/kube-apiserver secure-port=6443");
}

static void test_mentions_binary(void **state) {
        static const struct {
                const char *yaml;
                bool mentions;
        } cases[] = {
                { "command: [kube-apiserver, --v=2]\n", true },
                { "command: [/usr/local/bin/kube-apiserver]\nargs: [--v=2]\n", true },
                { "command: [/go-runner]\nargs: [--log-file=/var/log/kube-apiserver.log, /usr/local/bin/kube-apiserver]\n", true },
                { "command: [hyperkube, kube-apiserver]\n", true },
                { "args: [kube-apiserver, --v=2]\n", true },
                { "command: [/bin/sh, -c, exec, kube-apiserver]\n", true },
                { "command: [1, kube-apiserver]\n", true },
                { "command: [kube-scheduler, --v=2]\n", false },
                { "command: [kube-apiserver-amd64, --v=2]\n", false },
                { "command: [/go-runner]\nargs: [--log-file=/var/log/kube-apiserver.log, --also-stdout]\n", false },
                { "command: [etcd, --name=kube-apiserver-etcd]\n", false },
                { "args: [--v=2]\n", false },
                { "image: registry.k8s.io/kube-apiserver:v1.34.2\n", false },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *yaml = strdup_printf("name: x\n%s", cases[i].yaml);
                _cleanup_(json_decrefp) json_t *ct = NULL;

                assert_non_null(yaml);
                ct = container_new(yaml);
                if (cmdline_mentions_binary(ct, "kube-apiserver") != cases[i].mentions)
                        fail_msg("cmdline_mentions_binary(kube-apiserver) should be %s on\n%s",
                                 cases[i].mentions ? "true" : "false", yaml);
        }
}

/* ---------------------------------------------------------------------------------------------
 * Image references */

#define DIGEST "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void test_image_parse(void **state) {
        static const struct {
                const char *in, *repository, *tag, *digest, *name;
        } cases[] = {
                { "registry.k8s.io/kube-apiserver:v1.34.2", "registry.k8s.io/kube-apiserver", "v1.34.2", NULL,
                  "kube-apiserver" },
                { "localhost:5000/kube-apiserver:v1.34.2", "localhost:5000/kube-apiserver", "v1.34.2", NULL,
                  "kube-apiserver" },
                { "localhost:5000/kube-apiserver", "localhost:5000/kube-apiserver", NULL, NULL, "kube-apiserver" },
                { "repo@" DIGEST, "repo", NULL, DIGEST, "repo" },
                { "repo:v1.34.2@" DIGEST, "repo", "v1.34.2", DIGEST, "repo" },
                { "registry.k8s.io/kube-apiserver:v1.34.2@" DIGEST, "registry.k8s.io/kube-apiserver", "v1.34.2",
                  DIGEST, "kube-apiserver" },
                { "localhost:5000/kube-apiserver@" DIGEST, "localhost:5000/kube-apiserver", NULL, DIGEST,
                  "kube-apiserver" },
                { "kube-apiserver", "kube-apiserver", NULL, NULL, "kube-apiserver" },
                { "k8s.gcr.io/etcd:3.3.10", "k8s.gcr.io/etcd", "3.3.10", NULL, "etcd" },
                { "registry.k8s.io/etcd:3.5.15-0", "registry.k8s.io/etcd", "3.5.15-0", NULL, "etcd" },
                { "gcr.io/google_containers/kube-apiserver-amd64:v1.8.1", "gcr.io/google_containers/kube-apiserver-amd64",
                  "v1.8.1", NULL, "kube-apiserver-amd64" },
                { "docker.io/hubimage/registry-k8s-io-kube-apiserver:v1.29.2",
                  "docker.io/hubimage/registry-k8s-io-kube-apiserver", "v1.29.2", NULL,
                  "registry-k8s-io-kube-apiserver" },
                { "registry.aliyuncs.com/google_containers/kube-scheduler:v1.16.2",
                  "registry.aliyuncs.com/google_containers/kube-scheduler", "v1.16.2", NULL, "kube-scheduler" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *error = NULL, *formatted = NULL;
                image_ref ref = {};
                int r;

                r = image_ref_parse(cases[i].in, &ref, &error);
                if (r < 0)
                        fail_msg("\"%s\" refused (%d): %s", cases[i].in, r, error ?: "(no message)");
                assert_string_equal(ref.repository, cases[i].repository);
                if (cases[i].tag)
                        assert_string_equal(ref.tag, cases[i].tag);
                else if (ref.tag)
                        fail_msg("\"%s\": unexpected tag \"%s\"", cases[i].in, ref.tag);
                if (cases[i].digest)
                        assert_string_equal(ref.digest, cases[i].digest);
                else if (ref.digest)
                        fail_msg("\"%s\": unexpected digest \"%s\"", cases[i].in, ref.digest);
                assert_string_equal(image_ref_name(&ref), cases[i].name);

                formatted = image_ref_format(&ref);
                assert_non_null(formatted);
                assert_string_equal(formatted, cases[i].in);

                image_ref_done(&ref);
                assert_null(ref.repository);
                assert_null(ref.tag);
                assert_null(ref.digest);
        }
}

static void test_image_parse_refuses(void **state) {
        static const char *const bad[] = {
                "",
                "repo:",
                "${kube_apiserver_image}",
                "{{.Image}}",
                "registry.k8s.io/kube-apiserver:",
                "repo@",
                "repo@sha256",
                "@" DIGEST,
                ":v1.34.2",
                "repo:v1.34.2@",
                "registry.k8s.io/kube apiserver:v1.34.2",
                "registry.k8s.io/kube-apiserver:v1.34.2 ",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_free_ char *error = NULL;
                image_ref ref = {};
                int r;

                r = image_ref_parse(bad[i], &ref, &error);
                if (r >= 0) {
                        fail_msg("\"%s\" accepted as repository \"%s\" tag \"%s\" digest \"%s\"", bad[i],
                                 ref.repository, ref.tag ?: "(null)", ref.digest ?: "(null)");
                }
                assert_int_equal(r, -EINVAL);
                assert_non_null(error);
        }

        assert_int_equal(image_ref_parse(NULL, &(image_ref) {}, NULL), -EINVAL);
}

/* A digest is "algorithm:encoded", both parts non-empty. */
static void test_image_parse_refuses_empty_digest(void **state) {
        static const char *const bad[] = {
                "repo@sha256:",
                "repo@:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "registry.k8s.io/kube-apiserver:v1.34.2@sha256:",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_free_ char *error = NULL;
                image_ref ref = {};
                int r;

                r = image_ref_parse(bad[i], &ref, &error);
                if (r >= 0) {
                        _cleanup_free_ char *msg = strdup_printf("\"%s\" accepted with digest \"%s\"", bad[i],
                                                                 ref.digest ?: "(null)");

                        image_ref_done(&ref);
                        fail_msg("%s", msg ?: "accepted");
                }
                assert_int_equal(r, -EINVAL);
                assert_non_null(error);
        }
}

static void test_image_swap_tag(void **state) {
        static const struct {
                const char *in, *out;
        } cases[] = {
                { "registry.k8s.io/kube-apiserver:v1.34.2", "registry.k8s.io/kube-apiserver:v1.35.0" },
                { "localhost:5000/kube-apiserver:v1.34.2", "localhost:5000/kube-apiserver:v1.35.0" },
                { "localhost:5000/kube-apiserver", "localhost:5000/kube-apiserver:v1.35.0" },
                { "kube-apiserver", "kube-apiserver:v1.35.0" },
                { "docker.io/hubimage/registry-k8s-io-kube-apiserver:v1.29.2",
                  "docker.io/hubimage/registry-k8s-io-kube-apiserver:v1.35.0" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *formatted = NULL;
                image_ref ref = {};

                assert_int_equal(image_ref_parse(cases[i].in, &ref, NULL), 0);
                free(ref.tag);
                ref.tag = strdup("v1.35.0");
                assert_non_null(ref.tag);
                formatted = image_ref_format(&ref);
                assert_non_null(formatted);
                assert_string_equal(formatted, cases[i].out);
                image_ref_done(&ref);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_open_kubeadm_form),
                cmocka_unit_test(test_open_command_plus_args),
                cmocka_unit_test(test_open_go_runner),
                cmocka_unit_test(test_open_hyperkube),
                cmocka_unit_test(test_open_args_only),
                cmocka_unit_test(test_get_forms),
                cmocka_unit_test(test_get_last_wins),
                cmocka_unit_test(test_set_first_occurrence),
                cmocka_unit_test(test_set_across_command_and_args),
                cmocka_unit_test(test_set_keeps_separate_form),
                cmocka_unit_test(test_set_appends_kubeadm_form),
                cmocka_unit_test(test_set_appends_into_args),
                cmocka_unit_test(test_set_empty_value),
                cmocka_unit_test(test_set_bare_boolean),
                cmocka_unit_test(test_unset),
                cmocka_unit_test(test_unset_separate_value),
                cmocka_unit_test(test_refuse_shell),
                cmocka_unit_test(test_refuse_non_string),
                cmocka_unit_test(test_refuse_other_command),
                cmocka_unit_test(test_open_flag_value_is_not_binary),
                cmocka_unit_test(test_mentions_binary),
                cmocka_unit_test(test_image_parse),
                cmocka_unit_test(test_image_parse_refuses),
                cmocka_unit_test(test_image_parse_refuses_empty_digest),
                cmocka_unit_test(test_image_swap_tag),
        };

        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
