/* SPDX-License-Identifier: Apache-2.0 */
/* The cluster planner: exact sequences of (node, component, phase, versions) for whole
 * clusters, re-runs of a partly done cluster, and each refusal with words its reason holds. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "cluster-plan.h"
#include "macro.h"

/* A node: each component as "BINARY EMULATED MINCOMPAT" (NULL: not reported). */
typedef struct node_spec {
        const char *name;
        const char *comps[3];
        cluster_agent agent;
        const char *phase;
        const char *status_id;
        int mirror[3]; /* 0 in the spec: agrees; -2: disagrees */
} node_spec;

#define OLD "v1.34.2 1.34 1.33"
#define BIN "v1.35.0 1.34 1.33"   /* the new binary, emulation pinned */
#define NEW "v1.35.0 1.35 1.34"   /* the new binary, emulating it */
#define DOWN "v1.35.0 1.34 1.34"  /* emulation rolled back: min-compatibility stays */

static void parse_comp(const char *spec, cluster_comp *ret) {
        char b[64], e[16], m[16];

        *ret = (cluster_comp){ .mirror_agrees = 1 };
        if (!spec)
                return;
        assert_int_equal(sscanf(spec, "%63s %15s %15s", b, e, m), 3);
        assert_int_equal(kversion_parse(b, &ret->binary, NULL), 0);
        assert_int_equal(kminor_parse(e, &ret->emulated, NULL), 0);
        assert_int_equal(kminor_parse(m, &ret->min_compat, NULL), 0);
        ret->known = true;
        ret->revision = 1;
}

static size_t build(const node_spec *specs, cluster_node *ret) {
        size_t n = 0;

        for (; specs[n].name; n++) {
                ret[n] = (cluster_node){
                        .name = specs[n].name,
                        .agent = specs[n].agent,
                        .phase = specs[n].phase ?: "Succeeded",
                        .status_id = specs[n].status_id,
                };
                for (int c = 0; c < 3; c++) {
                        parse_comp(specs[n].comps[c], &ret[n].comps[c]);
                        if (specs[n].mirror[c] == -2) {
                                ret[n].comps[c].mirror_agrees = 0;
                                ret[n].comps[c].mirror_why = "revision 3, the agent reports 4";
                        }
                }
        }
        return n;
}

static cluster_target target(cluster_mode mode, const char *binary, const char *emulated, const char *min) {
        cluster_target t = { .mode = mode };

        if (binary) {
                assert_int_equal(kversion_parse(binary, &t.binary, NULL), 0);
                t.binary_set = true;
        }
        if (emulated) {
                assert_int_equal(kminor_parse(emulated, &t.emulated, NULL), 0);
                t.emulated_set = true;
        }
        if (min) {
                assert_int_equal(kminor_parse(min, &t.min_compat, NULL), 0);
                t.min_compat_set = true;
        }
        return t;
}

static void format_step(const cluster_node *nodes, const cluster_step *s, char *buf, size_t size) {
        char b[KVERSION_STRING_MAX], e[KMINOR_STRING_MAX], m[KMINOR_STRING_MAX];

        kversion_format(&s->binary, b);
        kminor_format(s->emulated, e);
        kminor_format(s->min_compat, m);
        snprintf(buf, size, "%s %s %s %s %s %s", nodes[s->node].name, cluster_component_names[s->component],
                 cluster_phase_to_string(s->phase), b, e, m);
}

/* Plans and compares with the expected steps (NULL-terminated). */
static cluster_plan *expect_steps(const node_spec *specs, cluster_target t, const char *const *want) {
        cluster_node nodes[8];
        size_t n = build(specs, nodes), k = 0;
        _cleanup_free_ char *error = NULL;
        cluster_plan *p = NULL;
        char buf[256];

        if (cluster_plan_compute(nodes, n, &t, &p, &error) < 0)
                fail_msg("refused: %s", error);
        for (; want[k]; k++) {
                if (k >= p->n_steps)
                        fail_msg("step %zu missing: want \"%s\"", k + 1, want[k]);
                format_step(nodes, &p->steps[k], buf, sizeof(buf));
                if (!streq(buf, want[k]))
                        fail_msg("step %zu: got \"%s\", want \"%s\"", k + 1, buf, want[k]);
        }
        if (p->n_steps != k) {
                format_step(nodes, &p->steps[k], buf, sizeof(buf));
                fail_msg("%zu steps, want %zu; the first extra one: \"%s\"", p->n_steps, k, buf);
        }
        return p;
}

static void expect_refusal(const node_spec *specs, cluster_target t, const char *const *words) {
        cluster_node nodes[8];
        size_t n = build(specs, nodes);
        _cleanup_free_ char *error = NULL;
        cluster_plan *p = NULL;

        if (cluster_plan_compute(nodes, n, &t, &p, &error) >= 0) {
                cluster_plan_free(p);
                fail_msg("planned, want a refusal containing \"%s\"", words[0]);
        }
        assert_non_null(error);
        for (size_t k = 0; words[k]; k++)
                if (!strstr(error, words[k]))
                        fail_msg("reason \"%s\" lacks \"%s\"", error, words[k]);
}

#define STEPS(...) ((const char *const[]){ __VA_ARGS__, NULL })
#define WORDS(...) ((const char *const[]){ __VA_ARGS__, NULL })

static const node_spec three_old[] = {
        { "n1", { OLD, OLD, OLD } },
        { "n2", { OLD, OLD, OLD } },
        { "n3", { OLD, OLD, OLD } },
        {},
};

#define PHASE9(c, kind, v)                                                                                 \
        "n1 kube-apiserver " kind " " v, "n2 kube-apiserver " kind " " v, "n3 kube-apiserver " kind " " v,  \
                "n1 kube-controller-manager " kind " " v, "n2 kube-controller-manager " kind " " v,          \
                "n3 kube-controller-manager " kind " " v, "n1 kube-scheduler " kind " " v,                   \
                "n2 kube-scheduler " kind " " v, "n3 kube-scheduler " kind " " v

static void test_upgrade_three_nodes(void **state) {
        _cleanup_(cluster_plan_freep) cluster_plan *p = NULL;
        char want[CLUSTER_ID_MAX];

        p = expect_steps(three_old, target(CLUSTER_UPGRADE, "v1.35.0", NULL, NULL),
                         STEPS(PHASE9(x, "binary", "v1.35.0 1.34 1.33"), PHASE9(x, "emulation", "v1.35.0 1.35 1.34")));
        /* Targets carry every version explicitly; 1.35 has the min-compatibility flag. */
        assert_true(p->steps[0].min_compat_explicit);
        snprintf(want, sizeof(want), "cluster-%s-binary-kube-apiserver", p->hash);
        assert_string_equal(p->steps[0].id, want);
        assert_string_equal(p->steps[1].id, want); /* the same target id on every node */
        snprintf(want, sizeof(want), "cluster-%s-emulated-1.35-kube-controller-manager", p->hash);
        assert_string_equal(p->steps[12].id, want);
        assert_int_equal(strlen(p->hash), 8);
}

static void test_upgrade_emulation_pinned_explicitly(void **state) {
        /* --emulated-version 1.34: only the binaries move. */
        cluster_plan_free(expect_steps(three_old, target(CLUSTER_UPGRADE, "v1.35.0", "1.34", NULL),
                                       STEPS(PHASE9(x, "binary", "v1.35.0 1.34 1.33"))));
}

static void test_upgrade_with_min_compat(void **state) {
        _cleanup_(cluster_plan_freep) cluster_plan *p = NULL;
        char want[CLUSTER_ID_MAX];

        p = expect_steps(three_old, target(CLUSTER_UPGRADE, "v1.35.0", NULL, "1.35"),
                         STEPS(PHASE9(x, "binary", "v1.35.0 1.34 1.33"), PHASE9(x, "emulation", "v1.35.0 1.35 1.34"),
                               PHASE9(x, "min-compatibility", "v1.35.0 1.35 1.35")));
        snprintf(want, sizeof(want), "cluster-%s-mincompat-1.35-kube-scheduler", p->hash);
        assert_string_equal(p->steps[26].id, want);
}

static void test_two_minors_of_emulation(void **state) {
        /* 1.33 -> 1.35: the binary skips a minor, the emulated version does not. */
        static const node_spec nodes[] = {
                { "a", { "v1.33.5 1.33 1.32", "v1.33.5 1.33 1.32", "v1.33.5 1.33 1.32" } },
                { "b", { "v1.33.5 1.33 1.32", "v1.33.5 1.33 1.32", "v1.33.5 1.33 1.32" } },
                {},
        };

        cluster_plan_free(expect_steps(
                nodes, target(CLUSTER_UPGRADE, "v1.35.0", NULL, NULL),
                STEPS("a kube-apiserver binary v1.35.0 1.33 1.32", "b kube-apiserver binary v1.35.0 1.33 1.32",
                      "a kube-controller-manager binary v1.35.0 1.33 1.32",
                      "b kube-controller-manager binary v1.35.0 1.33 1.32", "a kube-scheduler binary v1.35.0 1.33 1.32",
                      "b kube-scheduler binary v1.35.0 1.33 1.32", "a kube-apiserver emulation v1.35.0 1.34 1.33",
                      "b kube-apiserver emulation v1.35.0 1.34 1.33",
                      "a kube-controller-manager emulation v1.35.0 1.34 1.33",
                      "b kube-controller-manager emulation v1.35.0 1.34 1.33",
                      "a kube-scheduler emulation v1.35.0 1.34 1.33", "b kube-scheduler emulation v1.35.0 1.34 1.33",
                      "a kube-apiserver emulation v1.35.0 1.35 1.34", "b kube-apiserver emulation v1.35.0 1.35 1.34",
                      "a kube-controller-manager emulation v1.35.0 1.35 1.34",
                      "b kube-controller-manager emulation v1.35.0 1.35 1.34",
                      "a kube-scheduler emulation v1.35.0 1.35 1.34", "b kube-scheduler emulation v1.35.0 1.35 1.34")));
}

static void test_upgrade_to_1_34_implies_min_compat(void **state) {
        /* 1.34 has no --min-compatibility-version: the target leaves it out (implied). */
        static const node_spec nodes[] = {
                { "n1", { "v1.33.5 1.33 1.32", "v1.33.5 1.33 1.32", "v1.33.5 1.33 1.32" } },
                {},
        };
        _cleanup_(cluster_plan_freep) cluster_plan *p = NULL;

        p = expect_steps(nodes, target(CLUSTER_UPGRADE, "v1.34.2", NULL, NULL),
                         STEPS("n1 kube-apiserver binary v1.34.2 1.33 1.32",
                               "n1 kube-controller-manager binary v1.34.2 1.33 1.32",
                               "n1 kube-scheduler binary v1.34.2 1.33 1.32",
                               "n1 kube-apiserver emulation v1.34.2 1.34 1.33",
                               "n1 kube-controller-manager emulation v1.34.2 1.34 1.33",
                               "n1 kube-scheduler emulation v1.34.2 1.34 1.33"));
        assert_false(p->steps[0].min_compat_explicit);
}

static void test_rerun_after_first_node(void **state) {
        /* The controller stopped after n1's API server: a re-run continues with n2's. */
        static const node_spec nodes[] = {
                { "n1", { BIN, OLD, OLD } },
                { "n2", { OLD, OLD, OLD } },
                { "n3", { OLD, OLD, OLD } },
                {},
        };

        cluster_plan_free(expect_steps(
                nodes, target(CLUSTER_UPGRADE, "v1.35.0", NULL, NULL),
                STEPS("n2 kube-apiserver binary v1.35.0 1.34 1.33", "n3 kube-apiserver binary v1.35.0 1.34 1.33",
                      "n1 kube-controller-manager binary v1.35.0 1.34 1.33",
                      "n2 kube-controller-manager binary v1.35.0 1.34 1.33",
                      "n3 kube-controller-manager binary v1.35.0 1.34 1.33",
                      "n1 kube-scheduler binary v1.35.0 1.34 1.33", "n2 kube-scheduler binary v1.35.0 1.34 1.33",
                      "n3 kube-scheduler binary v1.35.0 1.34 1.33", PHASE9(x, "emulation", "v1.35.0 1.35 1.34"))));
}

static void test_rerun_in_emulation_phase(void **state) {
        /* Every binary done, n1's and n2's API servers emulate 1.35; the scheduler of n2 too
         * would break the skew, so that cannot be; the controller-managers still emulate 1.34. */
        static const node_spec nodes[] = {
                { "n1", { NEW, BIN, BIN } },
                { "n2", { NEW, BIN, BIN } },
                { "n3", { BIN, BIN, BIN } },
                {},
        };

        cluster_plan_free(expect_steps(
                nodes, target(CLUSTER_UPGRADE, "v1.35.0", NULL, NULL),
                STEPS("n3 kube-apiserver emulation v1.35.0 1.35 1.34",
                      "n1 kube-controller-manager emulation v1.35.0 1.35 1.34",
                      "n2 kube-controller-manager emulation v1.35.0 1.35 1.34",
                      "n3 kube-controller-manager emulation v1.35.0 1.35 1.34",
                      "n1 kube-scheduler emulation v1.35.0 1.35 1.34", "n2 kube-scheduler emulation v1.35.0 1.35 1.34",
                      "n3 kube-scheduler emulation v1.35.0 1.35 1.34")));
}

static void test_already_there(void **state) {
        static const node_spec nodes[] = {
                { "n1", { NEW, NEW, NEW } },
                { "n2", { NEW, NEW, NEW } },
                {},
        };
        cluster_node built[4];
        size_t n = build(nodes, built);
        cluster_target t = target(CLUSTER_UPGRADE, "v1.35.0", NULL, NULL);
        _cleanup_(cluster_plan_freep) cluster_plan *p = NULL;

        assert_int_equal(cluster_plan_compute(built, n, &t, &p, NULL), 0);
        assert_int_equal(p->n_steps, 0);
}

static void test_rollback_emulation(void **state) {
        static const node_spec nodes[] = {
                { "n1", { NEW, NEW, NEW } },
                { "n2", { NEW, NEW, NEW } },
                { "n3", { NEW, NEW, NEW } },
                {},
        };

        cluster_plan_free(expect_steps(
                nodes, target(CLUSTER_ROLLBACK, NULL, "1.34", NULL),
                STEPS("n3 kube-scheduler emulation " DOWN, "n2 kube-scheduler emulation " DOWN,
                      "n1 kube-scheduler emulation " DOWN, "n3 kube-controller-manager emulation " DOWN,
                      "n2 kube-controller-manager emulation " DOWN, "n1 kube-controller-manager emulation " DOWN,
                      "n3 kube-apiserver emulation " DOWN, "n2 kube-apiserver emulation " DOWN,
                      "n1 kube-apiserver emulation " DOWN)));
}

static void test_rollback_binary(void **state) {
        /* After the binary phase only: back to the old binary, in reverse. */
        static const node_spec nodes[] = {
                { "n1", { BIN, BIN, BIN } },
                { "n2", { BIN, BIN, BIN } },
                { "n3", { BIN, BIN, BIN } },
                {},
        };

        cluster_plan_free(expect_steps(
                nodes, target(CLUSTER_ROLLBACK, "v1.34.2", NULL, NULL),
                STEPS("n3 kube-scheduler binary " OLD, "n2 kube-scheduler binary " OLD, "n1 kube-scheduler binary " OLD,
                      "n3 kube-controller-manager binary " OLD, "n2 kube-controller-manager binary " OLD,
                      "n1 kube-controller-manager binary " OLD, "n3 kube-apiserver binary " OLD,
                      "n2 kube-apiserver binary " OLD, "n1 kube-apiserver binary " OLD)));
}

static void test_rollback_partly_done(void **state) {
        /* A rollback that stopped after n3's scheduler continues with n2's. */
        static const node_spec nodes[] = {
                { "n1", { NEW, NEW, NEW } },
                { "n2", { NEW, NEW, NEW } },
                { "n3", { NEW, NEW, DOWN } },
                {},
        };

        cluster_plan_free(expect_steps(
                nodes, target(CLUSTER_ROLLBACK, NULL, "1.34", NULL),
                STEPS("n2 kube-scheduler emulation " DOWN, "n1 kube-scheduler emulation " DOWN,
                      "n3 kube-controller-manager emulation " DOWN, "n2 kube-controller-manager emulation " DOWN,
                      "n1 kube-controller-manager emulation " DOWN, "n3 kube-apiserver emulation " DOWN,
                      "n2 kube-apiserver emulation " DOWN, "n1 kube-apiserver emulation " DOWN)));
}

static void test_own_target_in_flight_is_planned(void **state) {
        /* A controller killed while n2 ran its step: the node is Progressing with an id of this
         * very cluster target, which a re-run waits for again instead of refusing. */
        cluster_target t = target(CLUSTER_UPGRADE, "v1.35.0", NULL, NULL);
        char hash[CLUSTER_HASH_LEN + 1], id[CLUSTER_ID_MAX];
        node_spec nodes[] = {
                { "n1", { BIN, OLD, OLD } },
                { "n2", { OLD, OLD, OLD }, .phase = "Progressing", .status_id = id },
                {},
        };

        cluster_target_hash(&t, hash);
        snprintf(id, sizeof(id), "cluster-%s-binary-kube-apiserver", hash);
        cluster_plan_free(expect_steps(
                nodes, t,
                STEPS("n2 kube-apiserver binary " BIN, "n1 kube-controller-manager binary " BIN,
                      "n2 kube-controller-manager binary " BIN, "n1 kube-scheduler binary " BIN,
                      "n2 kube-scheduler binary " BIN, "n1 kube-apiserver emulation " NEW,
                      "n2 kube-apiserver emulation " NEW, "n1 kube-controller-manager emulation " NEW,
                      "n2 kube-controller-manager emulation " NEW, "n1 kube-scheduler emulation " NEW,
                      "n2 kube-scheduler emulation " NEW)));
}

static void test_hash_names_the_target(void **state) {
        char a[CLUSTER_HASH_LEN + 1], b[CLUSTER_HASH_LEN + 1], c[CLUSTER_HASH_LEN + 1];
        cluster_target t1 = target(CLUSTER_UPGRADE, "v1.35.0", NULL, NULL);
        cluster_target t2 = target(CLUSTER_UPGRADE, "v1.35.0", NULL, NULL);
        cluster_target t3 = target(CLUSTER_UPGRADE, "v1.35.1", NULL, NULL);

        cluster_target_hash(&t1, a);
        cluster_target_hash(&t2, b);
        cluster_target_hash(&t3, c);
        assert_string_equal(a, b);
        assert_string_not_equal(a, c);
        assert_int_equal(strspn(a, "0123456789abcdef"), CLUSTER_HASH_LEN);
}

/* ---- refusals ---- */

static void test_refuse_no_agent(void **state) {
        static const node_spec nodes[] = {
                { "n1", { OLD, OLD, OLD } },
                { "n2", { NULL, NULL, NULL }, .agent = CLUSTER_AGENT_MISSING },
                {},
        };

        expect_refusal(nodes, target(CLUSTER_UPGRADE, "v1.35.0", NULL, NULL), WORDS("node n2", "no cplet agent"));
}

static void test_refuse_stale(void **state) {
        static const node_spec nodes[] = {
                { "n1", { OLD, OLD, OLD }, .agent = CLUSTER_AGENT_STALE },
                {},
        };

        expect_refusal(nodes, target(CLUSTER_UPGRADE, "v1.35.0", NULL, NULL), WORDS("node n1", "stale"));
}

static void test_refuse_invalid_status(void **state) {
        static const node_spec nodes[] = {
                { "n1", { OLD, OLD, OLD }, .agent = CLUSTER_AGENT_INVALID },
                {},
        };

        expect_refusal(nodes, target(CLUSTER_UPGRADE, "v1.35.0", NULL, NULL), WORDS("node n1", "not valid"));
}

static void test_refuse_progressing(void **state) {
        static const node_spec nodes[] = {
                { "n1", { OLD, OLD, OLD } },
                { "n2", { OLD, OLD, OLD }, .phase = "Progressing", .status_id = "by-hand" },
                {},
        };

        expect_refusal(nodes, target(CLUSTER_UPGRADE, "v1.35.0", NULL, NULL),
                       WORDS("node n2 is Progressing", "by-hand"));
}

static void test_refuse_interrupted(void **state) {
        static const node_spec nodes[] = {
                { "n1", { OLD, OLD, OLD }, .phase = "Interrupted", .status_id = "other" },
                {},
        };

        expect_refusal(nodes, target(CLUSTER_UPGRADE, "v1.35.0", NULL, NULL),
                       WORDS("node n1 is Interrupted", "resumes"));
}

static void test_refuse_unreported_component(void **state) {
        static const node_spec nodes[] = {
                { "n1", { OLD, OLD, NULL } },
                {},
        };

        expect_refusal(nodes, target(CLUSTER_UPGRADE, "v1.35.0", NULL, NULL), WORDS("node n1", "kube-scheduler"));
}

static void test_refuse_mirror_disagrees(void **state) {
        static const node_spec nodes[] = {
                { "n1", { OLD, OLD, OLD } },
                { "n2", { OLD, OLD, OLD }, .mirror = { 0, -2, 0 } },
                {},
        };

        expect_refusal(nodes, target(CLUSTER_UPGRADE, "v1.35.0", NULL, NULL),
                       WORDS("node n2", "kube-controller-manager", "mirror pod", "revision 3"));
}

static void test_refuse_emulating_above_lowest_apiserver(void **state) {
        static const node_spec nodes[] = {
                { "n1", { BIN, BIN, BIN } },
                { "n2", { NEW, NEW, BIN } },
                {},
        };

        expect_refusal(nodes, target(CLUSTER_UPGRADE, "v1.35.0", NULL, NULL),
                       WORDS("kube-controller-manager on n2 would emulate 1.35", "above kube-apiserver on n1"));
}

static void test_refuse_below_highest_min_compat(void **state) {
        static const node_spec nodes[] = {
                { "n1", { "v1.35.0 1.35 1.35", NEW, NEW } },
                { "n2", { NEW, BIN, BIN } },
                {},
        };

        expect_refusal(nodes, target(CLUSTER_UPGRADE, "v1.35.0", NULL, "1.35"),
                       WORDS("on n2 would emulate 1.34", "below the min-compatibility version 1.35",
                             "kube-apiserver on n1"));
}

static void test_refuse_binary_newer_than_an_apiserver(void **state) {
        static const node_spec nodes[] = {
                { "n1", { OLD, OLD, OLD } },
                { "n2", { BIN, BIN, OLD } },
                {},
        };

        expect_refusal(nodes, target(CLUSTER_UPGRADE, "v1.35.0", NULL, NULL),
                       WORDS("kube-controller-manager on n2 would run binary 1.35", "kube-apiserver on n1"));
}

static void test_refuse_node_invalid_on_its_own(void **state) {
        /* The node planner's rules: the scheduler emulates above its own API server. */
        static const node_spec nodes[] = {
                { "n1", { BIN, BIN, NEW } },
                {},
        };

        expect_refusal(nodes, target(CLUSTER_UPGRADE, "v1.35.0", NULL, NULL),
                       WORDS("node n1", "kube-scheduler would emulate 1.35"));
}

static void test_refuse_upgrade_going_down(void **state) {
        static const node_spec nodes[] = {
                { "n1", { NEW, NEW, NEW } },
                {},
        };

        expect_refusal(nodes, target(CLUSTER_UPGRADE, "v1.35.0", "1.34", NULL),
                       WORDS("does not go down", "rollback --emulated-version"));
        expect_refusal(nodes, target(CLUSTER_UPGRADE, "v1.34.2", NULL, NULL),
                       WORDS("does not go down", "rollback --binary-version"));
}

static void test_refuse_invalid_target(void **state) {
        expect_refusal(three_old, target(CLUSTER_UPGRADE, "v1.35.0", "1.31", NULL),
                       WORDS("not valid for binary v1.35.0", "1.31"));
        expect_refusal(three_old, target(CLUSTER_UPGRADE, "v1.35.0", "1.35", "1.36"), WORDS("not valid"));
        expect_refusal(three_old, target(CLUSTER_UPGRADE, NULL, NULL, NULL), WORDS("--binary-version"));
}

static void test_refuse_step_breaking_rules(void **state) {
        /* 1.31 -> 1.35 keeping emulation 1.31: 1.35 accepts 1.32 at the lowest. */
        static const node_spec nodes[] = {
                { "n1", { "v1.31.4 1.31 1.30", "v1.31.4 1.31 1.30", "v1.31.4 1.31 1.30" } },
                {},
        };

        expect_refusal(nodes, target(CLUSTER_UPGRADE, "v1.35.0", NULL, NULL),
                       WORDS("step 1", "kube-apiserver on n1", "1.31"));
}

static void test_refuse_rollback_below_min_compat(void **state) {
        static const node_spec nodes[] = {
                { "n1", { NEW, NEW, NEW } },
                {},
        };

        expect_refusal(nodes, target(CLUSTER_ROLLBACK, NULL, "1.33", NULL),
                       WORDS("cannot lower the emulated version to 1.33", "min-compatibility version 1.34"));
}

static void test_refuse_rollback_binary_without_min_flag(void **state) {
        /* Emulation rolled back to 1.34 but min-compatibility stayed 1.34: binary 1.34 implies
         * 1.33 and would lower it. */
        static const node_spec nodes[] = {
                { "n1", { DOWN, DOWN, DOWN } },
                {},
        };

        expect_refusal(nodes, target(CLUSTER_ROLLBACK, "v1.34.2", NULL, NULL),
                       WORDS("binary v1.34.2", "no --min-compatibility-version flag", "1.34"));
}

static void test_refuse_rollback_going_up(void **state) {
        expect_refusal(three_old, target(CLUSTER_ROLLBACK, "v1.35.0", NULL, NULL),
                       WORDS("does not go up", "cplet cluster upgrade"));
        expect_refusal(three_old, target(CLUSTER_ROLLBACK, NULL, NULL, NULL), WORDS("--emulated-version"));
        expect_refusal(three_old, target(CLUSTER_ROLLBACK, NULL, "1.34", "1.33"),
                       WORDS("--min-compatibility-version does not apply"));
}

static void test_refuse_no_nodes(void **state) {
        static const node_spec nodes[] = { {} };

        expect_refusal(nodes, target(CLUSTER_UPGRADE, "v1.35.0", NULL, NULL),
                       WORDS("node-role.kubernetes.io/control-plane"));
}

static void test_validate_state(void **state) {
        static const node_spec newer_kcm[] = { { "n1", { BIN, BIN, OLD } }, { "n2", { OLD, OLD, OLD } }, {} };
        static const node_spec bad[] = { { "n1", { NEW, NEW, NEW } }, { "n2", { BIN, BIN, BIN } }, {} };
        cluster_node nodes[4];
        _cleanup_free_ char *error = NULL;
        size_t n;

        n = build(newer_kcm, nodes);
        /* n1's controller-manager runs 1.35 while n2's API server runs 1.34: refused. */
        assert_int_equal(cluster_validate_state(nodes, n, &error), -EINVAL);
        assert_non_null(strstr(error, "kube-controller-manager on n1"));
        free(error);
        error = NULL;
        n = build(bad, nodes);
        assert_int_equal(cluster_validate_state(nodes, n, &error), -EINVAL);
        assert_non_null(strstr(error, "above kube-apiserver on n2"));
        free(error);
        error = NULL;
        n = build(three_old, nodes);
        assert_int_equal(cluster_validate_state(nodes, n, &error), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_upgrade_three_nodes),
                cmocka_unit_test(test_upgrade_emulation_pinned_explicitly),
                cmocka_unit_test(test_upgrade_with_min_compat),
                cmocka_unit_test(test_two_minors_of_emulation),
                cmocka_unit_test(test_upgrade_to_1_34_implies_min_compat),
                cmocka_unit_test(test_rerun_after_first_node),
                cmocka_unit_test(test_rerun_in_emulation_phase),
                cmocka_unit_test(test_already_there),
                cmocka_unit_test(test_rollback_emulation),
                cmocka_unit_test(test_rollback_binary),
                cmocka_unit_test(test_rollback_partly_done),
                cmocka_unit_test(test_own_target_in_flight_is_planned),
                cmocka_unit_test(test_hash_names_the_target),
                cmocka_unit_test(test_refuse_no_agent),
                cmocka_unit_test(test_refuse_stale),
                cmocka_unit_test(test_refuse_invalid_status),
                cmocka_unit_test(test_refuse_progressing),
                cmocka_unit_test(test_refuse_interrupted),
                cmocka_unit_test(test_refuse_unreported_component),
                cmocka_unit_test(test_refuse_mirror_disagrees),
                cmocka_unit_test(test_refuse_emulating_above_lowest_apiserver),
                cmocka_unit_test(test_refuse_below_highest_min_compat),
                cmocka_unit_test(test_refuse_binary_newer_than_an_apiserver),
                cmocka_unit_test(test_refuse_node_invalid_on_its_own),
                cmocka_unit_test(test_refuse_upgrade_going_down),
                cmocka_unit_test(test_refuse_invalid_target),
                cmocka_unit_test(test_refuse_step_breaking_rules),
                cmocka_unit_test(test_refuse_rollback_below_min_compat),
                cmocka_unit_test(test_refuse_rollback_binary_without_min_flag),
                cmocka_unit_test(test_refuse_rollback_going_up),
                cmocka_unit_test(test_refuse_no_nodes),
                cmocka_unit_test(test_validate_state),
        };

        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
