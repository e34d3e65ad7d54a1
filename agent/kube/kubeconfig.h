/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* A kubeconfig file (clientcmd's v1 Config), resolved to what one connection needs: the server,
 * how to trust it, and who we are. Only the current context (or the one named) is resolved.
 * Paths in the file are relative to the file's own directory, as clientcmd resolves them.
 * Credentials given as files stay files, so that a rotated client certificate (kubeadm's
 * kubelet-client-current.pem symlink) is read again on the next connection. */

#include <stdbool.h>
#include <stddef.h>

/* A kubeconfig is a few KiB; embedded certificates make it larger, not this large. */
#define KUBECONFIG_SIZE_MAX (1024 * 1024)

/* PEM bytes, either in a file or inline (the -data form, base64-decoded). */
typedef struct kube_pem {
        char *file; /* absolute */
        unsigned char *data;
        size_t size;
} kube_pem;

typedef struct kubeconfig {
        char *path;    /* the file it came from, for messages */
        char *context; /* the context used */
        char *server;  /* "https://host:port", no trailing slash */
        char *tls_server_name;
        bool insecure_skip_tls_verify; /* as the file says: honoured only when the user also says so */
        kube_pem ca, client_cert, client_key;
        char *token;      /* a bearer token given inline */
        char *token_file; /* absolute; read at each new request */
        char *namespace;
} kubeconfig;

/* Loads `path` and resolves `context` (NULL: current-context). Refused, naming the file and the
 * field: a file that does not parse, a context, cluster or user that does not exist, a server
 * that is not an https:// URL, -data that is not base64, a client certificate without its key
 * (or the reverse), no way to trust the server (neither a CA nor insecure-skip-tls-verify). */
int kubeconfig_load(const char *path, const char *context, kubeconfig **ret, char **ret_error);
kubeconfig *kubeconfig_free(kubeconfig *k);
static inline void kubeconfig_freep(kubeconfig **k) {
        kubeconfig_free(*k);
}

/* The node name a kubelet client certificate names: its subject CN "system:node:NAME".
 * -ENOENT when the kubeconfig has no client certificate, -EINVAL (with a reason) when the
 * certificate's CN is not a node's. */
int kubeconfig_node_name(const kubeconfig *k, char **ret, char **ret_error);
