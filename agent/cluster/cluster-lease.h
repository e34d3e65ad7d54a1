/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* One cluster controller at a time: the Lease kube-system/cplet-cluster
 * (coordination.k8s.io/v1), held while a controller runs and renewed from the event loop's
 * timer, so that it stays renewed during every wait. A Lease held by another controller and
 * not expired refuses the start (naming the holder); an expired one (renewTime +
 * leaseDurationSeconds in the past) or a released one (no holder) is taken over, with a
 * compare-and-swap on its resourceVersion so that two controllers never both take it. */

#include <stdbool.h>

#include "cluster-api.h"

#define CLUSTER_LEASE_NAMESPACE "kube-system"
#define CLUSTER_LEASE_NAME "cplet-cluster"
#define CLUSTER_LEASE_DURATION_S 30

typedef struct cluster_lease cluster_lease;

/* -EBUSY when another controller holds it (the message names the holder and when it expires);
 * other errors with the API's message. */
int cluster_lease_acquire(cluster_api *a, const char *identity, unsigned duration_s, cluster_lease **ret,
                          char **ret_error);
/* True once a renewal found the Lease taken by someone else, or none succeeded within its
 * duration: the controller must stop before its next write. */
bool cluster_lease_lost(const cluster_lease *l, const char **ret_why);
/* Gives the Lease up (no holder), so that the next controller need not wait for it to expire;
 * then frees. */
cluster_lease *cluster_lease_release(cluster_lease *l);
static inline void cluster_lease_releasep(cluster_lease **l) {
        cluster_lease_release(*l);
}
