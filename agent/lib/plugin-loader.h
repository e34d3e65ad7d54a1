/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Loads component plugins (plugins/cplet-plugin.h) from one directory and hands the host a
 * validated, host-owned view of each. */

#include <stdbool.h>
#include <stddef.h>

#include "cplet-plugin.h"
#include "version.h"

typedef struct plugin {
        char *path;
        void *handle; /* dlopen handle; NULL for plugins registered in-process (tests) */
        int fd;       /* the module file, loaded as /proc/self/fd/N; negative when none */

        /* Copied out of the module's struct, reading only fields within its declared size. */
        const char *name;
        const char *manifest_file;
        int rank;
        kminor emulated_version_since;          /* {0,0}: never */
        kminor min_compatibility_version_since; /* {0,0}: never */
        kminor emulation_forward_compatible_since;
        const char *const *forward_compatible_flags; /* may be NULL */
        const struct cplet_health_endpoint *health_endpoints;
        size_t n_health_endpoints;
        const char *version_path;
        int (*read_versions)(const char *body, size_t size, struct cplet_reported_versions *ret);
} plugin;

typedef struct plugin_set {
        plugin *items; /* sorted by rank, then name */
        size_t n;
} plugin_set;

/* Loads every "*.so" regular file in `dir` (which must be an absolute path, and is the only
 * place plugins come from) with RTLD_NOW|RTLD_LOCAL. Any refused module (not loadable,
 * missing symbol, wrong ABI major, size too small, invalid or duplicate name or rank,
 * group/world-writable file) fails the whole load: a silently missing component would make
 * cplet plan in the wrong order. The error names each refused file and why. */
int plugin_set_load(const char *dir, plugin_set **ret, char **ret_error);

/* Validates a plugin struct as the loader does and fills a host view. `origin` names it in
 * errors. Exposed for tests. */
int plugin_from_struct(const struct cplet_plugin *p, const char *origin, plugin *ret, char **ret_error);

plugin_set *plugin_set_free(plugin_set *s);
static inline void plugin_set_freep(plugin_set **s) {
        plugin_set_free(*s);
}

const plugin *plugin_set_find(const plugin_set *s, const char *name);
/* True when the flag exists in the plugin's binary at that version. */
bool plugin_has_flag(kminor since, kminor binary);

/* A component name as plugins give it (and journals and targets repeat it): lower-case
 * letters, digits and '-', at most 63, not starting with '-'. */
bool plugin_name_valid(const char *s);
/* A manifest file name: not empty, no '/', not a dot-file, at most 255 bytes. */
bool plugin_file_name_valid(const char *s);
