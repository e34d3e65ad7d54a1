/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The cluster as the API shows it: the control-plane Nodes (label
 * node-role.kubernetes.io/control-plane), each agent's cplet.io/status and the controller's
 * cplet.io/target, and the mirror pods in kube-system. Built from API objects only, so the
 * reading is testable without a server. */

#include <jansson.h>
#include <stdint.h>

#include "cluster-mirror.h"
#include "cluster-plan.h"

#define CLUSTER_NODE_SELECTOR "node-role.kubernetes.io/control-plane"
#define CLUSTER_NODES_MAX 64

typedef struct node_report {
        char *name;
        json_t *status;        /* the parsed status annotation (owned), NULL: none or not JSON */
        char *status_problem;  /* why the status is not usable; NULL: it is */
        json_t *target;        /* the parsed target annotation (owned), NULL: none */
        uint64_t generation;   /* the status's */
        const char *agent_version, *updated, *message; /* borrowed from status */
        int64_t age_sec;       /* since `updated`; -1 unknown */
        int healthy[_CLUSTER_COMPONENT_MAX];
        mirror_pod mirror[_CLUSTER_COMPONENT_MAX];
        char *mirror_why[_CLUSTER_COMPONENT_MAX];
} node_report;

typedef struct cluster_state {
        cluster_node *nodes; /* sorted by name; strings borrowed from reports */
        node_report *reports;
        size_t n;
} cluster_state;

/* node_list: a NodeList (already filtered by the label); pod_list: the PodList of kube-system,
 * or NULL when the pods were not read (mirror agreement then unknown). now_usec: wall clock;
 * max_age_usec: a status updated longer ago is stale (0: never). */
int cluster_state_build(json_t *node_list, json_t *pod_list, uint64_t now_usec, uint64_t max_age_usec,
                        cluster_state **ret, char **ret_error);
cluster_state *cluster_state_free(cluster_state *s);
static inline void cluster_state_freep(cluster_state **s) {
        cluster_state_free(*s);
}

/* The node's annotation `key` parsed as JSON (NULL: absent or not JSON). */
json_t *node_annotation_json(json_t *node, const char *key);
