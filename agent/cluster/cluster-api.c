/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster-api.h"
#include "macro.h"

#define RETRY_USEC (1000ULL * 1000ULL)
/* The server ends each watch after this; the watch is then opened again from where it was. */
#define WATCH_TIMEOUT_S 300

void api_result_done(api_result *r) {
        json_decref(r->body);
        free(r->error);
        free(r->reason);
        *r = (api_result){};
}

typedef struct call {
        bool done;
        api_result *result;
} call;

static void on_answer(const kube_response *r, void *userdata) {
        call *c = userdata;

        *c->result = (api_result){
                .status = r->status,
                .body = json_incref(r->body),
                .error = r->error ? strdup(r->error) : NULL,
                .reason = r->reason ? strdup(r->reason) : NULL,
        };
        c->done = true;
}

static int run_loop(cluster_api *a, const bool *done, uint64_t deadline, bool interruptible) {
        int r;

        while (!*done) {
                uint64_t now = now_usec();

                if (interruptible && a->interrupted)
                        return -EINTR;

                if (deadline && now >= deadline)
                        return -ETIME;
                r = sd_event_run(a->event, deadline ? deadline - now : UINT64_MAX);
                if (r < 0)
                        return r;
        }
        return 0;
}

int api_run_until(cluster_api *a, const bool *done, uint64_t deadline) {
        return run_loop(a, done, deadline, true);
}

int api_call(cluster_api *a, const char *method, const char *path, json_t *body, const char *content_type,
             api_result *ret) {
        call c = { .result = ret };
        int r;

        *ret = (api_result){};
        r = kube_request(a->kube, method, path, body, content_type, CLUSTER_REQUEST_TIMEOUT_MS, on_answer, &c);
        if (r < 0)
                return r;
        /* The request has its own timeout: its answer always comes, so a request is never
         * interrupted (the Lease's release must go out after a signal). */
        r = run_loop(a, &c.done, 0, false);
        if (r < 0)
                (void) kube_client_cancel(a->kube, &c);
        return r;
}

struct object_watch {
        cluster_api *api;
        char *collection, *name, *resource_version, *error;
        object_changed_fn changed;
        void *userdata;
        sd_event_source *retry;
};

static void start_get(object_watch *w);
static void start_watch(object_watch *w);

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        object_watch *w = userdata;

        w->retry = sd_event_source_disable_unref(w->retry);
        if (w->resource_version)
                start_watch(w);
        else
                start_get(w);
        return 0;
}

static void retry_later(object_watch *w, const char *why) {
        free(w->error);
        w->error = strdup(why ?: "unknown error");
        if (sd_event_add_time_relative(w->api->event, &w->retry, CLOCK_MONOTONIC, RETRY_USEC, 0, on_retry, w) < 0)
                w->retry = NULL;
}

static int remember_version(object_watch *w, json_t *o) {
        const char *rv = json_string_value(json_object_get(json_object_get(o, "metadata"), "resourceVersion"));

        /* It goes into a URL: anything but a plain token is refused. */
        if (!rv || !*rv || strlen(rv) > 64 ||
            strspn(rv, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ._-") != strlen(rv))
                return -EBADMSG;
        free(w->resource_version);
        w->resource_version = strdup(rv);
        return w->resource_version ? 0 : -ENOMEM;
}

static void on_get(const kube_response *r, void *userdata) {
        object_watch *w = userdata;

        if (r->status == 404) {
                /* Absent: watch the collection from its own resourceVersion for its creation. */
                if (remember_version(w, r->body) < 0) {
                        free(w->resource_version);
                        w->resource_version = strdup("0");
                }
                w->changed(NULL, w->userdata);
                start_watch(w);
                return;
        }
        if (r->status != 200 || remember_version(w, r->body) < 0) {
                retry_later(w, r->error ?: "an answer without metadata.resourceVersion");
                return;
        }
        w->changed(r->body, w->userdata);
        start_watch(w);
}

static void start_get(object_watch *w) {
        _cleanup_free_ char *path = strdup_printf("%s/%s", w->collection, w->name);
        int r;

        free(w->resource_version);
        w->resource_version = NULL;
        r = path ? kube_request(w->api->kube, "GET", path, NULL, NULL, CLUSTER_REQUEST_TIMEOUT_MS, on_get, w)
                 : -ENOMEM;
        if (r < 0)
                retry_later(w, strerror(-r));
}

static void on_event(const char *type, json_t *object, void *userdata) {
        object_watch *w = userdata;

        if (streq(type, "ERROR")) {
                /* 410 Expired as an event: the stream ends next; read the object again. */
                free(w->resource_version);
                w->resource_version = NULL;
                return;
        }
        if (remember_version(w, object) < 0 || streq(type, "BOOKMARK"))
                return;
        if (streq(type, "DELETED"))
                w->changed(NULL, w->userdata);
        else
                w->changed(object, w->userdata);
}

static void on_end(const kube_response *r, void *userdata) {
        object_watch *w = userdata;

        if (r->status == 410) {
                free(w->resource_version);
                w->resource_version = NULL;
        }
        if ((r->status == 200 && !r->error) || r->status == 410) {
                if (w->resource_version)
                        start_watch(w);
                else
                        start_get(w);
                return;
        }
        retry_later(w, r->error);
}

static void start_watch(object_watch *w) {
        _cleanup_free_ char *path = NULL;
        int r;

        path = strdup_printf("%s?fieldSelector=metadata.name%%3D%s&watch=1&allowWatchBookmarks=true"
                             "&timeoutSeconds=%u&resourceVersion=%s",
                             w->collection, w->name, WATCH_TIMEOUT_S, w->resource_version);
        r = path ? kube_watch(w->api->kube, path, on_event, on_end, w) : -ENOMEM;
        if (r < 0)
                retry_later(w, strerror(-r));
}

int object_watch_new(cluster_api *a, const char *collection, const char *name, object_changed_fn changed,
                     void *userdata, object_watch **ret) {
        object_watch *w = calloc(1, sizeof(object_watch));

        if (!w)
                return -ENOMEM;
        *w = (object_watch){ .api = a, .collection = strdup(collection), .name = strdup(name), .changed = changed,
                             .userdata = userdata };
        if (!w->collection || !w->name) {
                object_watch_free(w);
                return -ENOMEM;
        }
        start_get(w);
        *ret = w;
        return 0;
}

object_watch *object_watch_free(object_watch *w) {
        if (!w)
                return NULL;
        (void) kube_client_cancel(w->api->kube, w);
        sd_event_source_disable_unref(w->retry);
        free(w->collection);
        free(w->name);
        free(w->resource_version);
        free(w->error);
        free(w);
        return NULL;
}

const char *object_watch_error(const object_watch *w) {
        return w ? w->error : NULL;
}

int parse_rfc3339_usec(const char *s, uint64_t *ret) {
        struct tm tm = {};
        unsigned frac = 0, digits = 0;
        const char *p;
        time_t t;
        int n = 0;

        if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                         &tm.tm_min, &tm.tm_sec, &n) != 6 || n != 19)
                return -EINVAL;
        p = s + n;
        if (*p == '.')
                for (p++; *p >= '0' && *p <= '9'; p++, digits++)
                        if (digits < 6)
                                frac = frac * 10 + (unsigned) (*p - '0');
        for (; digits < 6; digits++)
                frac *= 10;
        if (!streq(p, "Z"))
                return -EINVAL;
        tm.tm_year -= 1900;
        tm.tm_mon -= 1;
        t = timegm(&tm);
        if (t < 0)
                return -EINVAL;
        *ret = (uint64_t) t * 1000000ULL + frac;
        return 0;
}

void format_micro_time(uint64_t realtime_usec, char buf[static 40]) {
        time_t t = (time_t) (realtime_usec / 1000000ULL);
        struct tm tm;
        char s[32];

        gmtime_r(&t, &tm);
        strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(buf, 40, "%s.%06uZ", s, (unsigned) (realtime_usec % 1000000ULL));
}
