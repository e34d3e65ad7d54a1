/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The cplet component-plugin ABI.
 *
 * A plugin is a shared module in the configured plugin directory that exports one symbol,
 * CPLET_PLUGIN_ENTRY_SYMBOL, a function returning a pointer to a static, read-only
 * struct cplet_plugin. The host:
 *   - refuses the module unless abi_major == CPLET_PLUGIN_ABI_MAJOR;
 *   - reads only the fields that lie within `size` (a plugin built against an older minor
 *     has a smaller struct; fields past its end count as absent) and refuses a `size`
 *     smaller than the ABI 1.0 struct;
 *   - never copies the struct by its own sizeof, and NULL-checks every optional field.
 * New fields are only ever appended (minor bump); anything else is a major bump.
 *
 * Strings are NUL-terminated and must stay valid while the module is loaded. */

#include <stddef.h>
#include <stdint.h>

#define CPLET_PLUGIN_ABI_MAJOR 1
#define CPLET_PLUGIN_ABI_MINOR 0
#define CPLET_PLUGIN_ENTRY_SYMBOL "cplet_plugin_entry"

#ifdef __cplusplus
extern "C" {
#endif

/* A binary minor version, 1.35 = { 1, 35 }. { 0, 0 } means "never". */
struct cplet_minor {
        uint32_t major;
        uint32_t minor;
};

/* Where a component answers health checks when its manifest has no probe. */
struct cplet_health_endpoint {
        const char *scheme; /* "HTTPS" or "HTTP" */
        uint16_t port;
        const char *path; /* "/livez" */
};

/* The versions a running component reports (filled by read_versions). */
struct cplet_reported_versions {
        struct cplet_minor binary;      /* major/minor of the binary */
        char git_version[64];           /* "v1.34.1+k3s1"; empty if not reported */
        int has_emulation;              /* non-zero when the emulation fields were present */
        struct cplet_minor emulated;
        int has_min_compat;
        struct cplet_minor min_compat;
};

struct cplet_plugin {
        /* ABI 1.0 */
        uint32_t abi_major;
        uint32_t abi_minor;
        uint32_t size; /* sizeof(struct cplet_plugin) as the plugin was built */

        const char *name;          /* component name, also the binary's basename: "kube-apiserver" */
        const char *manifest_file; /* default manifest file name: "kube-apiserver.yaml" */
        int32_t rank;              /* upgrade order: lower goes first; downgrades go in reverse */

        /* From which binary version each compatibility flag exists ({0,0}: never). */
        struct cplet_minor emulated_version_since;
        struct cplet_minor min_compatibility_version_since;
        struct cplet_minor emulation_forward_compatible_since;
        /* The forward-compatibility flags this binary has (NULL-terminated; may be NULL).
         * They are only valid while emulating below the binary version. */
        const char *const *forward_compatible_flags;

        /* Health endpoints used when the manifest carries no httpGet probe. */
        const struct cplet_health_endpoint *health_endpoints;
        size_t n_health_endpoints;

        /* Optional: the path where the component reports its versions ("/version"), on the
         * first health endpoint's scheme and port, and how to read the body. read_versions
         * returns 0 and fills *ret, or a negative errno when the body is not understood. */
        const char *version_path;
        int (*read_versions)(const char *body, size_t size, struct cplet_reported_versions *ret);
};

/* The one symbol a plugin exports. */
typedef const struct cplet_plugin *(*cplet_plugin_entry_fn)(void);

/* Smallest size a host accepts: the struct as ABI 1.0 defined it. */
#define CPLET_PLUGIN_SIZE_1_0 (offsetof(struct cplet_plugin, read_versions) + sizeof(void *))

#ifdef __cplusplus
}
#endif
