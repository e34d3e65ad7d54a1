/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "macro.h"
#include "node-watch.h"
#include "reporter.h"

#define STATUS_ANNOTATION "cplet.io/status"
#define REQUEST_TIMEOUT_MS 15000
#define BACKOFF_BASE_USEC (500ULL * 1000ULL)
/* Short: an API server restarting in its own step is back within seconds, and the status
 * should follow it promptly (a few requests while it is away cost nothing). */
#define BACKOFF_MAX_USEC (8ULL * 1000000ULL)
/* A 403 does not go away by retrying: the identity or the policy must change first. */
#define FORBIDDEN_RETRY_USEC (5ULL * 60ULL * 1000000ULL)
#define EVENTS_QUEUED_MAX 16
#define EVENT_MESSAGE_MAX 1024

struct reporter {
        sd_event *event;
        kube_client *kube;
        char *node_name, *node_uid;

        json_t *status;          /* waiting to be sent; NULL: nothing new */
        json_t *status_sent;     /* in flight */
        json_t *events[EVENTS_QUEUED_MAX]; /* waiting, oldest first */
        size_t n_events;
        json_t *event_sent;      /* in flight */

        unsigned attempt;
        bool forbidden_logged;
        sd_event_source *retry; /* armed only while backing off */
};

static void pump(reporter *r);

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        reporter *r = userdata;

        r->retry = sd_event_source_disable_unref(r->retry);
        pump(r);
        return 0;
}

static void back_off(reporter *r, const kube_response *resp, const char *what) {
        uint64_t delay;

        if (resp->status == 403) {
                if (!r->forbidden_logged)
                        log_error("The API server does not let this node's identity %s (403 Forbidden: %s); "
                                  "retrying every %llu minutes, not sooner",
                                  what, resp->error ?: "no reason given",
                                  (unsigned long long) (FORBIDDEN_RETRY_USEC / 60000000ULL));
                r->forbidden_logged = true;
                delay = FORBIDDEN_RETRY_USEC;
        } else {
                if (r->attempt == 0) {
                        if (resp->status > 0)
                                log_warning("Could not %s (HTTP status %ld: %s); keeping the latest and retrying", what,
                                            resp->status, resp->error ?: "no reason given");
                        else
                                log_warning("Could not %s (%s); keeping the latest and retrying", what,
                                            resp->error ?: "no reason given");
                }
                delay = resp->retry_after_usec ?: backoff_usec(r->attempt, BACKOFF_BASE_USEC, BACKOFF_MAX_USEC);
                if (r->attempt < 32)
                        r->attempt++;
        }
        r->retry = sd_event_source_disable_unref(r->retry);
        if (sd_event_add_time_relative(r->event, &r->retry, CLOCK_MONOTONIC, delay, 0, on_retry, r) >= 0)
                (void) sd_event_source_set_description(r->retry, "reporter-retry");
}

static void succeeded(reporter *r) {
        if (r->attempt > 0 || r->forbidden_logged)
                log_info("The API server takes this node's reports again");
        r->attempt = 0;
        r->forbidden_logged = false;
}

static void on_status_patched(const kube_response *resp, void *userdata) {
        reporter *r = userdata;
        json_t *sent = TAKE_PTR(r->status_sent);

        if (resp->status >= 200 && resp->status < 300) {
                json_decref(sent);
                succeeded(r);
                pump(r);
                return;
        }
        /* Sent again, unless a newer status arrived meanwhile. */
        if (!r->status)
                r->status = sent;
        else
                json_decref(sent);
        back_off(r, resp, "patch the cplet.io/status annotation of its own Node");
}

static void on_event_created(const kube_response *resp, void *userdata) {
        reporter *r = userdata;
        json_t *sent = TAKE_PTR(r->event_sent);

        if ((resp->status >= 200 && resp->status < 300) || resp->status == 409 || resp->status == 422) {
                /* 409: it was created before the answer was lost; 422: the server will never take
                 * it. Either way it is done with. */
                if (resp->status == 422)
                        log_warning("The API server refused an Event: %s", resp->error ?: "invalid");
                json_decref(sent);
                succeeded(r);
                pump(r);
                return;
        }
        if (r->n_events < EVENTS_QUEUED_MAX) {
                memmove(r->events + 1, r->events, r->n_events * sizeof(json_t *));
                r->events[0] = sent;
                r->n_events++;
        } else
                json_decref(sent);
        back_off(r, resp, "create an Event");
}

static void send_status(reporter *r) {
        _cleanup_free_ char *path = NULL, *value = NULL;
        json_auto_t *patch = NULL;
        int k;

        value = json_dumps(r->status, JSON_COMPACT | JSON_PRESERVE_ORDER);
        path = strdup_printf("/api/v1/nodes/%s", r->node_name);
        if (value && path)
                patch = json_pack("{s:{s:{s:s}}}", "metadata", "annotations", STATUS_ANNOTATION, value);
        k = patch ? kube_request(r->kube, "PATCH", path, patch, "application/merge-patch+json", REQUEST_TIMEOUT_MS,
                                 on_status_patched, r)
                  : -ENOMEM;
        if (k < 0) {
                log_error("Could not send the status: %s", strerror(-k));
                return; /* kept: sent with the next one */
        }
        r->status_sent = TAKE_PTR(r->status);
}

static void send_event(reporter *r) {
        int k = kube_request(r->kube, "POST", "/api/v1/namespaces/default/events", r->events[0], NULL,
                             REQUEST_TIMEOUT_MS, on_event_created, r);

        if (k < 0) {
                log_error("Could not send an Event: %s", strerror(-k));
                return;
        }
        r->event_sent = r->events[0];
        r->n_events--;
        memmove(r->events, r->events + 1, r->n_events * sizeof(json_t *));
}

/* One request of each kind at a time; nothing while backing off. */
static void pump(reporter *r) {
        if (r->retry)
                return;
        if (r->status && !r->status_sent)
                send_status(r);
        if (r->n_events > 0 && !r->event_sent)
                send_event(r);
}

int reporter_new(sd_event *e, kube_client *k, const char *node_name, reporter **ret) {
        reporter *r = calloc(1, sizeof(reporter));

        if (!r)
                return -ENOMEM;
        r->event = sd_event_ref(e);
        r->kube = k;
        r->node_name = strdup(node_name);
        if (!r->node_name) {
                reporter_free(r);
                return -ENOMEM;
        }
        *ret = r;
        return 0;
}

reporter *reporter_free(reporter *r) {
        if (!r)
                return NULL;
        (void) kube_client_cancel(r->kube, r);
        sd_event_source_disable_unref(r->retry);
        json_decref(r->status);
        json_decref(r->status_sent);
        json_decref(r->event_sent);
        for (size_t i = 0; i < r->n_events; i++)
                json_decref(r->events[i]);
        sd_event_unref(r->event);
        free(r->node_name);
        free(r->node_uid);
        free(r);
        return NULL;
}

int reporter_set_node_uid(reporter *r, const char *uid) {
        char *u;

        if (!uid || (r->node_uid && streq(r->node_uid, uid)))
                return 0;
        u = strdup(uid);
        if (!u)
                return -ENOMEM;
        free(r->node_uid);
        r->node_uid = u;
        return 0;
}

void reporter_set_status(reporter *r, json_t *status) {
        json_decref(r->status);
        r->status = json_incref(status);
        pump(r);
}

/* The API server refuses a string that is not UTF-8: cut on a character boundary. */
static char *utf8_cut(const char *s, size_t max) {
        size_t n = strlen(s);

        if (n > max) {
                n = max;
                while (n > 0 && ((unsigned char) s[n] & 0xC0) == 0x80)
                        n--;
        }
        return strndup(s, n);
}

void reporter_event(reporter *r, const char *type, const char *reason, const char *message) {
        _cleanup_free_ char *name = NULL, *cut = NULL;
        uint64_t suffix = random_u64();
        char now[32];
        json_t *ev;

        /* The kubelet's own form: NAME.HEX, unique per event. */
        name = strdup_printf("%s.%016llx", r->node_name, (unsigned long long) suffix);
        cut = utf8_cut(message ?: "", EVENT_MESSAGE_MAX);
        now_rfc3339(now);
        if (!name || !cut)
                return;
        ev = json_pack("{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:s, s:s, s:s}, s:s, s:s, s:s, s:{s:s, s:s}, s:s, s:s, "
                       "s:i, s:s, s:s}",
                       "apiVersion", "v1", "kind", "Event", "metadata", "name", name, "namespace", "default",
                       "involvedObject", "apiVersion", "v1", "kind", "Node", "name", r->node_name, "uid",
                       r->node_uid ?: r->node_name, "reason", reason, "message", cut, "type", type, "source",
                       "component", "cplet", "host", r->node_name, "firstTimestamp", now, "lastTimestamp", now,
                       "count", 1, "reportingComponent", "cplet", "reportingInstance", r->node_name);
        if (!ev)
                return;
        if (r->n_events == EVENTS_QUEUED_MAX) {
                json_decref(r->events[0]);
                memmove(r->events, r->events + 1, (EVENTS_QUEUED_MAX - 1) * sizeof(json_t *));
                r->n_events--;
        }
        r->events[r->n_events++] = ev;
        pump(r);
}

bool reporter_idle(const reporter *r) {
        return !r->status && !r->status_sent && r->n_events == 0 && !r->event_sent;
}

void reporter_kick(reporter *r) {
        if (!r->retry || r->forbidden_logged)
                return;
        r->retry = sd_event_source_disable_unref(r->retry);
        pump(r);
}
