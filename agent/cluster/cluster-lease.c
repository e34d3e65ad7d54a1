/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster-lease.h"
#include "macro.h"

#define LEASES "/apis/coordination.k8s.io/v1/namespaces/" CLUSTER_LEASE_NAMESPACE "/leases"

struct cluster_lease {
        cluster_api *api;
        char *identity;
        unsigned duration_s;
        json_t *object;          /* the Lease as last written */
        uint64_t renewed;        /* CLOCK_MONOTONIC of the last successful write */
        bool renewing, lost;
        char *lost_why;
        sd_event_source *timer;
};

static uint64_t wall_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
}

static json_t *lease_spec(const cluster_lease *l, const char *acquire, const char *renew, json_int_t transitions) {
        return json_pack("{s:s, s:I, s:s, s:s, s:I}", "holderIdentity", l->identity, "leaseDurationSeconds",
                         (json_int_t) l->duration_s, "acquireTime", acquire, "renewTime", renew, "leaseTransitions",
                         transitions);
}

static void set_lost(cluster_lease *l, char *why) {
        l->lost = true;
        free(l->lost_why);
        l->lost_why = why;
}

static void on_renewed(const kube_response *r, void *userdata) {
        cluster_lease *l = userdata;

        l->renewing = false;
        if (r->status == 200 && json_is_object(r->body)) {
                json_decref(l->object);
                l->object = json_incref(r->body);
                l->renewed = now_usec();
                return;
        }
        if (r->status == 409 || r->status == 404)
                set_lost(l, strdup_printf("the Lease %s/%s was taken or removed meanwhile (%s)",
                                          CLUSTER_LEASE_NAMESPACE, CLUSTER_LEASE_NAME, r->error ?: "conflict"));
        else if (now_usec() - l->renewed > (uint64_t) l->duration_s * 1000000ULL)
                set_lost(l, strdup_printf("the Lease %s/%s could not be renewed within its %us: %s",
                                          CLUSTER_LEASE_NAMESPACE, CLUSTER_LEASE_NAME, l->duration_s,
                                          r->error ?: "no answer"));
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        cluster_lease *l = userdata;
        _cleanup_free_ char *path = strdup_printf(LEASES "/%s", CLUSTER_LEASE_NAME);
        json_auto_t *o = NULL;
        char now[40];

        /* Renewed three times per duration, as client-go's leader election does (renew
         * deadline well inside the duration). */
        (void) sd_event_source_set_time_relative(s, (uint64_t) l->duration_s * 1000000ULL / 3);
        if (l->renewing || l->lost || !path)
                return 0;
        o = json_deep_copy(l->object);
        format_micro_time(wall_usec(), now);
        if (!o || json_object_set_new(json_object_get(o, "spec"), "renewTime", json_string(now)) < 0)
                return 0;
        if (kube_request(l->api->kube, "PUT", path, o, NULL, CLUSTER_REQUEST_TIMEOUT_MS, on_renewed, l) >= 0)
                l->renewing = true;
        return 0;
}

static cluster_lease *lease_free(cluster_lease *l) {
        if (!l)
                return NULL;
        (void) kube_client_cancel(l->api->kube, l);
        sd_event_source_disable_unref(l->timer);
        json_decref(l->object);
        free(l->identity);
        free(l->lost_why);
        free(l);
        return NULL;
}

static void lease_freep(cluster_lease **l) {
        lease_free(*l);
}

/* Whether a Lease is held: a holder, renewed within its duration. */
static bool held_by_other(const cluster_lease *l, json_t *o, char **ret_error) {
        json_t *spec = json_object_get(o, "spec");
        const char *holder = json_string_value(json_object_get(spec, "holderIdentity"));
        const char *renew = json_string_value(json_object_get(spec, "renewTime"));
        json_int_t duration = json_integer_value(json_object_get(spec, "leaseDurationSeconds"));
        uint64_t renewed, now = wall_usec();

        if (!holder || !*holder)
                return false;
        if (parse_rfc3339_usec(renew, &renewed) < 0 || duration <= 0)
                renewed = now, duration = l->duration_s; /* unreadable: taken as just renewed */
        if (renewed + (uint64_t) duration * 1000000ULL < now)
                return false;
        set_error(ret_error, -EBUSY,
                  "another cplet cluster controller holds the Lease %s/%s: \"%s\" (renewed %llus ago; it expires "
                  "%llus after its last renewal unless renewed). Wait for it to finish, or until the Lease expires",
                  CLUSTER_LEASE_NAMESPACE, CLUSTER_LEASE_NAME, holder,
                  (unsigned long long) ((now > renewed ? now - renewed : 0) / 1000000ULL),
                  (unsigned long long) duration);
        return true;
}

static int take_over(cluster_lease *l, json_t *old, char **ret_error) {
        _cleanup_free_ char *path = strdup_printf(LEASES "/%s", CLUSTER_LEASE_NAME);
        json_auto_t *o = json_deep_copy(old);
        json_int_t transitions = json_integer_value(json_object_get(json_object_get(old, "spec"), "leaseTransitions"));
        _cleanup_(api_result_done) api_result res = {};
        char now[40];
        int r;

        if (!o || !path)
                return -ENOMEM;
        format_micro_time(wall_usec(), now);
        /* metadata.resourceVersion stays: a controller that took it meanwhile makes this 409. */
        if (json_object_set_new(o, "spec", lease_spec(l, now, now, transitions + 1)) < 0)
                return -ENOMEM;
        r = api_call(l->api, "PUT", path, o, NULL, &res);
        if (r < 0)
                return set_error(ret_error, r, "taking over the Lease %s/%s: %s", CLUSTER_LEASE_NAMESPACE,
                                 CLUSTER_LEASE_NAME, strerror(-r));
        if (res.status == 409)
                return set_error(ret_error, -EBUSY,
                                 "another cplet cluster controller took the Lease %s/%s at the same moment",
                                 CLUSTER_LEASE_NAMESPACE, CLUSTER_LEASE_NAME);
        if (res.status != 200)
                return set_error(ret_error, -EIO, "taking over the Lease %s/%s: %s", CLUSTER_LEASE_NAMESPACE,
                                 CLUSTER_LEASE_NAME, res.error ?: "no answer");
        l->object = TAKE_PTR(res.body);
        return 0;
}

static int create(cluster_lease *l, char **ret_error) {
        _cleanup_(api_result_done) api_result res = {};
        json_auto_t *o = NULL;
        char now[40];
        int r;

        format_micro_time(wall_usec(), now);
        o = json_pack("{s:s, s:s, s:{s:s, s:s}, s:o}", "apiVersion", "coordination.k8s.io/v1", "kind", "Lease",
                      "metadata", "name", CLUSTER_LEASE_NAME, "namespace", CLUSTER_LEASE_NAMESPACE, "spec",
                      lease_spec(l, now, now, 0));
        if (!o)
                return -ENOMEM;
        r = api_call(l->api, "POST", LEASES, o, NULL, &res);
        if (r < 0)
                return set_error(ret_error, r, "creating the Lease: %s", strerror(-r));
        if (res.status == 409)
                return -EAGAIN; /* created meanwhile: read it again */
        if (res.status != 201 && res.status != 200)
                return set_error(ret_error, -EIO, "creating the Lease %s/%s: %s", CLUSTER_LEASE_NAMESPACE,
                                 CLUSTER_LEASE_NAME, res.error ?: "no answer");
        l->object = TAKE_PTR(res.body);
        return 0;
}

static int acquire_once(cluster_lease *l, char **ret_error) {
        _cleanup_free_ char *path = strdup_printf(LEASES "/%s", CLUSTER_LEASE_NAME);
        _cleanup_(api_result_done) api_result res = {};
        int r;

        if (!path)
                return -ENOMEM;
        r = api_call(l->api, "GET", path, NULL, NULL, &res);
        if (r < 0)
                return set_error(ret_error, r, "reading the Lease: %s", strerror(-r));
        if (res.status == 404)
                return create(l, ret_error);
        if (res.status != 200)
                return set_error(ret_error, -EIO, "reading the Lease %s/%s: %s", CLUSTER_LEASE_NAMESPACE,
                                 CLUSTER_LEASE_NAME, res.error ?: "no answer");
        if (held_by_other(l, res.body, ret_error))
                return -EBUSY;
        return take_over(l, res.body, ret_error);
}

int cluster_lease_acquire(cluster_api *a, const char *identity, unsigned duration_s, cluster_lease **ret,
                          char **ret_error) {
        _cleanup_(lease_freep) cluster_lease *l = calloc(1, sizeof(cluster_lease));
        int r;

        if (!l)
                return -ENOMEM;
        *l = (cluster_lease){ .api = a, .identity = strdup(identity), .duration_s = duration_s };
        if (!l->identity)
                return -ENOMEM;
        r = acquire_once(l, ret_error);
        if (r == -EAGAIN)
                r = acquire_once(l, ret_error);
        if (r == -EAGAIN)
                r = set_error(ret_error, -EBUSY, "another cplet cluster controller created the Lease %s/%s first",
                              CLUSTER_LEASE_NAMESPACE, CLUSTER_LEASE_NAME);
        if (r < 0)
                return r;
        l->renewed = now_usec();
        r = sd_event_add_time_relative(a->event, &l->timer, CLOCK_MONOTONIC,
                                       (uint64_t) duration_s * 1000000ULL / 3, 0, on_timer, l);
        if (r < 0)
                return r;
        (void) sd_event_source_set_enabled(l->timer, SD_EVENT_ON);
        *ret = TAKE_PTR(l);
        return 0;
}

bool cluster_lease_lost(const cluster_lease *l, const char **ret_why) {
        if (ret_why)
                *ret_why = l->lost_why ?: "the Lease was lost";
        return l->lost;
}

cluster_lease *cluster_lease_release(cluster_lease *l) {
        _cleanup_free_ char *path = NULL;
        _cleanup_(api_result_done) api_result res = {};
        json_auto_t *o = NULL;

        if (!l)
                return NULL;
        l->timer = sd_event_source_disable_unref(l->timer);
        (void) kube_client_cancel(l->api->kube, l);
        path = strdup_printf(LEASES "/%s", CLUSTER_LEASE_NAME);
        o = l->lost ? NULL : json_deep_copy(l->object);
        /* client-go's ReleaseOnCancel: no holder, so that the next one takes it at once. */
        if (o && path && json_object_del(json_object_get(o, "spec"), "holderIdentity") == 0)
                (void) api_call(l->api, "PUT", path, o, NULL, &res);
        return lease_free(l);
}
