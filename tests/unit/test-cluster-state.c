/* SPDX-License-Identifier: Apache-2.0 */
/* The cluster read from API objects: nodes sorted by name, each agent classified (ok, missing,
 * stale, invalid), components from the status, the mirror pods compared with them. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "cluster-state.h"
#include "macro.h"

#define NOW (1796170000ULL * 1000000ULL) /* 2026-12-02T... */
#define MINUTE (60ULL * 1000000ULL)

static const char *status_at(const char *updated, const char *phase, int kcm_revision) {
        static char buf[2048];

        snprintf(buf, sizeof(buf),
                 "{\"id\":null,\"generation\":null,\"phase\":\"%s\",\"step\":null,\"message\":null,"
                 "\"updated\":\"%s\",\"agentVersion\":\"0.1.0\",\"components\":["
                 "{\"name\":\"kube-apiserver\",\"binaryVersion\":\"v1.34.2\",\"emulatedVersion\":\"1.34\","
                 "\"minCompatibilityVersion\":\"1.33\",\"revision\":1,\"healthy\":null},"
                 "{\"name\":\"kube-controller-manager\",\"binaryVersion\":\"v1.34.2\",\"emulatedVersion\":\"1.34\","
                 "\"minCompatibilityVersion\":\"1.33\",\"revision\":%d,\"healthy\":true},"
                 "{\"name\":\"kube-scheduler\",\"binaryVersion\":\"v1.34.2\",\"emulatedVersion\":\"1.34\","
                 "\"minCompatibilityVersion\":\"1.33\",\"revision\":1,\"healthy\":false}]}",
                 phase, updated, kcm_revision);
        return buf;
}

static json_t *node(const char *name, const char *status) {
        json_t *n = json_pack("{s:{s:s, s:{}}}", "metadata", "name", name, "annotations");

        if (status)
                json_object_set_new(json_object_get(json_object_get(n, "metadata"), "annotations"),
                                    "cplet.io/status", json_string(status));
        return n;
}

static json_t *pod(const char *name, const char *revision, const char *image) {
        json_t *p = json_pack("{s:{s:s, s:{}}, s:{s:[{s:s, s:s, s:[s]}]}, s:{s:[{s:s, s:s}]}}", "metadata", "name",
                              name, "annotations", "spec", "containers", "name", "c", "image", image, "command", "x",
                              "status", "conditions", "type", "Ready", "status", "True");

        if (revision)
                json_object_set_new(json_object_get(json_object_get(p, "metadata"), "annotations"),
                                    "cplet.io/revision", json_string(revision));
        return p;
}

static void test_classify_and_sort(void **state) {
        /* 2026-12-02T00:06:40Z is NOW; one fresh, one an hour old, one without status, one
         * not JSON, one with an unknown phase. */
        json_auto_t *nodes = json_pack("{s:[]}", "items");
        json_t *items = json_object_get(nodes, "items");
        _cleanup_(cluster_state_freep) cluster_state *st = NULL;
        _cleanup_free_ char *fresh = strdup(status_at("2026-12-02T00:06:30Z", "Succeeded", 1));
        _cleanup_free_ char *old = strdup(status_at("2026-12-01T23:06:40Z", "Idle", 1));
        _cleanup_free_ char *odd = strdup(status_at("2026-12-02T00:06:30Z", "Dancing", 1));

        json_array_append_new(items, node("n3", fresh));
        json_array_append_new(items, node("n1", old));
        json_array_append_new(items, node("n2", NULL));
        json_array_append_new(items, node("n5", "{not json"));
        json_array_append_new(items, node("n4", odd));
        assert_int_equal(cluster_state_build(nodes, NULL, NOW, 10 * MINUTE, &st, NULL), 0);
        assert_int_equal(st->n, 5);
        assert_string_equal(st->nodes[0].name, "n1");
        assert_int_equal(st->nodes[0].agent, CLUSTER_AGENT_STALE);
        assert_int_equal(st->reports[0].age_sec, 3600);
        assert_int_equal(st->nodes[1].agent, CLUSTER_AGENT_MISSING);
        assert_int_equal(st->nodes[2].agent, CLUSTER_AGENT_OK);
        assert_true(st->nodes[2].comps[1].known);
        assert_int_equal(st->reports[2].healthy[1], 1);
        assert_int_equal(st->reports[2].healthy[2], 0);
        assert_int_equal(st->reports[2].healthy[0], -1);
        assert_int_equal(st->nodes[2].comps[0].mirror_agrees, -1); /* no pods read */
        assert_int_equal(st->nodes[3].agent, CLUSTER_AGENT_INVALID);
        assert_non_null(strstr(st->reports[3].status_problem, "phase"));
        assert_int_equal(st->nodes[4].agent, CLUSTER_AGENT_INVALID);
        assert_non_null(strstr(st->reports[4].status_problem, "not JSON"));
}

static void test_no_bound(void **state) {
        json_auto_t *nodes = json_pack("{s:[]}", "items");
        _cleanup_(cluster_state_freep) cluster_state *st = NULL;

        json_array_append_new(json_object_get(nodes, "items"), node("n1", status_at("2020-01-01T00:00:00Z", "Idle", 1)));
        assert_int_equal(cluster_state_build(nodes, NULL, NOW, 0, &st, NULL), 0);
        assert_int_equal(st->nodes[0].agent, CLUSTER_AGENT_OK);
}

static void test_mirror_pods(void **state) {
        json_auto_t *nodes = json_pack("{s:[]}", "items");
        json_auto_t *pods = json_pack("{s:[]}", "items");
        json_t *pi = json_object_get(pods, "items");
        _cleanup_(cluster_state_freep) cluster_state *st = NULL;

        json_array_append_new(json_object_get(nodes, "items"),
                              node("n1", status_at("2026-12-02T00:06:30Z", "Succeeded", 2)));
        /* The API server's: adopted original, no annotation: agrees. The controller-manager's:
         * revision 1 while the agent reports 2. The scheduler's: none at all. */
        json_array_append_new(pi, pod("kube-apiserver-n1", NULL, "registry.k8s.io/kube-apiserver:v1.34.2"));
        json_array_append_new(pi, pod("kube-controller-manager-n1", "1",
                                      "registry.k8s.io/kube-controller-manager:v1.34.2"));
        assert_int_equal(cluster_state_build(nodes, pods, NOW, 10 * MINUTE, &st, NULL), 0);
        assert_int_equal(st->nodes[0].comps[0].mirror_agrees, 1);
        assert_int_equal(st->nodes[0].comps[1].mirror_agrees, 0);
        assert_non_null(strstr(st->nodes[0].comps[1].mirror_why, "shows revision 1, the agent reports 2"));
        assert_int_equal(st->nodes[0].comps[2].mirror_agrees, 0);
        assert_non_null(strstr(st->nodes[0].comps[2].mirror_why, "no mirror pod kube-system/kube-scheduler-n1"));
        assert_true(st->reports[0].mirror[0].ready);
}

static void test_mirror_image_disagrees(void **state) {
        json_auto_t *nodes = json_pack("{s:[]}", "items");
        json_auto_t *pods = json_pack("{s:[]}", "items");
        _cleanup_(cluster_state_freep) cluster_state *st = NULL;

        json_array_append_new(json_object_get(nodes, "items"),
                              node("n1", status_at("2026-12-02T00:06:30Z", "Succeeded", 1)));
        json_array_append_new(json_object_get(pods, "items"),
                              pod("kube-apiserver-n1", "1", "registry.k8s.io/kube-apiserver:v1.35.0"));
        assert_int_equal(cluster_state_build(nodes, pods, NOW, 10 * MINUTE, &st, NULL), 0);
        assert_int_equal(st->nodes[0].comps[0].mirror_agrees, 0);
        assert_non_null(strstr(st->nodes[0].comps[0].mirror_why, "kube-apiserver:v1.35.0"));
}

static void test_not_a_list(void **state) {
        json_auto_t *bad = json_pack("{s:s}", "kind", "Status");
        _cleanup_free_ char *error = NULL;
        cluster_state *st = NULL;

        assert_int_equal(cluster_state_build(bad, NULL, NOW, 0, &st, &error), -EBADMSG);
        assert_non_null(strstr(error, "no items"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_classify_and_sort),
                cmocka_unit_test(test_no_bound),
                cmocka_unit_test(test_mirror_pods),
                cmocka_unit_test(test_mirror_image_disagrees),
                cmocka_unit_test(test_not_a_list),
        };

        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
