/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The release data of data/releases/, compiled in: release-data.c is generated at build time by
 * data/releases/tools/gen-release-data.py from flags-1.3x.yaml, removed-flags.yaml and
 * feature-gates.yaml (see SOURCES.md and GATES-SOURCES.md there for where every entry comes
 * from and how complete it is). Every table is sorted by name (strcmp), so lookups bisect. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A Kubernetes major.minor as the data writes it ("1.33", "0.0" for unversioned gates). */
typedef struct release_minor {
        uint16_t major;
        uint16_t minor;
} release_minor;

/* One deprecated flag of a component in one release, with the binary's help text. */
typedef struct release_deprecated {
        const char *flag;
        const char *message;
} release_deprecated;

/* The flags one component registers in one release (flags-1.3x.yaml). */
typedef struct release_component_flags {
        const char *component;
        const char *const *flags; /* sorted */
        size_t n_flags;
        const release_deprecated *deprecated; /* sorted by flag */
        size_t n_deprecated;
        bool complete;
} release_component_flags;

/* One release: its components' flags and kube-apiserver's admission plugin names. */
typedef struct release_info {
        release_minor minor;
        const release_component_flags *components;
        size_t n_components;
        const char *const *admission_plugins; /* sorted */
        size_t n_admission_plugins;
} release_info;

/* A flag or admission plugin a release removed (removed-flags.yaml). */
typedef struct release_removal {
        const char *component;
        const char *flag;             /* NULL for an admission plugin */
        const char *admission_plugin; /* NULL for a flag */
        release_minor removed_in;
        const char *fix;
} release_removal;

typedef enum release_stage {
        RELEASE_STAGE_ALPHA,
        RELEASE_STAGE_BETA,
        RELEASE_STAGE_GA,
        RELEASE_STAGE_DEPRECATED,
} release_stage;

/* One versioned spec of a feature gate: in force from `version` on (at emulated versions >=
 * version) until the next spec. */
typedef struct release_gate_spec {
        release_minor version;
        bool default_value;
        bool lock_to_default;
        release_stage stage;
} release_gate_spec;

/* A feature gate (feature-gates.yaml), by its flag spelling. */
typedef struct release_gate {
        const char *name;
        const release_gate_spec *specs; /* oldest first */
        size_t n_specs;
        bool specs_partial; /* only the lock state was sourced: no PreAlpha judgement */
        uint32_t known_mask; /* bit (minor - RELEASE_FIRST_MINOR): the binaries of that minor know it */
        release_minor removed_in; /* {0,0}: not removed within the data */
        bool verified;
} release_gate;

/* The minors the data covers, all of major 1. */
extern const uint16_t RELEASE_FIRST_MINOR, RELEASE_LAST_MINOR;

extern const release_info release_infos[];
extern const size_t release_n_infos;
extern const release_removal release_removals[];
extern const size_t release_n_removals;
extern const release_gate release_gates[]; /* sorted by name */
extern const size_t release_n_gates;

/* Lookups (release-lookup.c). NULL when absent. */
const release_info *release_info_find(uint16_t major, uint16_t minor);
const release_component_flags *release_component_find(const release_info *ri, const char *component);
bool release_has_flag(const release_component_flags *cf, const char *flag);
const release_deprecated *release_deprecated_find(const release_component_flags *cf, const char *flag);
bool release_has_admission_plugin(const release_info *ri, const char *plugin);
const release_gate *release_gate_find(const char *name);
bool release_gate_known_in(const release_gate *g, uint16_t major, uint16_t minor);
/* The spec in force at an emulated version (featureSpecAtEmulationVersion): the last one whose
 * version is <= it; NULL means PreAlpha (none is). */
const release_gate_spec *release_gate_spec_at(const release_gate *g, uint16_t major, uint16_t minor);
/* A removal of this component's flag (or plugin, when plugin is true) by name; NULL if none. */
const release_removal *release_removal_find(const char *component, const char *name, bool plugin);

int release_minor_cmp(release_minor a, release_minor b);
