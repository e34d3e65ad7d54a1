/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The journal of a rollout, ROOT/var/lib/cplet/rollout.json: what the rollout in progress (or
 * the last one) did, step by step, saved (fsync'd) at every transition so that after a crash
 * resume and abort know where things stood.
 *
 * The file is parsed into the typed struct below and validated before anything trusts it:
 * known phase, states and kinds; revision numbers and indexes in range; component and
 * manifest names of the shape plugins have; versions that parse; only the last step may be
 * in flight; and, for a rollout still in progress, every revision it names must exist in the
 * store. A file that fails is refused (-EINVAL, naming the file and the field), never taken
 * for "no rollout". The on-disk JSON is the one cplet has always written:
 *
 *   {"planId", "command", "started", "target": {binaryVersion, emulatedVersion,
 *    minCompatibilityVersion, imageRepository}, "options": {stableForUsec, stepTimeoutUsec,
 *    onFailure}, "phase", "message", "steps": [{component, manifest, kind, from, to, state,
 *    binaryVersion, emulatedVersion, minCompatibilityVersion, message, swapTicks, bootId,
 *    undoes}], "updated", "unwindStoppedAt"} */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define JOURNAL_FILE "rollout.json"
/* A plan has a handful of steps, each under 1 KiB in the file: anything near this is not a
 * journal cplet wrote. */
#define JOURNAL_SIZE_MAX (4u * 1024u * 1024u)

typedef struct rollout_options {
        uint64_t stable_usec;
        uint64_t step_timeout_usec;
        bool unwind_on_failure; /* --on-failure rollback (default); false: stop */
        bool force;             /* --force: an unwind may go below the min-compatibility high-water mark
                                 * (not journaled: each command says it anew) */
} rollout_options;

typedef enum journal_phase {
        JOURNAL_RUNNING,
        JOURNAL_UNWINDING,
        JOURNAL_DONE,
        JOURNAL_FAILED,
        JOURNAL_ABORTED,
        _JOURNAL_PHASE_MAX,
} journal_phase;

/* What the live manifest of the step's component is in each state:
 *   writing     `from` (the revision may exist, not swapped in);
 *   swapping    `from` or `to` (one rename: recovery reads the file to know which);
 *   waiting     `to`, the gate not passed yet;
 *   done        `to`, the gate passed;
 *   failed      `to` until a restore step for the component follows;
 *   abandoned   `from`: never swapped in;
 *   interrupted `to`, never gated (abort took it over: it is unwound);
 *   unwound     a plan step undone by a later unwind step. */
typedef enum journal_state {
        JOURNAL_STEP_WRITING,
        JOURNAL_STEP_SWAPPING,
        JOURNAL_STEP_WAITING,
        JOURNAL_STEP_DONE,
        JOURNAL_STEP_FAILED,
        JOURNAL_STEP_ABANDONED,
        JOURNAL_STEP_INTERRUPTED,
        JOURNAL_STEP_UNWOUND,
        _JOURNAL_STATE_MAX,
} journal_state;

typedef enum journal_kind {
        JOURNAL_KIND_BINARY,
        JOURNAL_KIND_EMULATION,
        JOURNAL_KIND_MIN_COMPAT,
        JOURNAL_KIND_ROLLBACK, /* a single write: a revision written back */
        JOURNAL_KIND_FLAGS,    /* a single write: changed flags */
        JOURNAL_KIND_RESTORE,  /* the previous revision back after a failed step */
        JOURNAL_KIND_UNWIND,   /* an earlier plan step undone */
        _JOURNAL_KIND_MAX,
} journal_kind;

typedef struct journal_step {
        char *component;
        char *manifest;
        journal_kind kind;
        unsigned from; /* the live revision the step replaces, >= 1 */
        unsigned to;   /* the revision it writes; 0 until written */
        journal_state state;
        char *binary_version;
        char *emulated_version;
        char *min_compat_version;
        char *message;       /* NULL: none */
        uint64_t swap_ticks; /* process-start clock at the swap; 0: not recorded */
        char *boot_id;       /* the boot those ticks belong to; NULL: unknown */
        size_t undoes;       /* restore and unwind steps: the 1-based step they undo; 0: not recorded */
} journal_step;

typedef struct journal_target {
        char *binary_version; /* NULL: a single write (no plan to resume) */
        char *emulated_version;
        char *min_compat_version;
        char *image_repository;
        /* --image COMPONENT=REF: the exact images of binary steps, for resume to plan with. */
        struct journal_image {
                char *component;
                char *image;
        } *images;
        size_t n_images;
        /* The target's components (NULL-terminated; NULL: all): resume moves no other. */
        char **components;
        /* --drop-removed (NULL-terminated; NULL: none): resume's steps drop them too. */
        char **drop_removed;
} journal_target;

typedef struct journal {
        char *plan_id;
        char *command;
        char *started;
        char *updated; /* NULL before the first save */
        journal_target target;
        rollout_options options;
        journal_phase phase;
        char *message;         /* NULL: none */
        journal_step **steps; /* pointers, so that a step stays put while others are appended */
        size_t n_steps;
        size_t unwind_stopped_at; /* 1-based index of the min-compatibility step an unwind stopped at; 0: none */
} journal;

const char *journal_phase_to_string(journal_phase p);
journal_phase journal_phase_from_string(const char *s); /* _JOURNAL_PHASE_MAX when unknown */
const char *journal_state_to_string(journal_state s);
journal_state journal_state_from_string(const char *s);
const char *journal_kind_to_string(journal_kind k);
journal_kind journal_kind_from_string(const char *s);

/* Steps of the plan (or of a single write), as opposed to the restores and unwinds that undo
 * them. */
static inline bool journal_kind_is_plan(journal_kind k) {
        return k != JOURNAL_KIND_RESTORE && k != JOURNAL_KIND_UNWIND;
}
/* A step caught between its first journal entry and its verdict. */
static inline bool journal_state_in_flight(journal_state s) {
        return s == JOURNAL_STEP_WRITING || s == JOURNAL_STEP_SWAPPING || s == JOURNAL_STEP_WAITING;
}

journal *journal_free(journal *j);
static inline void journal_freep(journal **j) {
        journal_free(*j);
}

/* A new journal for a plan, phase running, no steps. `target` may be NULL or an object with
 * the string members named above. */
int journal_new(const char *plan_id, const char *command, const char *started, json_t *target,
                const rollout_options *o, journal **ret, char **ret_error);

/* Appends a step (its strings copied); returns it, NULL on OOM. */
journal_step *journal_add_step(journal *j, const journal_step *step);

/* Replaces a string field (message, ...) with a copy of s (NULL clears it). -ENOMEM. */
int journal_set_string(char **field, const char *s);

/* True when the journal describes a rollout that has not finished (running, unwinding). */
bool journal_in_progress(const journal *j);

/* Parses and validates the JSON text of a journal (everything that can be checked without the
 * store). `display` names the file in errors. -EINVAL with a sentence naming the field. */
int journal_parse(const char *data, size_t size, const char *display, journal **ret, char **ret_error);

/* The journal as JSON (the on-disk format). NULL on OOM. */
json_t *journal_to_json(const journal *j);

/* Field by field. */
bool journal_equal(const journal *a, const journal *b);

/* Checks the revisions a journal in progress names against the store: each step's `from`,
 * and its `to` once it was live, must exist. -EINVAL naming step and revision. */
int journal_check_store(const journal *j, store *s, const char *display, char **ret_error);

/* Loads ROOT/var/lib/cplet/rollout.json: -ENOENT when there is none; -EINVAL (with a sentence
 * naming the file) when it is not a valid journal or names revisions the store lacks. */
int journal_load(store *s, journal **ret, char **ret_error);

/* Saves the journal (atomically, fsync'd). Needs the store opened for writing. */
int journal_save(store *s, const journal *j, char **ret_error);

/* The path of the journal file under the store's root, for messages. NULL on OOM. */
char *journal_path(const store *s);
