/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cluster-preflight.h"
#include "cmdline.h"
#include "macro.h"
#include "op-internal.h"

void cluster_preflight_done(cluster_preflight *cp) {
        preflight_report_done(&cp->report);
        *cp = (cluster_preflight){};
}

/* Moves every finding of `from` to the end of `to`. */
static int report_move(preflight_report *to, preflight_report *from) {
        preflight_finding *f;

        if (from->n_findings == 0)
                return 0;
        f = reallocarray(to->findings, to->n_findings + from->n_findings, sizeof(*f));
        if (!f)
                return -ENOMEM;
        to->findings = f;
        memcpy(to->findings + to->n_findings, from->findings, from->n_findings * sizeof(*f));
        to->n_findings += from->n_findings;
        to->n_refusals += from->n_refusals;
        free(from->findings);
        *from = (preflight_report){};
        return 0;
}

/* The pair's steps checked on `cl` (a copy the drops may change). */
static int check_pair(const cluster_plan *p, size_t first, const char *comp_name, const char *file, const cmdline *cl,
                      preflight_report *r) {
        const cluster_step *f = &p->steps[first];

        for (size_t i = first; i < p->n_steps; i++) {
                const cluster_step *s = &p->steps[i];
                int k;

                if (s->node != f->node || s->component != f->component)
                        continue;
                k = preflight_check(comp_name, file, (kminor){ s->binary.major, s->binary.minor }, s->emulated, cl, r);
                if (k < 0)
                        return k;
        }
        return 0;
}

static bool refused_for(const preflight_report *r, const char *entry) {
        for (size_t i = 0; i < r->n_findings; i++)
                if (!r->findings[i].warning && r->findings[i].drop && streq(r->findings[i].drop, entry))
                        return true;
        return false;
}

static bool first_of_pair(const cluster_plan *p, size_t i) {
        for (size_t k = 0; k < i; k++)
                if (p->steps[k].node == p->steps[i].node && p->steps[k].component == p->steps[i].component)
                        return false;
        return true;
}

int cluster_preflight_run(const cluster_state *st, cluster_plan *p, const char *const *drop,
                          cluster_preflight *ret, char **ret_error) {
        _cleanup_(cluster_preflight_done) cluster_preflight cp = {};
        size_t n_drop = 0;
        _cleanup_free_ bool *used = NULL;
        int r;

        while (drop && drop[n_drop])
                n_drop++;
        used = calloc(n_drop + 1, sizeof(bool));
        if (!used)
                return -ENOMEM;
        for (size_t i = 0; i < p->n_steps; i++) {
                cluster_step *s = &p->steps[i];
                const char *comp_name = cluster_component_names[s->component];
                const mirror_pod *m = &st->reports[s->node].mirror[s->component];
                _cleanup_(preflight_report_done) preflight_report before = {}, after = {};
                _cleanup_free_ char *file = NULL, *why = NULL;
                json_auto_t *copy = NULL;
                size_t n = 0;
                cmdline cl;

                if (!first_of_pair(p, i))
                        continue;
                if (!m->container) {
                        cp.n_unchecked++;
                        continue;
                }
                file = strdup_printf("%s: %s", st->nodes[s->node].name, comp_name);
                copy = json_deep_copy(m->container);
                if (!file || !copy)
                        return -ENOMEM;
                if (cmdline_open(copy, comp_name, &cl, &why) < 0) {
                        /* A command line cplet cannot read is the agent's to refuse. */
                        cp.n_unchecked++;
                        continue;
                }
                r = check_pair(p, i, comp_name, file, &cl, &before);
                if (r < 0)
                        return r;
                /* Drop only what is refused for this pair, in its first step. */
                strv_free(s->drop_removed);
                s->drop_removed = calloc(n_drop + 1, sizeof(char *));
                if (!s->drop_removed)
                        return -ENOMEM;
                for (size_t k = 0; k < n_drop; k++) {
                        if (!refused_for(&before, drop[k]))
                                continue;
                        r = preflight_drop(&cl, drop[k]);
                        if (r < 0)
                                return r;
                        used[k] = true;
                        s->drop_removed[n] = strdup(drop[k]);
                        if (!s->drop_removed[n++])
                                return -ENOMEM;
                }
                if (n == 0) {
                        free(s->drop_removed);
                        s->drop_removed = NULL;
                }
                r = check_pair(p, i, comp_name, file, &cl, &after);
                if (r >= 0)
                        r = report_move(&cp.report, &after);
                if (r < 0)
                        return r;
        }
        for (size_t k = 0; k < n_drop; k++)
                if (!used[k])
                        return set_error(ret_error, -EINVAL,
                                         "--drop-removed %s: the plan's steps refuse nothing of that name on any "
                                         "control-plane node (its mirror pods)",
                                         drop[k]);
        *ret = cp;
        cp = (cluster_preflight){};
        return 0;
}
