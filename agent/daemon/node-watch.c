/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "node-watch.h"

#define REQUEST_TIMEOUT_MS 30000
#define BACKOFF_BASE_USEC (500ULL * 1000ULL)
#define BACKOFF_MAX_USEC (30ULL * 1000000ULL)
/* A watch that stayed open this long was healthy: the next failure starts the backoff again. */
#define HEALTHY_USEC (60ULL * 1000000ULL)
/* The server ends each watch after timeoutSeconds; client-go picks it in [5 min, 10 min) so that
 * many clients do not reconnect at once. */
#define WATCH_TIMEOUT_MIN_S 300
#define WATCH_TIMEOUT_SPREAD_S 300

struct node_watch {
        sd_event *event;
        kube_client *kube;
        char *name;
        char *resource_version;
        node_changed_fn changed;
        node_trouble_fn trouble;
        node_renewed_fn renewed;
        void *userdata;

        bool listing, watching, connected;
        unsigned attempt;       /* failures since the last healthy period */
        uint64_t watch_started; /* CLOCK_MONOTONIC */
        sd_event_source *retry; /* armed only while backing off */
};

uint64_t backoff_usec(unsigned attempt, uint64_t base_usec, uint64_t max_usec) {
        uint64_t d = base_usec;

        for (unsigned i = 0; i < attempt && d < max_usec; i++)
                d *= 2;
        d = MIN(d, max_usec);
        /* ±25 %: agents restarted together must not come back in step. */
        return d - d / 4 + random_u64() % (d / 2 + 1);
}

static void start_list(node_watch *w);
static void start_watch(node_watch *w);

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        node_watch *w = userdata;

        w->retry = sd_event_source_disable_unref(w->retry);
        if (w->resource_version)
                start_watch(w);
        else
                start_list(w);
        return 0;
}

static void schedule_retry(node_watch *w, long status, const char *error) {
        uint64_t delay;

        w->connected = status > 0 && status < 500 && status != 429;
        if (w->trouble)
                w->trouble(status, error, w->userdata);
        delay = backoff_usec(w->attempt, BACKOFF_BASE_USEC, BACKOFF_MAX_USEC);
        if (w->attempt < 32)
                w->attempt++;
        if (sd_event_add_time_relative(w->event, &w->retry, CLOCK_MONOTONIC, delay, 0, on_retry, w) < 0)
                w->retry = NULL; /* out of memory: the next node change cannot come; nothing else to do */
        else
                (void) sd_event_source_set_description(w->retry, "node-watch-retry");
}

static int remember_version(node_watch *w, json_t *object) {
        const char *rv = json_string_value(json_object_get(json_object_get(object, "metadata"), "resourceVersion"));

        /* Opaque to clients, but it goes into a URL: anything but a plain token is refused. */
        if (!rv || !*rv || strlen(rv) > 64 || strspn(rv, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ._-") != strlen(rv))
                return -EBADMSG;
        free(w->resource_version);
        w->resource_version = strdup(rv);
        return w->resource_version ? 0 : -ENOMEM;
}

static bool is_our_node(const node_watch *w, json_t *object) {
        const char *name = json_string_value(json_object_get(json_object_get(object, "metadata"), "name"));

        return json_is_object(object) && name && streq(name, w->name);
}

static void on_list(const kube_response *r, void *userdata) {
        node_watch *w = userdata;
        json_t *items = json_object_get(r->body, "items");
        json_t *node = json_array_get(items, 0);

        w->listing = false;
        if (r->status != 200 || json_array_size(items) != 1 || !is_our_node(w, node) ||
            remember_version(w, r->body) < 0) {
                schedule_retry(w, r->status == 200 ? 0 : r->status,
                               r->status != 200            ? r->error
                               : json_array_size(items) == 0 ? "no Node of this name"
                                                             : "the API server answered with something that is not this Node");
                return;
        }
        w->connected = true;
        w->changed(node, w->userdata);
        start_watch(w);
}

/* A list (of the one Node the field selector names), not a GET: the list's resourceVersion is
 * the server's current one, where a watch can start; the Node's own may be older than the
 * server's window (after a 410 it would be answered by another 410). The node authorizer allows
 * a node to list itself with exactly this selector. */
static void start_list(node_watch *w) {
        _cleanup_free_ char *path = strdup_printf("/api/v1/nodes?fieldSelector=metadata.name%%3D%s", w->name);
        int r;

        free(w->resource_version);
        w->resource_version = NULL;
        r = path ? kube_request(w->kube, "GET", path, NULL, NULL, REQUEST_TIMEOUT_MS, on_list, w) : -ENOMEM;
        if (r < 0) {
                schedule_retry(w, 0, strerror(-r));
                return;
        }
        w->listing = true;
}

static void on_watch_event(const char *type, json_t *object, void *userdata) {
        node_watch *w = userdata;

        if (streq(type, "ERROR")) {
                /* The watch cache's way to say 410 Gone: the stream ends next; list again. */
                if (json_integer_value(json_object_get(object, "code")) == 410) {
                        free(w->resource_version);
                        w->resource_version = NULL;
                }
                return;
        }
        if (streq(type, "BOOKMARK")) {
                /* Only metadata.resourceVersion, no name: where the next watch resumes, so that it
                 * stays inside the server's window while the Node itself does not change. */
                (void) remember_version(w, object);
                return;
        }
        if (!is_our_node(w, object) || remember_version(w, object) < 0)
                return;
        if (streq(type, "ADDED") || streq(type, "MODIFIED"))
                w->changed(object, w->userdata);
}

static void on_watch_end(const kube_response *r, void *userdata) {
        node_watch *w = userdata;
        bool healthy = now_usec() - w->watch_started >= HEALTHY_USEC;

        w->watching = false;
        if (healthy)
                w->attempt = 0;
        if (r->status == 410) {
                free(w->resource_version);
                w->resource_version = NULL;
        }
        if (r->status == 200 && !r->error) {
                /* The server's timeoutSeconds: resume at once (or list, after an ERROR 410). */
                w->attempt = 0;
                if (w->renewed)
                        w->renewed(w->userdata);
                if (w->resource_version)
                        start_watch(w);
                else
                        start_list(w);
                return;
        }
        if (r->status == 410) {
                start_list(w);
                return;
        }
        schedule_retry(w, r->status, r->error);
}

static void start_watch(node_watch *w) {
        _cleanup_free_ char *path = NULL;
        unsigned timeout = WATCH_TIMEOUT_MIN_S + (unsigned) (random_u64() % WATCH_TIMEOUT_SPREAD_S);
        int r;

        path = strdup_printf("/api/v1/nodes?fieldSelector=metadata.name%%3D%s&watch=1&allowWatchBookmarks=true"
                             "&timeoutSeconds=%u&resourceVersion=%s",
                             w->name, timeout, w->resource_version);
        r = path ? kube_watch(w->kube, path, on_watch_event, on_watch_end, w) : -ENOMEM;
        if (r < 0) {
                schedule_retry(w, 0, strerror(-r));
                return;
        }
        w->watching = true;
        w->watch_started = now_usec();
}

int node_watch_new(sd_event *e, kube_client *k, const char *node_name, node_changed_fn changed,
                   node_trouble_fn trouble, node_renewed_fn renewed, void *userdata, node_watch **ret) {
        node_watch *w;

        w = calloc(1, sizeof(node_watch));
        if (!w)
                return -ENOMEM;
        *w = (node_watch){ .event = sd_event_ref(e), .kube = k, .name = strdup(node_name), .changed = changed,
                           .trouble = trouble, .renewed = renewed, .userdata = userdata };
        if (!w->name) {
                node_watch_free(w);
                return -ENOMEM;
        }
        start_list(w);
        *ret = w;
        return 0;
}

node_watch *node_watch_free(node_watch *w) {
        if (!w)
                return NULL;
        (void) kube_client_cancel(w->kube, w);
        sd_event_source_disable_unref(w->retry);
        sd_event_unref(w->event);
        free(w->name);
        free(w->resource_version);
        free(w);
        return NULL;
}

bool node_watch_connected(const node_watch *w) {
        return w && w->connected;
}
