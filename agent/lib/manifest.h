/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Static-pod manifests as jansson trees: YAML (libyaml) or JSON in, YAML out.
 *
 * Scalars are resolved the way the kubelet's decoder (sigs.k8s.io/yaml over go-yaml v2, i.e.
 * YAML 1.1 plain-scalar rules) resolves them, so that a tree cplet renders means to the
 * kubelet exactly what the tree it parsed meant: a quoted "0644" stays a string, a plain 0644
 * is the integer 420, a plain `yes` is true. Rendering quotes every string that would
 * otherwise be read back as something else. Comments are not kept. */

#include <jansson.h>
#include <stddef.h>

/* Manifests larger than this are refused: a static pod is a few KiB. */
#define MANIFEST_SIZE_MAX (1024 * 1024)
/* Deeper nesting is refused (a Pod is ~8 levels deep). */
#define MANIFEST_DEPTH_MAX 64

/* Parses one static-pod document. `name` is used in error messages (usually the file path).
 * JSON is recognised by a leading '{' (after white space); anything else is YAML.
 * The document must be a mapping. Refused, with "NAME:LINE:COLUMN: reason" in *ret_error:
 * syntax errors, more than one document, aliases/anchors, non-scalar mapping keys, duplicate
 * keys, unknown explicit tags, size or depth over the limits, an empty document.
 * Returns 0 and a new reference in *ret, or a negative errno (-EINVAL for bad input,
 * -E2BIG for size, -ENOMEM). */
int manifest_parse(const char *data, size_t size, const char *name, json_t **ret, char **ret_error);

/* Renders a tree as block-style YAML (kubectl/kubeadm look: two-space indent, sequences in
 * mappings not indented, key order as in the tree), ending in a newline. The result parses
 * back with manifest_parse() to a tree json_equal() to the input. *ret is NUL-terminated,
 * *ret_size (optional) excludes the NUL. */
int manifest_render(const json_t *root, char **ret, size_t *ret_size);

/* Reads and parses a whole file (at most MANIFEST_SIZE_MAX bytes), opened O_NOFOLLOW|O_CLOEXEC
 * relative to dirfd (AT_FDCWD for a plain path). Errors name the path. */
int manifest_load(int dirfd, const char *path, json_t **ret, char **ret_error);
