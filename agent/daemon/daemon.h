/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* cplet daemon: the node agent a controller drives through the Kubernetes API
 * (docs/protocol.md). It watches its own Node, runs each new cplet.io/target with the same
 * library operations as the command line, and reports cplet.io/status and Events. As a
 * systemd service: Type=notify (READY=1 once the node and any journal are read, STATUS= the
 * phase, WATCHDOG=1 when WatchdogSec= is set, STOPPING=1), SIGTERM ends waits (never a write)
 * and leaves an interrupted rollout resumable, which the next start resumes; SIGHUP reloads
 * the configuration. */

#include <stdbool.h>

typedef struct daemon_options {
        const char *root;          /* absolute */
        const char *config_path;   /* NULL: ROOT/etc/cplet/config.yaml when present */
        const char *plugin_dir;    /* NULL: the configuration's, else the built-in one */
        const char *holder;        /* what the lock file says while a rollout runs */
        const char *kubeconfig;    /* NULL: the configuration's, else ROOT/etc/kubernetes/kubelet.conf */
        const char *context;       /* NULL: the kubeconfig's current-context */
        const char *node_name;     /* NULL: the configuration's, else the client certificate's
                                    * system:node:NAME, else the host name */
        bool insecure_skip_tls_verify;
} daemon_options;

/* Runs until SIGTERM or SIGINT (then 0). Fails before READY=1 when the node, the configuration
 * or the kubeconfig cannot be used (-EINVAL with the reason: invalid input), or when the state
 * cannot be read. */
int daemon_run(const daemon_options *o, char **ret_error);
