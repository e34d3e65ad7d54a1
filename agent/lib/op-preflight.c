/* SPDX-License-Identifier: Apache-2.0 */
/* The preflight of a plan (issue 11): before the first write, would every step's binary start
 * with the command line the step leaves? A removed flag, feature gate or admission plugin is
 * found here, in the plan, not minutes into a maintenance window when the new binary exits. */

#include <errno.h>
#include <string.h>

#include "macro.h"
#include "op-internal.h"
#include "preflight.h"

/* Every step applied to its component's tree as the steps before it left it; each resulting
 * command line checked as the step's binary, emulating the step's version, would parse it. */
static int check_steps(const node *n, const plan *p, preflight_report *report, char **ret_error) {
        _cleanup_free_ json_t **trees = calloc(n->n_components + 1, sizeof(json_t *));
        int r = 0;

        if (!trees)
                return -ENOMEM;
        for (size_t k = 0; r >= 0 && k < p->n_steps; k++) {
                const plan_step *st = &p->steps[k];
                const component *co = &n->components[st->component];
                _cleanup_free_ char *error = NULL;
                component current = *co;
                json_t *next = NULL;
                cmdline cl;

                if (trees[st->component]) {
                        current.pod = trees[st->component];
                        current.container = component_container_in(co, current.pod);
                }
                r = component_apply_step(&current, st, &next, &error);
                if (r >= 0)
                        r = cmdline_open(component_container_in(co, next), co->plugin->name, &cl, &error);
                if (r >= 0)
                        r = preflight_check(co->plugin->name, co->file, kversion_minor(&st->binary), st->emulated, &cl,
                                            report);
                json_decref(trees[st->component]);
                trees[st->component] = next;
                if (r < 0 && r != -ENOMEM)
                        r = set_error(ret_error, r, "step %zu (%s %s): %s", k + 1, co->plugin->name,
                                      step_kind_to_string(st->kind), error ?: strerror(-r));
        }
        for (size_t i = 0; i < n->n_components; i++)
                json_decref(trees[i]);
        return r < 0 ? r : 0;
}

static bool refused_for(const preflight_report *report, const char *name, const char *entry) {
        for (size_t i = 0; i < report->n_findings; i++) {
                const preflight_finding *f = &report->findings[i];

                if (!f->warning && f->drop && streq(f->drop, entry) && streq(f->component, name))
                        return true;
        }
        return false;
}

static int strv_push(char ***l, size_t *n, const char *s) {
        char **grown = reallocarray(*l, *n + 2, sizeof(char *));

        if (!grown)
                return -ENOMEM;
        *l = grown;
        grown[*n] = strdup(s);
        if (!grown[*n])
                return -ENOMEM;
        grown[++*n] = NULL;
        return 0;
}

/* "cloud-provider, InTreePluginvSphereUnregister": what --drop-removed could name. */
static char *droppable(const preflight_report *report) {
        char *s = strdup("");

        for (size_t i = 0; s && i < report->n_findings; i++) {
                const preflight_finding *f = &report->findings[i];
                char *more;
                bool seen = false;

                if (f->warning || !f->drop)
                        continue;
                for (size_t j = 0; j < i; j++)
                        if (!report->findings[j].warning && report->findings[j].drop &&
                            streq(report->findings[j].drop, f->drop))
                                seen = true;
                if (seen)
                        continue;
                more = strdup_printf("%s%s%s", s, *s ? "," : "", f->drop);
                free(s);
                s = more;
        }
        return s;
}

/* Puts each entry on the first step of every component the preflight refuses it for. */
static int place_drops(const node *n, const op_target *t, unsigned flags, plan *p,
                       const preflight_report *report, char **ret_error) {
        for (const char *const *d = t->drop_removed; *d; d++) {
                bool used = false;

                if (!**d)
                        return set_error(ret_error, -EINVAL, "--drop-removed: an empty entry");
                for (size_t k = 0; k < p->n_steps; k++) {
                        plan_step *st = &p->steps[k];
                        const char *name = n->components[st->component].plugin->name;
                        size_t count = 0;
                        bool first = true;

                        for (size_t j = 0; j < k; j++)
                                if (p->steps[j].component == st->component)
                                        first = false;
                        if (!first || !refused_for(report, name, *d))
                                continue;
                        for (char **e = st->drop; e && *e; e++, count++)
                                if (streq(*e, *d))
                                        return set_error(ret_error, -EINVAL, "--drop-removed %s: given twice", *d);
                        if (strv_push(&st->drop, &count, *d) < 0)
                                return -ENOMEM;
                        used = true;
                }
                if (!used && !(flags & OP_PLAN_RESUME)) {
                        _cleanup_free_ char *names = droppable(report);

                        if (!names)
                                return -ENOMEM;
                        return set_error(ret_error, -EINVAL,
                                         "--drop-removed %s: no step of the plan has a flag, feature gate or admission "
                                         "plugin of that name that its binary refuses (%s%s)",
                                         *d, *names ? "what the plan's binaries refuse: " : "they refuse nothing",
                                         names);
                }
        }
        return 0;
}

static char *refusal_text(const preflight_report *report) {
        _cleanup_free_ char *names = droppable(report);
        char *s = strdup_printf("plan refused: the new binaries would refuse to start (%zu finding%s):",
                                report->n_refusals, report->n_refusals == 1 ? "" : "s");

        for (size_t i = 0; s && i < report->n_findings; i++) {
                char *more;

                if (report->findings[i].warning)
                        continue;
                more = strdup_printf("%s\n  %s", s, report->findings[i].message);
                free(s);
                s = more;
        }
        if (s && names) {
                char *more = strdup_printf("%s\nRemove %s from the manifests, or run again with --drop-removed %s "
                                           "(each component's first step drops them), or with --force to go ahead "
                                           "anyway",
                                           s, report->n_refusals == 1 ? "it" : "them", *names ? names : "ENTRY");

                free(s);
                s = more;
        }
        return s;
}

int op_preflight_plan(op_env *e, const node *n, const op_target *t, unsigned flags, plan *p, char **ret_error) {
        _cleanup_(preflight_report_done) preflight_report report = {};
        bool refusals_warn = flags & (OP_PLAN_FORCE | OP_PLAN_RESUME);
        int r;

        r = check_steps(n, p, &report, ret_error);
        if (r >= 0 && t->drop_removed && *t->drop_removed) {
                r = place_drops(n, t, flags, p, &report, ret_error);
                /* Again, as the steps now write the manifests. */
                preflight_report_done(&report);
                if (r >= 0)
                        r = check_steps(n, p, &report, ret_error);
        }
        if (r < 0)
                return r;
        /* The warnings whatever comes next: a refused plan lists everything at once. */
        for (size_t i = 0; !(flags & OP_PLAN_QUIET) && i < report.n_findings; i++)
                if (report.findings[i].warning)
                        op_warn(e, "%s", report.findings[i].message);
        if (report.n_refusals > 0 && !refusals_warn) {
                char *text = refusal_text(&report);

                if (!text)
                        return -ENOMEM;
                if (ret_error) {
                        free(*ret_error);
                        *ret_error = text;
                } else
                        free(text);
                return -EINVAL;
        }
        if (flags & OP_PLAN_QUIET)
                return 0;
        for (size_t i = 0; i < report.n_findings; i++)
                if (!report.findings[i].warning)
                        op_warn(e, "%s (the binary will refuse this; %s)", report.findings[i].message,
                                flags & OP_PLAN_RESUME ? "the rollout began with it" : "going ahead as --force says");
        return 0;
}
