/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Runs a cluster plan: for each (node, component) step, writes the node's cplet.io/target (a
 * JSON merge patch of that one annotation), waits on a watch of the Node for the agent's
 * status of that id and generation, then checks beyond the agent's word: the mirror pod shows
 * the new revision, image and flags and is Ready; for kube-controller-manager and
 * kube-scheduler, their leader-election Lease is held and renewed again within its duration.
 * The first failure stops: nothing else is touched. */

#include <stdint.h>

#include "cluster-api.h"
#include "cluster-lease.h"
#include "cluster-plan.h"
#include "cluster-state.h"

typedef struct controller_options {
        const char *stable_for;   /* into each target; NULL: the agent's default */
        const char *step_timeout;
        const char *on_failure;
        uint64_t node_timeout_usec; /* bounds each (node, component) step, verification included */
        /* Progress, one call per transition: the step (1-based), what happens ("writing",
         * "waiting", "verifying", "leader", "done", "attached"), a detail. */
        void (*progress)(size_t index, size_t total, const cluster_step *s, const char *node, const char *what,
                         const char *detail, void *userdata);
        void *userdata;
} controller_options;

typedef struct controller_failure {
        size_t index;     /* 1-based step; 0: before any step */
        char *node;
        int component;
        char *why;        /* the node's message, or what the verification saw */
} controller_failure;

void controller_failure_done(controller_failure *f);

/* The target annotation's JSON of a step (id, generation, versions, components [C], gate). */
json_t *controller_target_json(const cluster_step *s, uint64_t generation, const controller_options *o);

/* 0 when every step passed; -EIO with *ret_failure filled when one failed (or the Lease was
 * lost); other negative errnos for the controller's own failures. */
int controller_run(cluster_api *a, cluster_lease *lease, const cluster_state *st, const cluster_plan *p,
                   const controller_options *o, controller_failure *ret_failure);
