/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* One control-plane node as cplet sees it: the live manifests in the manifest directory
 * (all paths under --root), which of them are components, and their state. */

#include "component.h"
#include "plugin-loader.h"

#define NODE_MANIFEST_DIR "/etc/kubernetes/manifests"
/* A manifest directory with more files than this is not a control-plane node. */
#define NODE_MANIFEST_FILES_MAX 256

/* A file the kubelet would load that cplet cannot use: not a valid pod, or not the component
 * its name promises. */
typedef struct node_broken {
        char *file;             /* name inside the manifest directory */
        const plugin *expected; /* the component whose plugin names this file; NULL when none */
        char *error;            /* why, naming the file */
} node_broken;

typedef struct node {
        char *manifest_dir; /* root + NODE_MANIFEST_DIR */
        component *components; /* sorted by plugin rank */
        size_t n_components;
        char **unmanaged; /* NULL-terminated file names of pods cplet does not manage */
        node_broken *broken; /* only with NODE_LOAD_KEEP_BROKEN */
        size_t n_broken;
} node;

typedef enum node_load_flags {
        /* Keep unusable files as broken entries instead of refusing (for status, which shows them). */
        NODE_LOAD_KEEP_BROKEN = 1 << 0,
} node_load_flags;

/* Reads every file the kubelet would load (names not starting with '.') and identifies the
 * components by content: container name, the binary in command/args, or the image name.
 * Refused (with the file named): a file that does not parse, a component defined twice (the
 * kubelet would run both), a pod holding several components. */
int node_load(const char *root, const plugin_set *plugins, node **ret, char **ret_error);
int node_load_full(const char *root, const plugin_set *plugins, node_load_flags flags, node **ret, char **ret_error);
node *node_free(node *n);
static inline void node_freep(node **n) {
        node_free(*n);
}
const component *node_find(const node *n, const char *name);
