/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* What the daemon tells the API server: the cplet.io/status annotation of its own Node (a JSON
 * merge patch of that one annotation, never an update of the Node) and Events about the Node.
 * Only the latest status matters: while a patch is in flight or the API server is away, a
 * newer status replaces the one waiting, and one patch is sent when it answers again, not a
 * backlog. A 403 is logged once and retried only slowly: the identity will not change by
 * itself. */

#include <jansson.h>
#include <stdbool.h>
#include <systemd/sd-event.h>

#include "kube-client.h"

typedef struct reporter reporter;

int reporter_new(sd_event *e, kube_client *k, const char *node_name, reporter **ret);
reporter *reporter_free(reporter *r);
static inline void reporter_freep(reporter **r) {
        reporter_free(*r);
}

/* The Node's uid, for the Events' involvedObject (from the watch). */
int reporter_set_node_uid(reporter *r, const char *uid);

/* Sends this status (takes a reference) as soon as the API server takes it. */
void reporter_set_status(reporter *r, json_t *status);

/* Queues an Event (type "Normal" or "Warning"; reason in CamelCase). Kept (a few) while the API
 * server is away, dropped oldest first beyond that. */
void reporter_event(reporter *r, const char *type, const char *reason, const char *message);

/* Whether everything queued has been sent (for a clean stop). */
bool reporter_idle(const reporter *r);

/* The API server is back (the watch reconnected): send what waits now, not after the backoff. */
void reporter_kick(reporter *r);
