/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* An asynchronous HTTP client on an sd-event loop: libcurl's multi interface, with its sockets and
 * its one timeout as sd-event sources (nothing polls). One layer for the probes (http_client_get:
 * no certificate verification, as the kubelet's prober) and for the Kubernetes API client
 * (http_client_request: methods, headers, bodies, verified TLS with client certificates,
 * streamed responses for watches). Callbacks always come from the event loop, never from inside
 * a call that starts a request, and never from inside a curl call: a callback may start
 * requests, cancel any request, or free the client. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

/* Bodies larger than this are an error unless a request says otherwise (a health or /version
 * answer is tiny). */
#define HTTP_BODY_MAX (64 * 1024)

typedef struct http_client http_client;

/* status: the HTTP status, 0 on a transport error (then `error` says why, in curl's words, e.g.
 * "Failed to connect to 127.0.0.1 port 6443 after 0 ms: Couldn't connect to server", "Operation
 * timed out after ...", or "response larger than 65536 bytes"). body is NUL-terminated, size
 * excludes the NUL; only valid during the call. */
typedef void (*http_done_fn)(long status, const char *body, size_t size, const char *error, void *userdata);

int http_client_new(sd_event *e, http_client **ret);
/* Cancels the requests in flight without calling their callbacks. From inside a callback the
 * client goes when the event handler returns; nothing calls back in between. */
http_client *http_client_free(http_client *c);
static inline void http_client_freep(http_client **c) {
        http_client_free(*c);
}

/* Starts a GET. done is called exactly once from the event loop (never from inside this call),
 * unless the client is freed first. timeout_ms (> 0, else -EINVAL) bounds the whole request.
 * No redirects are followed, no proxy is used, TLS certificates are not verified (the kubelet does
 * not verify them for probes), connections are kept and reused. Bodies up to HTTP_BODY_MAX. */
int http_client_get(http_client *c, const char *url, uint64_t timeout_ms, http_done_fn done, void *userdata);

/* PEM bytes either in a file (read by curl when it connects) or in memory (copied). */
typedef struct http_pem {
        const char *file;
        const void *data;
        size_t size;
} http_pem;

/* A finished request, valid only during the callback. */
typedef struct http_response {
        long status;       /* 0: no response, see error */
        const char *body;  /* NUL-terminated (never NULL); empty for a streamed 2xx response */
        size_t size;       /* excludes the NUL */
        const char *error; /* NULL unless status is 0 */
        const void *internal;
} http_response;

typedef void (*http_response_fn)(const http_response *r, void *userdata);
/* Receives the body of a 2xx response as it arrives (other responses are kept whole and handed to
 * done). Returning < 0 ends the request: done then gets status 0 and *ret_error (or a generic
 * message when it was left NULL). */
typedef int (*http_data_fn)(const char *data, size_t size, void *userdata, char **ret_error);

typedef struct http_request_options {
        const char *method; /* NULL: GET */
        const char *url;
        const char *const *headers; /* NULL-terminated "Name: value" lines, or NULL */
        const void *body;           /* sent as is (copied), with body_size bytes; NULL: none */
        size_t body_size;
        uint64_t timeout_ms;         /* the whole request; 0: none (a watch) */
        uint64_t connect_timeout_ms; /* connection and TLS handshake; 0: curl's default */
        size_t body_max;             /* a larger response is refused; 0: HTTP_BODY_MAX */
        bool verify;                 /* verify the server's certificate and name */
        http_pem ca;                 /* the only CA trusted when verifying (none: curl's default) */
        http_pem cert, key;          /* a client certificate, both or neither */
        /* CURLOPT_CONNECT_TO: "HOST:PORT:CONNECT-HOST:CONNECT-PORT" connects to another address than
         * the URL names, while TLS still checks the URL's host name. */
        const char *connect_to;
        bool fresh_connect;  /* a new connection, not one from the cache */
        bool tcp_keepalive;  /* for long-lived responses that may be quiet for a while */
        http_data_fn on_data; /* NULL: keep the body and hand it to done */
        http_response_fn done;
        void *userdata;
} http_request_options;

/* Starts a request (-EINVAL for a missing url or done, -ECANCELED when the client is being freed).
 * done is called exactly once from the event loop unless the request is cancelled or the client
 * freed first. Never a proxy, never a redirect. */
int http_client_request(http_client *c, const http_request_options *o);

/* The value of a response header (the last one of that name), NULL when absent. Only during the
 * done callback. */
const char *http_response_header(const http_response *r, const char *name);

/* Cancels every request started with that userdata, without calling back (a waiter that returns
 * must not be called back later). Safe from inside any callback, also for the request being
 * called back. Returns how many. */
size_t http_client_cancel(http_client *c, void *userdata);
/* Number of requests in flight. */
size_t http_client_pending(const http_client *c);
