/* SPDX-License-Identifier: Apache-2.0 */
/* cplet plan, and the planning every gated or written plan shares: the target validated, the
 * node's components in the planner's form, the min-compatibility high-water mark kept. */

#include <errno.h>
#include <string.h>

#include "macro.h"
#include "op-internal.h"

/* "host[:port]/path/elements": a port only on the first element, no tag, no digest. */
bool op_valid_registry_prefix(const char *s) {
        static const char name_chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";
        bool first = true;

        if (!*s || strlen(s) > 255)
                return false;
        for (const char *p = s;; first = false) {
                size_t n = strspn(p, name_chars);

                if (n == 0)
                        return false;
                p += n;
                if (first && *p == ':') {
                        size_t digits = strspn(p + 1, "0123456789");

                        if (digits == 0 || digits > 5)
                                return false;
                        p += 1 + digits;
                }
                if (!*p)
                        return true;
                if (*p != '/')
                        return false;
                p++;
        }
}

static int parse_kube_minor(const char *option, const char *value, kminor *ret, char **ret_error) {
        bool has_kube;
        int r;

        r = kminor_parse_flag(option, value, ret, &has_kube, ret_error);
        if (r >= 0 && !has_kube)
                r = set_error(ret_error, -EINVAL, "%s=%s: names no kube version", option, value);
        return r;
}

int op_parse_target(const op_target *t, plan_target *ret, char **ret_error) {
        _cleanup_free_ char *error = NULL;
        plan_target pt = {};
        int r;

        if (!t->binary_version)
                return set_error(ret_error, -EINVAL, "--binary-version is required");
        r = kversion_parse(t->binary_version, &pt.binary, &error);
        if (r < 0)
                return set_error(ret_error, r, "--binary-version: %s", error);
        if (t->emulated_version) {
                r = parse_kube_minor("--emulated-version", t->emulated_version, &pt.emulated, ret_error);
                if (r < 0)
                        return r;
                pt.emulated_set = true;
        }
        if (t->min_compat_version) {
                r = parse_kube_minor("--min-compatibility-version", t->min_compat_version, &pt.min_compat,
                                     ret_error);
                if (r < 0)
                        return r;
                pt.min_compat_set = true;
        }
        if (t->image_repository) {
                if (!op_valid_registry_prefix(t->image_repository))
                        return set_error(ret_error, -EINVAL,
                                         "--image-repository \"%s\": expected a registry prefix such as "
                                         "registry.k8s.io or localhost:5000/k8s, without tag or digest (each "
                                         "component keeps its image name)",
                                         t->image_repository);
                pt.image_repository = t->image_repository;
        }
        pt.images = t->images;
        pt.n_images = t->n_images;
        pt.components = t->components;
        *ret = pt;
        return 0;
}

void op_plan_component(const component *co, plan_component *ret) {
        *ret = (plan_component){
                .name = co->plugin->name,
                .emulated_since = co->plugin->emulated_version_since,
                .min_compat_since = co->plugin->min_compatibility_version_since,
                .forward_compat_since = co->plugin->emulation_forward_compatible_since,
                .repository = co->image_ref.repository,
                .image = co->image,
                .binary = co->binary,
                .emulated = co->emulated,
                .min_compat = co->min_compat,
                .min_compat_explicit = co->min_compat_explicit,
                .forward_compat = co->forward_compat_set,
        };
}

int op_compute_plan(op_env *e, const node *n, const op_target *t, unsigned flags, plan **ret, char **ret_error) {
        _cleanup_(plan_freep) plan *p = NULL;
        _cleanup_free_ plan_component *pc = NULL;
        _cleanup_free_ char *error = NULL;
        plan_target target;
        int r;

        r = op_parse_target(t, &target, ret_error);
        if (r >= 0)
                r = op_high_water(e, &target.min_compat_floor, ret_error);
        if (r < 0)
                return r;
        target.force = flags & (OP_PLAN_FORCE | OP_PLAN_RESUME);
        if (n->n_components == 0)
                return set_error(ret_error, -EINVAL, "no control-plane components in %s", n->manifest_dir);
        pc = calloc(n->n_components, sizeof(*pc));
        if (!pc)
                return -ENOMEM;
        for (size_t i = 0; i < n->n_components; i++) {
                const component *co = &n->components[i];
                const char *why;

                if (!component_is_plannable(co, &why))
                        return set_error(ret_error, -EINVAL, "cannot plan: %s (%s/%s): %s", co->plugin->name,
                                         n->manifest_dir, co->file, why);
                op_plan_component(co, &pc[i]);
        }
        r = plan_compute(pc, n->n_components, &target, &p, &error);
        if (r < 0)
                return set_error(ret_error, r, "plan refused: %s", error ?: strerror(-r));
        r = op_preflight_plan(e, n, t, flags, p, ret_error);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(p);
        return 0;
}

int op_plan(op_env *e, const op_target *t, bool force, op_plan_result *ret, char **ret_error) {
        _cleanup_(node_freep) node *n = NULL;
        plan *p = NULL;
        int r;

        r = op_load_node(e, &n, ret_error);
        if (r >= 0)
                r = op_compute_plan(e, n, t, force ? OP_PLAN_FORCE : 0, &p, ret_error);
        if (r < 0)
                return r;
        *ret = (op_plan_result){ .node = TAKE_PTR(n), .plan = p };
        return 0;
}

void op_plan_result_done(op_plan_result *r) {
        plan_free(r->plan);
        node_free(r->node);
        *r = (op_plan_result){};
}
