/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "agent.h"
#include "cplet-build.h"
#include "log.h"
#include "macro.h"

/* ---- running a target */

/* Registry prefixes a target may name: the configuration's list, else the ones the manifests
 * use now ("registry.k8s.io" of "registry.k8s.io/kube-apiserver"). */
static char **allowed_repositories(agent *d, const node *n) {
        char **l;
        size_t k = 0;

        if (d->env->config.image_repositories) {
                size_t c = 0;

                while (d->env->config.image_repositories[c])
                        c++;
                l = calloc(c + 1, sizeof(char *));
                for (size_t i = 0; l && i < c; i++)
                        if (!(l[i] = strdup(d->env->config.image_repositories[i]))) {
                                strv_free(l);
                                return NULL;
                        }
                return l;
        }
        l = calloc(n->n_components + 1, sizeof(char *));
        for (size_t i = 0; l && i < n->n_components; i++) {
                const char *repo = n->components[i].image_ref.repository;
                const char *slash = repo ? strrchr(repo, '/') : NULL;
                bool seen = false;

                if (!slash)
                        continue;
                for (size_t m = 0; m < k; m++)
                        seen = seen || (strlen(l[m]) == (size_t) (slash - repo) && strneq(l[m], repo, slash - repo));
                if (!seen && !(l[k++] = strndup(repo, slash - repo))) {
                        strv_free(l);
                        return NULL;
                }
        }
        return l;
}

/* Parses a target annotation against what this node runs and allows. */
int read_target(agent *d, const char *text, size_t size, target **ret, char **ret_error) {
        _cleanup_(op_status_result_done) op_status_result sr = {};
        _cleanup_strv_free_ char **repositories = NULL, **components = NULL;
        target_limits limits;
        int r;

        r = op_status(d->env, &sr, ret_error);
        if (r < 0)
                return r;
        components = calloc(d->env->plugins->n + 1, sizeof(char *));
        repositories = allowed_repositories(d, sr.node);
        if (!components || !repositories)
                return -ENOMEM;
        for (size_t i = 0; i < d->env->plugins->n; i++)
                if (!(components[i] = strdup(d->env->plugins->items[i].name)))
                        return -ENOMEM;
        limits = (target_limits){ .known_components = (const char *const *) components,
                                  .allowed_repositories = (const char *const *) repositories };
        return target_parse(text, size, &limits, ret, ret_error);
}

op_target op_target_of(const target *t) {
        return (op_target){
                .binary_version = t->binary_version,
                .emulated_version = t->emulated_version,
                .min_compat_version = t->min_compat_version,
                .image_repository = t->image_repository,
                .components = (const char *const *) t->components,
                .drop_removed = (const char *const *) t->drop_removed,
        };
}

/* What a refused target's status names: its id and generation when they can be read at all. */
static void refuse(agent *d, const char *text, size_t size, const char *id, uint64_t generation,
                   const char *why) {
        json_auto_t *j = NULL;

        if (!id && text && (j = json_loadb(text, size, 0, NULL))) {
                const char *s = json_string_value(json_object_get(j, "id"));
                json_int_t g = json_integer_value(json_object_get(j, "generation"));

                /* Only if they would have passed: a hostile id is not echoed back. */
                if (s && strlen(s) <= TARGET_ID_MAX && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                                                 "0123456789._-") == strlen(s))
                        id = s;
                generation = g > 0 ? (uint64_t) g : 0;
        }
        set_string(&d->id, id);
        d->generation = generation;
        set_string(&d->plan_id, NULL);
        set_bytes(&d->refused_text, &d->refused_size, text, size);
        reporter_event(d->reporter, "Warning", "TargetRefused", why);
        set_phase(d, STATUS_REFUSED, why);
}

static int rollout_options_of(const target *t, rollout_options *ret, char **ret_error) {
        return op_parse_rollout_options(t->stable_for, t->step_timeout, t->on_failure_stop ? "stop" : NULL, ret,
                                        ret_error);
}

/* After a rollout: the phase its result means. */
static void conclude(agent *d, int r, const op_result *res, const char *error, bool unwind_on_failure) {
        _cleanup_(op_status_result_done) op_status_result sr = {};
        _cleanup_free_ char *m = NULL;
        bool open_journal;

        d->running = false;
        switch (op_outcome_of(r)) {
        case OP_OK:
                m = res->n_steps == 0 ? strdup("the node is already at the target")
                                      : strdup_printf("%zu steps done, every component healthy", res->n_steps);
                reporter_event(d->reporter, "Normal", "Succeeded", m ?: "succeeded");
                set_phase(d, STATUS_SUCCEEDED, m);
                return;
        case OP_REFUSED:
                reporter_event(d->reporter, "Warning", "TargetRefused", error ?: "refused");
                set_phase(d, STATUS_REFUSED, error);
                return;
        case OP_INTERRUPTED:
                set_phase(d, STATUS_INTERRUPTED, error ?: "interrupted: the journal keeps the rollout resumable");
                return;
        case OP_FAILED:
                break;
        }
        /* Nothing was written (the images could not be pulled, say): nothing to roll back. */
        if (!*res->plan_id) {
                reporter_event(d->reporter, "Warning", "Failed", error ?: "failed");
                set_phase(d, STATUS_FAILED, error);
                return;
        }
        /* Rolled back only when the unwind finished (the journal closed); a journal still open
         * means someone has to resume or abort. */
        open_journal = op_status(d->env, &sr, NULL) >= 0 && sr.interrupted;
        if (unwind_on_failure && !open_journal) {
                reporter_event(d->reporter, "Warning", "RolledBack", error ?: "rolled back");
                set_phase(d, STATUS_ROLLED_BACK, error);
        } else {
                reporter_event(d->reporter, "Warning", "Failed", error ?: "failed");
                set_phase(d, STATUS_FAILED, error);
        }
}

static op_options call_options(agent *d) {
        bool cert = d->version_cert.file || d->version_cert.data;

        return (op_options){
                .event = d->event,
                .interrupted = &d->interrupted,
                .progress = on_progress,
                .userdata = d,
                .version_cert = cert ? &d->version_cert : NULL,
                .version_key = cert ? &d->version_key : NULL,
        };
}

/* Takes back the record run_target() saved before the first write. */
static void forget_handled(agent *d, store *s) {
        _cleanup_free_ char *error = NULL;
        int r;

        r = handled_forget(s, &error);
        if (r < 0)
                log_error("Cannot take back %s: %s", HANDLED_FILE, error ?: strerror(-r));
        handled_done(&d->last);
}

static void run_target(agent *d, target *t) {
        _cleanup_(op_plan_result_done) op_plan_result pr = {};
        _cleanup_(op_result_done) op_result res = {};
        _cleanup_(store_freep) store *s = NULL;
        _cleanup_free_ char *error = NULL, *m = NULL;
        op_target ot = op_target_of(t);
        rollout_options ro;
        op_options o;
        int r;

        if (d->stopping)
                return; /* not started: the next start handles it */
        set_string(&d->id, t->id);
        d->generation = t->generation;
        set_string(&d->plan_id, NULL);
        set_bytes(&d->refused_text, &d->refused_size, NULL, 0);

        r = rollout_options_of(t, &ro, &error);
        if (r >= 0)
                r = op_plan(d->env, &ot, false, &pr, &error);
        if (r < 0) {
                refuse(d, NULL, 0, t->id, t->generation, error ?: strerror(-r));
                return;
        }

        /* Recorded before the first write: after a crash, the journal resumes this target; it is
         * never started again from the beginning. */
        r = store_open(d->env->root, 0, true, &s, &error);
        if (r >= 0)
                r = handled_save(s, t->id, t->generation, pr.plan->n_steps, &error);
        if (r < 0) {
                set_phase(d, STATUS_FAILED, error ?: strerror(-r));
                return;
        }
        handled_done(&d->last);
        d->last.id = strdup(t->id);
        d->last.generation = t->generation;
        d->last.n_steps = pr.plan->n_steps;

        m = strdup_printf("%zu steps to binary %s", pr.plan->n_steps, t->binary_version);
        reporter_event(d->reporter, "Normal", "PlanStarted", m ?: "plan started");
        set_phase(d, STATUS_PENDING, m);

        d->running = true;
        o = call_options(d);
        o.rollout = ro;
        o.rollout_given = true;
        free(error);
        error = NULL;
        r = op_upgrade(d->env, &ot, &o, &res, &error);
        if (r == -EINTR && !*res.plan_id)
                /* Stopped before the first write (during the image pull): no journal resumes it, so
                 * the next start must run the target again, not take it as handled. */
                forget_handled(d, s);
        conclude(d, r, &res, error, ro.unwind_on_failure);
}

void handle_target(agent *d) {
        _cleanup_(target_freep) target *t = NULL;
        _cleanup_free_ char *error = NULL;
        const char *text = d->target_text;
        size_t size = d->target_size;
        int r;

        d->target_changed = false;
        if (!text || bytes_equal(d->refused_text, d->refused_size, text, size))
                return;

        r = read_target(d, text, size, &t, &error);
        if (r == -ENOMEM) {
                log_error("Out of memory reading a target");
                return;
        }
        if (r < 0) {
                refuse(d, text, size, NULL, 0, error);
                return;
        }
        if (!handled_should_run(&d->last, t))
                return; /* run before (or an older generation): the status already says how it went */
        log_info("New target %s generation %llu: binary %s%s%s", t->id, (unsigned long long) t->generation,
                 t->binary_version, t->emulated_version ? ", emulated " : "", t->emulated_version ?: "");
        run_target(d, t);
}

/* At start: an interrupted rollout (its journal) is resumed, with the options it was started with. */
void resume_interrupted(agent *d, json_t *unfinished) {
        _cleanup_(op_result_done) op_result res = {};
        _cleanup_free_ char *error = NULL;
        op_options o = call_options(d);
        const char *on_failure;
        size_t i;
        json_t *step;
        int r;

        set_string(&d->id, d->last.id);
        d->generation = d->last.generation;
        d->step_total = d->last.n_steps;
        json_array_foreach(json_object_get(unfinished, "steps"), i, step) {
                const char *kind = json_string_value(json_object_get(step, "kind"));

                if (kind && (streq(kind, "binary") || streq(kind, "emulation") || streq(kind, "min-compatibility")))
                        d->resume_offset++;
                /* Until the resume says more: the step the journal stopped at. */
                set_string(&d->step_component, json_string_value(json_object_get(step, "component")));
                set_string(&d->step_kind, kind);
        }
        d->step_index = json_array_size(json_object_get(unfinished, "steps"));
        log_notice("Resuming the rollout interrupted at the last stop");
        d->running = true;
        set_phase(d, STATUS_PROGRESSING, "resuming the interrupted rollout");
        r = op_resume(d->env, &o, &res, &error);
        /* The journal's own policy decides what a failure unwinds. */
        on_failure = json_string_value(json_object_get(json_object_get(unfinished, "options"), "onFailure"));
        d->resume_offset = 0;
        conclude(d, r, &res, error, !on_failure || !streq(on_failure, "stop"));
}

/* ---- what a stop left behind */

/* The agent stopped (killed) while this target ran, and no rollout is unfinished: the journal
 * ended, or the first step was never written. Which, the node says: at the target, the target
 * succeeded; otherwise it did not, and only a new generation runs it again. */
static void settle_unreported(agent *d, json_t *annotations) {
        _cleanup_(op_plan_result_done) op_plan_result pr = {};
        _cleanup_(target_freep) target *t = NULL;
        json_t *value = json_object_get(annotations, TARGET_ANNOTATION);
        op_target ot;

        if (json_is_string(value) &&
            read_target(d, json_string_value(value), json_string_length(value), &t, NULL) >= 0 && streq(t->id, d->last.id) &&
            t->generation == d->last.generation) {
                ot = op_target_of(t);
                if (op_plan(d->env, &ot, false, &pr, NULL) >= 0 && pr.plan->n_steps == 0) {
                        d->phase = STATUS_SUCCEEDED;
                        set_string(&d->message, "the node is at the target (the agent stopped before it could say so)");
                        return;
                }
        }
        d->phase = STATUS_FAILED;
        set_string(&d->message, "the agent stopped while this target ran and found no unfinished rollout at its "
                                "start: the node is as the components show, not at the target; a new generation "
                                "runs the target again");
}

/* Our previous status, when it speaks of the target last handled: its phase and message carry
 * over a restart (a Succeeded target stays Succeeded). */
void adopt_previous_status(agent *d, json_t *annotations) {
        json_auto_t *j = NULL;
        const char *text = json_string_value(json_object_get(annotations, STATUS_ANNOTATION));
        const char *id, *phase;

        if (!text || !d->last.id || !(j = json_loads(text, 0, NULL)))
                return;
        id = json_string_value(json_object_get(j, "id"));
        phase = json_string_value(json_object_get(j, "phase"));
        if (!id || !streq(id, d->last.id) || !phase ||
            json_integer_value(json_object_get(j, "generation")) != (json_int_t) d->last.generation)
                return;
        set_string(&d->id, id);
        d->generation = d->last.generation;
        for (status_phase p = 0; p < _STATUS_PHASE_MAX; p++) {
                if (!streq(phase, status_phase_to_string(p)))
                        continue;
                if (p == STATUS_PENDING || p == STATUS_PROGRESSING || p == STATUS_INTERRUPTED) {
                        settle_unreported(d, annotations);
                        log_notice("The last target %s generation %llu: %s", id,
                                   (unsigned long long) d->generation, d->message);
                } else {
                        d->phase = p;
                        set_string(&d->message, json_string_value(json_object_get(j, "message")));
                }
        }
}
