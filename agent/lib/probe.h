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

#include "http.h"
#include "plugin-loader.h"

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
