/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The planner: a pure function from the node's current state and a target to the ordered
 * list of steps that gets there, each changing one component's manifest, every intermediate
 * state valid for every component — or a refusal with a reason a person can act on.
 *
 * Order (FACTS.md "Order and safety"): lower the emulated version one minor at a time in
 * reverse rank order; lower min-compatibility; change binaries (upgrades in rank order, API
 * server first, each keeping the emulated version it ran; downgrades in reverse); raise the
 * emulated version one minor at a time, all components per minor in rank order; raise
 * min-compatibility. */

#include <stdbool.h>
#include <stddef.h>

#include "version.h"

typedef struct plan_component {
        const char *name;
        kminor emulated_since;    /* from the plugin: first binary with --emulated-version */
        kminor min_compat_since;  /* ... with --min-compatibility-version */
        kminor forward_compat_since;
        const char *repository;   /* current image repository */
        const char *image;        /* the image as written (NULL: repository:binary); steps that do
                                   * not change the binary keep it byte for byte */
        kversion binary;
        kminor emulated;          /* effective */
        kminor min_compat;        /* effective */
        bool min_compat_explicit; /* set by flag: kept as is while emulation moves */
        bool forward_compat;      /* a forward-compatibility flag is on */
} plan_component;

/* The exact image a component's binary step writes, when the manifest pins its image by
 * digest (only the operator knows the new digest): its repository must be the one the step
 * moves to, its tag the target version. */
typedef struct plan_image {
        const char *component; /* plan_component.name */
        const char *image;     /* repository:tag[@digest] */
} plan_image;

typedef struct plan_target {
        kversion binary;
        bool emulated_set; /* else: the binary's minor */
        kminor emulated;
        bool min_compat_set; /* else: the binary's default for the emulated version */
        kminor min_compat;
        /* A registry prefix, as kubeadm's imageRepository: "registry.k8s.io" gives
         * registry.k8s.io/kube-apiserver. NULL: each component keeps its repository. */
        const char *image_repository;
        const plan_image *images; /* optional, per component; see plan_image */
        size_t n_images;
        /* The highest min-compatibility version the node has run with, as the store's
         * high-water mark records it ({0,0}: none). Storage written under it may need it: no
         * step leaves a component below it, nor below any min-compatibility version in force
         * now — unless force (--force), which lifts both. */
        kminor min_compat_floor;
        bool force;
        /* The components that move (issue 8's `components`): NULL-terminated names, each a
         * plan_component.name given once; NULL: all. The others are frozen: they keep their
         * state exactly (binary, image, versions, flags) and get no step, but every state the
         * plan passes through must still be valid for them (their own ranges, the skew, the
         * floor); a target that needs one of them to move is refused, naming it and saying
         * what it would have to do first.
         *
         * The target means the same with a subset: binary, emulated and min-compatibility are
         * the versions the moving components reach, with the same defaults (emulated: the
         * binary's minor; min-compatibility: the binary's default for it). So a subset naming
         * every component is exactly the full plan, and a frozen component's binary may differ
         * from the target's. A controller moving one component at a time in the KEP's order
         * must therefore say the emulated version it wants: {binary v1.35.0, emulated 1.34}
         * for the binary phase (one binary step), {binary v1.35.0, emulated 1.35} for the next
         * minor (one emulation step); left to its default, the first would also raise the
         * component's emulated version where the frozen ones allow it. */
        const char *const *components;
} plan_target;

typedef enum step_kind {
        STEP_BINARY,
        STEP_EMULATION,
        STEP_MIN_COMPAT,
} step_kind;

const char *step_kind_to_string(step_kind k);

typedef struct plan_step {
        size_t component; /* index into the input array */
        step_kind kind;
        char *image;      /* image after the step (only a binary step changes it) */
        kversion binary;  /* effective state after the step */
        kminor emulated;
        kminor min_compat;
        bool emulated_flag;   /* write --emulated-version; else remove it */
        bool min_compat_flag; /* write --min-compatibility-version; else remove it */
        bool forward_compat;  /* keep the forward-compatibility flags; else remove them */
        /* --drop-removed: what this step removes from the command line first (NULL-terminated
         * entries for preflight_drop(); NULL: nothing). The planner never sets it: the
         * operation puts the entries on each component's first step after its preflight. */
        char **drop;
} plan_step;

typedef struct plan {
        kversion binary;   /* the target binary version */
        kminor emulated;   /* the target's effective emulated version */
        kminor min_compat; /* ... and min-compatibility version */
        plan_step *steps;
        size_t n_steps;
} plan;

/* Computes the plan. Components must be given in rank order: the first is the skew
 * reference (the API server). Returns -EINVAL with a reason
 * when the target is invalid or no safe order exists; 0 and a (possibly empty) plan else. */
int plan_compute(const plan_component *components, size_t n, const plan_target *target, plan **ret,
                 char **ret_error);
plan *plan_free(plan *p);

/* Checks a node state as it stands (each component as its binary would check it at start,
 * and the skew rules). Components in rank order. */
int plan_validate_state(const plan_component *components, size_t n, char **ret_error);
static inline void plan_freep(plan **p) {
        plan_free(*p);
}
