/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cluster-plan.h"
#include "macro.h"
#include "plan.h"

const char *const cluster_component_names[_CLUSTER_COMPONENT_MAX] = {
        [CLUSTER_APISERVER] = "kube-apiserver",
        [CLUSTER_CONTROLLER_MANAGER] = "kube-controller-manager",
        [CLUSTER_SCHEDULER] = "kube-scheduler",
};

int cluster_component_from_string(const char *s) {
        for (int c = 0; c < _CLUSTER_COMPONENT_MAX; c++)
                if (s && streq(s, cluster_component_names[c]))
                        return c;
        return -EINVAL;
}

const char *cluster_agent_to_string(cluster_agent a) {
        switch (a) {
        case CLUSTER_AGENT_OK:
                return "ok";
        case CLUSTER_AGENT_MISSING:
                return "missing";
        case CLUSTER_AGENT_STALE:
                return "stale";
        case CLUSTER_AGENT_INVALID:
                return "invalid";
        }
        return "?";
}

const char *cluster_phase_to_string(cluster_phase p) {
        switch (p) {
        case CLUSTER_PHASE_BINARY:
                return "binary";
        case CLUSTER_PHASE_EMULATION:
                return "emulation";
        case CLUSTER_PHASE_MIN_COMPAT:
                return "min-compatibility";
        }
        return "?";
}

void cluster_target_hash(const cluster_target *t, char ret[static CLUSTER_HASH_LEN + 1]) {
        char b[KVERSION_STRING_MAX] = "-", e[KMINOR_STRING_MAX] = "-", m[KMINOR_STRING_MAX] = "-";
        _cleanup_free_ char *canon = NULL;
        uint32_t h = 2166136261u;

        if (t->binary_set)
                kversion_format(&t->binary, b);
        if (t->emulated_set)
                kminor_format(t->emulated, e);
        if (t->min_compat_set)
                kminor_format(t->min_compat, m);
        canon = strdup_printf("%s|%s|%s|%s", t->mode == CLUSTER_UPGRADE ? "upgrade" : "rollback", b, e, m);
        for (const char *p = canon ?: ""; *p; p++) {
                h ^= (unsigned char) *p;
                h *= 16777619u;
        }
        snprintf(ret, CLUSTER_HASH_LEN + 1, "%08x", h);
}

/* ---- the rules, on a working copy of the cluster ---- */

typedef struct working {
        const cluster_node *nodes;
        size_t n;
        cluster_comp (*comps)[_CLUSTER_COMPONENT_MAX]; /* the state as the plan goes */
} working;

static plan_component node_component(int c, const cluster_comp *s) {
        return (plan_component){
                .name = cluster_component_names[c],
                .emulated_since = KMINOR_EMULATED_FLAG_SINCE,
                .min_compat_since = KMINOR_MIN_COMPAT_FLAG_SINCE,
                .forward_compat_since = c == CLUSTER_APISERVER ? KMINOR_FORWARD_COMPAT_FLAG_SINCE : KMINOR(0, 0),
                .repository = "",
                .binary = s->binary,
                .emulated = s->emulated,
                .min_compat = s->min_compat,
        };
}

/* One node with the node planner's own rules (each binary's ranges, the skew on the node). */
static int validate_node(const char *name, const cluster_comp comps[static _CLUSTER_COMPONENT_MAX],
                         char **ret_error) {
        plan_component pc[_CLUSTER_COMPONENT_MAX];
        _cleanup_free_ char *why = NULL;
        int r;

        for (int c = 0; c < _CLUSTER_COMPONENT_MAX; c++)
                pc[c] = node_component(c, &comps[c]);
        r = plan_validate_state(pc, _CLUSTER_COMPONENT_MAX, &why);
        if (r < 0)
                return set_error(ret_error, r, "node %s: %s", name, why ?: strerror(-r));
        return 0;
}

/* Across nodes: the KEP's skew against every API server of the cluster, not only the node's
 * own: a controller-manager talks to whichever API server its load balancer picks. */
static int validate_across(const cluster_node *nodes, size_t n, cluster_comp (*comps)[_CLUSTER_COMPONENT_MAX],
                           char **ret_error) {
        size_t lo_e = 0, hi_m = 0, lo_b = 0;
        char x[KMINOR_STRING_MAX], y[KMINOR_STRING_MAX];

        for (size_t i = 1; i < n; i++) {
                if (kminor_cmp(comps[i][0].emulated, comps[lo_e][0].emulated) < 0)
                        lo_e = i;
                if (kminor_cmp(comps[i][0].min_compat, comps[hi_m][0].min_compat) > 0)
                        hi_m = i;
                if (kminor_cmp(kversion_minor(&comps[i][0].binary), kversion_minor(&comps[lo_b][0].binary)) < 0)
                        lo_b = i;
        }
        for (size_t i = 0; i < n; i++)
                for (int c = 1; c < _CLUSTER_COMPONENT_MAX; c++) {
                        const cluster_comp *o = &comps[i][c];

                        if (kminor_cmp(o->emulated, comps[lo_e][0].emulated) > 0) {
                                kminor_format(o->emulated, x);
                                kminor_format(comps[lo_e][0].emulated, y);
                                return set_error(ret_error, -EINVAL,
                                                 "%s on %s would emulate %s, above kube-apiserver on %s, which "
                                                 "emulates %s",
                                                 cluster_component_names[c], nodes[i].name, x, nodes[lo_e].name, y);
                        }
                        if (kminor_cmp(o->emulated, comps[hi_m][0].min_compat) < 0) {
                                kminor_format(o->emulated, x);
                                kminor_format(comps[hi_m][0].min_compat, y);
                                return set_error(ret_error, -EINVAL,
                                                 "%s on %s would emulate %s, below the min-compatibility version %s "
                                                 "of kube-apiserver on %s",
                                                 cluster_component_names[c], nodes[i].name, x, y, nodes[hi_m].name);
                        }
                        if (kminor_cmp(kversion_minor(&o->binary), kversion_minor(&comps[lo_b][0].binary)) > 0) {
                                kminor_format(kversion_minor(&o->binary), x);
                                kminor_format(kversion_minor(&comps[lo_b][0].binary), y);
                                return set_error(ret_error, -EINVAL,
                                                 "%s on %s would run binary %s, newer than kube-apiserver on %s (%s)",
                                                 cluster_component_names[c], nodes[i].name, x, nodes[lo_b].name, y);
                        }
                }
        return 0;
}

static int validate_all(const cluster_node *nodes, size_t n, cluster_comp (*comps)[_CLUSTER_COMPONENT_MAX],
                        char **ret_error) {
        int r;

        for (size_t i = 0; i < n; i++) {
                r = validate_node(nodes[i].name, comps[i], ret_error);
                if (r < 0)
                        return r;
        }
        return validate_across(nodes, n, comps, ret_error);
}

int cluster_validate_state(const cluster_node *nodes, size_t n, char **ret_error) {
        _cleanup_free_ cluster_comp(*comps)[_CLUSTER_COMPONENT_MAX] = calloc(n ?: 1, sizeof(*comps));
        _cleanup_free_ const cluster_node **ptrs = calloc(n ?: 1, sizeof(cluster_node *));
        _cleanup_free_ cluster_node *known = calloc(n ?: 1, sizeof(cluster_node));
        size_t k = 0;

        if (!comps || !ptrs || !known)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                bool all = true;

                for (int c = 0; c < _CLUSTER_COMPONENT_MAX; c++)
                        all = all && nodes[i].comps[c].known;
                if (!all)
                        continue;
                known[k] = nodes[i];
                memcpy(comps[k], nodes[i].comps, sizeof(comps[k]));
                k++;
        }
        return validate_all(known, k, comps, ret_error);
}

/* ---- building the plan ---- */

typedef struct builder {
        const cluster_node *nodes;
        size_t n;
        const cluster_target *t;
        cluster_comp (*comps)[_CLUSTER_COMPONENT_MAX];
        cluster_plan *plan;
        size_t allocated;
        char **error;
} builder;

static int step_id(const builder *b, cluster_phase phase, int c, kminor m, char ret[static CLUSTER_ID_MAX]) {
        char v[KMINOR_STRING_MAX], p[40];

        kminor_format(m, v);
        if (phase == CLUSTER_PHASE_BINARY)
                snprintf(p, sizeof(p), "binary");
        else
                snprintf(p, sizeof(p), "%s-%s", phase == CLUSTER_PHASE_EMULATION ? "emulated" : "mincompat", v);
        if (snprintf(ret, CLUSTER_ID_MAX, "cluster-%s-%s-%s", b->plan->hash, p, cluster_component_names[c]) >=
            CLUSTER_ID_MAX)
                return -E2BIG;
        return 0;
}

/* Applies one (node, component) step to the working state, as the binary would read its
 * flags: the min-compatibility version of a binary without the flag is its default. Then the
 * whole cluster is checked; the reason names the step. */
static int add_step(builder *b, size_t i, int c, cluster_phase phase, kversion binary, kminor emulated,
                    kminor min_compat, kminor id_minor) {
        cluster_comp *s = &b->comps[i][c];
        cluster_step *st;
        bool explicit_min = kminor_cmp(kversion_minor(&binary), KMINOR_MIN_COMPAT_FLAG_SINCE) >= 0;
        _cleanup_free_ char *why = NULL;
        char bs[KVERSION_STRING_MAX];
        int r;

        if (!explicit_min) {
                kminor implied = compat_default_min_compat(kversion_minor(&binary), emulated);

                /* A binary without the flag cannot keep a higher one: that would lower it. */
                if (kminor_cmp(implied, min_compat) < 0) {
                        char m[KMINOR_STRING_MAX];

                        kversion_format(&binary, bs);
                        kminor_format(min_compat, m);
                        return set_error(b->error, -EINVAL,
                                         "%s on %s: binary %s has no --min-compatibility-version flag and cannot "
                                         "keep min-compatibility version %s (data may already need it)",
                                         cluster_component_names[c], b->nodes[i].name, bs, m);
                }
                min_compat = implied;
        }
        if (kversion_cmp(&s->binary, &binary) == 0 && kminor_eq(s->emulated, emulated) &&
            kminor_eq(s->min_compat, min_compat))
                return 0; /* already there: a re-run continues where it stopped */

        if (b->plan->n_steps == b->allocated) {
                size_t na = b->allocated ? b->allocated * 2 : 16;
                cluster_step *ns = realloc(b->plan->steps, na * sizeof(cluster_step));

                if (!ns)
                        return -ENOMEM;
                b->plan->steps = ns;
                b->allocated = na;
        }
        st = &b->plan->steps[b->plan->n_steps];
        *st = (cluster_step){
                .node = i,
                .component = c,
                .phase = phase,
                .binary = binary,
                .emulated = emulated,
                .min_compat = min_compat,
                .min_compat_explicit = explicit_min,
        };
        r = step_id(b, phase, c, id_minor, st->id);
        if (r < 0)
                return set_error(b->error, r, "target id too long");
        b->plan->n_steps++;

        s->binary = binary;
        s->emulated = emulated;
        s->min_compat = min_compat;
        r = validate_all(b->nodes, b->n, b->comps, &why);
        if (r < 0) {
                kversion_format(&binary, bs);
                return set_error(b->error, r, "step %zu (%s on %s, %s %s) would break the rules: %s",
                                 b->plan->n_steps, cluster_component_names[c], b->nodes[i].name,
                                 cluster_phase_to_string(phase), phase == CLUSTER_PHASE_BINARY ? bs : "", why);
        }
        return 0;
}

/* Each node in order, or last node first when going down. */
static size_t node_at(const builder *b, size_t k) {
        return b->t->mode == CLUSTER_UPGRADE ? k : b->n - 1 - k;
}

static int component_at(const builder *b, int k) {
        return b->t->mode == CLUSTER_UPGRADE ? k : _CLUSTER_COMPONENT_MAX - 1 - k;
}

static int phase_binary(builder *b, const kversion *to) {
        int r;

        for (int k = 0; k < _CLUSTER_COMPONENT_MAX; k++) {
                int c = component_at(b, k);

                for (size_t j = 0; j < b->n; j++) {
                        size_t i = node_at(b, j);
                        const cluster_comp *s = &b->comps[i][c];

                        /* The emulated version is pinned at what the component runs now. */
                        r = add_step(b, i, c, CLUSTER_PHASE_BINARY, *to, s->emulated, s->min_compat, KMINOR(0, 0));
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static kminor lowest_emulated(const builder *b) {
        kminor lo = b->comps[0][0].emulated;

        for (size_t i = 0; i < b->n; i++)
                for (int c = 0; c < _CLUSTER_COMPONENT_MAX; c++)
                        if (kminor_cmp(b->comps[i][c].emulated, lo) < 0)
                                lo = b->comps[i][c].emulated;
        return lo;
}

static kminor highest_emulated(const builder *b) {
        kminor hi = b->comps[0][0].emulated;

        for (size_t i = 0; i < b->n; i++)
                for (int c = 0; c < _CLUSTER_COMPONENT_MAX; c++)
                        if (kminor_cmp(b->comps[i][c].emulated, hi) > 0)
                                hi = b->comps[i][c].emulated;
        return hi;
}

/* Raise to each minor in turn up to `to`. The min-compatibility version follows the binary's
 * default for the new minor (capped at the target's), never going down. */
static int phase_raise_emulation(builder *b, kminor to, kminor target_min) {
        int r;

        for (kminor e = kminor_add(lowest_emulated(b), 1); kminor_cmp(e, to) <= 0; e = kminor_add(e, 1))
                for (int c = 0; c < _CLUSTER_COMPONENT_MAX; c++)
                        for (size_t i = 0; i < b->n; i++) {
                                const cluster_comp *s = &b->comps[i][c];
                                kminor m = compat_default_min_compat(kversion_minor(&s->binary), e);

                                if (kminor_cmp(s->emulated, e) >= 0)
                                        continue;
                                if (kminor_cmp(m, target_min) > 0)
                                        m = target_min;
                                if (kminor_cmp(m, s->min_compat) < 0)
                                        m = s->min_compat;
                                r = add_step(b, i, c, CLUSTER_PHASE_EMULATION, s->binary, e, m, e);
                                if (r < 0)
                                        return r;
                        }
        return 0;
}

static int phase_raise_min_compat(builder *b, kminor to) {
        int r;

        for (int c = 0; c < _CLUSTER_COMPONENT_MAX; c++)
                for (size_t i = 0; i < b->n; i++) {
                        const cluster_comp *s = &b->comps[i][c];

                        if (kminor_cmp(s->min_compat, to) >= 0)
                                continue;
                        r = add_step(b, i, c, CLUSTER_PHASE_MIN_COMPAT, s->binary, s->emulated, to, to);
                        if (r < 0)
                                return r;
                }
        return 0;
}

/* Lower to each minor in turn down to `to`, scheduler first, last node first. */
static int phase_lower_emulation(builder *b, kminor to) {
        int r;

        for (kminor e = kminor_add(highest_emulated(b), -1); kminor_cmp(e, to) >= 0; e = kminor_add(e, -1))
                for (int k = 0; k < _CLUSTER_COMPONENT_MAX; k++) {
                        int c = component_at(b, k);

                        for (size_t j = 0; j < b->n; j++) {
                                size_t i = node_at(b, j);
                                const cluster_comp *s = &b->comps[i][c];

                                if (kminor_cmp(s->emulated, e) <= 0)
                                        continue;
                                r = add_step(b, i, c, CLUSTER_PHASE_EMULATION, s->binary, e, s->min_compat, e);
                                if (r < 0)
                                        return r;
                        }
                }
        return 0;
}

/* ---- what must hold before anything is planned ---- */

static bool ours(const builder *b, const char *id) {
        _cleanup_free_ char *prefix = strdup_printf("cluster-%s-", b->plan->hash);

        return id && prefix && startswith(id, prefix);
}

static int check_nodes(builder *b) {
        if (b->n == 0)
                return set_error(b->error, -EINVAL,
                                 "no control-plane node (no Node labelled node-role.kubernetes.io/control-plane)");
        for (size_t i = 0; i < b->n; i++) {
                const cluster_node *nd = &b->nodes[i];

                switch (nd->agent) {
                case CLUSTER_AGENT_OK:
                        break;
                case CLUSTER_AGENT_MISSING:
                        return set_error(b->error, -EINVAL,
                                         "node %s: no cplet agent reports there (no cplet.io/status annotation): "
                                         "run cplet daemon on every control-plane node",
                                         nd->name);
                case CLUSTER_AGENT_STALE:
                        return set_error(b->error, -EINVAL,
                                         "node %s: its agent's status is stale (not updated within the bound): "
                                         "is cplet daemon running there?",
                                         nd->name);
                case CLUSTER_AGENT_INVALID:
                        return set_error(b->error, -EINVAL, "node %s: its cplet.io/status annotation is not valid",
                                         nd->name);
                }
                if (nd->phase &&
                    (streq(nd->phase, "Progressing") || streq(nd->phase, "Pending") ||
                     streq(nd->phase, "Interrupted")) &&
                    !ours(b, nd->status_id))
                        return set_error(b->error, -EINVAL,
                                         "node %s is %s (target \"%s\"): wait until its agent has finished%s",
                                         nd->name, nd->phase, nd->status_id ?: "",
                                         streq(nd->phase, "Interrupted") ? " (it resumes when it starts again)" : "");
                for (int c = 0; c < _CLUSTER_COMPONENT_MAX; c++) {
                        const cluster_comp *s = &nd->comps[c];

                        if (!s->known)
                                return set_error(b->error, -EINVAL,
                                                 "node %s: its agent does not report %s with all its versions",
                                                 nd->name, cluster_component_names[c]);
                        if (s->mirror_agrees == 0)
                                return set_error(b->error, -EINVAL,
                                                 "node %s: %s disagrees with its mirror pod (%s): the kubelet does "
                                                 "not run what the agent reports",
                                                 nd->name, cluster_component_names[c], s->mirror_why ?: "differs");
                }
        }
        return 0;
}

static int refuse_version(builder *b, const char *what, size_t i, int c, const char *how) {
        return set_error(b->error, -EINVAL, "%s: %s on %s %s", what, cluster_component_names[c], b->nodes[i].name,
                         how);
}

/* An upgrade goes up only; what would go down is a rollback's. */
static int check_upgrade_target(builder *b, kminor *ret_e, kminor *ret_m) {
        const cluster_target *t = b->t;
        kminor bm = kversion_minor(&t->binary), e, m;
        char bs[KVERSION_STRING_MAX], x[KMINOR_STRING_MAX];
        _cleanup_free_ char *why = NULL;
        compat_settings s;
        int r;

        kversion_format(&t->binary, bs);
        s = (compat_settings){
                .binary = bm,
                .emulated_set = t->emulated_set,
                .emulated = t->emulated,
                .min_compat_set = t->min_compat_set,
                .min_compat = t->min_compat,
        };
        r = compat_validate(&s, &e, &m, &why);
        if (r < 0)
                return set_error(b->error, r, "the target is not valid for binary %s: %s", bs, why);
        for (size_t i = 0; i < b->n; i++)
                for (int c = 0; c < _CLUSTER_COMPONENT_MAX; c++) {
                        const cluster_comp *o = &b->comps[i][c];

                        if (kversion_cmp(&o->binary, &t->binary) > 0)
                                return refuse_version(b, "cplet cluster upgrade does not go down", i, c,
                                                      "runs a newer binary: use cplet cluster rollback "
                                                      "--binary-version");
                        if (kminor_cmp(o->emulated, e) > 0) {
                                kminor_format(o->emulated, x);
                                return set_error(b->error, -EINVAL,
                                                 "cplet cluster upgrade does not go down: %s on %s emulates %s; use "
                                                 "cplet cluster rollback --emulated-version",
                                                 cluster_component_names[c], b->nodes[i].name, x);
                        }
                        if (kminor_cmp(o->min_compat, m) > 0) {
                                kminor_format(o->min_compat, x);
                                return set_error(b->error, -EINVAL,
                                                 "%s on %s runs with min-compatibility version %s, above the "
                                                 "target's: the min-compatibility version is never lowered "
                                                 "(data may already need it)",
                                                 cluster_component_names[c], b->nodes[i].name, x);
                        }
                }
        *ret_e = e;
        *ret_m = m;
        return 0;
}

static int plan_upgrade(builder *b) {
        kminor e, m;
        int r;

        if (!b->t->binary_set)
                return set_error(b->error, -EINVAL, "--binary-version is required");
        r = check_upgrade_target(b, &e, &m);
        if (r < 0)
                return r;
        r = phase_binary(b, &b->t->binary);
        if (r < 0)
                return r;
        r = phase_raise_emulation(b, e, m);
        if (r < 0)
                return r;
        return phase_raise_min_compat(b, m);
}

static int check_rollback_target(builder *b) {
        const cluster_target *t = b->t;
        char x[KMINOR_STRING_MAX], y[KMINOR_STRING_MAX];

        if (t->min_compat_set)
                return set_error(b->error, -EINVAL,
                                 "--min-compatibility-version does not apply to a rollback: the min-compatibility "
                                 "version is never lowered");
        if (!t->binary_set && !t->emulated_set)
                return set_error(b->error, -EINVAL, "a rollback needs --emulated-version or --binary-version");
        for (size_t i = 0; i < b->n; i++)
                for (int c = 0; c < _CLUSTER_COMPONENT_MAX; c++) {
                        const cluster_comp *o = &b->comps[i][c];

                        if (t->binary_set && kversion_cmp(&o->binary, &t->binary) < 0)
                                return refuse_version(b, "cplet cluster rollback does not go up", i, c,
                                                      "runs an older binary: use cplet cluster upgrade");
                        if (t->emulated_set && kminor_cmp(o->emulated, t->emulated) < 0)
                                return refuse_version(b, "cplet cluster rollback does not go up", i, c,
                                                      "emulates an older version: use cplet cluster upgrade");
                        if (t->emulated_set && kminor_cmp(o->min_compat, t->emulated) > 0) {
                                kminor_format(o->min_compat, x);
                                kminor_format(t->emulated, y);
                                return set_error(b->error, -EINVAL,
                                                 "cannot lower the emulated version to %s: %s on %s runs with "
                                                 "min-compatibility version %s, and data may already need it",
                                                 y, cluster_component_names[c], b->nodes[i].name, x);
                        }
                }
        return 0;
}

static int plan_rollback(builder *b) {
        int r;

        r = check_rollback_target(b);
        if (r < 0)
                return r;
        if (b->t->emulated_set) {
                r = phase_lower_emulation(b, b->t->emulated);
                if (r < 0)
                        return r;
        }
        if (b->t->binary_set)
                return phase_binary(b, &b->t->binary);
        return 0;
}

int cluster_plan_compute(const cluster_node *nodes, size_t n, const cluster_target *t, cluster_plan **ret,
                         char **ret_error) {
        _cleanup_free_ cluster_comp(*comps)[_CLUSTER_COMPONENT_MAX] = calloc(n ?: 1, sizeof(*comps));
        _cleanup_(cluster_plan_freep) cluster_plan *p = calloc(1, sizeof(cluster_plan));
        _cleanup_free_ char *why = NULL;
        builder b;
        int r;

        if (!comps || !p)
                return -ENOMEM;
        cluster_target_hash(t, p->hash);
        b = (builder){ .nodes = nodes, .n = n, .t = t, .comps = comps, .plan = p, .error = ret_error };
        r = check_nodes(&b);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                memcpy(comps[i], nodes[i].comps, sizeof(comps[i]));
        r = validate_all(nodes, n, comps, &why);
        if (r < 0)
                return set_error(ret_error, r, "the cluster as it stands breaks the rules: %s", why);

        r = t->mode == CLUSTER_UPGRADE ? plan_upgrade(&b) : plan_rollback(&b);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(p);
        return 0;
}

cluster_plan *cluster_plan_free(cluster_plan *p) {
        if (!p)
                return NULL;
        for (size_t i = 0; i < p->n_steps; i++)
                strv_free(p->steps[i].drop_removed);
        free(p->steps);
        free(p);
        return NULL;
}
