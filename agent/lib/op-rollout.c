/* SPDX-License-Identifier: Apache-2.0 */
/* Gated runs: a plan (upgrade, rollback by version) or a single write (rollback to a
 * revision, flags), each journaled from the first write; and resume and abort, which take
 * over the journal of a run that did not finish. The session logic lives here once, for the
 * CLI and the daemon alike. */

#include <errno.h>
#include <string.h>

#include "macro.h"
#include "op-internal.h"

/* Everything a gated run holds while it runs. */
typedef struct session {
        op_env *env;
        node *node;
        store *store;
        sd_event *event;
        http_client *http;
        rollout *rollout;
        int lock_fd;
} session;

static void session_done(session *s) {
        rollout_free(s->rollout);
        http_client_free(s->http);
        sd_event_unref(s->event);
        store_free(s->store);
        node_free(s->node);
        if (s->lock_fd >= 0)
                close(s->lock_fd);
        *s = (session){ .lock_fd = -EBADF };
}

static void emit_begin(const op_options *o, const char *operation, const char *plan_id, size_t n_steps,
                       const char *journal_command) {
        rollout_event ev = { .event = "begin", .kind = operation, .detail = plan_id, .n_planned = n_steps,
                             .component = journal_command };

        if (o->progress)
                o->progress(&ev, o->userdata);
}

/* Takes the lock and reads the node again under it. Unless the session is there to resume or
 * abort, an unfinished rollout's journal refuses it, checked while holding the lock. */
static int session_lock(op_env *e, session *s, bool recovery, char **ret_error) {
        int r;

        *s = (session){ .env = e, .lock_fd = -EBADF };
        r = op_lock(e, recovery, &s->lock_fd, ret_error);
        if (r >= 0)
                r = op_load_node(e, &s->node, ret_error);
        return r;
}

/* Opens the store for writing and the waiting machinery, on the caller's event loop. */
static int session_start(session *s, const op_options *o, char **ret_error) {
        int r;

        r = store_open(s->env->root, s->env->config.keep_revisions, true, &s->store, ret_error);
        if (r < 0)
                return r;
        s->event = o->event ? sd_event_ref(o->event) : NULL;
        if (!s->event && sd_event_new(&s->event) < 0)
                return set_error(ret_error, -ENOMEM, "cannot set up the event loop");
        r = http_client_new(s->event, &s->http);
        if (r >= 0)
                r = rollout_new(s->store, s->node, s->event, s->http, &o->rollout, &s->rollout);
        if (r >= 0)
                s->rollout->options.force = o->force; /* an unwind may go below the high-water mark */
        if (r < 0)
                return set_error(ret_error, r, "cannot set up the event loop: %s", strerror(-r));
        s->rollout->progress = o->progress;
        s->rollout->userdata = o->userdata;
        s->rollout->interrupted = o->interrupted;
        s->rollout->version_cert = o->version_cert;
        s->rollout->version_key = o->version_key;
        return 0;
}

/* Ends a run's journal. Once a run has begun, whatever stops it is a failed operation (the
 * refusals came before): the journal is closed "failed" where rollout_finish() allows it, that
 * is when every step is settled (restored, unwound, or abandoned with nothing live changed);
 * otherwise it stays open for resume and abort, and the message says so. An interruption
 * leaves it as it is. */
static int conclude(session *s, int r, journal_phase done_phase, char **ret_error) {
        const char *why;
        int k;

        if (r == -EINTR)
                return r;
        if (r == 0) {
                (void) rollout_finish(s->rollout, done_phase);
                return 0;
        }
        k = rollout_finish(s->rollout, JOURNAL_FAILED);
        why = s->rollout->error ?: strerror(-r);
        if (k == -EBUSY)
                return set_error(ret_error, -EIO,
                                 "%s. The rollout journal stays open: once the cause is fixed, run cplet resume to "
                                 "finish the rollout or cplet abort to undo it",
                                 why);
        return set_error(ret_error, -EIO, "%s", why);
}

static json_t *target_to_json(const op_target *t) {
        json_t *j = json_pack("{s:s?, s:s?, s:s?, s:s?}", "binaryVersion", t->binary_version, "emulatedVersion",
                              t->emulated_version, "minCompatibilityVersion", t->min_compat_version,
                              "imageRepository", t->image_repository);
        json_t *images = j && t->n_images > 0 ? json_object() : NULL;
        json_t *components = j && t->components ? json_array() : NULL;

        /* resume plans the rest of the way again: it needs the exact images too. */
        for (size_t i = 0; images && i < t->n_images; i++)
                json_object_set_new(images, t->images[i].component, json_string(t->images[i].image));
        if (images)
                json_object_set_new(j, "images", images);
        /* ... and moves no component the target left as it was. */
        for (const char *const *c = t->components; components && *c; c++)
                json_array_append_new(components, json_string(*c));
        if (components)
                json_object_set_new(j, "components", components);
        /* ... and drops what the rollout was told to drop, where an unfinished step has not yet. */
        if (j && t->drop_removed && *t->drop_removed) {
                json_t *drop = json_array();

                for (const char *const *d = t->drop_removed; drop && *d; d++)
                        json_array_append_new(drop, json_string(*d));
                if (drop)
                        json_object_set_new(j, "dropRemoved", drop);
        }
        return j;
}

/* Plans read-only first (a refused plan leaves the node exactly as it was), then again under
 * the lock from the node as it then stands. */
static int plan_under_lock(op_env *e, const op_target *t, const op_options *o, session *s, plan **ret,
                           char **ret_error) {
        _cleanup_(node_freep) node *n = NULL;
        _cleanup_(plan_freep) plan *p = NULL;
        int r;

        r = op_load_node(e, &n, ret_error);
        if (r >= 0)
                r = op_compute_plan(e, n, t, o->force ? OP_PLAN_FORCE : 0, &p, ret_error);
        if (r >= 0)
                r = op_refuse_ungateable(n, NULL, ret_error);
        if (r >= 0 && p->n_steps > 0)
                r = op_preflight_write(e, n, false, ret_error);
        if (r < 0 || p->n_steps == 0) {
                *ret = TAKE_PTR(p);
                return r;
        }
        p = plan_free(p);
        r = session_lock(e, s, false, ret_error);
        if (r >= 0)
                r = op_compute_plan(e, s->node, t, (o->force ? OP_PLAN_FORCE : 0) | OP_PLAN_QUIET, &p, ret_error);
        if (r >= 0)
                r = op_refuse_ungateable(s->node, NULL, ret_error);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(p);
        return 0;
}

int op_run_gated_plan(op_env *e, const op_target *t, const char *command, const op_options *o, op_result *res,
                      char **ret_error) {
        _cleanup_(plan_freep) plan *p = NULL;
        json_auto_t *target = NULL;
        session s = { .lock_fd = -EBADF };
        int r;

        res->command = command;
        r = plan_under_lock(e, t, o, &s, &p, ret_error);
        if (r >= 0 && p->n_steps > 0) {
                res->n_steps = p->n_steps;
                op_new_plan_id(res->plan_id);
                target = target_to_json(t);
                /* Only a plan that stands under the lock opens the store for writing. */
                r = target ? session_start(&s, o, ret_error) : -ENOMEM;
                if (r >= 0)
                        r = rollout_begin(s.rollout, res->plan_id, command, target, ret_error);
                if (r >= 0) {
                        emit_begin(o, command, res->plan_id, p->n_steps, NULL);
                        r = conclude(&s, rollout_run(s.rollout, p), JOURNAL_DONE, ret_error);
                }
        }
        session_done(&s);
        return r;
}

/* Under the lock, from the node as it then is: find, build, check. */
static int build_under_lock(session *s, const char *name, op_builder build, void *userdata, const op_options *o,
                            size_t *ret_index, json_t **ret_pod, char **ret_error) {
        _cleanup_(component_done) component next = {};
        json_auto_t *pod = NULL;
        const component *co;
        int r;

        co = node_find(s->node, name);
        if (!co)
                return set_error(ret_error, -EINVAL, "no component \"%s\" on this node (see cplet status)", name);
        r = op_refuse_ungateable(s->node, name, ret_error);
        if (r >= 0)
                r = build(s->env, co, &pod, userdata, ret_error);
        if (r >= 0)
                r = op_check_component_tree(s->env, s->node, co, pod, o->force, &next, ret_error);
        if (r < 0)
                return r;
        *ret_index = (size_t) (co - s->node->components);
        *ret_pod = TAKE_PTR(pod);
        return 0;
}

int op_run_gated_write(op_env *e, const char *name, op_builder build, void *userdata, const char *command,
                       const char *reason, const op_options *o, op_result *res, char **ret_error) {
        _cleanup_(node_freep) node *n = NULL;
        json_auto_t *target = json_object(), *new_pod = NULL;
        session s = { .lock_fd = -EBADF };
        size_t index = 0;
        int r;

        res->command = command;
        res->n_steps = 1;
        /* On the read-only pass's node: refused before any lock. */
        r = op_load_node(e, &n, ret_error);
        if (r >= 0)
                r = op_refuse_ungateable(n, name, ret_error);
        if (r >= 0)
                r = session_lock(e, &s, false, ret_error);
        if (r >= 0)
                r = build_under_lock(&s, name, build, userdata, o, &index, &new_pod, ret_error);
        if (r >= 0)
                r = target ? session_start(&s, o, ret_error) : -ENOMEM;
        if (r >= 0) {
                op_new_plan_id(res->plan_id);
                r = rollout_begin(s.rollout, res->plan_id, command, target, ret_error);
        }
        if (r >= 0) {
                emit_begin(o, command, res->plan_id, 1, NULL);
                r = conclude(&s, rollout_write_tree(s.rollout, index, new_pod, command, reason),
                             JOURNAL_DONE, ret_error);
        }
        session_done(&s);
        return r;
}

/* Opens a session on the unfinished rollout: 0 with *ret NULL when there is none. The rollout
 * takes the journal's options unless the caller gave its own. Everything that can refuse is
 * checked before the lock: a refusal touches nothing. */
static int open_unfinished(op_env *e, session *s, const op_options *o, op_result *res, journal **ret,
                           char **ret_error) {
        _cleanup_(journal_freep) journal *j = NULL;
        _cleanup_(node_freep) node *n = NULL;
        _cleanup_(store_freep) store *ro = NULL;
        int r;

        *ret = NULL;
        r = op_unfinished_journal(e->root, &j, ret_error);
        if (r <= 0) {
                res->nothing_to_resume = r == 0;
                return r;
        }
        r = op_load_node(e, &n, ret_error);
        if (r >= 0)
                r = op_preflight_write(e, n, true, ret_error);
        if (r >= 0)
                r = store_open(e->root, 0, false, &ro, ret_error);
        if (r >= 0)
                r = rollout_check_journal(ro, n, j, ret_error);
        if (r >= 0)
                r = session_lock(e, s, true, ret_error);
        if (r < 0)
                return r;
        /* Again under the lock: another cplet may have finished it meanwhile. */
        j = journal_free(j);
        r = op_unfinished_journal(e->root, &j, ret_error);
        if (r <= 0) {
                res->nothing_to_resume = r == 0;
                return r;
        }
        r = session_start(s, o, ret_error);
        if (r < 0)
                return r;
        s->rollout->options = o->rollout_given ? o->rollout : j->options;
        s->rollout->options.force = o->force;
        snprintf(res->plan_id, sizeof(res->plan_id), "%s", j->plan_id);
        *ret = TAKE_PTR(j);
        return 0;
}

/* Settles the step the interruption caught. A failure it handles (or an interruption) ends
 * the run here. */
static int take_over(session *s, journal *j, bool settle, char **ret_error) {
        _cleanup_free_ char *error = NULL;
        int r = rollout_take_over(s->rollout, j, settle, &error); /* owns j from now on */

        if (r >= 0)
                return 0;
        if (r == -ESTALE || r == -EINVAL || (r != -EIO && r != -EINTR && !s->rollout->error))
                return set_error(ret_error, r, "%s", error ?: strerror(-r));
        return conclude(s, r, JOURNAL_DONE, ret_error);
}

/* The rest of the way: plan again from the node as it now stands to the same target. A single
 * write (rollback to a revision, flags) has no target: settling it was all. A plan refused now
 * leaves the journal as it is, to resume once the node is fixed. */
static int run_rest(session *s, char **ret_error) {
        const journal_target *t = &s->rollout->journal->target;
        _cleanup_(plan_freep) plan *p = NULL;
        _cleanup_free_ plan_image *images = calloc(t->n_images + 1, sizeof(plan_image));
        op_target target = {
                .binary_version = t->binary_version,
                .emulated_version = t->emulated_version,
                .min_compat_version = t->min_compat_version,
                .image_repository = t->image_repository,
                .images = images,
                .n_images = t->n_images,
                .components = (const char *const *) t->components,
                .drop_removed = (const char *const *) t->drop_removed,
        };
        int r;

        if (!images)
                return -ENOMEM;
        if (!target.binary_version)
                return conclude(s, 0, JOURNAL_DONE, ret_error);
        /* The strings stay owned by the journal, which outlives the plan. */
        for (size_t i = 0; i < t->n_images; i++)
                images[i] = (plan_image){ .component = t->images[i].component, .image = t->images[i].image };
        /* The high-water mark and the preflight were checked when the rollout began. */
        r = op_compute_plan(s->env, s->node, &target, OP_PLAN_RESUME, &p, ret_error);
        if (r < 0)
                return r;
        return conclude(s, rollout_run(s->rollout, p), JOURNAL_DONE, ret_error);
}

int op_resume(op_env *e, const op_options *o, op_result *res, char **ret_error) {
        journal *j = NULL;
        session s = { .lock_fd = -EBADF };
        int r;

        *res = (op_result){ .command = "resume" };
        r = open_unfinished(e, &s, o, res, &j, ret_error);
        if (r >= 0 && j) {
                bool unwinding = j->phase == JOURNAL_UNWINDING;

                emit_begin(o, "resume", res->plan_id, 0, j->command);
                r = take_over(&s, j, true, ret_error);
                if (r >= 0 && unwinding)
                        r = conclude(&s, rollout_unwind(s.rollout), JOURNAL_ABORTED, ret_error);
                else if (r >= 0)
                        r = run_rest(&s, ret_error);
        }
        session_done(&s);
        return r;
}

int op_abort(op_env *e, const op_options *o, op_result *res, char **ret_error) {
        journal *j = NULL;
        session s = { .lock_fd = -EBADF };
        int r;

        *res = (op_result){ .command = "abort" };
        r = open_unfinished(e, &s, o, res, &j, ret_error);
        if (r >= 0 && j) {
                s.rollout->options.unwind_on_failure = true;
                emit_begin(o, "abort", res->plan_id, 0, j->command);
                r = take_over(&s, j, false, ret_error);
                if (r >= 0)
                        r = conclude(&s, rollout_unwind(s.rollout), JOURNAL_ABORTED, ret_error);
        }
        session_done(&s);
        return r;
}
