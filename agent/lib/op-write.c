/* SPDX-License-Identifier: Apache-2.0 */
/* Writes that are not gated (--no-wait, --dry-run) and the checks every single write keeps:
 * upgrade and rollback by version write a plan's steps; rollback to a revision and flags
 * write one component's new manifest. */

#include <errno.h>
#include <string.h>

#include "macro.h"
#include "manifest.h"
#include "op-internal.h"

static int find_container(const component *co, json_t *new_pod, json_t **ret, char **ret_error) {
        json_t *containers = json_object_get(json_object_get(new_pod, "spec"), "containers"), *container;
        size_t i;

        json_array_foreach(containers, i, container)
                if (streq(container_name(container), container_name(co->container))) {
                        *ret = container;
                        return 0;
                }
        return set_error(ret_error, -EINVAL, "%s: the new manifest has no container \"%s\"", co->plugin->name,
                         container_name(co->container));
}

/* The rules a plan keeps hold for a single write too. */
static int check_single_move(const component *co, const component *next, char **ret_error) {
        char have[KMINOR_STRING_MAX], want[KMINOR_STRING_MAX];
        int diff = (int) next->emulated.minor - (int) co->emulated.minor;

        if (!co->versions_known)
                return 0;
        kminor_format(co->emulated, have);
        kminor_format(next->emulated, want);
        if (next->emulated.major != co->emulated.major || diff > 1 || diff < -1)
                return set_error(ret_error, -EINVAL,
                                 "refused: %s would move from emulating %s to %s; the emulated version moves one "
                                 "minor at a time (use cplet upgrade or cplet rollback --emulated-version)",
                                 co->plugin->name, have, want);
        kminor_format(co->min_compat, have);
        if (kminor_cmp(next->emulated, co->min_compat) < 0)
                return set_error(ret_error, -EINVAL,
                                 "refused: %s would emulate %s, below the min-compatibility version %s in force: "
                                 "data may already need %s to be read",
                                 co->plugin->name, want, have, have);
        return 0;
}

/* The floor is the highest min-compatibility version the node has run with: the mark, or the
 * one in force now if higher (storage written under it may need it). */
static int check_high_water(op_env *e, const component *co, const component *next, char **ret_error) {
        char m[KMINOR_STRING_MAX], mark[KMINOR_STRING_MAX];
        kminor hw;
        int r;

        r = op_high_water(e, &hw, ret_error);
        if (r < 0)
                return r;
        if (co->versions_known && kminor_cmp(co->min_compat, hw) > 0)
                hw = co->min_compat;
        if (kminor_cmp(next->min_compat, hw) >= 0)
                return 0;
        kminor_format(next->min_compat, m);
        kminor_format(hw, mark);
        return set_error(ret_error, -EINVAL,
                         "refused: %s would run with min-compatibility version %s, below %s, the highest this node "
                         "has run with: storage may already use encodings older releases cannot read. Pass --force "
                         "if you are sure",
                         next->plugin->name, m, mark);
}

/* The node with `next` in place of its component must be one every binary starts with. */
static int check_node_with(const node *n, const component *next, char **ret_error) {
        _cleanup_free_ plan_component *pc = calloc(n->n_components, sizeof(plan_component));
        _cleanup_free_ char *error = NULL;
        const char *why;
        int r;

        if (!pc)
                return -ENOMEM;
        for (size_t k = 0; k < n->n_components; k++) {
                const component *x = streq(n->components[k].plugin->name, next->plugin->name) ? next
                                                                                               : &n->components[k];

                if (!component_is_plannable(x, &why))
                        return set_error(ret_error, -EINVAL, "refused: %s (%s) cannot be checked: %s",
                                         x->plugin->name, x->file, why);
                op_plan_component(x, &pc[k]);
        }
        r = plan_validate_state(pc, n->n_components, &error);
        if (r < 0)
                return set_error(ret_error, -EINVAL, "refused: the node would be in an invalid state: %s", error);
        return 0;
}

int op_check_component_tree(op_env *e, const node *n, const component *co, json_t *new_pod, bool force,
                            component *ret_next, char **ret_error) {
        _cleanup_(component_done) component next = {};
        json_t *container = NULL;
        const char *why;
        int r;

        /* The new tree must still hold the component, readable and valid for its binary. */
        r = find_container(co, new_pod, &container, ret_error);
        if (r < 0)
                return r;
        r = component_read(new_pod, container, co->plugin, co->file, &next);
        if (r < 0)
                return set_error(ret_error, r, "%s: cannot read the new manifest", co->plugin->name);
        if (!component_is_plannable(&next, &why))
                return set_error(ret_error, -EINVAL, "refused: %s would not be valid: %s", co->plugin->name, why);
        r = check_node_with(n, &next, ret_error);
        if (r >= 0)
                r = check_single_move(co, &next, ret_error);
        if (r >= 0 && !force)
                r = check_high_water(e, co, &next, ret_error);
        if (r < 0)
                return r;
        *ret_next = next;
        next = (component){};
        return 0;
}

static int build_for(op_env *e, const node *n, const char *name, op_builder build, void *userdata,
                     const component **ret_co, json_t **ret_pod, char **ret_error) {
        const component *co = node_find(n, name);

        if (!co)
                return set_error(ret_error, -EINVAL, "no component \"%s\" on this node (see cplet status)", name);
        *ret_co = co;
        return build(e, co, ret_pod, userdata, ret_error);
}

static int build_and_check(op_env *e, const node *n, const char *name, op_builder build, void *userdata,
                           const op_options *o, const component **ret_co, json_t **ret_pod, component *ret_next,
                           char **ret_error) {
        int r = build_for(e, n, name, build, userdata, ret_co, ret_pod, ret_error);

        return r < 0 ? r : op_check_component_tree(e, n, *ret_co, *ret_pod, o->force, ret_next, ret_error);
}

static int append_diff(op_result *res, char *label_a, char *label_b, char *before, char *after) {
        op_diff *d = reallocarray(res->diffs, res->n_diffs + 1, sizeof(op_diff));

        if (!d || !label_a || !label_b) {
                res->diffs = d ?: res->diffs;
                free(label_a), free(label_b), free(before), free(after);
                return -ENOMEM;
        }
        d[res->n_diffs++] = (op_diff){ .label_a = label_a, .label_b = label_b, .before = before, .after = after };
        res->diffs = d;
        return 0;
}

/* Takes the strings in *w. */
static int append_written(op_result *res, op_written *w, const char *manifest, const char *image,
                          const char *reason) {
        op_written *l = reallocarray(res->written, res->n_written + 1, sizeof(op_written));

        if (!l)
                return -ENOMEM;
        res->written = l;
        w->manifest = strdup(manifest);
        w->image = image ? strdup(image) : NULL;
        w->reason = strdup(reason);
        if (!w->manifest || (image && !w->image) || !w->reason) {
                free(w->manifest), free(w->image), free(w->reason);
                return -ENOMEM;
        }
        l[res->n_written++] = *w;
        res->written = l;
        return 0;
}

/* Writes (or shows) one component's new manifest, from a node read under the lock. */
static int write_component_now(op_env *e, const node *n, const component *co, json_t *new_pod,
                               const component *next, const char *reason, bool dry_run, op_result *res,
                               char **ret_error) {
        _cleanup_(store_freep) store *s = NULL;
        _cleanup_free_ char *before = NULL, *after = NULL;
        op_written w = { .step = 1, .n_steps = 1, .component = co->plugin->name, .kind = res->command };
        size_t size;
        int r;

        kversion_format(&next->binary, w.binary_version);
        kminor_format(next->emulated, w.emulated_version);
        kminor_format(next->min_compat, w.min_compat_version);
        if (dry_run) {
                r = store_open(e->root, e->config.keep_revisions, false, &s, ret_error);
                if (r >= 0)
                        r = store_read_live(s, co->file, &before, &size, ret_error);
                if (r >= 0)
                        r = manifest_render(new_pod, &after, &size);
                if (r < 0)
                        return r;
                return append_diff(res, strdup(co->file), strdup_printf("%s (new revision)", co->file),
                                   TAKE_PTR(before), TAKE_PTR(after));
        }

        r = store_open(e->root, e->config.keep_revisions, true, &s, ret_error);
        if (r >= 0)
                r = component_sync_live(s, co, &w.parent, ret_error);
        if (r >= 0) {
                revision_info info = {
                        .reason = reason,
                        .binary_version = w.binary_version,
                        .emulated_version = w.emulated_version,
                        .min_compat_version = w.min_compat_version,
                };

                r = store_commit(s, co->plugin->name, co->file, new_pod, &info, w.parent, &w.revision, ret_error);
        }
        if (r < 0)
                return r;
        return append_written(res, &w, co->file, next->image, reason);
}

int op_write_component(op_env *e, const char *name, op_builder build, void *userdata, const char *command,
                       const char *reason, const op_options *o, op_result *res, char **ret_error) {
        _cleanup_(component_done) component next = {};
        _cleanup_(node_freep) node *n = NULL;
        _cleanup_close_ int lock_fd = -EBADF;
        json_auto_t *new_pod = NULL;
        const component *co = NULL;
        int r;

        res->command = command;
        /* A read-only pass first: whatever is refused is refused before anything (even the lock
         * file) is touched. */
        r = op_load_node(e, &n, ret_error);
        if (r >= 0 && !node_find(n, name))
                r = set_error(ret_error, -EINVAL, "no component \"%s\" on this node (see cplet status)", name);
        if (r >= 0 && !o->dry_run)
                r = op_preflight_write(e, n, false, ret_error);
        if (r >= 0)
                r = build_and_check(e, n, name, build, userdata, o, &co, &new_pod, &next, ret_error);
        if (r < 0)
                return r;

        if (!o->no_wait && !o->dry_run)
                return op_run_gated_write(e, name, build, userdata, command, reason, o, res, ret_error);

        if (!o->dry_run) {
                /* Then for real, under the lock: the manifest is built again from the node as it
                 * is now, never from a read another writer may have overtaken. */
                component_done(&next);
                new_pod = (json_decref(new_pod), NULL);
                n = node_free(n);
                r = op_lock(e, false, &lock_fd, ret_error);
                if (r >= 0)
                        r = op_load_node(e, &n, ret_error);
                if (r >= 0)
                        r = build_and_check(e, n, name, build, userdata, o, &co, &new_pod, &next, ret_error);
                if (r < 0)
                        return r;
        }
        return write_component_now(e, n, co, new_pod, &next, reason, o->dry_run, res, ret_error);
}

/* A plan's steps applied in memory, one tree per component moving along the plan. */
typedef struct plan_writer {
        op_env *env;
        const node *node;
        const plan *plan;
        store *store;
        bool dry_run;
        json_t **trees;          /* per component: the tree as earlier steps left it (NULL: live) */
        unsigned *live;          /* per component: the live revision (real writes) */
        unsigned *next_number;   /* per component: the number the next revision takes (dry run) */
} plan_writer;

static void plan_writer_done(plan_writer *w) {
        for (size_t i = 0; w->trees && i < w->node->n_components; i++)
                json_decref(w->trees[i]);
        free(w->trees);
        free(w->live);
        free(w->next_number);
}

/* The revision numbers a real run would use: adoption or an external edit takes one. */
static int predict_numbers(plan_writer *w, char **ret_error) {
        for (size_t i = 0; i < w->node->n_components; i++) {
                _cleanup_(revision_list_done) revision_list l = {};
                _cleanup_free_ char *bytes = NULL;
                unsigned live;
                size_t size;
                int r;

                r = store_list(w->store, w->node->components[i].plugin->name, &l, ret_error);
                if (r >= 0)
                        r = store_read_live(w->store, w->node->components[i].file, &bytes, &size, ret_error);
                if (r < 0)
                        return r;
                live = store_live_number(&l, bytes, size);
                w->next_number[i] = (l.n > 0 ? l.items[l.n - 1].number : 0) + (live ? 1 : 2);
        }
        return 0;
}

static int show_step(plan_writer *w, size_t k, const component *co, json_t *next, op_result *res) {
        const plan_step *st = &w->plan->steps[k];
        unsigned *number = &w->next_number[st->component];
        _cleanup_free_ char *before = NULL, *after = NULL;
        char *label_a;
        size_t size;
        int r;

        /* Before the first step: the live bytes, so the diff shows everything the rewrite changes
         * (comments are not kept). */
        if (w->trees[st->component]) {
                r = store_render(w->trees[st->component], *number - 1, &before, &size);
                label_a = strdup_printf("%s (revision %u)", co->file, *number - 1);
        } else {
                r = store_read_live(w->store, co->file, &before, &size, NULL);
                label_a = strdup_printf("%s (live)", co->file);
        }
        if (r >= 0)
                r = store_render(next, *number, &after, &size);
        if (r < 0) {
                free(label_a);
                return r;
        }
        r = append_diff(res, label_a,
                        strdup_printf("%s (revision %u: step %zu, %s %s)", co->file, *number, k + 1, co->plugin->name,
                                      step_kind_to_string(st->kind)),
                        TAKE_PTR(before), TAKE_PTR(after));
        (*number)++;
        return r;
}

static int commit_step(plan_writer *w, size_t k, const component *co, json_t *next, const char *plan_id,
                       op_result *res, char **ret_error) {
        const plan_step *st = &w->plan->steps[k];
        _cleanup_free_ char *reason = NULL;
        op_written wr = { .step = k + 1, .n_steps = w->plan->n_steps, .component = co->plugin->name,
                          .kind = step_kind_to_string(st->kind), .parent = w->live[st->component] };
        revision_info info;
        int r = 0;

        kversion_format(&st->binary, wr.binary_version);
        kminor_format(st->emulated, wr.emulated_version);
        kminor_format(st->min_compat, wr.min_compat_version);
        reason = strdup_printf("upgrade step %zu/%zu: %s", k + 1, w->plan->n_steps, wr.kind);
        if (!reason)
                return -ENOMEM;
        info = (revision_info){ .reason = reason, .plan_id = plan_id, .binary_version = wr.binary_version,
                                .emulated_version = wr.emulated_version,
                                .min_compat_version = wr.min_compat_version };
        /* store_prepare raises the high-water mark before the revision can run. */
        r = store_commit(w->store, co->plugin->name, co->file, next, &info, wr.parent, &wr.revision,
                                 ret_error);
        if (r < 0)
                return r;
        w->live[st->component] = wr.revision;
        return append_written(res, &wr, co->file, st->image, reason);
}

static int write_steps(plan_writer *w, const char *plan_id, op_result *res, char **ret_error) {
        for (size_t k = 0; k < w->plan->n_steps; k++) {
                const plan_step *st = &w->plan->steps[k];
                const component *co = &w->node->components[st->component];
                _cleanup_free_ char *error = NULL;
                component current = *co;
                json_t *next = NULL;
                int r;

                /* Apply to the tree as earlier steps left it. */
                if (w->trees[st->component]) {
                        current.pod = w->trees[st->component];
                        current.container = component_container_in(co, current.pod);
                }
                r = component_apply_step(&current, st, &next, &error);
                if (r >= 0)
                        r = w->dry_run ? show_step(w, k, co, next, res)
                                       : commit_step(w, k, co, next, plan_id, res, &error);
                if (r < 0) {
                        json_decref(next);
                        return set_error(ret_error, r, "step %zu (%s %s): %s%s", k + 1, co->plugin->name,
                                         step_kind_to_string(st->kind), error ?: strerror(-r),
                                         w->dry_run ? ""
                                                    : "; the steps before this one are written and live (see cplet "
                                                      "history)");
                }
                json_decref(w->trees[st->component]);
                w->trees[st->component] = next;
        }
        return 0;
}

/* Writes every step at once (--no-wait) or computes the diffs (--dry-run); the plan is
 * checked read-only first, then again under the lock before a real write. */
int op_write_plan(op_env *e, const op_target *t, const op_options *o, op_result *res, char **ret_error) {
        _cleanup_(node_freep) node *n = NULL;
        _cleanup_(plan_freep) plan *p = NULL;
        _cleanup_(store_freep) store *s = NULL;
        _cleanup_(plan_writer_done) plan_writer w = {};
        _cleanup_close_ int lock_fd = -EBADF;
        int r;

        r = op_load_node(e, &n, ret_error);
        if (r >= 0)
                r = op_compute_plan(e, n, t, o->force ? OP_PLAN_FORCE : 0, &p, ret_error);
        if (r >= 0 && !o->dry_run && p->n_steps > 0)
                r = op_preflight_write(e, n, false, ret_error);
        if (r < 0)
                return r;
        res->n_steps = p->n_steps;
        if (p->n_steps == 0)
                return 0;
        if (!o->dry_run) {
                /* The node may have changed before the lock was ours: read and plan again. */
                n = node_free(n);
                p = plan_free(p);
                r = op_lock(e, false, &lock_fd, ret_error);
                if (r >= 0)
                        r = op_load_node(e, &n, ret_error);
                if (r >= 0)
                        r = op_compute_plan(e, n, t, (o->force ? OP_PLAN_FORCE : 0) | OP_PLAN_QUIET, &p, ret_error);
                if (r < 0)
                        return r;
                res->n_steps = p->n_steps;
                op_new_plan_id(res->plan_id);
        } else
                snprintf(res->plan_id, sizeof(res->plan_id), "dry-run");

        r = store_open(e->root, e->config.keep_revisions, !o->dry_run, &s, ret_error);
        if (r < 0)
                return r;
        w = (plan_writer){ .env = e, .node = n, .plan = p, .store = s, .dry_run = o->dry_run,
                           .trees = calloc(n->n_components + 1, sizeof(json_t *)),
                           .live = calloc(n->n_components + 1, sizeof(unsigned)),
                           .next_number = calloc(n->n_components + 1, sizeof(unsigned)) };
        if (!w.trees || !w.live || !w.next_number)
                return -ENOMEM;
        if (o->dry_run)
                r = predict_numbers(&w, ret_error);
        else
                r = components_sync_live(s, n, w.live, ret_error); /* all or none */
        if (r < 0)
                return r;
        return write_steps(&w, res->plan_id, res, ret_error);
}

int op_upgrade(op_env *e, const op_target *t, const op_options *o, op_result *ret, char **ret_error) {
        *ret = (op_result){ .command = "upgrade" };
        if (o->no_wait && o->dry_run)
                return set_error(ret_error, -EINVAL, "--no-wait and --dry-run exclude each other: --dry-run "
                                                     "writes nothing, --no-wait writes without waiting");
        if (o->no_wait || o->dry_run)
                return op_write_plan(e, t, o, ret, ret_error);
        return op_run_gated_plan(e, t, "upgrade", o, ret, ret_error);
}
