/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* What a rollout step waits on: the new process (from /proc), and HTTP(S) endpoints probed
 * kubelet-style on one sd-event loop through libcurl's multi interface. No API server
 * needed. */

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

#include "plugin-loader.h"

/* Bodies larger than this are an error (a health or /version answer is tiny). */
#define HTTP_BODY_MAX (64 * 1024)

/* One httpGet probe with everything resolved. */
typedef struct http_probe {
        char *scheme; /* "HTTP" or "HTTPS" */
        char *host;   /* default 127.0.0.1 */
        uint16_t port;
        char *path; /* starts with '/'; may carry a query ("/livez?exclude=etcd") */
} http_probe;

void http_probe_done(http_probe *p);
/* "https://127.0.0.1:6443/livez" (IPv6 hosts bracketed), newly allocated. */
char *http_probe_url(const http_probe *p);

/* The probes a kubelet would use to call the container healthy, in gate order: the
 * startupProbe's httpGet (when present), then the readinessProbe's (else the livenessProbe's);
 * an endpoint equal to the one before it is listed once. Ports may be numbers or names of the
 * container's ports[]. Defaults as the kubelet applies them: scheme HTTP, path "/", and for the
 * host 127.0.0.1 (the kubelet's default, the pod IP, is the node's own for a hostNetwork static
 * pod). A path without a leading '/' ("livez?exclude=etcd", as OpenShift writes it) gets one, as
 * the kubelet's URL building does. Probes that are not httpGet (exec, tcpSocket, grpc) are not
 * run by cplet. When no httpGet probe remains, the plugin's default endpoints on 127.0.0.1; when
 * there are none either, -ENOENT (nothing to gate on is not a pass). Every httpGet probe is
 * checked, also one not gated on: a named port that does not exist, a port out of range, a
 * scheme other than HTTP/HTTPS, a host or path that cannot be put in a URL is an error naming
 * the probe ("readinessProbe: port \"probe-port\" is not a port of the container"). */
int probes_from_container(json_t *container, const plugin *p, http_probe **ret, size_t *ret_n, char **ret_error);
void http_probes_free(http_probe *probes, size_t n);

/* A process found in /proc. */
typedef struct proc_info {
        pid_t pid;
        uint64_t start_ticks; /* field 22 of /proc/PID/stat: clock ticks since boot */
} proc_info;

/* The current CLOCK_BOOTTIME in clock ticks (sysconf(_SC_CLK_TCK)), comparable to start_ticks. */
uint64_t boot_ticks_now(void);

/* Looks for a process whose command line is exactly `argv` (n items, byte for byte, argv[0]
 * included: the container runtime executes the manifest's command[0] as written) and whose real
 * and effective uid are `uid`. Nothing in front is tolerated: an interpreter in front is some
 * other process posing as the component. Only processes that started at or after
 * `not_before_ticks` count (the swap happened then; tick granularity, so equal counts).
 * Returns 1 and fills *ret when found (the newest such process), 0 when not, negative errno
 * on failure to read /proc. */
int proc_find(char *const *argv, size_t n, uid_t uid, uint64_t not_before_ticks, proc_info *ret);

/* The kubelet's $(VAR) expansion (third_party/forked/golang/expansion): "$$" becomes "$",
 * "$(NAME)" the value of NAME in `vars` (a JSON object of strings), an unknown NAME stays
 * "$(NAME)", any other "$" stays. A NAME whose value is JSON null is known to exist but not its
 * value: -EOPNOTSUPP with *ret_unknown (may be NULL) set to the name. -E2BIG past 128 KiB. */
int kube_expand(const char *input, json_t *vars, char **ret, char **ret_unknown);

/* The process the kubelet starts for `container` of `pod` (pod may be NULL): its argv, command +
 * args with $(VAR) expanded from the container's env as the kubelet does (env entries with a
 * value, in order, each expanded with the ones before; later entries win), and its uid: the
 * container's securityContext.runAsUser, else the pod's, else the image's user, root (cplet's
 * own uid when it runs unprivileged). Errors name the field: no command (the image's entrypoint
 * runs), a reference to a valueFrom variable, a runAsUser out of range. */
int container_process(json_t *pod, json_t *container, char ***ret_argv, size_t *ret_n, uid_t *ret_uid,
                      char **ret_error);

/* True while that process (same pid, same start time) runs and is not a zombie. */
bool proc_alive(const proc_info *p);

/* An asynchronous HTTP GET client on an sd-event loop (libcurl multi: sockets and the timeout
 * are sd-event sources; nothing polls). TLS certificates are not verified, as the kubelet does
 * not verify them for probes. */
typedef struct http_client http_client;

/* status: the HTTP status, 0 on a transport error (then `error` says why, in curl's words, e.g.
 * "Failed to connect to 127.0.0.1 port 6443 after 0 ms: Couldn't connect to server", "Operation
 * timed out after ...", or "response larger than 65536 bytes"). body is NUL-terminated, size
 * excludes the NUL; only valid during the call. */
typedef void (*http_done_fn)(long status, const char *body, size_t size, const char *error, void *userdata);

int http_client_new(sd_event *e, http_client **ret);
/* Cancels the requests in flight without calling their done callbacks. */
http_client *http_client_free(http_client *c);
static inline void http_client_freep(http_client **c) {
        http_client_free(*c);
}
/* Starts a GET. done is called exactly once from the event loop (never from inside this call),
 * unless the client is freed first. timeout_ms (> 0, else -EINVAL) bounds the whole request.
 * No redirects are followed, no proxy is used, connections are kept and reused. A done callback
 * may start new requests, and may free the client: requests still in flight then never call
 * back. */
int http_client_get(http_client *c, const char *url, uint64_t timeout_ms, http_done_fn done, void *userdata);
/* Cancels every request started with that userdata, without calling done (a waiter that
 * returns must not be called back later). Returns how many. */
size_t http_client_cancel(http_client *c, void *userdata);
/* Number of requests in flight. */
size_t http_client_pending(const http_client *c);
