/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>

#include "cli.h"
#include "macro.h"

static json_t *revision_to_json(const revision *rv, unsigned live) {
        return json_pack("{s:I, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:I, s:b}", "revision", (json_int_t) rv->number,
                         "time", rv->time, "binaryVersion", rv->binary_version, "emulatedVersion",
                         rv->emulated_version, "minCompatibilityVersion", rv->min_compat_version, "reason",
                         rv->reason, "planId", rv->plan_id, "parent", (json_int_t) rv->parent, "live",
                         rv->number == live);
}

static json_t *entry_to_json(const op_history_entry *h) {
        json_t *revs = json_array();

        for (size_t k = h->revisions.n; revs && k-- > 0;)
                json_array_append_new(revs, revision_to_json(&h->revisions.items[k], h->live));
        return json_pack("{s:s, s:s, s:o, s:o}", "name", h->component->plugin->name, "manifest", h->component->file,
                         "live", h->live ? json_integer(h->live) : json_null(), "revisions", revs);
}

static void print_entry(const op_history_entry *h) {
        const revision_list *l = &h->revisions;

        printf("%s (%s)%s\n", h->component->plugin->name, h->component->file,
               l->n == 0  ? ": no revisions yet (adopted on the first write)"
               : !h->live ? ": the live manifest matches no revision (edited by hand)"
                          : "");
        if (l->n > 0)
                printf("  %-4s %-9s %-21s %-10s %-8s %-10s %s\n", "", "REVISION", "TIME", "BINARY", "EMULATED",
                       "MIN-COMPAT", "REASON");
        for (size_t k = l->n; k-- > 0;) {
                const revision *rv = &l->items[k];

                printf("  %-4s %-9u %-21s %-10s %-8s %-10s %s\n", rv->number == h->live ? "live" : "", rv->number,
                       rv->time ?: "?", rv->binary_version ?: "?", rv->emulated_version ?: "?",
                       rv->min_compat_version ?: "?", rv->reason);
        }
}

int cmd_history(cli *c) {
        _cleanup_(op_history_result_done) op_history_result h = {};
        _cleanup_free_ char *error = NULL;
        int r;

        r = cli_env(c);
        if (r != EXIT_OK)
                return r;
        r = op_history(c->env, c->component, &h, &error);
        if (r < 0)
                return cli_fail(r, error);
        if (c->json) {
                json_auto_t *out = json_pack("{s:[]}", "components");

                for (size_t i = 0; i < h.n_entries; i++)
                        json_array_append_new(json_object_get(out, "components"), entry_to_json(&h.entries[i]));
                json_dumpf(out, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
                fputc('\n', stdout);
                return EXIT_OK;
        }
        for (size_t i = 0; i < h.n_entries; i++)
                print_entry(&h.entries[i]);
        return EXIT_OK;
}
