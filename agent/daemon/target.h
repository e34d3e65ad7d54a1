/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The cplet.io/target annotation a controller writes on the node's own Node object
 * (docs/protocol.md). NodeRestriction does not restrict annotations, so anything that can
 * patch the Node can write one: it is validated strictly and trusted no further than the rules
 * allow. No field can reach a command line as a free-form flag. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TARGET_SIZE_MAX (16 * 1024)
#define TARGET_ID_MAX 63
#define TARGET_COMPONENTS_MAX 16
#define TARGET_DROP_MAX 64
#define TARGET_DROP_NAME_MAX 128

typedef struct target {
        char *id;
        uint64_t generation;
        char *binary_version;      /* "v1.35.0" as given, checked */
        char *emulated_version;    /* "1.35" or NULL */
        char *min_compat_version;  /* "1.34" or NULL */
        char **components;         /* NULL-terminated, or NULL: all */
        char **drop_removed;       /* NULL-terminated, or NULL: what the preflight may drop
                                    * (`cplet upgrade --drop-removed`) */
        char *image_repository;    /* NULL: each manifest's own */
        bool on_failure_stop;      /* "stop"; default "rollback" */
        char *stable_for;          /* duration strings as given, checked; NULL: default */
        char *step_timeout;
} target;

/* What the target may name, from the node and the configuration. */
typedef struct target_limits {
        const char *const *known_components;   /* NULL-terminated */
        const char *const *allowed_repositories; /* NULL-terminated registry prefixes */
} target_limits;

/* Parses and validates an annotation value. -EINVAL (-E2BIG for the size) with a message that
 * names the field and the offending value, quoted and cut short. */
int target_parse(const char *text, size_t size, const target_limits *limits, target **ret, char **ret_error);
target *target_free(target *t);
static inline void target_freep(target **t) {
        target_free(*t);
}
