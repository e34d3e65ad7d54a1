/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The preflight (preflight.h) across a cluster plan: each (node, component) that the plan moves
 * is checked on the command line its mirror pod shows (the kubelet copies the manifest's), at
 * every step of that pair, before any target is written. The node agents check again on their
 * own manifests: this is so that `cplet cluster plan` lists every finding of every node at once. */

#include <stdbool.h>

#include "cluster-plan.h"
#include "cluster-state.h"
#include "preflight.h"

typedef struct cluster_preflight {
        preflight_report report; /* every node's findings; file is "NODE: COMPONENT" */
        size_t n_unchecked;      /* pairs without a readable mirror pod: their agent checks */
} cluster_preflight;

/* drop: --drop-removed (NULL-terminated, or NULL). Sets each step's drop_removed: only the
 * first step of a (node, component) drops, and only what the preflight refuses for that pair.
 * An entry refused nowhere is invalid input (-EINVAL with the entry named). Refusals left after
 * the drops are returned in the report; the caller refuses the plan unless --force. */
int cluster_preflight_run(const cluster_state *st, cluster_plan *p, const char *const *drop,
                          cluster_preflight *ret, char **ret_error);
void cluster_preflight_done(cluster_preflight *cp);
