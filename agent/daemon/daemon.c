/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/inotify.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "cplet-build.h"
#include "daemon.h"
#include "handled.h"
#include "kube-client.h"
#include "kubeconfig.h"
#include "log.h"
#include "macro.h"
#include "node-watch.h"
#include "operation.h"
#include "reporter.h"
#include "status.h"
#include "target.h"

#define TARGET_ANNOTATION "cplet.io/target"
#define STATUS_ANNOTATION "cplet.io/status"
#define KUBELET_KUBECONFIG "/etc/kubernetes/kubelet.conf"
/* How long a stopping daemon waits for its last status to reach the API server. */
#define STOP_FLUSH_USEC (3ULL * 1000000ULL)
#define HEALTH_UNKNOWN (-1)

typedef struct agent {
        const daemon_options *options;
        sd_event *event;
        op_env *env;
        kubeconfig *kubeconfig;
        kube_client *kube;
        node_watch *watch;
        reporter *reporter;
        char *node_name;

        /* The target annotation as last seen on the Node (NULL: none), and whether it changed
         * since it was last handled. */
        char *target_text;
        size_t target_size; /* the annotation may hold a NUL (the watch lets \u0000 through) */
        bool target_changed;
        char *refused_text; /* the last target refused: not evaluated again until it changes */
        size_t refused_size;
        bool node_seen;     /* the Node was read once */
        handled last;       /* the last target run (ROOT/var/lib/cplet/daemon.json) */

        /* What cplet.io/status says. */
        status_phase phase;
        char *id;
        uint64_t generation;
        char *message;
        char *plan_id;
        size_t step_index, step_total;
        /* A resumed rollout plans its remaining steps anew (numbered from 1): the plan steps its
         * journal already holds come first, so the status counts as the original plan did. */
        size_t resume_offset;
        char *step_component, *step_kind, *waiting_for;
        json_t *health; /* component name → true/false, as the last gate saw it */

        volatile bool interrupted; /* a signal: ends the waits of a rollout */
        bool stopping, reload, running, manifests_changed;
        uint64_t watchdog_usec;
        sd_event_source *watchdog;
        http_pem version_cert, version_key; /* the kubeconfig's client certificate, for /version */
} agent;

/* ---- status */

static void set_string(char **p, const char *s) {
        char *c = s ? strdup(s) : NULL;

        if (s && !c)
                return; /* out of memory: keep the old text rather than none */
        free(*p);
        *p = c;
}

/* Text that may hold NUL bytes. */
static void set_bytes(char **p, size_t *size, const char *s, size_t n) {
        char *c = NULL;

        if (s) {
                c = malloc(n + 1);
                if (!c)
                        return;
                memcpy(c, s, n);
                c[n] = 0;
        }
        free(*p);
        *p = c;
        *size = s ? n : 0;
}

static bool bytes_equal(const char *a, size_t na, const char *b, size_t nb) {
        if (!a || !b)
                return a == b;
        return na == nb && memcmp(a, b, na) == 0;
}

static bool streq_ptr(const char *a, const char *b) {
        return (!a && !b) || (a && b && streq(a, b));
}

static void clear_step(agent *d) {
        d->step_index = d->step_total = 0;
        set_string(&d->step_component, NULL);
        set_string(&d->step_kind, NULL);
        set_string(&d->waiting_for, NULL);
}

static void format_now(char buf[static 32]) {
        struct timespec ts;
        struct tm tm;

        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Each component's live revision, by name, from the store (0: unknown). */
static void live_revisions(agent *d, const node *n, unsigned *ret) {
        _cleanup_(op_history_result_done) op_history_result h = {};

        if (op_history(d->env, NULL, &h, NULL) < 0)
                return;
        for (size_t i = 0; i < n->n_components; i++)
                for (size_t k = 0; k < h.n_entries; k++)
                        if (streq(h.entries[k].component->plugin->name, n->components[i].plugin->name))
                                ret[i] = h.entries[k].live;
}

/* Builds cplet.io/status from the node as it is now and hands it to the reporter. */
static void publish_status(agent *d) {
        _cleanup_(op_status_result_done) op_status_result sr = {};
        _cleanup_free_ char *error = NULL, *message = NULL;
        _cleanup_free_ unsigned *revisions = NULL;
        _cleanup_free_ int *healthy = NULL;
        json_auto_t *j = NULL;
        node empty = {};
        const node *n = &empty;
        status_report report;
        char now[32];

        /* The node as it is: when it cannot be read, the status says why instead. */
        if (op_status(d->env, &sr, &error) >= 0)
                n = sr.node;
        else
                message = strdup_printf("%s%sthe node cannot be read: %s", d->message ?: "", d->message ? "; " : "",
                                        error ?: strerror(ENOMEM));
        revisions = calloc(n->n_components + 1, sizeof(unsigned));
        healthy = calloc(n->n_components + 1, sizeof(int));
        if (!revisions || !healthy)
                return;
        live_revisions(d, n, revisions);
        for (size_t i = 0; i < n->n_components; i++) {
                json_t *h = json_object_get(d->health, n->components[i].plugin->name);

                healthy[i] = json_is_boolean(h) ? json_is_true(h) : HEALTH_UNKNOWN;
        }

        report = (status_report){
                .id = d->id,
                .generation = d->generation,
                .phase = d->phase,
                .step = { .index = d->step_index, .total = d->step_total, .component = d->step_component,
                          .kind = d->step_kind, .waiting_for = d->waiting_for },
                .message = message ?: d->message,
                .agent_version = CPLET_VERSION,
                .node = n,
                .revisions = revisions,
                .healthy = healthy,
        };
        format_now(now);
        j = status_to_json(&report, now);
        if (!j) {
                log_error("Could not build the status: out of memory");
                return;
        }
        reporter_set_status(d->reporter, j);
        (void) sd_notifyf(false, "STATUS=%s%s%s", status_phase_to_string(d->phase), d->id ? " " : "", d->id ?: "");
}

static void set_phase(agent *d, status_phase phase, const char *message) {
        log_fields f = { .plan_id = d->plan_id, .phase = status_phase_to_string(phase) };

        d->phase = phase;
        set_string(&d->message, message);
        if (phase != STATUS_PROGRESSING)
                clear_step(d);
        if (message)
                log_full(phase == STATUS_FAILED || phase == STATUS_REFUSED || phase == STATUS_ROLLED_BACK ? LOG_WARNING
                                                                                                           : LOG_INFO,
                         &f, "%s: %s", status_phase_to_string(phase), message);
        publish_status(d);
}

/* ---- progress of a rollout */

static void set_health(agent *d, const char *name, bool healthy) {
        if (name)
                (void) json_object_set_new(d->health, name, json_boolean(healthy));
}

static void on_progress(const rollout_event *ev, void *userdata) {
        agent *d = userdata;
        log_fields f = { .plan_id = d->plan_id, .component = ev->component, .step = ev->step, .phase = "Progressing" };

        if (streq(ev->event, "begin")) {
                set_string(&d->plan_id, ev->detail);
                return;
        }
        if (streq(ev->event, "tick") || streq(ev->event, "written"))
                return; /* once a second, or between the write and the swap: not news */

        if (streq(ev->event, "step") || streq(ev->event, "waiting")) {
                bool same = d->waiting_for && ev->detail && streq(d->waiting_for, ev->detail) &&
                            d->step_index == ev->step;

                if (streq(ev->event, "step"))
                        log_full(LOG_INFO, &f, "Step %zu/%zu: %s %s", ev->step, ev->n_planned, ev->component, ev->kind);
                d->phase = STATUS_PROGRESSING;
                if (ev->n_planned > 0) {
                        d->step_index = d->resume_offset + ev->step;
                        d->step_total = d->resume_offset + ev->n_planned;
                } else {
                        /* The interrupted step, by its journal index. */
                        d->step_index = ev->step;
                        d->step_total = MAX(d->step_total, ev->step);
                }
                set_string(&d->step_component, ev->component);
                set_string(&d->step_kind, ev->kind);
                set_string(&d->waiting_for, streq(ev->event, "waiting") ? ev->detail : NULL);
                if (!same)
                        publish_status(d);
                return;
        }
        if (streq(ev->event, "done")) {
                set_health(d, ev->component, true);
                log_full(LOG_INFO, &f, "Step %zu: %s %s healthy at revision %u%s%s%s", ev->step, ev->component,
                         ev->kind, ev->revision, ev->detail ? " (" : "", ev->detail ?: "", ev->detail ? ")" : "");
                set_string(&d->waiting_for, NULL);
                publish_status(d);
                return;
        }
        if (streq(ev->event, "failed")) {
                _cleanup_free_ char *m = strdup_printf("step %zu (%s %s) failed: %s", ev->step, ev->component, ev->kind,
                                                       ev->detail ?: "no reason given");

                set_health(d, ev->component, false);
                log_full(LOG_WARNING, &f, "%s", m ?: "a step failed");
                reporter_event(d->reporter, "Warning", "StepFailed", m ?: "a step failed");
                set_string(&d->message, m);
                publish_status(d);
                return;
        }
        if (streq(ev->event, "restore") || streq(ev->event, "unwind")) {
                log_full(LOG_NOTICE, &f, "%s %s: back to revision %u%s%s", ev->event, ev->component, ev->revision,
                         ev->detail ? ": " : "", ev->detail ?: "");
                set_string(&d->step_kind, ev->event);
                set_string(&d->step_component, ev->component);
                publish_status(d);
        }
}

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
static int read_target(agent *d, const char *text, size_t size, target **ret, char **ret_error) {
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

static op_target op_target_of(const target *t) {
        return (op_target){
                .binary_version = t->binary_version,
                .emulated_version = t->emulated_version,
                .min_compat_version = t->min_compat_version,
                .image_repository = t->image_repository,
                .components = (const char *const *) t->components,
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
        conclude(d, r, &res, error, ro.unwind_on_failure);
}

static void handle_target(agent *d) {
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
static void resume_interrupted(agent *d, json_t *unfinished) {
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

/* ---- the Node */

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
static void adopt_previous_status(agent *d, json_t *annotations) {
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

static void on_node_changed(json_t *object, void *userdata) {
        agent *d = userdata;
        json_t *metadata = json_object_get(object, "metadata");
        json_t *annotations = json_object_get(metadata, "annotations");
        json_t *value = json_object_get(annotations, TARGET_ANNOTATION);
        const char *text = json_string_value(value);
        size_t size = json_string_length(value);
        bool first = !d->node_seen;

        (void) reporter_set_node_uid(d->reporter, json_string_value(json_object_get(metadata, "uid")));
        reporter_kick(d->reporter);
        if (first) {
                d->node_seen = true;
                if (!d->running)
                        adopt_previous_status(d, annotations);
                publish_status(d);
        }
        if (!bytes_equal(text, size, d->target_text, d->target_size)) {
                set_bytes(&d->target_text, &d->target_size, text, size);
                d->target_changed = true;
        }
}

static void on_node_trouble(long status, const char *error, void *userdata) {
        static long last_status = -1;

        /* Once per kind of trouble: an API server that is away for a minute is one line. */
        if (status == last_status)
                return;
        last_status = status;
        if (status == 403)
                log_error("The API server does not let this node's identity read its Node (403 Forbidden: %s)",
                          error ?: "no reason given");
        else if (status > 0)
                log_warning("Reading the Node failed (HTTP status %ld: %s); retrying with backoff", status,
                            error ?: "no reason given");
        else
                log_warning("The API server cannot be reached (%s); retrying with backoff",
                            error ?: "no reason given");
}

/* A status written every watch period (5 to 10 minutes, when the server ends the watch and it is
 * opened again): `updated` says the agent is alive, so that a controller can tell a quiet agent
 * from a dead one (cplet cluster --max-status-age), with no timer of the agent's own. */
static void on_watch_renewed(void *userdata) {
        agent *d = userdata;

        if (!d->running)
                d->manifests_changed = true; /* published from the main loop, like a change by hand */
}

/* ---- signals, watchdog, the manifest directory */

static int on_stop_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        agent *d = userdata;

        if (!d->stopping)
                log_notice("Stopping on %s%s", strsignal((int) si->ssi_signo),
                           d->running ? ": the rollout's wait ends, the journal keeps it resumable" : "");
        d->stopping = true;
        d->interrupted = true;
        (void) sd_notify(false, "STOPPING=1");
        return 0;
}

static int on_reload_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        agent *d = userdata;

        d->reload = true;
        /* MONOTONIC_USEC: what systemd (Type=notify-reload) matches the reload by. */
        (void) sd_notifyf(false, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long) now_usec());
        return 0;
}

static int on_watchdog(sd_event_source *s, uint64_t usec, void *userdata) {
        agent *d = userdata;

        (void) sd_notify(false, "WATCHDOG=1");
        (void) sd_event_source_set_time(s, usec + d->watchdog_usec / 2);
        return sd_event_source_set_enabled(s, SD_EVENT_ON);
}

static int on_manifests(sd_event_source *s, const struct inotify_event *ev, void *userdata) {
        agent *d = userdata;

        /* A hand edit or a command-line rollout: the status reports the node as it is. */
        d->manifests_changed = true;
        return 0;
}

static int add_sources(agent *d) {
        _cleanup_free_ char *manifests = strdup_printf("%s/etc/kubernetes/manifests", d->options->root);
        sigset_t mask;
        int r;

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        if (!manifests || sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return -ENOMEM;
        r = sd_event_add_signal(d->event, NULL, SIGTERM, on_stop_signal, d);
        if (r >= 0)
                r = sd_event_add_signal(d->event, NULL, SIGINT, on_stop_signal, d);
        if (r >= 0)
                r = sd_event_add_signal(d->event, NULL, SIGHUP, on_reload_signal, d);
        if (r < 0)
                return r;
        /* Only when systemd asks for it: the one timer an idle daemon has. */
        if (sd_watchdog_enabled(false, &d->watchdog_usec) > 0 && d->watchdog_usec > 0) {
                r = sd_event_add_time_relative(d->event, &d->watchdog, CLOCK_MONOTONIC, d->watchdog_usec / 2, 0,
                                               on_watchdog, d);
                if (r < 0)
                        return r;
        }
        r = sd_event_add_inotify(d->event, NULL, manifests,
                                 IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE | IN_ONLYDIR,
                                 on_manifests, d);
        if (r < 0)
                log_warning("Cannot watch %s for changes made by hand (%s): the status shows them at the next target",
                            manifests, strerror(-r));
        return 0;
}

/* ---- setup */

static void warn_to_log(const char *message, void *userdata) {
        log_warning("%s", message);
}

static bool valid_node_name(const char *s) {
        /* A DNS subdomain (RFC 1123), as the API server validates Node names; it goes into URLs. */
        size_t n = strlen(s);

        return n > 0 && n <= 253 && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789.-") == n && s[0] != '-' &&
               s[0] != '.' && s[n - 1] != '-' && s[n - 1] != '.';
}

static int pick_node_name(agent *d, char **ret_error) {
        _cleanup_free_ char *from_cert = NULL, *error = NULL;
        const char *name = d->options->node_name ?: d->env->config.node_name;
        const char *source = d->options->node_name ? "--node-name" : "nodeName in the configuration";
        char host[HOST_NAME_MAX + 1] = {};
        int r;

        if (!name) {
                r = kubeconfig_node_name(d->kubeconfig, &from_cert, &error);
                if (r >= 0) {
                        name = from_cert;
                        source = "the client certificate";
                } else if (r != -ENOENT)
                        return set_error(ret_error, r, "%s", error);
        }
        if (!name) {
                if (gethostname(host, sizeof(host) - 1) < 0)
                        return set_error(ret_error, -errno, "cannot read the host name: %m");
                name = host;
                source = "the host name";
        }
        if (!valid_node_name(name))
                return set_error(ret_error, -EINVAL, "node name \"%.64s\" (from %s) is not a valid Node name", name,
                                 source);
        d->node_name = strdup(name);
        if (!d->node_name)
                return -ENOMEM;
        log_info("Node %s (from %s)", d->node_name, source);
        return 0;
}

static int load_kubeconfig(agent *d, char **ret_error) {
        _cleanup_free_ char *fallback = NULL;
        const char *path = d->options->kubeconfig ?: d->env->config.kubeconfig;

        if (!path) {
                fallback = strdup_printf("%s%s", streq(d->options->root, "/") ? "" : d->options->root, KUBELET_KUBECONFIG);
                if (!fallback)
                        return -ENOMEM;
                path = fallback;
        }
        return kubeconfig_load(path, d->options->context, &d->kubeconfig, ret_error);
}

static int daemon_setup(agent *d, json_t **ret_journal, char **ret_error) {
        _cleanup_(op_status_result_done) op_status_result sr = {};
        _cleanup_(store_freep) store *s = NULL;
        _cleanup_free_ char *error = NULL;
        int r;

        r = op_env_new(d->options->root, d->options->config_path, d->options->plugin_dir, d->options->holder, &d->env,
                       ret_error);
        if (r < 0)
                return r;
        d->env->warn = warn_to_log;
        r = load_kubeconfig(d, ret_error);
        if (r < 0)
                return r;
        r = pick_node_name(d, ret_error);
        if (r < 0)
                return r;
        d->version_cert = (http_pem){ d->kubeconfig->client_cert.file, d->kubeconfig->client_cert.data,
                                      d->kubeconfig->client_cert.size };
        d->version_key = (http_pem){ d->kubeconfig->client_key.file, d->kubeconfig->client_key.data,
                                     d->kubeconfig->client_key.size };
        r = store_open(d->options->root, 0, false, &s, ret_error);
        if (r < 0)
                return r;
        r = handled_load(s, &d->last, &error);
        if (r < 0 && r != -ENOENT)
                return set_error(ret_error, r, "%s", error);
        /* The node and any journal must be readable before READY=1: a node that cannot be read
         * is for a person to fix, not for a restart loop to hide. */
        r = op_status(d->env, &sr, ret_error);
        if (r < 0)
                return r;
        if (sr.journal_error)
                log_error("The rollout journal cannot be read (%s): every target is refused until it is fixed",
                          sr.journal_error);
        d->health = json_object();
        if (!d->health)
                return -ENOMEM;
        r = kube_client_new(d->event, d->kubeconfig, d->options->insecure_skip_tls_verify, &d->kube, ret_error);
        if (r < 0)
                return r;
        r = reporter_new(d->event, d->kube, d->node_name, &d->reporter);
        if (r < 0)
                return r;
        r = add_sources(d);
        if (r < 0)
                return set_error(ret_error, r, "cannot set up the event loop: %s", strerror(-r));
        *ret_journal = json_incref(sr.interrupted);
        return 0;
}

/* SIGHUP: the configuration is read again and replaces the old one, unless it is invalid (then
 * the old one stays). The plugins stay loaded: code is not swapped under a running agent (a new
 * pluginDir takes a restart). */
static void reload_config(agent *d) {
        _cleanup_(config_done) config fresh = {};
        _cleanup_free_ char *error = NULL;
        int r;

        d->reload = false;
        r = config_load(d->options->root, d->options->config_path, &fresh, &error);
        if (r < 0)
                log_error("Reloading the configuration failed, keeping the old one: %s", error ?: strerror(-r));
        else {
                if (!streq_ptr(fresh.plugin_dir, d->env->config.plugin_dir))
                        log_warning("pluginDir changed: the plugins are loaded again only at the next start");
                config_done(&d->env->config);
                d->env->config = fresh;
                fresh = (config){};
                log_info("Configuration reloaded");
                /* A target refused by the old allow-list may pass now. */
                set_bytes(&d->refused_text, &d->refused_size, NULL, 0);
                d->target_changed = true;
        }
        (void) sd_notify(false, "READY=1");
}

/* Lets the last status reach the API server, for a bounded time. */
static void flush_reports(agent *d) {
        uint64_t deadline = now_usec() + STOP_FLUSH_USEC;

        while (!reporter_idle(d->reporter) && now_usec() < deadline)
                if (sd_event_run(d->event, deadline - now_usec()) < 0)
                        break;
}

static void daemon_done(agent *d) {
        node_watch_free(d->watch);
        reporter_free(d->reporter);
        kube_client_free(d->kube);
        kubeconfig_free(d->kubeconfig);
        op_env_free(d->env);
        handled_done(&d->last);
        json_decref(d->health);
        sd_event_source_disable_unref(d->watchdog);
        sd_event_unref(d->event);
        free(d->node_name);
        free(d->target_text);
        free(d->refused_text);
        free(d->id);
        free(d->message);
        free(d->plan_id);
        clear_step(d);
}

int daemon_run(const daemon_options *o, char **ret_error) {
        _cleanup_(daemon_done) agent d = { .options = o, .phase = STATUS_IDLE };
        json_auto_t *unfinished = NULL;
        int r;

        log_open();
        r = sd_event_default(&d.event);
        if (r < 0)
                return set_error(ret_error, r, "cannot create the event loop: %s", strerror(-r));
        r = daemon_setup(&d, &unfinished, ret_error);
        if (r < 0)
                return r;

        (void) sd_notify(false, "READY=1\nSTATUS=Idle");
        log_info("cplet %s watching Node %s on %s", CPLET_VERSION, d.node_name, d.kubeconfig->server);
        r = node_watch_new(d.event, d.kube, d.node_name, on_node_changed, on_node_trouble, on_watch_renewed, &d,
                           &d.watch);
        if (r < 0)
                return set_error(ret_error, r, "cannot watch the Node: %s", strerror(-r));
        if (unfinished)
                resume_interrupted(&d, unfinished);

        /* A rollout runs from here, not from an event handler: its gates run this same loop
         * (sd_event_run is not re-entrant), so the watch, the reports, the signals and the
         * watchdog are served during every step. */
        while (!d.stopping) {
                if (d.reload)
                        reload_config(&d);
                else if (d.target_changed)
                        handle_target(&d);
                else if (d.manifests_changed) {
                        d.manifests_changed = false;
                        publish_status(&d);
                } else {
                        r = sd_event_run(d.event, UINT64_MAX);
                        if (r < 0)
                                return set_error(ret_error, r, "the event loop failed: %s", strerror(-r));
                }
        }
        flush_reports(&d);
        log_info("Stopped");
        return 0;
}
