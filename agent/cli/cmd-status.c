/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>

#include "cli.h"
#include "macro.h"
#include "rollout.h"
#include "store.h"

static json_t *version_or_null(bool known, const char *s) {
        return known ? json_string(s) : json_null();
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

static const char *marked(char *buf, size_t size, bool known, const char *v, bool explicit) {
        if (!known)
                return "unknown";
        snprintf(buf, size, "%s (%s)", v, explicit ? "explicit" : "implied");
        return buf;
}

/* The journal of a rollout that did not finish, or NULL. */
static json_t *unfinished_rollout(cli *c) {
        _cleanup_(store_freep) store *s = NULL;
        _cleanup_(journal_freep) journal *j = NULL;

        if (store_open(c->root, 0, false, &s, NULL) < 0 || journal_load(s, &j, NULL) < 0)
                return NULL;
        return journal_in_progress(j) ? journal_to_json(j) : NULL;
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

int cmd_status(cli *c) {
        json_auto_t *unfinished = NULL;
        const node *n;
        int r;

        r = cli_load_node(c);
        if (r != EXIT_OK)
                return r;
        n = c->node;
        unfinished = unfinished_rollout(c);

        if (c->json) {
                json_auto_t *root = json_pack("{s:[]}", "components");
                json_t *list = json_object_get(root, "components");

                for (size_t i = 0; i < n->n_components; i++)
                        json_array_append_new(list, component_to_json(n, &n->components[i]));
                if (unfinished)
                        json_object_set_new(root, "interruptedRollout", rollout_summary(unfinished));
                json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
                fputc('\n', stdout);
                return EXIT_OK;
        }

        if (n->n_components == 0) {
                printf("No control-plane components in %s.\n", n->manifest_dir);
                return EXIT_OK;
        }
        printf("%-24s %-28s %-48s %-10s %-16s %s\n", "COMPONENT", "MANIFEST", "IMAGE", "BINARY", "EMULATED",
               "MIN-COMPAT");
        for (size_t i = 0; i < n->n_components; i++) {
                const component *co = &n->components[i];
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
        for (size_t i = 0; i < n->n_components; i++) {
                const char *why;

                if (!component_is_plannable(&n->components[i], &why))
                        printf("\n%s: %s\n", n->components[i].plugin->name, why);
        }
        if (unfinished) {
                json_auto_t *sum = rollout_summary(unfinished);

                printf("\nRollout %s (%s) did not finish: it stopped at step %lld (%s, %s).\n"
                       "Run cplet resume to continue it, or cplet abort to undo it.\n",
                       json_string_value(json_object_get(sum, "planId")) ?: "?",
                       json_string_value(json_object_get(sum, "command")) ?: "?",
                       (long long) json_integer_value(json_object_get(sum, "step")),
                       json_string_value(json_object_get(sum, "component")) ?: "-",
                       json_string_value(json_object_get(sum, "state")) ?: "-");
        }
        return EXIT_OK;
}
