/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The rollout: executes plan steps through store → gate → journal. A step that fails is
 * restored to the previous revision, which must itself come back healthy; then, by policy,
 * the completed steps of the plan are unwound in reverse order. The journal
 * (ROOT/var/lib/cplet/rollout.json) records each transition before the next is acted on, so
 * that after a crash `resume` and `abort` know where things stood:
 *   writing  → the revision may exist, the live manifest is still `from`;
 *   swapping → the live manifest is byte-equal to `from` or to `to` (one rename);
 *   waiting / done / failed → the live manifest is `to`.
 * Progress reaches the caller through a callback; nothing here prints. */

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "journal.h"
#include "node.h"
#include "plan.h"
#include "probe.h"
#include "store.h"

#define ROLLOUT_STABLE_DEFAULT_USEC (10ULL * 1000000ULL)
#define ROLLOUT_TIMEOUT_DEFAULT_USEC (5ULL * 60ULL * 1000000ULL)

typedef struct rollout_event {
        const char *event;     /* "step", "written", "waiting", "tick" (once a second while
                                * waiting), "done", "failed", "restore", "unwind" */
        size_t step;           /* 1-based index in the journal */
        size_t n_planned;      /* steps planned (0 when unwinding) */
        const char *component;
        const char *kind;      /* binary, emulation, min-compatibility, restore, unwind, rollback */
        unsigned revision;
        const char *detail;    /* what is awaited, why it failed, or (done) what could not be
                                * verified, e.g. versions behind a /version that refused cplet */
        uint64_t elapsed_usec; /* since the step's swap */
} rollout_event;

typedef void (*rollout_progress_fn)(const rollout_event *ev, void *userdata);

typedef struct rollout {
        store *store;   /* writable, borrowed */
        const node *node; /* the state when the rollout (or resume) began, borrowed */
        sd_event *event;
        http_client *http;
        rollout_options options;
        rollout_progress_fn progress;
        void *userdata;
        const volatile bool *interrupted;
        const http_pem *version_cert, *version_key; /* see gate_spec.client_cert */

        journal *journal;
        json_t **trees;  /* per component: the tree now live (NULL: node's) */
        unsigned *live;  /* per component: the live revision */
        char *error;     /* why the rollout failed */
} rollout;

int rollout_new(store *s, const node *n, sd_event *e, http_client *http, const rollout_options *o, rollout **ret);
rollout *rollout_free(rollout *r);
static inline void rollout_freep(rollout **r) {
        rollout_free(*r);
}

/* Makes sure a component's live manifest is a stored revision (adopted, or recorded as an
 * external edit), labelled with the versions it runs where they are known. */
int component_sync_live(store *s, const component *co, unsigned *ret_live, char **ret_error);

/* The same for every component of the node, all or none: when one cannot be recorded (a full
 * disk), the revisions recorded for the others are removed again. live[] gets each live
 * revision. */
int components_sync_live(store *s, const node *n, unsigned *live, char **ret_error);

/* Starts a new journal for a plan (adopting the live manifests first). `target` (an object
 * of the target's versions, see journal.h; {} for a single write) is copied into the journal
 * for resume. Refuses, writing nothing, when the journal on disk shows a rollout in progress
 * (-EBUSY) or cannot be read or trusted (-EINVAL): such a journal is never overwritten. */
int rollout_begin(rollout *r, const char *plan_id, const char *command, json_t *target, char **ret_error);

/* The checks of rollout_take_over() that only read (the components the journal names are on
 * the node, each live at the revision the journal says), so that resume and abort can refuse
 * before they take the lock. The store may be read-only. */
int rollout_check_journal(store *s, const node *n, journal *j, char **ret_error);

/* Takes over the journal of an interrupted rollout (as journal_load() returned it; the
 * rollout owns it from then on, even on failure) after checking it against the disk:
 *  - every component it names must be on the node: -EINVAL naming the manifest to put back;
 *  - each component's live manifest must be the revision the journal says: an edit made
 *    since is refused with -ESTALE. A component the journal did not touch yet is adopted as
 *    it is (a hand edit becomes an "external edit" revision, the one its step starts from).
 * Refusals change nothing. Then the step caught mid-way is settled: not swapped → abandoned;
 * a restore or unwind swapped in → gated again (never written twice); a plan step swapped in
 * → gated again (and restored if it fails) when `settle`, else marked "interrupted" so that
 * rollout_unwind() restores it. Returns 0, -EIO when the settled step failed (and was
 * handled per policy), -EINVAL, -ESTALE, -EINTR, or another negative errno (r->error). */
int rollout_take_over(rollout *r, journal *j, bool settle, char **ret_error);

/* Runs the steps of a plan (computed from the node as it now stands). Returns 0 when all
 * are done, -EIO when a step failed (restored, and unwound if the policy says so;
 * r->error says what failed), -EINTR when interrupted (the journal says where), or another
 * negative errno when the node could not even be restored (r->error says what to do). */
int rollout_run(rollout *r, const plan *p);

/* Writes a whole new manifest tree for component i as one gated step (a rollback to a
 * revision, changed flags). A failure restores the revision it replaced. Returns 0, -EIO
 * (failed and restored; r->error says why), -EINTR, or another negative errno. */
int rollout_write_tree(rollout *r, size_t component, json_t *tree, const char *kind, const char *reason);

/* Unwinds every completed step of the journal in reverse order (cplet abort). */
int rollout_unwind(rollout *r);

/* Whether the journal may be closed: no step is in flight, every failed step was restored
 * (the restore ran to its end), no step waits to be unwound. Otherwise the rollout must stay
 * resumable, whatever error ended this run. */
bool rollout_may_close(const rollout *r);

/* Marks the journal finished (JOURNAL_DONE, JOURNAL_FAILED, JOURNAL_ABORTED) and saves it.
 * -EBUSY, changing nothing, when rollout_may_close() says no. */
int rollout_finish(rollout *r, journal_phase phase);
