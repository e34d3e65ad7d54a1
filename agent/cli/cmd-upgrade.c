/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <string.h>

#include "cli.h"
#include "macro.h"
#include "plan.h"
#include "rollout.h"
#include "store.h"

/* Writes (or, with --dry-run, shows) every step: the manifest tree of each component moves
 * along the plan in memory, each step becoming one revision. */
static int run_steps(cli *c, store *s, const plan *p, const char *plan_id) {
        const node *n = c->node;
        _cleanup_free_ json_t **trees = calloc(n->n_components, sizeof(json_t *));
        _cleanup_free_ unsigned *live = calloc(n->n_components, sizeof(unsigned));
        _cleanup_free_ unsigned *next_number = calloc(n->n_components, sizeof(unsigned));
        json_auto_t *events = json_array();
        int ret = EXIT_OK;

        if (!trees || !live || !next_number || !events)
                return EXIT_FAILED;

        for (size_t i = 0; i < n->n_components && c->dry_run; i++) {
                _cleanup_(revision_list_done) revision_list l = {};
                _cleanup_free_ char *bytes = NULL;
                size_t size;

                /* The numbers a real run would use: adoption or an external edit takes one. */
                if (store_list(s, n->components[i].plugin->name, &l, NULL) < 0 ||
                    store_read_live(s, n->components[i].file, &bytes, &size, NULL) < 0)
                        return EXIT_FAILED;
                live[i] = store_live_number(&l, bytes, size);
                next_number[i] = (l.n > 0 ? l.items[l.n - 1].number : 0) + (live[i] ? 1 : 2);
        }

        for (size_t i = 0; i < n->n_components && !c->dry_run; i++) {
                _cleanup_free_ char *error = NULL;
                int r = component_sync_live(s, &n->components[i], &live[i], &error);

                if (r < 0) {
                        cli_error("%s", error ?: strerror(-r));
                        return EXIT_FAILED;
                }
        }

        for (size_t k = 0; k < p->n_steps; k++) {
                const plan_step *st = &p->steps[k];
                const component *co = &n->components[st->component];
                _cleanup_free_ char *error = NULL, *reason = NULL;
                char b[KVERSION_STRING_MAX], e[KMINOR_STRING_MAX], m[KMINOR_STRING_MAX];
                component current = *co;
                json_t *next = NULL;
                unsigned number = 0;
                int r;

                /* Apply to the tree as earlier steps left it. */
                if (trees[st->component]) {
                        current.pod = trees[st->component];
                        current.container = component_container_in(co, current.pod);
                }
                r = component_apply_step(&current, st, &next, &error);
                if (r < 0) {
                        cli_error("step %zu (%s %s): %s", k + 1, co->plugin->name, step_kind_to_string(st->kind),
                                  error ?: strerror(-r));
                        ret = EXIT_FAILED;
                        break;
                }

                kversion_format(&st->binary, b);
                kminor_format(st->emulated, e);
                kminor_format(st->min_compat, m);
                reason = strdup_printf("upgrade step %zu/%zu: %s", k + 1, p->n_steps, step_kind_to_string(st->kind));
                if (!reason) {
                        json_decref(next);
                        ret = EXIT_FAILED;
                        break;
                }

                if (c->dry_run) {
                        _cleanup_free_ char *before = NULL, *after = NULL, *la = NULL, *lb = NULL;
                        size_t size;

                        /* Before the first step: the live bytes, so the diff shows everything the
                         * rewrite changes (comments are not kept). */
                        if (trees[st->component])
                                r = store_render(trees[st->component], next_number[st->component] - 1, &before, &size);
                        else
                                r = store_read_live(s, co->file, &before, &size, NULL);
                        if (r >= 0)
                                r = store_render(next, next_number[st->component], &after, &size);
                        la = strdup_printf("%s (live)", co->file);
                        lb = strdup_printf("%s (revision %u: step %zu, %s %s)", co->file, next_number[st->component],
                                           k + 1, co->plugin->name, step_kind_to_string(st->kind));
                        if (trees[st->component]) {
                                free(la);
                                la = strdup_printf("%s (revision %u)", co->file, next_number[st->component] - 1);
                        }
                        next_number[st->component]++;
                        if (r < 0 || !la || !lb || cli_print_diff(before, after, la, lb) < 0) {
                                json_decref(next);
                                ret = EXIT_FAILED;
                                break;
                        }
                } else {
                        revision_info info = {
                                .reason = reason,
                                .plan_id = plan_id,
                                .binary_version = b,
                                .emulated_version = e,
                                .min_compat_version = m,
                        };

                        r = store_commit(s, co->plugin->name, co->file, next, &info, live[st->component], &number,
                                         &error);
                        if (r < 0) {
                                cli_error("step %zu (%s %s): %s", k + 1, co->plugin->name,
                                          step_kind_to_string(st->kind), error ?: strerror(-r));
                                json_decref(next);
                                ret = EXIT_FAILED;
                                break;
                        }
                        live[st->component] = number;
                        if (c->json) {
                                json_t *ev = step_to_json(n, st);

                                json_object_set_new(ev, "step", json_integer((json_int_t) k + 1));
                                json_object_set_new(ev, "revision", json_integer(number));
                                json_array_append_new(events, ev);
                        } else
                                printf("step %zu/%zu: %-24s %-18s -> revision %u (binary %s, emulated %s, "
                                       "min-compatibility %s)\n",
                                       k + 1, p->n_steps, co->plugin->name, step_kind_to_string(st->kind), number, b,
                                       e, m);
                }
                json_decref(trees[st->component]);
                trees[st->component] = next;
        }

        for (size_t i = 0; i < n->n_components; i++)
                json_decref(trees[i]);

        if (c->json && !c->dry_run) {
                json_auto_t *root = json_pack("{s:s, s:O, s:b}", "planId", plan_id, "steps", events, "complete",
                                              ret == EXIT_OK);

                json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
                fputc('\n', stdout);
        }
        if (ret != EXIT_OK && !c->dry_run)
                cli_error("stopped: the steps before this one are written and live; see cplet history");
        return ret;
}

int cmd_upgrade(cli *c) {
        _cleanup_(plan_freep) plan *p = NULL;
        _cleanup_(store_freep) store *s = NULL;
        _cleanup_close_ int lock_fd = -EBADF;
        _cleanup_free_ char *error = NULL;
        char plan_id[32];
        int r;

        if (!c->no_wait && !c->dry_run)
                return cli_run_gated(c, "upgrade");

        /* Plan first, read-only: a refused plan leaves the node exactly as it was. */
        r = cli_compute_plan(c, &p, NULL);
        if (r != EXIT_OK)
                return r;
        if (p->n_steps == 0) {
                if (c->json)
                        printf("{\"steps\": [], \"complete\": true}\n");
                else
                        printf("Nothing to do: the node is already at the target.\n");
                return EXIT_OK;
        }
        if (c->dry_run) {
                r = store_open(c->root, c->config.keep_revisions, false, &s, &error);
                if (r < 0) {
                        cli_error("%s", error ?: strerror(-r));
                        return cli_exit_code(r);
                }
                return run_steps(c, s, p, "dry-run");
        }

        r = cli_refuse_if_interrupted(c);
        if (r != EXIT_OK)
                return r;

        r = cli_lock_for_write(c, &lock_fd);
        if (r != EXIT_OK)
                return r;
        /* The node may have changed before the lock was ours: read and plan again under it. */
        c->node = node_free(c->node);
        p = plan_free(p);
        r = cli_compute_plan(c, &p, NULL);
        if (r != EXIT_OK)
                return r;

        r = store_open(c->root, c->config.keep_revisions, true, &s, &error);
        if (r < 0) {
                cli_error("%s", error ?: strerror(-r));
                return cli_exit_code(r);
        }
        cli_new_plan_id(plan_id);
        return run_steps(c, s, p, plan_id);
}
