/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <string.h>

#include "cli.h"
#include "macro.h"

static json_t *step_to_json(const node *n, const plan_step *s) {
        char b[KVERSION_STRING_MAX], e[KMINOR_STRING_MAX], m[KMINOR_STRING_MAX];
        json_t *j, *drop;

        kversion_format(&s->binary, b);
        kminor_format(s->emulated, e);
        kminor_format(s->min_compat, m);
        j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}",
                         "component", n->components[s->component].plugin->name,
                         "manifest", n->components[s->component].file,
                         "kind", step_kind_to_string(s->kind),
                         "image", s->image,
                         "binaryVersion", b,
                         "emulatedVersion", e,
                         "minCompatibilityVersion", m);
        if (j && s->drop) {
                drop = json_array();
                for (char **d = s->drop; drop && *d; d++)
                        json_array_append_new(drop, json_string(*d));
                json_object_set_new(j, "dropRemoved", drop);
        }
        return j;
}

static void print_step(const node *n, size_t i, const plan_step *s) {
        char b[KVERSION_STRING_MAX], e[KMINOR_STRING_MAX], m[KMINOR_STRING_MAX], what[160];

        kversion_format(&s->binary, b);
        kminor_format(s->emulated, e);
        kminor_format(s->min_compat, m);
        switch (s->kind) {
        case STEP_BINARY:
                snprintf(what, sizeof(what), "image %s", s->image);
                break;
        case STEP_EMULATION:
                snprintf(what, sizeof(what), "emulated version -> %s", e);
                break;
        case STEP_MIN_COMPAT:
                snprintf(what, sizeof(what), "min-compatibility version -> %s", m);
                break;
        }
        printf("%3zu. %-24s %-18s %s\n", i + 1, n->components[s->component].plugin->name,
               step_kind_to_string(s->kind), what);
        printf("     after: binary %s, emulated %s%s, min-compatibility %s%s\n", b, e,
               s->emulated_flag ? " (flag)" : "", m, s->min_compat_flag ? " (flag)" : "");
        for (char **d = s->drop; d && *d; d++)
                printf("     drops: %s (--drop-removed)\n", *d);
}

/* ", moving kube-apiserver, kube-scheduler" for a target's components; "" for all. */
static char *moving_suffix(const cli *c) {
        char *s = strdup(c->n_components > 0 ? ", moving " : "");

        for (size_t i = 0; s && i < c->n_components; i++) {
                char *more = strdup_printf("%s%s%s", s, i ? ", " : "", c->components[i]);

                free(s);
                s = more;
        }
        return s;
}

int cmd_plan(cli *c) {
        _cleanup_(op_plan_result_done) op_plan_result res = {};
        _cleanup_free_ char *error = NULL, *moving = NULL;
        char e[KMINOR_STRING_MAX], m[KMINOR_STRING_MAX], v[KVERSION_STRING_MAX];
        const node *n;
        const plan *p;
        int r;

        if (!c->target.binary_version) {
                cli_error("plan: --binary-version is required (see cplet plan --help)");
                return EXIT_INVALID;
        }
        r = cli_env(c);
        if (r != EXIT_OK)
                return r;
        r = op_plan(c->env, &c->target, c->force, &res, &error);
        if (r < 0)
                return cli_fail(r, error);
        n = res.node;
        p = res.plan;

        kversion_format(&p->binary, v);
        kminor_format(p->emulated, e);
        kminor_format(p->min_compat, m);
        if (c->json) {
                json_auto_t *root = json_pack("{s:{s:s, s:s, s:s}, s:[]}", "target", "binaryVersion", v,
                                              "emulatedVersion", e, "minCompatibilityVersion", m, "steps");
                json_t *steps = json_object_get(root, "steps");
                json_t *components = c->n_components > 0 ? json_array() : NULL;

                for (size_t i = 0; components && i < c->n_components; i++)
                        json_array_append_new(components, json_string(c->components[i]));
                if (components)
                        json_object_set_new(json_object_get(root, "target"), "components", components);
                for (size_t i = 0; i < p->n_steps; i++)
                        json_array_append_new(steps, step_to_json(n, &p->steps[i]));
                json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
                fputc('\n', stdout);
                return EXIT_OK;
        }

        moving = moving_suffix(c);
        if (!moving)
                return cli_fail(-ENOMEM, NULL);
        if (p->n_steps == 0) {
                if (c->n_components > 0)
                        printf("Nothing to do: %s already run%s binary %s, emulated %s, "
                               "min-compatibility %s.\n",
                               moving + strlen(", moving "), c->n_components == 1 ? "s" : "", v, e, m);
                else
                        printf("Nothing to do: the node already runs binary %s, emulated %s, "
                               "min-compatibility %s.\n",
                               v, e, m);
                return EXIT_OK;
        }
        printf("Plan: %zu step%s to binary %s, emulated %s, min-compatibility %s%s\n\n", p->n_steps,
               p->n_steps == 1 ? "" : "s", v, e, m, moving);
        for (size_t i = 0; i < p->n_steps; i++)
                print_step(n, i, &p->steps[i]);
        return EXIT_OK;
}
