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

#define HEALTH_UNKNOWN (-1)

/* ---- status */

void set_string(char **p, const char *s) {
        char *c = s ? strdup(s) : NULL;

        if (s && !c)
                return; /* out of memory: keep the old text rather than none */
        free(*p);
        *p = c;
}

/* Text that may hold NUL bytes. */
void set_bytes(char **p, size_t *size, const char *s, size_t n) {
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

bool bytes_equal(const char *a, size_t na, const char *b, size_t nb) {
        if (!a || !b)
                return a == b;
        return na == nb && memcmp(a, b, na) == 0;
}

bool streq_ptr(const char *a, const char *b) {
        return (!a && !b) || (a && b && streq(a, b));
}

void clear_step(agent *d) {
        d->step_index = d->step_total = 0;
        set_string(&d->step_component, NULL);
        set_string(&d->step_kind, NULL);
        set_string(&d->waiting_for, NULL);
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
void publish_status(agent *d) {
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
        now_rfc3339(now);
        j = status_to_json(&report, now);
        if (!j) {
                log_error("Could not build the status: out of memory");
                return;
        }
        reporter_set_status(d->reporter, j);
        (void) sd_notifyf(false, "STATUS=%s%s%s", status_phase_to_string(d->phase), d->id ? " " : "", d->id ?: "");
}

void set_phase(agent *d, status_phase phase, const char *message) {
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

void on_progress(const rollout_event *ev, void *userdata) {
        agent *d = userdata;
        log_fields f = { .plan_id = d->plan_id, .component = ev->component, .step = ev->step, .phase = "Progressing" };

        if (streq(ev->event, "begin")) {
                set_string(&d->plan_id, ev->detail);
                return;
        }
        if (streq(ev->event, "tick") || streq(ev->event, "written"))
                return; /* once a second, or between the write and the swap: not news */

        /* The images pulled before the first write (prepull.h): still Pending, the message says
         * which image the node waits for. */
        if (streq(ev->event, "pull") || streq(ev->event, "pulled")) {
                _cleanup_free_ char *m = strdup_printf("%s %s (%zu/%zu)%s", streq(ev->event, "pull") ? "pulling" : "pulled",
                                                       ev->detail ?: "?", ev->step, ev->n_planned,
                                                       streq(ev->event, "pull") ? " before the first step" : "");

                log_full(LOG_INFO, &f, "%s", m ?: ev->event);
                if (m && streq(ev->event, "pull")) {
                        set_string(&d->message, m);
                        publish_status(d);
                }
                return;
        }

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
