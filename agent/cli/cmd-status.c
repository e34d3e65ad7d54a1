/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>

#include "cli.h"
#include "macro.h"
#include "preflight.h"

static json_t *version_or_null(bool known, const char *s) {
        return known ? json_string(s) : json_null();
}

/* The messages of what the next minor removes; null when cplet cannot know. */
static json_t *removed_next_to_json(const op_status_result *st, size_t i) {
        json_t *a;

        if (!st->next_known[i])
                return json_null();
        a = json_array();
        for (size_t k = 0; a && k < st->removed_next[i].n_findings; k++)
                json_array_append_new(a, json_string(st->removed_next[i].findings[k].message));
        return a;
}

static json_t *component_to_json(const node *n, const component *co) {
        char b[KVERSION_STRING_MAX] = "", e[KMINOR_STRING_MAX] = "", m[KMINOR_STRING_MAX] = "";
        _cleanup_free_ char *path = strdup_printf("%s/%s", n->manifest_dir, co->file);
        const char *why = NULL;
        json_t *o;

        if (co->binary_known)
                kversion_format(&co->binary, b);
        if (co->versions_known) {
                kminor_format(co->emulated, e);
                kminor_format(co->min_compat, m);
        }
        o = json_pack("{s:s, s:s?, s:s?, s:o, s:o, s:b, s:o, s:b}",
                      "name", co->plugin->name,
                      "manifest", path,
                      "image", co->image,
                      "binaryVersion", version_or_null(co->binary_known, b),
                      "emulatedVersion", version_or_null(co->versions_known, e),
                      "emulatedVersionExplicit", co->emulated_explicit,
                      "minCompatibilityVersion", version_or_null(co->versions_known, m),
                      "minCompatibilityVersionExplicit", co->min_compat_explicit);
        if (o && !component_is_plannable(co, &why))
                json_object_set_new(o, "problem", json_string(why));
        return o;
}

/* A file cplet cannot use, shaped like a component row whose state is unknown. */
static json_t *broken_to_json(const node *n, const node_broken *b) {
        _cleanup_free_ char *path = strdup_printf("%s/%s", n->manifest_dir, b->file);

        return json_pack("{s:s?, s:s, s:n, s:n, s:n, s:b, s:n, s:b, s:s}", "name",
                         b->expected ? b->expected->name : NULL, "manifest", path, "image", "binaryVersion",
                         "emulatedVersion", "emulatedVersionExplicit", false, "minCompatibilityVersion",
                         "minCompatibilityVersionExplicit", false, "problem", b->error);
}

/* Unusable manifests refuse every plan and write; status shows them and fails the same way,
 * so that "cplet status && cplet upgrade …" stops here. */
static int report_broken(const node *n) {
        for (size_t i = 0; i < n->n_broken; i++)
                cli_error("%s", n->broken[i].error);
        if (n->n_broken > 0)
                cli_error("nothing can be planned or written until %s fixed or moved out of %s",
                          n->n_broken == 1 ? "it is" : "they are", n->manifest_dir);
        return n->n_broken > 0 ? EXIT_INVALID : EXIT_OK;
}

static const char *marked(char *buf, size_t size, bool known, const char *v, bool explicit) {
        if (!known)
                return "unknown";
        snprintf(buf, size, "%s (%s)", v, explicit ? "explicit" : "implied");
        return buf;
}

static json_t *rollout_summary(json_t *j) {
        json_t *steps = json_object_get(j, "steps");
        json_t *last = json_array_get(steps, json_array_size(steps) - 1);

        return json_pack("{s:O, s:O, s:O, s:O, s:I, s:O, s:O}", "planId", json_object_get(j, "planId"), "command",
                         json_object_get(j, "command"), "phase", json_object_get(j, "phase"), "target",
                         json_object_get(j, "target"), "step", (json_int_t) json_array_size(steps), "component",
                         last ? json_object_get(last, "component") : json_null(), "state",
                         last ? json_object_get(last, "state") : json_null());
}

static void print_json(const op_status_result *st) {
        json_auto_t *root = json_pack("{s:[]}", "components");
        json_t *list = json_object_get(root, "components");
        const node *n = st->node;

        for (size_t i = 0; i < n->n_components; i++) {
                json_t *o = component_to_json(n, &n->components[i]);

                if (o)
                        json_object_set_new(o, "removedInNextMinor", removed_next_to_json(st, i));
                json_array_append_new(list, o);
        }
        for (size_t i = 0; i < n->n_broken; i++)
                json_array_append_new(list, broken_to_json(n, &n->broken[i]));
        if (st->interrupted)
                json_object_set_new(root, "interruptedRollout", rollout_summary(st->interrupted));
        if (st->journal_error)
                json_object_set_new(root, "journalError", json_string(st->journal_error));
        json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        fputc('\n', stdout);
}

static void print_row(const component *co) {
        char b[KVERSION_STRING_MAX] = "unknown", e[KMINOR_STRING_MAX], m[KMINOR_STRING_MAX];
        char eb[48], mb[48];

        if (co->binary_known)
                kversion_format(&co->binary, b);
        kminor_format(co->emulated, e);
        kminor_format(co->min_compat, m);
        printf("%-24s %-28s %-48s %-10s %-16s %s\n", co->plugin->name, co->file, co->image ?: "(none)", b,
               marked(eb, sizeof(eb), co->versions_known, e, co->emulated_explicit),
               marked(mb, sizeof(mb), co->versions_known, m, co->min_compat_explicit));
}

static void print_interrupted(json_t *unfinished) {
        json_auto_t *sum = rollout_summary(unfinished);

        printf("\nRollout %s (%s) did not finish: it stopped at step %lld (%s, %s).\n"
               "Run cplet resume to continue it, or cplet abort to undo it.\n",
               json_string_value(json_object_get(sum, "planId")) ?: "?",
               json_string_value(json_object_get(sum, "command")) ?: "?",
               (long long) json_integer_value(json_object_get(sum, "step")),
               json_string_value(json_object_get(sum, "component")) ?: "-",
               json_string_value(json_object_get(sum, "state")) ?: "-");
}

/* Under the table: what the next minor removes, per component (cplet plan would refuse it). */
static void print_removed_next(const op_status_result *st) {
        const node *n = st->node;

        for (size_t i = 0; i < n->n_components; i++) {
                const preflight_report *r = &st->removed_next[i];
                char next[KMINOR_STRING_MAX];

                if (!st->next_known[i] || r->n_findings == 0)
                        continue;
                kminor_format(kminor_add(kversion_minor(&n->components[i].binary), 1), next);
                printf("\n%s: %s removes %s of its command line:\n", n->components[i].plugin->name, next,
                       r->n_findings == 1 ? "this" : "these");
                for (size_t k = 0; k < r->n_findings; k++)
                        printf("  %s\n", r->findings[k].message);
        }
}

static void print_table(const op_status_result *st) {
        const node *n = st->node;
        const char *why;

        if (st->journal_error)
                printf("The rollout journal cannot be read: %s\nEvery writing command is refused until it can.\n\n",
                       st->journal_error);
        if (n->n_components == 0 && n->n_broken == 0) {
                printf("No control-plane components in %s.\n", n->manifest_dir);
                return;
        }
        printf("%-24s %-28s %-48s %-10s %-16s %s\n", "COMPONENT", "MANIFEST", "IMAGE", "BINARY", "EMULATED",
               "MIN-COMPAT");
        for (size_t i = 0; i < n->n_components; i++)
                print_row(&n->components[i]);
        for (size_t i = 0; i < n->n_broken; i++)
                printf("%-24s %-28s %-48s %-10s %-16s %s\n", n->broken[i].expected ? n->broken[i].expected->name : "-",
                       n->broken[i].file, "(unusable)", "unknown", "unknown", "unknown");
        for (size_t i = 0; i < n->n_broken; i++)
                printf("\n%s: %s\n", n->broken[i].expected ? n->broken[i].expected->name : n->broken[i].file,
                       n->broken[i].error);
        for (size_t i = 0; i < n->n_components; i++)
                if (!component_is_plannable(&n->components[i], &why))
                        printf("\n%s: %s\n", n->components[i].plugin->name, why);
        print_removed_next(st);
        if (st->interrupted)
                print_interrupted(st->interrupted);
}

int cmd_status(cli *c) {
        _cleanup_(op_status_result_done) op_status_result st = {};
        _cleanup_free_ char *error = NULL;
        int r;

        r = cli_env(c);
        if (r != EXIT_OK)
                return r;
        r = op_status(c->env, &st, &error);
        if (r < 0)
                return cli_fail(r, error);
        if (c->json)
                print_json(&st);
        else
                print_table(&st);
        return report_broken(st.node);
}
