/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster-mirror.h"
#include "controller.h"
#include "macro.h"

#define NODES "/api/v1/nodes"
#define PODS "/api/v1/namespaces/kube-system/pods"
#define LEASES "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases"
#define LEASE_DURATION_DEFAULT_S 15

void controller_failure_done(controller_failure *f) {
        free(f->node);
        free(f->why);
        *f = (controller_failure){};
}

json_t *controller_target_json(const cluster_step *s, uint64_t generation, const controller_options *o) {
        char b[KVERSION_STRING_MAX], e[KMINOR_STRING_MAX], m[KMINOR_STRING_MAX];
        json_auto_t *t = NULL;

        kversion_format(&s->binary, b);
        kminor_format(s->emulated, e);
        kminor_format(s->min_compat, m);
        t = json_pack("{s:s, s:I, s:s, s:s}", "id", s->id, "generation", (json_int_t) generation, "binaryVersion", b,
                      "emulatedVersion", e);
        if (!t)
                return NULL;
        if (s->min_compat_explicit && json_object_set_new(t, "minCompatibilityVersion", json_string(m)) < 0)
                return NULL;
        if (json_object_set_new(t, "components", json_pack("[s]", cluster_component_names[s->component])) < 0)
                return NULL;
        if (s->drop_removed) {
                json_t *list = json_array();

                if (json_object_set_new(t, "dropRemoved", list) < 0)
                        return NULL;
                for (char **d = s->drop_removed; *d; d++)
                        if (json_array_append_new(list, json_string(*d)) < 0)
                                return NULL;
        }
        if (o->on_failure && json_object_set_new(t, "onFailure", json_string(o->on_failure)) < 0)
                return NULL;
        if (o->stable_for && json_object_set_new(t, "stableFor", json_string(o->stable_for)) < 0)
                return NULL;
        if (o->step_timeout && json_object_set_new(t, "stepTimeout", json_string(o->step_timeout)) < 0)
                return NULL;
        return TAKE_PTR(t);
}

/* One step's run: what the watches saw so far. */
typedef struct run {
        const cluster_step *step;
        const char *node;
        uint64_t generation;
        bool done, ok;
        char *why;           /* failure, or what the last look saw */
        unsigned revision;   /* the component's revision in the Succeeded status */
        bool lease_seen;
        uint64_t lease_base; /* renewTime when the wait began */
        unsigned lease_duration;
} run;

static void run_done(run *r) {
        free(r->why);
}

static void set_why(run *r, char *why) {
        free(r->why);
        r->why = why;
}

static const char *status_str(json_t *st, const char *k) {
        return json_string_value(json_object_get(st, k));
}

static unsigned status_revision(json_t *st, int component) {
        json_t *list = json_object_get(st, "components"), *o;
        size_t i;

        json_array_foreach(list, i, o) {
                const char *n = json_string_value(json_object_get(o, "name"));

                if (n && streq(n, cluster_component_names[component]))
                        return (unsigned) json_integer_value(json_object_get(o, "revision"));
        }
        return 0;
}

static void on_node(json_t *node, void *userdata) {
        run *r = userdata;
        json_auto_t *st = node ? node_annotation_json(node, "cplet.io/status") : NULL;
        const char *id = status_str(st, "id"), *phase = status_str(st, "phase"), *msg = status_str(st, "message");

        if (r->done)
                return;
        if (!node) {
                set_why(r, strdup("the Node is gone"));
                return;
        }
        if (!id || !streq(id, r->step->id) ||
            (uint64_t) json_integer_value(json_object_get(st, "generation")) != r->generation || !phase)
                return; /* not (yet) about this target */
        if (streq(phase, "Succeeded")) {
                r->revision = status_revision(st, r->step->component);
                r->done = r->ok = true;
        } else if (streq(phase, "Failed") || streq(phase, "RolledBack") || streq(phase, "Refused")) {
                set_why(r, strdup_printf("%s: %s", phase, msg ?: "(no message)"));
                r->done = true;
        } else
                set_why(r, strdup_printf("%s%s%s", phase, msg ? ": " : "", msg ?: ""));
}

static void on_pod(json_t *pod, void *userdata) {
        run *r = userdata;
        _cleanup_free_ char *why = NULL;
        int k;

        if (r->done)
                return;
        k = mirror_pod_shows_step(pod, r->step, r->revision, &why);
        if (k > 0)
                r->done = r->ok = true;
        else
                set_why(r, TAKE_PTR(why));
}

static void on_lease(json_t *lease, void *userdata) {
        run *r = userdata;
        json_t *spec = json_object_get(lease, "spec");
        const char *holder = json_string_value(json_object_get(spec, "holderIdentity"));
        json_int_t d = json_integer_value(json_object_get(spec, "leaseDurationSeconds"));
        uint64_t renewed = 0;

        if (r->done)
                return;
        (void) parse_rfc3339_usec(json_string_value(json_object_get(spec, "renewTime")), &renewed);
        if (!r->lease_seen) {
                r->lease_seen = true;
                r->lease_base = renewed;
                r->lease_duration = d > 0 && d < 3600 ? (unsigned) d : LEASE_DURATION_DEFAULT_S;
                set_why(r, strdup(lease ? "its Lease was not renewed" : "there is no Lease"));
                return;
        }
        if (holder && *holder && renewed > r->lease_base)
                r->done = r->ok = true;
        else
                set_why(r, strdup(holder && *holder ? "its Lease was not renewed" : "its Lease has no holder"));
}

static int fail(controller_failure *f, size_t index, const char *node, int component, char *why) {
        *f = (controller_failure){ .index = index, .node = strdup(node), .component = component, .why = why };
        return -EIO;
}

/* The generation to write, or 0 to wait for the one already there (a controller that stopped
 * while the agent ran it). */
static uint64_t pick_generation(json_t *node, const char *id, bool *ret_attach) {
        json_auto_t *t = node_annotation_json(node, "cplet.io/target");
        json_auto_t *st = node_annotation_json(node, "cplet.io/status");
        const char *tid = json_string_value(json_object_get(t, "id"));
        uint64_t tgen = (uint64_t) json_integer_value(json_object_get(t, "generation"));
        const char *sid = status_str(st, "id"), *phase = status_str(st, "phase");
        uint64_t sgen = (uint64_t) json_integer_value(json_object_get(st, "generation"));

        *ret_attach = false;
        if (!tid || !streq(tid, id) || tgen == 0)
                return sid && streq(sid, id) ? sgen + 1 : 1;
        /* Our target is there. Not handled yet, or running: wait for it. */
        if (!sid || !streq(sid, id) || sgen < tgen ||
            (sgen == tgen && phase &&
             (streq(phase, "Pending") || streq(phase, "Progressing") || streq(phase, "Interrupted")))) {
                *ret_attach = true;
                return tgen;
        }
        return MAX(tgen, sgen) + 1;
}

static int write_target(cluster_api *a, const char *node, json_t *target, char **ret_error) {
        _cleanup_free_ char *path = strdup_printf(NODES "/%s", node), *text = NULL;
        _cleanup_(api_result_done) api_result res = {};
        json_auto_t *patch = NULL;
        int r;

        text = json_dumps(target, JSON_COMPACT);
        if (!path || !text)
                return -ENOMEM;
        patch = json_pack("{s:{s:{s:s}}}", "metadata", "annotations", "cplet.io/target", text);
        if (!patch)
                return -ENOMEM;
        r = api_call(a, "PATCH", path, patch, "application/merge-patch+json", &res);
        if (r < 0)
                return set_error(ret_error, r, "%s", strerror(-r));
        if (res.status != 200)
                return set_error(ret_error, -EIO, "writing the target: %s", res.error ?: "no answer");
        return 0;
}

/* An Event on the Node (namespace default, as the agent's), so that `kubectl describe node`
 * and `kubectl get events` show the controller's steps next to the agent's. Best effort: a
 * refused or lost Event never stops an upgrade. */
static void post_event(cluster_api *a, json_t *node, const char *type, const char *reason, const char *message) {
        const char *name = json_string_value(json_object_get(json_object_get(node, "metadata"), "name"));
        const char *uid = json_string_value(json_object_get(json_object_get(node, "metadata"), "uid"));
        _cleanup_(api_result_done) api_result res = {};
        _cleanup_free_ char *ev_name = NULL;
        json_auto_t *ev = NULL;
        char stamp[32];
        struct tm tm;
        time_t t;

        if (!name)
                return;
        t = time(NULL);
        gmtime_r(&t, &tm);
        strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
        ev_name = strdup_printf("%s.cplet-cluster.%llx", name, (unsigned long long) now_usec());
        if (!ev_name)
                return;
        ev = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:s, s:s, s:s}, s:s, s:s, s:s, s:{s:s}, s:s, s:s, s:i, "
                       "s:s}",
                       "apiVersion", "v1", "kind", "Event", "metadata", "name", ev_name, "namespace", "default",
                       "involvedObject", "apiVersion", "v1", "kind", "Node", "name", name, "uid", uid ?: name,
                       "reason", reason, "message", message, "type", type, "source", "component", "cplet-cluster",
                       "firstTimestamp", stamp, "lastTimestamp", stamp, "count", 1, "reportingComponent",
                       "cplet-cluster");
        if (ev)
                (void) api_call(a, "POST", "/api/v1/namespaces/default/events", ev, NULL, &res);
}

typedef struct stepper {
        cluster_api *api;
        cluster_lease *lease;
        const controller_options *o;
        size_t index, total;
        uint64_t deadline;
} stepper;

static void progress(stepper *s, const run *r, const char *what, const char *detail) {
        if (s->o->progress)
                s->o->progress(s->index, s->total, r->step, r->node, what, detail, s->o->userdata);
}

/* Runs the loop until the run is done, the deadline passes or the Lease is lost. */
static int wait_run(stepper *s, run *r, uint64_t deadline, const char *what, controller_failure *f) {
        const char *lost;
        int k;

        r->done = r->ok = false;
        while (!r->done) {
                uint64_t d = MIN(deadline, now_usec() + 1000000ULL);

                if (cluster_lease_lost(s->lease, &lost))
                        return fail(f, s->index, r->node, r->step->component, strdup(lost));
                k = api_run_until(s->api, &r->done, d);
                if (k == -EINTR)
                        return fail(f, s->index, r->node, r->step->component,
                                    strdup_printf("interrupted %s (the node's agent carries on with its target; "
                                                  "the same command waits for it again)",
                                                  what));
                if (k == -ETIME && now_usec() < deadline)
                        continue; /* a look at the Lease every second */
                if (k == -ETIME)
                        return fail(f, s->index, r->node, r->step->component,
                                    strdup_printf("timed out %s: %s", what, r->why ?: "nothing seen"));
                if (k < 0)
                        return k;
        }
        if (!r->ok)
                return fail(f, s->index, r->node, r->step->component, strdup(r->why ?: "failed"));
        return 0;
}

static int wait_status(stepper *s, run *r, controller_failure *f) {
        _cleanup_(object_watch_freep) object_watch *w = NULL;
        int k;

        k = object_watch_new(s->api, NODES, r->node, on_node, r, &w);
        if (k < 0)
                return k;
        return wait_run(s, r, s->deadline, "waiting for the agent", f);
}

static int verify_mirror(stepper *s, run *r, controller_failure *f) {
        _cleanup_(object_watch_freep) object_watch *w = NULL;
        _cleanup_free_ char *name = mirror_pod_name(r->step->component, r->node);
        int k;

        if (!name)
                return -ENOMEM;
        set_why(r, NULL);
        k = object_watch_new(s->api, PODS, name, on_pod, r, &w);
        if (k < 0)
                return k;
        k = wait_run(s, r, s->deadline, "waiting for the mirror pod", f);
        if (k == -EIO && f->why) {
                char *why = strdup_printf("the agent reported Succeeded, but mirror pod kube-system/%s: %s", name,
                                          f->why);

                free(f->why);
                f->why = why;
        }
        return k;
}

static int verify_leader(stepper *s, run *r, controller_failure *f) {
        _cleanup_(object_watch_freep) object_watch *w = NULL;
        const char *comp = cluster_component_names[r->step->component];
        uint64_t start = now_usec();
        int k;

        set_why(r, NULL);
        r->lease_seen = r->done = r->ok = false;
        k = object_watch_new(s->api, LEASES, comp, on_lease, r, &w);
        if (k < 0)
                return k;
        /* The first read gives the base and the duration. */
        k = api_run_until(s->api, &r->lease_seen, s->deadline);
        if (k == -ETIME)
                return fail(f, s->index, r->node, r->step->component,
                            strdup_printf("the Lease kube-system/%s could not be read", comp));
        if (k < 0)
                return k;
        k = wait_run(s, r, MIN(s->deadline, start + (uint64_t) r->lease_duration * 1000000ULL), "for a leader", f);
        if (k == -EIO && f->why) {
                char *why = strdup_printf("no leader: the Lease kube-system/%s was not renewed within its %us (%s)",
                                          comp, r->lease_duration, f->why);

                free(f->why);
                f->why = why;
        }
        return k;
}

/* The agent's word, then the mirror pod, then the leader. */
static int run_checks(stepper *s, run *r, controller_failure *f) {
        int k;

        progress(s, r, "waiting", NULL);
        k = wait_status(s, r, f);
        if (k < 0)
                return k;
        progress(s, r, "verifying", NULL);
        k = verify_mirror(s, r, f);
        if (k < 0)
                return k;
        if (r->step->component != CLUSTER_APISERVER) {
                progress(s, r, "leader", NULL);
                k = verify_leader(s, r, f);
                if (k < 0)
                        return k;
        }
        progress(s, r, "done", NULL);
        return 0;
}

static int run_step(stepper *s, const cluster_step *step, const char *node, controller_failure *f) {
        _cleanup_free_ char *path = strdup_printf(NODES "/%s", node), *error = NULL, *text = NULL, *event = NULL;
        _cleanup_(api_result_done) api_result res = {};
        _cleanup_(run_done) run r = { .step = step, .node = node };
        json_auto_t *t = NULL;
        const char *lost;
        bool attach;
        int k;

        if (!path)
                return -ENOMEM;
        /* Never a write without the Lease: another controller may have taken it over. */
        if (cluster_lease_lost(s->lease, &lost))
                return fail(f, s->index, node, step->component, strdup(lost));
        k = api_call(s->api, "GET", path, NULL, NULL, &res);
        if (k < 0)
                return k;
        if (res.status != 200)
                return fail(f, s->index, node, step->component,
                            strdup_printf("reading the Node: %s", res.error ?: "no answer"));
        r.generation = pick_generation(res.body, step->id, &attach);
        t = controller_target_json(step, r.generation, s->o);
        text = t ? json_dumps(t, JSON_COMPACT) : NULL;
        if (!text)
                return -ENOMEM;
        if (attach)
                progress(s, &r, "attached", text);
        else {
                progress(s, &r, "writing", text);
                k = write_target(s->api, node, t, &error);
                if (k < 0)
                        return fail(f, s->index, node, step->component, TAKE_PTR(error));
        }
        event = strdup_printf("step %zu/%zu: %s %s, target %s generation %llu", s->index, s->total,
                              cluster_component_names[step->component], cluster_phase_to_string(step->phase),
                              step->id, (unsigned long long) r.generation);
        if (event)
                post_event(s->api, res.body, "Normal", "ClusterStep", event);
        k = run_checks(s, &r, f);
        if (k == -EIO) {
                _cleanup_free_ char *m = strdup_printf("step %zu/%zu: %s failed: %s", s->index, s->total,
                                                       cluster_component_names[step->component], f->why);

                if (m)
                        post_event(s->api, res.body, "Warning", "ClusterStepFailed", m);
        }
        return k;
}

int controller_run(cluster_api *a, cluster_lease *lease, const cluster_state *st, const cluster_plan *p,
                   const controller_options *o, controller_failure *ret_failure) {
        stepper s = { .api = a, .lease = lease, .o = o, .total = p->n_steps };
        int k;

        *ret_failure = (controller_failure){};
        for (size_t i = 0; i < p->n_steps; i++) {
                const cluster_step *step = &p->steps[i];

                s.index = i + 1;
                s.deadline = now_usec() + o->node_timeout_usec;
                k = run_step(&s, step, st->nodes[step->node].name, ret_failure);
                if (k < 0)
                        return k;
        }
        return 0;
}
