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
        long status;        /* HTTP status; 0: no usable response (see error): a transport error, a
                             * body larger than KUBE_RESPONSE_MAX, a 2xx body that is not JSON */
        json_t *body;       /* the parsed body (borrowed), NULL when it was not JSON (or empty) */
        const char *error;  /* NULL for a 2xx; else the transport error in curl's words
                             * ("SSL certificate problem: ...", "transfer closed with outstanding
                             * read data remaining"), "response larger than 4194304 bytes", the
                             * Status message of an error response, or "HTTP 502: <first line>" when
                             * the error response is not a Status */
        const char *reason; /* Status.reason of an error response ("Forbidden", "Conflict",
                             * "Expired", ...), NULL if none */
        uint64_t retry_after_usec; /* from a Retry-After header, 0: none */
} kube_response;

typedef void (*kube_done_fn)(const kube_response *r, void *userdata);

/* Copies what it needs from k (which the caller may free). Trusts only the kubeconfig's CA when it
 * names one (else the system's); a tls-server-name is the name the server's certificate is checked
 * against while the connection goes to the server's address. No proxy from the environment.
 * Client certificate and key files, and a token file, must be readable now (else an error naming
 * the file). A token file takes precedence over an inline token, as in client-go. */
int kube_client_new(sd_event *e, const kubeconfig *k, bool insecure_skip_tls_verify, kube_client **ret,
                    char **ret_error);
/* Cancels requests and watches in flight without calling back; from inside a callback too (the
 * client goes when the callback returns). */
kube_client *kube_client_free(kube_client *c);
static inline void kube_client_freep(kube_client **c) {
        kube_client_free(*c);
}

/* Starts a request: method "GET", "POST", "PATCH", "PUT" or "DELETE"; path "/api/v1/..." with
 * any query already escaped; body NULL or a JSON value sent with content_type (NULL:
 * "application/json"). timeout_ms (> 0, else -EINVAL) bounds the whole request. done is called
 * exactly once from the event loop (never from inside this call) unless the client is freed or the
 * request cancelled first. Before each request the token file is read again, and the client
 * certificate and key files are looked at (device, inode, mtime, size, through symlinks): when one
 * changed it is read again and the request goes on a new connection, so that the new certificate
 * is presented. A file that cannot be read at that moment keeps the last bytes read. */
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
