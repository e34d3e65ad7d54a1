/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cluster-api.h"
#include "cluster-state.h"
#include "image.h"
#include "macro.h"

json_t *node_annotation_json(json_t *node, const char *key) {
        const char *v = json_string_value(
                json_object_get(json_object_get(json_object_get(node, "metadata"), "annotations"), key));

        return v ? json_loads(v, JSON_REJECT_DUPLICATES, NULL) : NULL;
}

static const char *const known_phases[] = { "Idle",   "Pending",  "Progressing", "Succeeded",
                                            "Failed", "RolledBack", "Refused",   "Interrupted" };

static bool phase_known(const char *p) {
        for (size_t i = 0; p && i < ELEMENTSOF(known_phases); i++)
                if (streq(p, known_phases[i]))
                        return true;
        return false;
}

/* One component of the status: all three versions, or not known. */
static void read_component(json_t *o, cluster_comp *c, int *healthy) {
        json_t *rev = json_object_get(o, "revision"), *h = json_object_get(o, "healthy");
        const char *b = json_string_value(json_object_get(o, "binaryVersion"));
        const char *e = json_string_value(json_object_get(o, "emulatedVersion"));
        const char *m = json_string_value(json_object_get(o, "minCompatibilityVersion"));

        c->known = b && e && m && kversion_parse(b, &c->binary, NULL) >= 0 &&
                   kminor_parse(e, &c->emulated, NULL) >= 0 && kminor_parse(m, &c->min_compat, NULL) >= 0;
        c->revision = json_is_integer(rev) && json_integer_value(rev) > 0 && json_integer_value(rev) <= UINT32_MAX
                              ? (unsigned) json_integer_value(rev)
                              : 0;
        *healthy = json_is_boolean(h) ? json_is_true(h) : -1;
}

static void read_status(node_report *rep, cluster_node *nd, uint64_t now, uint64_t max_age) {
        json_t *comps, *o;
        uint64_t updated;
        size_t i;

        nd->agent = CLUSTER_AGENT_MISSING;
        if (!rep->status)
                return;
        nd->agent = CLUSTER_AGENT_INVALID;
        nd->phase = json_string_value(json_object_get(rep->status, "phase"));
        nd->status_id = json_string_value(json_object_get(rep->status, "id"));
        rep->generation = (uint64_t) json_integer_value(json_object_get(rep->status, "generation"));
        rep->agent_version = json_string_value(json_object_get(rep->status, "agentVersion"));
        rep->updated = json_string_value(json_object_get(rep->status, "updated"));
        rep->message = json_string_value(json_object_get(rep->status, "message"));
        rep->age_sec = -1;
        if (!phase_known(nd->phase)) {
                rep->status_problem = strdup("its phase is not one of the protocol's");
                return;
        }
        if (parse_rfc3339_usec(rep->updated, &updated) < 0) {
                rep->status_problem = strdup("its updated time is not RFC 3339");
                return;
        }
        rep->age_sec = now > updated ? (int64_t) ((now - updated) / 1000000ULL) : 0;
        comps = json_object_get(rep->status, "components");
        json_array_foreach(comps, i, o) {
                int c = cluster_component_from_string(json_string_value(json_object_get(o, "name")));

                if (c >= 0)
                        read_component(o, &nd->comps[c], &rep->healthy[c]);
        }
        nd->agent = max_age && now > updated && now - updated > max_age ? CLUSTER_AGENT_STALE : CLUSTER_AGENT_OK;
}

static json_t *find_pod(json_t *pod_list, const char *name) {
        json_t *items = json_object_get(pod_list, "items"), *p;
        size_t i;

        json_array_foreach(items, i, p) {
                const char *n = json_string_value(json_object_get(json_object_get(p, "metadata"), "name"));

                if (n && streq(n, name))
                        return p;
        }
        return NULL;
}

/* The mirror pod against the agent's report: same revision (when the manifest carries one),
 * same binary. */
static int read_mirrors(node_report *rep, cluster_node *nd, json_t *pod_list) {
        for (int c = 0; c < _CLUSTER_COMPONENT_MAX; c++) {
                _cleanup_free_ char *name = mirror_pod_name(c, rep->name);
                _cleanup_(image_ref_done) image_ref ref = {};
                cluster_comp *s = &nd->comps[c];
                mirror_pod *m = &rep->mirror[c];
                kversion tag;
                int r;

                s->mirror_agrees = -1;
                if (!name)
                        return -ENOMEM;
                if (!pod_list)
                        continue;
                r = mirror_pod_read(find_pod(pod_list, name), c, m);
                if (r < 0)
                        return r;
                if (!s->known)
                        continue;
                s->mirror_agrees = 0;
                if (!m->present)
                        rep->mirror_why[c] = strdup_printf("no mirror pod kube-system/%s", name);
                /* A manifest cplet adopted but never wrote (the original, revision 1 of its
                 * history) has no cplet.io/revision to copy: only the image can be compared. */
                else if (m->revision != s->revision && m->revision != 0)
                        rep->mirror_why[c] = strdup_printf("mirror pod kube-system/%s shows revision %u, the agent "
                                                           "reports %u",
                                                           name, m->revision, s->revision);
                else if (!m->image || image_ref_parse(m->image, &ref, NULL) < 0 || !ref.tag ||
                         kversion_parse(ref.tag, &tag, NULL) < 0 || kversion_cmp(&tag, &s->binary) != 0)
                        rep->mirror_why[c] = strdup_printf("mirror pod kube-system/%s runs image %s, not the agent's "
                                                           "binary",
                                                           name, m->image ?: "(none)");
                else
                        s->mirror_agrees = 1;
                s->mirror_why = rep->mirror_why[c];
        }
        return 0;
}

static int compare_reports(const void *a, const void *b) {
        return strcmp(((const node_report *) a)->name, ((const node_report *) b)->name);
}

int cluster_state_build(json_t *node_list, json_t *pod_list, uint64_t now, uint64_t max_age, cluster_state **ret,
                        char **ret_error) {
        _cleanup_(cluster_state_freep) cluster_state *s = calloc(1, sizeof(cluster_state));
        json_t *items = json_object_get(node_list, "items"), *o;
        size_t i, n = json_array_size(items);
        int r;

        if (!s)
                return -ENOMEM;
        if (!json_is_array(items))
                return set_error(ret_error, -EBADMSG, "the API server's node list has no items");
        if (n > CLUSTER_NODES_MAX)
                return set_error(ret_error, -E2BIG, "%zu control-plane nodes: more than %d", n, CLUSTER_NODES_MAX);
        s->nodes = calloc(n ?: 1, sizeof(cluster_node));
        s->reports = calloc(n ?: 1, sizeof(node_report));
        if (!s->nodes || !s->reports)
                return -ENOMEM;
        json_array_foreach(items, i, o) {
                const char *name = json_string_value(json_object_get(json_object_get(o, "metadata"), "name"));
                node_report *rep = &s->reports[s->n];

                if (!name)
                        continue;
                rep->name = strdup(name);
                if (!rep->name)
                        return -ENOMEM;
                rep->status = node_annotation_json(o, "cplet.io/status");
                rep->target = node_annotation_json(o, "cplet.io/target");
                if (!rep->status && json_object_get(json_object_get(json_object_get(o, "metadata"), "annotations"),
                                                    "cplet.io/status"))
                        rep->status_problem = strdup("its cplet.io/status annotation is not JSON");
                s->n++;
        }
        /* Sorted first: cluster_node points into the reports. */
        qsort(s->reports, s->n, sizeof(node_report), compare_reports);
        for (i = 0; i < s->n; i++) {
                node_report *rep = &s->reports[i];
                cluster_node *nd = &s->nodes[i];

                *nd = (cluster_node){ .name = rep->name };
                for (int c = 0; c < _CLUSTER_COMPONENT_MAX; c++)
                        rep->healthy[c] = -1;
                read_status(rep, nd, now, max_age);
                if (rep->status_problem && nd->agent == CLUSTER_AGENT_MISSING)
                        nd->agent = CLUSTER_AGENT_INVALID;
                r = read_mirrors(rep, nd, pod_list);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(s);
        return 0;
}

cluster_state *cluster_state_free(cluster_state *s) {
        if (!s)
                return NULL;
        for (size_t i = 0; i < s->n; i++) {
                node_report *rep = &s->reports[i];

                free(rep->name);
                json_decref(rep->status);
                json_decref(rep->target);
                free(rep->status_problem);
                for (int c = 0; c < _CLUSTER_COMPONENT_MAX; c++) {
                        mirror_pod_done(&rep->mirror[c]);
                        free(rep->mirror_why[c]);
                }
        }
        free(s->nodes);
        free(s->reports);
        free(s);
        return NULL;
}
