/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Keeps the daemon's view of its own Node current: list it (field selector), then watch it
 * (fieldSelector=metadata.name=NODE, bookmarks on, a randomised timeoutSeconds, resumed from
 * the last resourceVersion), list again on 410 Gone, back off exponentially with jitter on
 * errors. Nothing runs while the watch is open and quiet: no polling. */

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "kube-client.h"

typedef struct node_watch node_watch;

/* Called with the Node object (borrowed) each time it is read or changes. */
typedef void (*node_changed_fn)(json_t *node, void *userdata);
/* Called when reading the Node fails: the HTTP status (0: no answer) and why. The watch
 * retries by itself after a backoff; `forbidden` says the identity may not read this Node. */
typedef void (*node_trouble_fn)(long status, const char *error, void *userdata);
/* Called when the server ended a watch cleanly (its timeoutSeconds: every 5 to 10 minutes) and
 * the next one starts: the one regular moment an idle agent is awake anyway. */
typedef void (*node_renewed_fn)(void *userdata);

int node_watch_new(sd_event *e, kube_client *k, const char *node_name, node_changed_fn changed,
                   node_trouble_fn trouble, node_renewed_fn renewed, void *userdata, node_watch **ret);
node_watch *node_watch_free(node_watch *w);
static inline void node_watch_freep(node_watch **w) {
        node_watch_free(*w);
}

/* Whether the last read or watch of the Node succeeded (the API server answers). */
bool node_watch_connected(const node_watch *w);

/* Exponential backoff with jitter: base × 2^attempt, capped, ±25 %. */
uint64_t backoff_usec(unsigned attempt, uint64_t base_usec, uint64_t max_usec);
