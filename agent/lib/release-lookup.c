/* SPDX-License-Identifier: Apache-2.0 */
/* Lookups in the generated release tables (release-data.h): every table is sorted, so each
 * lookup bisects. */

#include <stdlib.h>
#include <string.h>

#include "release-data.h"

static int cmp_name(const void *key, const void *elem) {
        return strcmp(key, *(const char *const *) elem);
}

static bool sorted_has(const char *const *names, size_t n, const char *name) {
        return bsearch(name, names, n, sizeof(names[0]), cmp_name) != NULL;
}

int release_minor_cmp(release_minor a, release_minor b) {
        if (a.major != b.major)
                return a.major < b.major ? -1 : 1;
        if (a.minor != b.minor)
                return a.minor < b.minor ? -1 : 1;
        return 0;
}

const release_info *release_info_find(uint16_t major, uint16_t minor) {
        for (size_t i = 0; i < release_n_infos; i++)
                if (release_infos[i].minor.major == major && release_infos[i].minor.minor == minor)
                        return &release_infos[i];
        return NULL;
}

const release_component_flags *release_component_find(const release_info *ri, const char *component) {
        for (size_t i = 0; ri && i < ri->n_components; i++)
                if (strcmp(ri->components[i].component, component) == 0)
                        return &ri->components[i];
        return NULL;
}

bool release_has_flag(const release_component_flags *cf, const char *flag) {
        return cf && sorted_has(cf->flags, cf->n_flags, flag);
}

static int cmp_deprecated(const void *key, const void *elem) {
        return strcmp(key, ((const release_deprecated *) elem)->flag);
}

const release_deprecated *release_deprecated_find(const release_component_flags *cf, const char *flag) {
        if (!cf || cf->n_deprecated == 0)
                return NULL;
        return bsearch(flag, cf->deprecated, cf->n_deprecated, sizeof(cf->deprecated[0]), cmp_deprecated);
}

bool release_has_admission_plugin(const release_info *ri, const char *plugin) {
        return ri && sorted_has(ri->admission_plugins, ri->n_admission_plugins, plugin);
}

static int cmp_gate(const void *key, const void *elem) {
        return strcmp(key, ((const release_gate *) elem)->name);
}

const release_gate *release_gate_find(const char *name) {
        return bsearch(name, release_gates, release_n_gates, sizeof(release_gates[0]), cmp_gate);
}

bool release_gate_known_in(const release_gate *g, uint16_t major, uint16_t minor) {
        if (major != 1 || minor < RELEASE_FIRST_MINOR || minor > RELEASE_LAST_MINOR)
                return false;
        return g->known_mask & (1u << (minor - RELEASE_FIRST_MINOR));
}

const release_gate_spec *release_gate_spec_at(const release_gate *g, uint16_t major, uint16_t minor) {
        release_minor at = { major, minor };

        for (size_t i = g->n_specs; i > 0; i--)
                if (release_minor_cmp(g->specs[i - 1].version, at) <= 0)
                        return &g->specs[i - 1];
        return NULL;
}

const release_removal *release_removal_find(const char *component, const char *name, bool plugin) {
        for (size_t i = 0; i < release_n_removals; i++) {
                const release_removal *rm = &release_removals[i];
                const char *n = plugin ? rm->admission_plugin : rm->flag;

                if (n && strcmp(n, name) == 0 && strcmp(rm->component, component) == 0)
                        return rm;
        }
        return NULL;
}
