/* SPDX-License-Identifier: Apache-2.0 */
#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "cli.h"
#include "macro.h"
#include "manifest.h"
#include "plan.h"
#include "rollout.h"
#include "store.h"

int cli_check_component_tree(cli *c, const component *co, json_t *new_pod, component *ret_next) {
        _cleanup_(component_done) component next = {};
        _cleanup_free_ plan_component *pc = NULL;
        _cleanup_free_ char *error = NULL;
        json_t *container = NULL, *containers;
        const node *n = c->node;
        const char *why;
        size_t i;
        int r;

        /* The new tree must still hold the component, readable and valid for its binary. */
        containers = json_object_get(json_object_get(new_pod, "spec"), "containers");
        json_array_foreach(containers, i, container)
                if (streq(container_name(container), container_name(co->container)))
                        break;
        if (!container || i == json_array_size(containers)) {
                cli_error("%s: the new manifest has no container \"%s\"", co->plugin->name, container_name(co->container));
                return EXIT_INVALID;
        }
        r = component_read(new_pod, container, co->plugin, co->file, &next);
        if (r < 0)
                return EXIT_FAILED;
        if (!component_is_plannable(&next, &why)) {
                cli_error("refused: %s would not be valid: %s", co->plugin->name, why);
                return EXIT_INVALID;
        }

        pc = calloc(n->n_components, sizeof(*pc));
        if (!pc)
                return EXIT_FAILED;
        for (size_t k = 0; k < n->n_components; k++) {
                const component *x = streq(n->components[k].plugin->name, co->plugin->name) ? &next : &n->components[k];

                if (!component_is_plannable(x, &why)) {
                        cli_error("refused: %s (%s) cannot be checked: %s", x->plugin->name, x->file, why);
                        return EXIT_INVALID;
                }
                cli_plan_component(x, &pc[k]);
        }
        r = plan_validate_state(pc, n->n_components, &error);
        if (r < 0) {
                cli_error("refused: the node would be in an invalid state: %s", error);
                return EXIT_INVALID;
        }

        /* The rules a plan keeps hold for a single write too. */
        if (co->versions_known) {
                char have[KMINOR_STRING_MAX], want[KMINOR_STRING_MAX];
                int diff = (int) next.emulated.minor - (int) co->emulated.minor;

                kminor_format(co->emulated, have);
                kminor_format(next.emulated, want);
                if (next.emulated.major != co->emulated.major || diff > 1 || diff < -1) {
                        cli_error("refused: %s would move from emulating %s to %s; the emulated version moves one "
                                  "minor at a time (use cplet upgrade or cplet rollback --emulated-version)",
                                  co->plugin->name, have, want);
                        return EXIT_INVALID;
                }
                kminor_format(co->min_compat, have);
                if (kminor_cmp(next.emulated, co->min_compat) < 0) {
                        cli_error("refused: %s would emulate %s, below the min-compatibility version %s in force: "
                                  "data may already need %s to be read",
                                  co->plugin->name, want, have, have);
                        return EXIT_INVALID;
                }
        }
        if (!c->force) {
                _cleanup_(store_freep) store *st = NULL;
                kminor hw = KMINOR(0, 0);

                if (store_open(c->root, 0, false, &st, NULL) >= 0) {
                        r = store_high_water_get(st, &hw, &error);
                        if (r < 0) {
                                cli_error("%s", error);
                                return cli_exit_code(r);
                        }
                }
                if (co->versions_known && kminor_cmp(co->min_compat, hw) > 0)
                        hw = co->min_compat;
                if (kminor_cmp(next.min_compat, hw) < 0) {
                        char m[KMINOR_STRING_MAX], mark[KMINOR_STRING_MAX];

                        kminor_format(next.min_compat, m);
                        kminor_format(hw, mark);
                        cli_error("refused: %s would run with min-compatibility version %s, below %s, the highest "
                                  "this node has run with: storage may already use encodings older releases "
                                  "cannot read. Pass --force if you are sure",
                                  co->plugin->name, m, mark);
                        return EXIT_INVALID;
                }
        }
        *ret_next = next;
        next = (component){};
        return EXIT_OK;
}

/* Finds the component on the node as it now is and builds its new manifest. */
static int build_for(cli *c, const char *name, component_builder build, void *userdata, const component **ret_co,
                     json_t **ret_pod) {
        const component *co = node_find(c->node, name);

        if (!co) {
                cli_error("no component \"%s\" on this node (see cplet status)", name);
                return EXIT_INVALID;
        }
        *ret_co = co;
        return build(c, co, ret_pod, userdata);
}

int cli_write_component(cli *c, const char *name, component_builder build, void *userdata, const char *command,
                        const char *reason) {
        _cleanup_(component_done) component next = {};
        _cleanup_(store_freep) store *s = NULL;
        _cleanup_free_ char *error = NULL;
        _cleanup_close_ int lock_fd = -EBADF;
        json_auto_t *new_pod = NULL;
        char b[KVERSION_STRING_MAX], e[KMINOR_STRING_MAX], m[KMINOR_STRING_MAX];
        const component *co;
        unsigned live = 0, number = 0;
        int r;

        /* A read-only pass first: whatever is refused is refused before anything (even the lock
         * file) is touched. */
        r = cli_load_node(c);
        if (r == EXIT_OK)
                r = build_for(c, name, build, userdata, &co, &new_pod);
        if (r == EXIT_OK)
                r = cli_check_component_tree(c, co, new_pod, &next);
        if (r != EXIT_OK)
                return r;

        if (!c->no_wait && !c->dry_run)
                return cli_run_gated_write(c, name, build, userdata, command, reason);

        if (!c->dry_run) {
                /* Then for real, under the lock: the manifest is built again from the node as it
                 * is now, never from a read another writer may have overtaken. */
                r = cli_refuse_if_interrupted(c);
                if (r == EXIT_OK)
                        r = cli_lock_for_write(c, &lock_fd);
                if (r == EXIT_OK)
                        r = cli_load_node(c);
                if (r == EXIT_OK) {
                        component_done(&next);
                        new_pod = (json_decref(new_pod), NULL);
                        r = build_for(c, name, build, userdata, &co, &new_pod);
                }
                if (r == EXIT_OK)
                        r = cli_check_component_tree(c, co, new_pod, &next);
                if (r != EXIT_OK)
                        return r;
        }

        kversion_format(&next.binary, b);
        kminor_format(next.emulated, e);
        kminor_format(next.min_compat, m);

        if (c->dry_run) {
                _cleanup_free_ char *before = NULL, *after = NULL, *label = NULL;
                size_t size;

                r = store_open(c->root, c->config.keep_revisions, false, &s, &error);
                if (r >= 0)
                        r = store_read_live(s, co->file, &before, &size, &error);
                if (r >= 0)
                        r = manifest_render(new_pod, &after, &size);
                label = strdup_printf("%s (new revision)", co->file);
                if (r < 0 || !label) {
                        cli_error("%s", error ?: strerror(-r));
                        return cli_exit_code(r);
                }
                return cli_print_diff(before, after, co->file, label) < 0 ? EXIT_FAILED : EXIT_OK;
        }

        r = store_open(c->root, c->config.keep_revisions, true, &s, &error);
        if (r >= 0)
                r = component_sync_live(s, co, &live, &error);
        if (r >= 0) {
                revision_info info = {
                        .reason = reason,
                        .binary_version = b,
                        .emulated_version = e,
                        .min_compat_version = m,
                };

                r = store_commit(s, co->plugin->name, co->file, new_pod, &info, live, &number, &error);
        }
        if (r < 0) {
                cli_error("%s", error ?: strerror(-r));
                return cli_exit_code(r);
        }
        if (c->json)
                printf("{\"component\": \"%s\", \"revision\": %u, \"parent\": %u}\n", co->plugin->name, number, live);
        else
                printf("%s: revision %u is live (%s; binary %s, emulated %s, min-compatibility %s)\n",
                       co->plugin->name, number, reason, b, e, m);
        return EXIT_OK;
}

/* rollback --emulated-version E / --binary-version V: a gated plan back down, in reverse
 * order, with the versions not named kept as they are in force. */
static int rollback_versions(cli *c) {
        const component *ref;
        char b[KVERSION_STRING_MAX], e[KMINOR_STRING_MAX];
        int r;

        r = cli_load_node(c);
        if (r != EXIT_OK)
                return r;
        if (c->node->n_components == 0) {
                cli_error("no control-plane components in %s", c->node->manifest_dir);
                return EXIT_INVALID;
        }
        ref = &c->node->components[0];
        for (size_t i = 0; i < c->node->n_components; i++) {
                const component *co = &c->node->components[i];
                const char *why;

                if (!component_is_plannable(co, &why)) {
                        cli_error("cannot plan: %s: %s", co->plugin->name, why);
                        return EXIT_INVALID;
                }
                if (kversion_cmp(&co->binary, &ref->binary) != 0 || !kminor_eq(co->emulated, ref->emulated)) {
                        cli_error("rollback: the components run different versions (%s and %s differ); finish the "
                                  "rollout or roll back with cplet rollback --component first",
                                  ref->plugin->name, co->plugin->name);
                        return EXIT_INVALID;
                }
        }
        kversion_format(&ref->binary, b);
        kminor_format(ref->emulated, e);

        if (c->emulated_version && !c->binary_version) {
                kminor want;

                if (kminor_parse_flag("--emulated-version", c->emulated_version, &want, NULL, NULL) >= 0 &&
                    kminor_cmp(want, ref->emulated) >= 0) {
                        cli_error("rollback: the emulated version in force is %s; %s is not lower (use cplet upgrade "
                                  "to raise it)",
                                  e, c->emulated_version);
                        return EXIT_INVALID;
                }
                c->binary_version = c->rollback_owned[0] = strdup(b);
        } else if (c->binary_version) {
                kversion want;

                if (kversion_parse(c->binary_version, &want, NULL) >= 0) {
                        char v[KVERSION_STRING_MAX];

                        kversion_format(&want, v);
                        if (kversion_cmp(&want, &ref->binary) >= 0) {
                                cli_error("rollback: the binaries run %s; %s is not older (use cplet upgrade)", b, v);
                                return EXIT_INVALID;
                        }
                        /* FACTS.md: back to 1.(N-1) only while the emulated version is <= 1.(N-1). */
                        if (!c->emulated_version && kminor_cmp(ref->emulated, kversion_minor(&want)) > 0) {
                                cli_error("rollback: binary %s cannot run the emulated version %s in force; roll the "
                                          "emulated version back first (cplet rollback --emulated-version %u.%u)",
                                          v, e, want.major, want.minor);
                                return EXIT_INVALID;
                        }
                }
                /* The old binary must accept the emulated version in force: keep it, so that an
                 * impossible plan is refused rather than emulation lowered behind one's back. */
                if (!c->emulated_version)
                        c->emulated_version = c->rollback_owned[1] = strdup(e);
        }
        if (!c->binary_version || !c->emulated_version)
                return EXIT_FAILED;
        return c->no_wait || c->dry_run ? cmd_upgrade(c) : cli_run_gated(c, "rollback");
}

/* Revision N of the component, parsed. */
static int build_revision_pod(cli *c, const component *co, json_t **ret, void *userdata) {
        unsigned long number = *(unsigned long *) userdata;
        _cleanup_(store_freep) store *s = NULL;
        _cleanup_free_ char *error = NULL, *data = NULL, *name = NULL;
        size_t size;
        int r;

        r = store_open(c->root, 0, false, &s, &error);
        if (r >= 0)
                r = store_read(s, co->plugin->name, (unsigned) number, &data, &size, &error);
        if (r < 0) {
                cli_error("%s", error ?: strerror(-r));
                return cli_exit_code(r);
        }
        name = strdup_printf("%s/%s/%lu.yaml", s->revisions_dir, co->plugin->name, number);
        if (!name)
                return EXIT_FAILED;
        r = manifest_parse(data, size, name, ret, &error);
        if (r < 0) {
                cli_error("%s", error ?: strerror(-r));
                return EXIT_INVALID;
        }
        return EXIT_OK;
}

int cmd_rollback(cli *c) {
        _cleanup_free_ char *reason = NULL;
        unsigned long number;
        char *end;

        if (!c->component && !c->to_revision && (c->emulated_version || c->binary_version)) {
                if (c->min_compat_version || c->image_repository) {
                        cli_error("rollback: only --emulated-version or --binary-version (see cplet rollback --help)");
                        return EXIT_INVALID;
                }
                return rollback_versions(c);
        }
        if (!c->component || !c->to_revision) {
                cli_error("rollback: give --component C --to-revision N, or --emulated-version E, or "
                          "--binary-version V (see cplet rollback --help)");
                return EXIT_INVALID;
        }
        if (c->emulated_version || c->binary_version) {
                cli_error("rollback: --to-revision does not combine with version options");
                return EXIT_INVALID;
        }
        number = strtoul(c->to_revision, &end, 10);
        if (!isdigit((unsigned char) c->to_revision[0]) || *end || number == 0 || number > 999999999) {
                cli_error("--to-revision \"%s\": expected a revision number (see cplet history)", c->to_revision);
                return EXIT_INVALID;
        }

        reason = strdup_printf("rollback to revision %lu", number);
        if (!reason)
                return EXIT_FAILED;
        return cli_write_component(c, c->component, build_revision_pod, &number, "rollback", reason);
}
