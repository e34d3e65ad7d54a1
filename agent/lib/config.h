/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* /etc/cplet/config.yaml (kind: CpletConfiguration). */

#include <stdbool.h>
#include <stddef.h>

#define CONFIG_DEFAULT_PATH "/etc/cplet/config.yaml"
#define CONFIG_API_VERSION "cplet.io/v1alpha1"
#define CONFIG_KIND "CpletConfiguration"

typedef struct config {
        char *plugin_dir; /* NULL: the built-in default */
        unsigned keep_revisions; /* 0: the default (20) */
        /* The daemon's (docs/protocol.md): registry prefixes a target's imageRepository may name
         * (NULL: only those the manifests already use), the kubeconfig it talks to the API
         * server with and the node name (NULL: the defaults, see cplet daemon --help). */
        char **image_repositories;
        char *kubeconfig;
        char *node_name;
} config;

/* Loads the configuration. When `explicit_path` is NULL the default path under `root` is
 * read if it exists (a missing default file means defaults); an explicit path must exist.
 * Unknown fields, a wrong kind/apiVersion or a malformed value are refused with the file
 * and the field named. */
int config_load(const char *root, const char *explicit_path, config *ret, char **ret_error);
/* The same from the bytes of a configuration file; `path` names it in errors. */
int config_parse(const char *data, size_t size, const char *path, config *ret, char **ret_error);
void config_done(config *c);
