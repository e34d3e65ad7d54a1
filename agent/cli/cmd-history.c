/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <string.h>

#include "cli.h"
#include "macro.h"
#include "store.h"

int cli_open_store(cli *c, store **ret) {
        _cleanup_free_ char *error = NULL;
        int r = store_open(c->root, 0, false, ret, &error);

        if (r < 0) {
                cli_error("%s", error ?: strerror(-r));
                return cli_exit_code(r);
        }
        return EXIT_OK;
}

int cmd_history(cli *c) {
        _cleanup_(store_freep) store *s = NULL;
        json_auto_t *out = json_pack("{s:[]}", "components");
        const node *n;
        int r;

        r = cli_load_node(c);
        if (r != EXIT_OK)
                return r;
        n = c->node;
        if (c->component && !node_find(n, c->component)) {
                cli_error("no component \"%s\" on this node (see cplet status)", c->component);
                return EXIT_INVALID;
        }
        r = cli_open_store(c, &s);
        if (r != EXIT_OK)
                return r;

        for (size_t i = 0; i < n->n_components; i++) {
                const component *co = &n->components[i];
                _cleanup_(revision_list_done) revision_list l = {};
                _cleanup_free_ char *error = NULL, *live_bytes = NULL;
                json_t *revs = NULL;
                unsigned live = 0;
                size_t size;

                if (c->component && !streq(c->component, co->plugin->name))
                        continue;
                r = store_list(s, co->plugin->name, &l, &error);
                if (r >= 0)
                        r = store_read_live(s, co->file, &live_bytes, &size, &error);
                if (r < 0) {
                        cli_error("%s", error ?: strerror(-r));
                        return cli_exit_code(r);
                }
                live = store_live_number(&l, live_bytes, size);

                if (c->json) {
                        revs = json_array();
                        json_array_append_new(json_object_get(out, "components"),
                                              json_pack("{s:s, s:s, s:o, s:o}", "name", co->plugin->name, "manifest",
                                                        co->file, "live", live ? json_integer(live) : json_null(),
                                                        "revisions", revs));
                } else {
                        printf("%s (%s)%s\n", co->plugin->name, co->file,
                               l.n == 0  ? ": no revisions yet (adopted on the first write)"
                               : !live   ? ": the live manifest matches no revision (edited by hand)"
                                         : "");
                        if (l.n > 0)
                                printf("  %-4s %-9s %-21s %-10s %-8s %-10s %s\n", "", "REVISION", "TIME", "BINARY",
                                       "EMULATED", "MIN-COMPAT", "REASON");
                }
                for (size_t k = l.n; k-- > 0;) {
                        const revision *rv = &l.items[k];

                        if (c->json)
                                json_array_append_new(
                                        revs, json_pack("{s:I, s:s?, s:s?, s:s?, s:s?, s:s?, s:s?, s:I, s:b}",
                                                        "revision", (json_int_t) rv->number, "time", rv->time,
                                                        "binaryVersion", rv->binary_version, "emulatedVersion",
                                                        rv->emulated_version, "minCompatibilityVersion",
                                                        rv->min_compat_version, "reason", rv->reason, "planId",
                                                        rv->plan_id, "parent", (json_int_t) rv->parent, "live",
                                                        rv->number == live));
                        else
                                printf("  %-4s %-9u %-21s %-10s %-8s %-10s %s\n", rv->number == live ? "live" : "",
                                       rv->number, rv->time ?: "?", rv->binary_version ?: "?",
                                       rv->emulated_version ?: "?", rv->min_compat_version ?: "?", rv->reason);
                }
        }
        if (c->json) {
                json_dumpf(out, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
                fputc('\n', stdout);
        }
        return EXIT_OK;
}
