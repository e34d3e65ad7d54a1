/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The revision store: every manifest cplet writes is a numbered revision under
 * ROOT/var/lib/cplet/revisions/<component>/<N>.yaml with <N>.json metadata, and reaches the
 * manifest directory by one atomic rename. Nothing but the live manifests is ever left in the
 * manifest directory under a name the kubelet would load.
 *
 * Write order, so that a crash at any instant keeps the invariants (every live manifest equals
 * a stored revision; the journal of later issues never claims what the disk does not show):
 * N.yaml, then N.json, then the live manifest. A N.yaml without N.json is an interrupted write
 * and is removed the next time the store is opened for writing. */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "version.h"

#define STORE_MANIFEST_DIR "etc/kubernetes/manifests"
#define STORE_STATE_DIR "var/lib/cplet"
#define STORE_REVISIONS_DIR "var/lib/cplet/revisions"
#define STORE_LOCK_DIR "run/cplet"
#define STORE_LOCK_FILE "lock"
#define STORE_KEEP_DEFAULT 20
#define STORE_REVISION_ANNOTATION "cplet.io/revision"

typedef struct revision {
        unsigned number;
        char *component;
        char *manifest; /* file name in the manifest directory */
        char *time;     /* RFC 3339, UTC */
        char sha256[65];
        char *binary_version; /* NULL when unknown */
        char *emulated_version;
        char *min_compat_version;
        char *reason;
        char *plan_id; /* NULL when not part of a plan */
        unsigned parent; /* 0: none */
        bool healthy;    /* known to have run healthy (set by gated rollouts) */
} revision;

typedef struct revision_list {
        revision *items; /* ascending by number */
        size_t n;
} revision_list;

void revision_done(revision *r);
void revision_list_done(revision_list *l);
const revision *revision_list_find(const revision_list *l, unsigned number);

typedef struct store {
        char *root;
        char *manifest_dir;  /* for messages */
        char *revisions_dir; /* for messages */
        int manifest_fd;
        int revisions_fd; /* -EBADF when opened read-only and absent */
        int state_fd;     /* ROOT/var/lib/cplet; -EBADF when opened read-only and absent */
        unsigned keep;
        bool writable;
        /* While a rollout runs, revisions it may have to restore must stay: retention is
         * applied when it finishes (store_prune), not at every swap. */
        bool defer_prune;
} store;

/* Opens the store. writable: creates the state directories (0700), removes leftovers of
 * interrupted writes; the caller must hold the lock. Read-only: nothing is created or removed.
 * Refuses group/world-writable or foreign-owned manifest and state directories, and symbolic
 * links anywhere on those paths below the root. */
int store_open(const char *root, unsigned keep, bool writable, store **ret, char **ret_error);
store *store_free(store *s);
static inline void store_freep(store **s) {
        store_free(*s);
}

/* Takes ROOT/run/cplet/lock (flock, non-blocking) and writes "PID COMMAND" into it. When
 * another process holds it, fails with -EBUSY and names that process. */
int store_lock(const char *root, const char *command, int *ret_fd, char **ret_error);

/* Whether another process holds the lock, without creating anything: 1 (and "PID COMMAND"
 * in *ret_holder when it can be read), 0 when free or absent. */
int store_lock_holder(const char *root, char **ret_holder);

/* Lists a component's revisions (empty when it has none). */
int store_list(store *s, const char *component, revision_list *ret, char **ret_error);

/* Parses the metadata of a revision (the bytes of N.json); `display` names the file in errors.
 * Exposed for the fuzz target; store_list() reads the files. */
int store_parse_revision_meta(const char *data, size_t size, const char *display, revision *ret, char **ret_error);

/* Reads revision N's manifest. */
int store_read(store *s, const char *component, unsigned number, char **ret, size_t *ret_size, char **ret_error);

/* Reads the live manifest file as bytes. */
int store_read_live(store *s, const char *file, char **ret, size_t *ret_size, char **ret_error);

/* The newest revision equal to the live manifest, 0 when none is (an external edit, or a
 * component never adopted). */
unsigned store_live_number(const revision_list *l, const char *live, size_t size);

typedef struct revision_info {
        const char *reason;
        const char *plan_id;
        const char *binary_version;
        const char *emulated_version;
        const char *min_compat_version;
} revision_info;

/* Makes sure the live manifest is a stored revision before anything else: adopts it as
 * revision 1 ("adopted") when the component has none, records it as a new revision
 * ("external edit") when it was changed by hand since cplet last wrote it. Returns the live
 * revision's number in *ret_live. Needs a writable store. A failure records nothing. */
int store_sync_live(store *s, const char *component, const char *file, const revision_info *info, unsigned *ret_live,
                    char **ret_error);
/* The same, saying in *ret_recorded whether it recorded a revision. */
int store_sync_live_recorded(store *s, const char *component, const char *file, const revision_info *info,
                             unsigned *ret_live, bool *ret_recorded, char **ret_error);

/* Removes revision N (written by this process, never live): a write that failed leaves no
 * trace in history. */
void store_discard(store *s, const char *component, unsigned number);

/* Writes a new revision of the component with the pod tree (annotated with its number) and
 * swaps it in as the live manifest, then applies retention. `parent` is the live revision it
 * replaces. Returns the new number. Equivalent to store_prepare() + store_swap(). */
int store_commit(store *s, const char *component, const char *file, json_t *pod, const revision_info *info,
                 unsigned parent, unsigned *ret_number, char **ret_error);

/* Applies retention to a component: keeps the newest `keep` revisions, the live one and
 * the newest known healthy one. */
void store_prune(store *s, const char *component, unsigned live);

/* Records that revision N ran healthy (its gate passed): retention keeps the newest such
 * revision of each component. */
int store_mark_healthy(store *s, const char *component, unsigned number, char **ret_error);

/* The two halves of store_commit, for callers that journal in between: store_prepare writes
 * revision N (not live yet); store_swap makes that revision the live manifest by one
 * atomic rename and applies retention. When the swap fails and the live file is not the new
 * revision, the revision never went live: store_swap removes it. */
int store_prepare(store *s, const char *component, const char *file, json_t *pod, const revision_info *info,
                  unsigned parent, unsigned *ret_number, char **ret_error);
int store_swap(store *s, const char *component, const char *file, unsigned number, char **ret_error);
/* store_swap is a compare-and-swap: it fails with -ESTALE, writing nothing, unless the live
 * manifest is still byte-equal to the new revision's parent (the revision it replaces).
 * store_check_live is that check alone: 0 when the live manifest is revision `expected`. */
int store_check_live(store *s, const char *component, const char *file, unsigned expected, char **ret_error);

/* The min-compatibility high-water mark, ROOT/var/lib/cplet/min-compatibility.json: the
 * highest min-compatibility version, explicit or implied, that any revision was written or
 * adopted with (store_prepare and store_sync_live raise it, before the revision can run).
 * Storage written under it may need it, so nothing may go below it without --force.
 * store_high_water_get: 0 and the mark ({0,0}: none, the node has no revision either); 1 when
 * the file was missing and the mark was rebuilt from the revisions' metadata (and saved, when
 * the store is writable); -EINVAL naming the file when it is not a valid mark. */
#define STORE_HIGH_WATER_FILE "min-compatibility.json"
int store_high_water_get(store *s, kminor *ret, char **ret_error);
/* Raises the mark to `version` (a major.minor; NULL: unknown, nothing to do) unless it is
 * already at least that. */
int store_high_water_raise(store *s, const char *version, char **ret_error);

/* Renders a pod as store_commit would write it for revision `number` (for --dry-run). */
int store_render(json_t *pod, unsigned number, char **ret, size_t *ret_size);
