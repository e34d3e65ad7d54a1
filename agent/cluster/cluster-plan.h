/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The cluster planner: a pure function from the control-plane nodes as their agents report
 * them to the ordered list of (node, component) targets that moves the whole cluster, or a
 * refusal with a reason. Nothing here does I/O.
 *
 * Order (FACTS.md "Order and safety", the version-skew policy, KEP-4330): component-major.
 * Upgrade: the binary phase (every component keeps the emulated version it runs), then each
 * emulated minor one at a time, then min-compatibility; inside each phase kube-apiserver on
 * every node one node at a time, then kube-controller-manager on every node, then
 * kube-scheduler. Rollback: the same in reverse (scheduler first, last node first), the
 * emulated version lowered one minor at a time, then the binary.
 *
 * Each state the plan passes through is checked with the node planner's rules
 * (plan_validate_state on every node) and across nodes: no controller-manager or scheduler
 * anywhere emulates above the lowest API server's emulated version, below the highest API
 * server's min-compatibility version, or runs a newer binary minor than the oldest API
 * server. A step whose (node, component) already has the step's versions is left out, so the
 * plan of a cluster that is partly there continues where it stopped. */

#include <stdbool.h>
#include <stddef.h>

#include "version.h"

enum {
        CLUSTER_APISERVER,
        CLUSTER_CONTROLLER_MANAGER,
        CLUSTER_SCHEDULER,
        _CLUSTER_COMPONENT_MAX,
};

/* "kube-apiserver", "kube-controller-manager", "kube-scheduler" (rank order). */
extern const char *const cluster_component_names[_CLUSTER_COMPONENT_MAX];
int cluster_component_from_string(const char *s);

typedef enum cluster_agent {
        CLUSTER_AGENT_OK,
        CLUSTER_AGENT_MISSING, /* no cplet.io/status annotation */
        CLUSTER_AGENT_STALE,   /* the status was updated longer ago than the bound */
        CLUSTER_AGENT_INVALID, /* the status annotation is not the protocol's */
} cluster_agent;

const char *cluster_agent_to_string(cluster_agent a);

/* One component of one node, as the agent reports it (and the mirror pod confirms). */
typedef struct cluster_comp {
        bool known; /* reported with binary, emulated and min-compatibility versions */
        kversion binary;
        kminor emulated;
        kminor min_compat;
        unsigned revision; /* 0: unknown */
        /* The mirror pod against the agent: 1 agrees, 0 disagrees (revision or image), -1 not
         * known (no mirror pod seen: a status without the API's pods). */
        int mirror_agrees;
        const char *mirror_why; /* when it disagrees: what differs */
} cluster_comp;

typedef struct cluster_node {
        const char *name;
        cluster_agent agent;
        const char *phase;     /* the status phase ("Succeeded"); NULL when none */
        const char *status_id; /* the target id the status reports; NULL when none */
        cluster_comp comps[_CLUSTER_COMPONENT_MAX];
} cluster_node;

typedef enum cluster_mode {
        CLUSTER_UPGRADE,
        CLUSTER_ROLLBACK,
} cluster_mode;

typedef struct cluster_target {
        cluster_mode mode;
        /* Upgrade: binary required; emulated default the binary's minor; min-compatibility
         * default the binary's default for the emulated version. Rollback: at least one of
         * binary and emulated; min-compatibility is never given. */
        bool binary_set;
        kversion binary;
        bool emulated_set;
        kminor emulated;
        bool min_compat_set;
        kminor min_compat;
} cluster_target;

typedef enum cluster_phase {
        CLUSTER_PHASE_BINARY,
        CLUSTER_PHASE_EMULATION,
        CLUSTER_PHASE_MIN_COMPAT,
} cluster_phase;

const char *cluster_phase_to_string(cluster_phase p);

#define CLUSTER_HASH_LEN 8
/* "cluster-" + hash + "-" + phase ("binary", "emulated-1.35", "mincompat-1.35") + "-" +
 * component: at most 63 characters, the protocol's id limit. */
#define CLUSTER_ID_MAX 64

typedef struct cluster_step {
        size_t node; /* index into the input */
        int component;
        cluster_phase phase;
        /* The node target's versions. emulatedVersion is always written (every binary the
         * controller handles, 1.31 on, accepts the flag); minCompatibilityVersion only when
         * the binary has the flag (1.35 on): before, it is implied and a target naming it
         * would be refused by the agent. */
        kversion binary;
        kminor emulated;
        kminor min_compat;
        bool min_compat_explicit;
        char id[CLUSTER_ID_MAX]; /* the target id: same for every node of a (phase, component) */
        /* The target's dropRemoved (NULL-terminated, owned; NULL: none): set by the preflight
         * (cluster-preflight.h), not by the planner. */
        char **drop_removed;
} cluster_step;

typedef struct cluster_plan {
        char hash[CLUSTER_HASH_LEN + 1]; /* of the cluster target: names its ids */
        cluster_step *steps;
        size_t n_steps;
} cluster_plan;

/* The hash that names the targets of a cluster target (FNV-1a of its canonical form), so
 * that a re-run of the same command writes the same ids. */
void cluster_target_hash(const cluster_target *t, char ret[static CLUSTER_HASH_LEN + 1]);

/* Nodes in the order the controller goes through them (by name). Returns -EINVAL with a
 * reason naming the node (and component) when the cluster cannot be planned, 0 and a
 * (possibly empty) plan else. A node whose status is Progressing, Pending or Interrupted with
 * an id of this very cluster target (a controller stopped while the node ran its step) is
 * planned, not refused: the controller waits for it again. */
int cluster_plan_compute(const cluster_node *nodes, size_t n, const cluster_target *t, cluster_plan **ret,
                         char **ret_error);
cluster_plan *cluster_plan_free(cluster_plan *p);
static inline void cluster_plan_freep(cluster_plan **p) {
        cluster_plan_free(*p);
}

/* Checks the cluster as it stands: each node with the node planner's rules, and the rules
 * across nodes. 0, or -EINVAL with the first breach. Nodes whose components are not all
 * known are left out. */
int cluster_validate_state(const cluster_node *nodes, size_t n, char **ret_error);
