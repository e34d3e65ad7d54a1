/* SPDX-License-Identifier: Apache-2.0 */
/* The preflight across a cluster plan: every node's mirror pod checked at each of its steps,
 * all refusals listed per node, --drop-removed placed in each pair's first target only. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "cluster-preflight.h"
#include "cluster-state.h"
#include "controller.h"
#include "macro.h"

#define NOW (1796170000ULL * 1000000ULL)

static const char *const names[] = { "kube-apiserver", "kube-controller-manager", "kube-scheduler" };

static json_t *node(const char *name) {
        char status[2048];

        snprintf(status, sizeof(status),
                 "{\"id\":null,\"generation\":null,\"phase\":\"Idle\",\"step\":null,\"message\":null,"
                 "\"updated\":\"2026-12-02T00:06:30Z\",\"agentVersion\":\"0.1.0\",\"components\":["
                 "{\"name\":\"kube-apiserver\",\"binaryVersion\":\"v1.32.2\",\"emulatedVersion\":\"1.32\","
                 "\"minCompatibilityVersion\":\"1.31\",\"revision\":1,\"healthy\":true},"
                 "{\"name\":\"kube-controller-manager\",\"binaryVersion\":\"v1.32.2\",\"emulatedVersion\":\"1.32\","
                 "\"minCompatibilityVersion\":\"1.31\",\"revision\":1,\"healthy\":true},"
                 "{\"name\":\"kube-scheduler\",\"binaryVersion\":\"v1.32.2\",\"emulatedVersion\":\"1.32\","
                 "\"minCompatibilityVersion\":\"1.31\",\"revision\":1,\"healthy\":true}]}");
        return json_pack("{s:{s:s, s:{s:s}}}", "metadata", "name", name, "annotations", "cplet.io/status", status);
}

/* The mirror pod of `component` on `node_name`, its container running argv. */
static json_t *pod(int component, const char *node_name, json_t *argv) {
        char name[128], image[128];

        snprintf(name, sizeof(name), "%s-%s", names[component], node_name);
        snprintf(image, sizeof(image), "registry.k8s.io/%s:v1.32.2", names[component]);
        return json_pack("{s:{s:s, s:{s:s}}, s:{s:[{s:s, s:s, s:o}]}, s:{s:[{s:s, s:s}]}}", "metadata", "name", name,
                         "annotations", "cplet.io/revision", "1", "spec", "containers", "name", names[component],
                         "image", image, "command", argv, "status", "conditions", "type", "Ready", "status", "True");
}

/* Two nodes at v1.32.2 whose API servers carry what 1.33 removed: --cloud-provider and the
 * AppArmor gate (data/releases). n2's scheduler runs a shell script when `missing` says so. */
static void build(bool missing, cluster_state **ret_st, cluster_plan **ret_plan) {
        json_auto_t *nodes = json_pack("{s:[]}", "items"), *pods = json_pack("{s:[]}", "items");
        json_t *items = json_object_get(pods, "items");
        cluster_target t = { .mode = CLUSTER_UPGRADE, .binary_set = true, .binary = { 1, 33, 0 } };
        _cleanup_free_ char *error = NULL;

        json_array_append_new(json_object_get(nodes, "items"), node("n1"));
        json_array_append_new(json_object_get(nodes, "items"), node("n2"));
        for (int n = 1; n <= 2; n++) {
                const char *nn = n == 1 ? "n1" : "n2";

                json_array_append_new(items,
                                      pod(0, nn,
                                          json_pack("[s, s, s, s]", "kube-apiserver", "--cloud-provider=external",
                                                    "--feature-gates=AppArmor=true", "--v=2")));
                json_array_append_new(items, pod(1, nn, json_pack("[s, s]", "kube-controller-manager", "--v=2")));
                if (missing && n == 2)
                        /* A command line cplet cannot read (a shell script): the agent refuses it. */
                        json_array_append_new(items,
                                              pod(2, nn, json_pack("[s, s, s]", "/bin/sh", "-c", "kube-scheduler --v=2")));
                else
                        json_array_append_new(items, pod(2, nn, json_pack("[s, s]", "kube-scheduler", "--v=2")));
        }
        assert_int_equal(cluster_state_build(nodes, pods, NOW, 0, ret_st, &error), 0);
        if (cluster_plan_compute((*ret_st)->nodes, (*ret_st)->n, &t, ret_plan, &error) < 0)
                fail_msg("cluster_plan_compute: %s", error);
        assert_true((*ret_plan)->n_steps > 6);
}

static size_t count_containing(const preflight_report *r, bool warning, const char *a, const char *b) {
        size_t n = 0;

        for (size_t i = 0; i < r->n_findings; i++)
                if (r->findings[i].warning == warning && strstr(r->findings[i].message, a) &&
                    strstr(r->findings[i].message, b))
                        n++;
        return n;
}

static void test_every_node_listed(void **state) {
        _cleanup_(cluster_state_freep) cluster_state *st = NULL;
        _cleanup_(cluster_plan_freep) cluster_plan *p = NULL;
        _cleanup_(cluster_preflight_done) cluster_preflight cp = {};
        _cleanup_free_ char *error = NULL;

        build(false, &st, &p);
        assert_int_equal(cluster_preflight_run(st, p, NULL, &cp, &error), 0);
        assert_int_equal(cp.report.n_refusals, 4);
        assert_int_equal(count_containing(&cp.report, false, "n1: kube-apiserver", "cloud-provider"), 1);
        assert_int_equal(count_containing(&cp.report, false, "n2: kube-apiserver", "cloud-provider"), 1);
        assert_int_equal(count_containing(&cp.report, false, "n1: kube-apiserver", "AppArmor"), 1);
        assert_int_equal(count_containing(&cp.report, false, "n2: kube-apiserver", "AppArmor"), 1);
        assert_int_equal(cp.n_unchecked, 0);
        for (size_t i = 0; i < p->n_steps; i++)
                assert_null(p->steps[i].drop_removed);
}

static void test_drops_in_first_step(void **state) {
        static const char *const drop[] = { "cloud-provider", "AppArmor", NULL };
        _cleanup_(cluster_state_freep) cluster_state *st = NULL;
        _cleanup_(cluster_plan_freep) cluster_plan *p = NULL;
        _cleanup_(cluster_preflight_done) cluster_preflight cp = {};
        _cleanup_free_ char *error = NULL;
        controller_options o = {};
        size_t with_drops = 0;

        build(false, &st, &p);
        assert_int_equal(cluster_preflight_run(st, p, drop, &cp, &error), 0);
        assert_int_equal(cp.report.n_refusals, 0);
        for (size_t i = 0; i < p->n_steps; i++) {
                const cluster_step *s = &p->steps[i];
                bool first = true;

                for (size_t k = 0; k < i; k++)
                        if (p->steps[k].node == s->node && p->steps[k].component == s->component)
                                first = false;
                if (s->component == CLUSTER_APISERVER && first) {
                        json_auto_t *t = controller_target_json(s, 1, &o);
                        json_t *list = json_object_get(t, "dropRemoved");

                        assert_non_null(s->drop_removed);
                        assert_string_equal(s->drop_removed[0], "cloud-provider");
                        assert_string_equal(s->drop_removed[1], "AppArmor");
                        assert_null(s->drop_removed[2]);
                        assert_int_equal(json_array_size(list), 2);
                        assert_string_equal(json_string_value(json_array_get(list, 0)), "cloud-provider");
                        with_drops++;
                } else {
                        json_auto_t *t = controller_target_json(s, 1, &o);

                        assert_null(s->drop_removed);
                        assert_null(json_object_get(t, "dropRemoved"));
                }
        }
        assert_int_equal(with_drops, 2);
}

static void test_drop_refused_nowhere(void **state) {
        static const char *const drop[] = { "cloud-provider", "profiling", NULL };
        _cleanup_(cluster_state_freep) cluster_state *st = NULL;
        _cleanup_(cluster_plan_freep) cluster_plan *p = NULL;
        _cleanup_(cluster_preflight_done) cluster_preflight cp = {};
        _cleanup_free_ char *error = NULL;

        build(false, &st, &p);
        assert_int_equal(cluster_preflight_run(st, p, drop, &cp, &error), -EINVAL);
        assert_non_null(strstr(error, "--drop-removed profiling"));
}

static void test_unreadable_command_line(void **state) {
        _cleanup_(cluster_state_freep) cluster_state *st = NULL;
        _cleanup_(cluster_plan_freep) cluster_plan *p = NULL;
        _cleanup_(cluster_preflight_done) cluster_preflight cp = {};
        _cleanup_free_ char *error = NULL;

        build(true, &st, &p);
        assert_int_equal(cluster_preflight_run(st, p, NULL, &cp, &error), 0);
        assert_int_equal(cp.n_unchecked, 1);
        assert_int_equal(cp.report.n_refusals, 4);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_every_node_listed),
                cmocka_unit_test(test_drops_in_first_step),
                cmocka_unit_test(test_drop_refused_nowhere),
                cmocka_unit_test(test_unreadable_command_line),
        };

        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
