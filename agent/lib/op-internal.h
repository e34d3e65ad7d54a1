/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* What the operation files share; not for the front ends. */

#include "macro.h"
#include "operation.h"

/* Hands a warning to the front end (which logs or prints it). */
void op_warn(op_env *e, const char *fmt, ...) _printf_(2, 3);

/* The min-compatibility high-water mark ({0,0}: none); a deleted mark is rebuilt from the
 * revisions' metadata (and said so), a corrupt one refuses. */
int op_high_water(op_env *e, kminor *ret, char **ret_error);

/* Reads the node as it is now. */
int op_load_node(op_env *e, node **ret, char **ret_error);

/* The planner's view of one component (which must be plannable). */
void op_plan_component(const component *co, plan_component *ret);

/* Validates a target into the planner's form. */
int op_parse_target(const op_target *t, plan_target *ret, char **ret_error);

/* How op_compute_plan() plans. */
enum {
        /* --force: below the min-compatibility high-water mark allowed; the preflight's
         * refusals become warnings. */
        OP_PLAN_FORCE = 1 << 0,
        /* The same plan again under the lock: its warnings were given already. */
        OP_PLAN_QUIET = 1 << 1,
        /* resume: the rest of a plan that began (the floor and the preflight were checked
         * then, so its refusals are warnings now); a --drop-removed entry an earlier step
         * dropped already matches nothing, which is fine. */
        OP_PLAN_RESUME = 1 << 2,
};

/* Plans from the node to the target: every component plannable, the rules and the
 * min-compatibility high-water mark kept (unless OP_PLAN_FORCE), every step's command line
 * through the preflight with the target's drop_removed put on each component's first step. */
int op_compute_plan(op_env *e, const node *n, const op_target *t, unsigned flags, plan **ret, char **ret_error);

/* The preflight of a computed plan (issue 11): each step applied to the component's tree as
 * the steps before it left it, and its command line checked against the step's binary and
 * emulated version. The target's drop_removed entries go on each component's first step (only
 * where they name something refused for it; an entry naming nothing refused is -EINVAL, except
 * on OP_PLAN_RESUME), then the steps are checked again. Refusals left refuse the plan (-EINVAL,
 * every one listed) unless OP_PLAN_FORCE or OP_PLAN_RESUME; they and the warnings go to
 * op_warn() (not with OP_PLAN_QUIET). */
int op_preflight_plan(op_env *e, const node *n, const op_target *t, unsigned flags, plan *p, char **ret_error);

/* Everything that can refuse a write before the lock is taken: another writer at work, an
 * unfinished or unreadable journal, directories cplet may not use, unreadable revisions, a
 * read-only or full filesystem. Touches nothing. `recovery`: resume/abort, which need the
 * unfinished journal rather than refuse it. */
int op_preflight_write(op_env *e, const node *n, bool recovery, char **ret_error);

/* Takes the lock and, holding it, refuses when an unfinished (or unreadable) journal says
 * resume or abort must come first (unless `recovery`). */
int op_lock(op_env *e, bool recovery, int *ret_fd, char **ret_error);

/* The journal of a rollout that has not finished: 1 and *ret, 0 when there is none. A journal
 * that cannot be read or trusted is an error: nothing may write over it. */
int op_unfinished_journal(const char *root, journal **ret, char **ret_error);

/* A container without `command` runs its image's entrypoint: its process cannot be
 * recognised, so a gated write is refused (NULL: any component). */
int op_refuse_ungateable(const node *n, const char *component, char **ret_error);

/* The check of a single write: the new tree still holds the component, valid for its binary,
 * the node valid with it (rules, skew), the emulated version moving at most one minor, never
 * below the min-compatibility version in force or its high-water mark (unless force). */
int op_check_component_tree(op_env *e, const node *n, const component *co, json_t *new_pod, bool force,
                            component *ret_next, char **ret_error);

/* A new plan id ("plan-1a2b3c4d"). */
void op_new_plan_id(char buf[static 32]);

/* Builds a component's new manifest from the node as it is when called. */
typedef int (*op_builder)(op_env *e, const component *co, json_t **ret_pod, void *userdata, char **ret_error);

/* A single write (rollback to a revision, flags): checked read-only, then under the lock
 * built again from the node as it then is, and written gated, at once, or only shown. */
int op_write_component(op_env *e, const char *name, op_builder build, void *userdata, const char *command,
                       const char *reason, const op_options *o, op_result *ret, char **ret_error);

/* A plan's steps written at once (--no-wait) or only shown (--dry-run). */
int op_write_plan(op_env *e, const op_target *t, const op_options *o, op_result *ret, char **ret_error);

/* A plan run gated, journaled from the first write to the last. */
int op_run_gated_plan(op_env *e, const op_target *t, const char *command, const op_options *o, op_result *ret,
                      char **ret_error);
int op_run_gated_write(op_env *e, const char *name, op_builder build, void *userdata, const char *command,
                       const char *reason, const op_options *o, op_result *ret, char **ret_error);
