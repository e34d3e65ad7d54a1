/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The cplet.io/status annotation the agent writes on its own Node (docs/protocol.md): the
 * phase of the target it handles, the step in progress, and the node as it is. Built from
 * the library's view of the node, so that it tells the truth also when a target was refused
 * or a rollout was started by hand. */

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "node.h"

/* A status annotation is bounded like a target: the apiserver keeps annotations small. */
#define STATUS_MESSAGE_MAX 1024

typedef enum status_phase {
        STATUS_IDLE,
        STATUS_PENDING,
        STATUS_PROGRESSING,
        STATUS_SUCCEEDED,
        STATUS_FAILED,
        STATUS_ROLLED_BACK,
        STATUS_REFUSED,
        STATUS_INTERRUPTED,
        _STATUS_PHASE_MAX,
} status_phase;

const char *status_phase_to_string(status_phase p);

typedef struct status_step {
        size_t index, total; /* 1-based; total 0: no step */
        const char *component;
        const char *kind;
        const char *waiting_for; /* NULL: not waiting */
} status_step;

typedef struct status_report {
        const char *id;          /* NULL: no target handled yet */
        uint64_t generation;     /* 0: unknown (a refused target's was not a valid one): null */
        status_phase phase;
        status_step step;
        const char *message;     /* NULL: none; cut to STATUS_MESSAGE_MAX bytes */
        const char *agent_version;
        const node *node;        /* the node as it is now */
        /* Per component (same order as node->components): the live revision, 0 unknown. */
        const unsigned *revisions;
        /* Per component: 1 healthy, 0 not, -1 unknown. NULL: all unknown. */
        const int *healthy;
} status_report;

/* The annotation's JSON value; `now` is RFC 3339. NULL on OOM. */
json_t *status_to_json(const status_report *r, const char *now);
