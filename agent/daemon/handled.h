/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The last target the agent handled, ROOT/var/lib/cplet/daemon.json, so that the same
 * (id, generation) never runs twice, across restarts too (docs/protocol.md, re-trigger rules). */

#include <stdbool.h>
#include <stdint.h>

#include "store.h"
#include "target.h"

#define HANDLED_FILE "daemon.json"

typedef struct handled {
        char *id; /* NULL: none yet */
        uint64_t generation;
        size_t n_steps; /* the plan's steps when it began (0: unknown): a resumed rollout counts on */
} handled;

void handled_done(handled *h);

/* Reads the record (-ENOENT: none; -EINVAL naming the file when it is not one cplet wrote). */
int handled_load(store *s, handled *ret, char **ret_error);
/* Records a target as handled, durably, before its first write (a crash after it must not run
 * the target again from the start: the journal resumes it). */
int handled_save(store *s, const char *id, uint64_t generation, size_t n_steps, char **ret_error);

/* Removes the record (durably): a target stopped before its first write (no journal resumes
 * it) runs again at the next start. */
int handled_forget(store *s, char **ret_error);

/* Whether a target should run: not when it is the one last handled (same id and generation),
 * nor an older generation of it; a newer generation of the same id runs again, a new id
 * replaces the last one. */
bool handled_should_run(const handled *last, const target *t);
