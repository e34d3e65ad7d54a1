/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* What the cluster controller needs of the asynchronous Kubernetes client (kube-client.h): a
 * request whose answer it waits for (the event loop runs meanwhile, so the controller's Lease
 * keeps being renewed), and a watch of one named object that follows it across the server's
 * watch timeouts and reconnects after errors. Times: RFC 3339 both ways. */

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "kube-client.h"

#define CLUSTER_REQUEST_TIMEOUT_MS 30000

typedef struct cluster_api {
        sd_event *event;
        kube_client *kube;
        bool interrupted; /* SIGINT/SIGTERM: every wait ends with -EINTR */
} cluster_api;

typedef struct api_result {
        long status;  /* HTTP status, 0: no answer */
        json_t *body; /* owned */
        char *error;  /* owned; NULL on 2xx */
        char *reason; /* Status.reason of an error response */
} api_result;

void api_result_done(api_result *r);

/* Sends the request and runs the event loop until its answer (or timeout_ms) arrives. Returns
 * 0 with the answer in *ret (whatever its status), a negative errno when the loop fails. */
int api_call(cluster_api *a, const char *method, const char *path, json_t *body, const char *content_type,
             api_result *ret);

/* Runs the event loop until *done is true or the deadline (CLOCK_MONOTONIC usec) passes:
 * 0 done, -ETIME the deadline, -EINTR interrupted, or the loop's error. */
int api_run_until(cluster_api *a, const bool *done, uint64_t deadline);

/* Follows one object: `collection` is "/api/v1/namespaces/kube-system/pods" (or
 * "/api/v1/nodes"), `name` the object's. changed(object or NULL when it does not exist) is
 * called with the first read and at each change. */
typedef void (*object_changed_fn)(json_t *object, void *userdata);
typedef struct object_watch object_watch;
int object_watch_new(cluster_api *a, const char *collection, const char *name, object_changed_fn changed,
                     void *userdata, object_watch **ret);
object_watch *object_watch_free(object_watch *w);
static inline void object_watch_freep(object_watch **w) {
        object_watch_free(*w);
}
/* The last error of the watch (NULL: none), to say why a wait ended without the object. */
const char *object_watch_error(const object_watch *w);

/* "2026-12-01T08:00:00Z" or with a fraction ("...00.123456Z"): seconds since the epoch
 * (with the fraction in usec); -EINVAL for anything else. */
int parse_rfc3339_usec(const char *s, uint64_t *ret);
/* MicroTime, as Lease times are written: "2026-12-01T08:00:00.123456Z". */
void format_micro_time(uint64_t realtime_usec, char buf[static 40]);
