/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* An asynchronous client of the Kubernetes API on an sd-event loop (libcurl multi; nothing
 * polls): requests with JSON bodies, and watches that stream events. Credentials come from a
 * kubeconfig (kubeconfig.h). TLS is always verified, unless the caller says the user asked
 * for --insecure-skip-tls-verify. A client certificate given as a file is read again when the
 * file changes (kubeadm rotates kubelet-client-current.pem by replacing a symlink): the next
 * request then opens a new connection with it. */

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "kubeconfig.h"

/* The largest response cplet reads: a Node object with its status is tens of KiB. */
#define KUBE_RESPONSE_MAX (4 * 1024 * 1024)

typedef struct kube_client kube_client;

typedef struct kube_response {
        long status;        /* HTTP status; 0: no response (see error) */
        json_t *body;       /* the parsed body (borrowed), NULL when it was not JSON */
        const char *error;  /* transport error in curl's words, or the Status message of an
                             * error response, or why the body was refused (oversized) */
        const char *reason; /* Status.reason of an error response ("Forbidden", "Conflict",
                             * "Expired", ...), NULL if none */
        uint64_t retry_after_usec; /* from a Retry-After header, 0: none */
} kube_response;

typedef void (*kube_done_fn)(const kube_response *r, void *userdata);

int kube_client_new(sd_event *e, const kubeconfig *k, bool insecure_skip_tls_verify, kube_client **ret,
                    char **ret_error);
/* Cancels requests and watches in flight without calling back. */
kube_client *kube_client_free(kube_client *c);
static inline void kube_client_freep(kube_client **c) {
        kube_client_free(*c);
}

/* Starts a request: method "GET", "POST", "PATCH", "PUT" or "DELETE"; path "/api/v1/..." with
 * any query already escaped; body NULL or a JSON value sent with content_type (NULL:
 * "application/json"). done is called exactly once from the event loop (never from inside
 * this call) unless the client is freed or the request cancelled first. */
int kube_request(kube_client *c, const char *method, const char *path, json_t *body, const char *content_type,
                 uint64_t timeout_ms, kube_done_fn done, void *userdata);

/* A watch: GET path (which must carry watch=1 or be a /watch/ path) whose response is a stream of
 * events. on_event gets each event's type ("ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR")
 * and object (borrowed); on_end is called once when the stream ends: status 200 and error NULL
 * for a clean end (the server's timeoutSeconds), else the HTTP status of a refused watch (410
 * Gone included) or 0 with the transport error, or a malformed stream. */
typedef void (*kube_watch_event_fn)(const char *type, json_t *object, void *userdata);
int kube_watch(kube_client *c, const char *path, kube_watch_event_fn on_event, kube_done_fn on_end,
               void *userdata);

/* Cancels every request and watch started with that userdata, without calling back. */
size_t kube_client_cancel(kube_client *c, void *userdata);
