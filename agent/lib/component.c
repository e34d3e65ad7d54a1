/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <string.h>

#include "component.h"
#include "macro.h"
#include "plan.h"
#include "preflight.h"

const char *container_name(json_t *container) {
        return json_string_value(json_object_get(container, "name")) ?: "";
}

void component_done(component *c) {
        free(c->file);
        json_decref(c->pod);
        free(c->image);
        image_ref_done(&c->image_ref);
        free(c->binary_unknown_reason);
        free(c->cmdline_error);
        free(c->versions_error);
        *c = (component){};
}

static void read_binary_version(component *c) {
        _cleanup_free_ char *why = NULL;
        int r;

        if (!c->image) {
                c->binary_unknown_reason = strdup("the container has no image");
                return;
        }
        r = image_ref_parse(c->image, &c->image_ref, &why);
        if (r < 0) {
                c->binary_unknown_reason = TAKE_PTR(why);
                return;
        }
        if (!c->image_ref.tag) {
                c->binary_unknown_reason = strdup_printf(
                        c->image_ref.digest ? "image %s is pinned by digest only; its version cannot be known"
                                            : "image %s has no tag; its version cannot be known",
                        c->image);
                return;
        }
        r = kversion_parse(c->image_ref.tag, &c->binary, &why);
        if (r < 0 || !c->binary.has_patch) {
                c->binary_unknown_reason = strdup_printf("image tag \"%s\" is not a Kubernetes version (%s)",
                                                         c->image_ref.tag,
                                                         why ?: "expected vMAJOR.MINOR.PATCH");
                return;
        }
        c->binary_known = true;
}

static int read_compat_flag(component *c, const char *flag, bool *ret_set, kminor *ret_value) {
        _cleanup_free_ char *why = NULL, *dashed = strdup_printf("--%s", flag);
        const char *value = NULL;
        bool has_kube;
        int r;

        if (!dashed)
                return -ENOMEM;
        if (cmdline_get_flag(&c->cmdline, flag, &value) == 0)
                return 0;
        r = kminor_parse_flag(dashed, value, ret_value, &has_kube, &why);
        if (r < 0) {
                free(c->versions_error);
                c->versions_error = TAKE_PTR(why);
                return r;
        }
        *ret_set = has_kube;
        return 0;
}

static bool flag_is_on(const cmdline *cl, const char *name) {
        const char *value = NULL;

        if (cmdline_get_flag(cl, name, &value) == 0)
                return false;
        return !value || !streq(value, "false");
}

int component_read(json_t *pod, json_t *container, const plugin *p, const char *file, component *ret) {
        component c = { .plugin = p, .pod = json_incref(pod), .container = container };
        const char *image = json_string_value(json_object_get(container, "image"));
        compat_settings s = {};
        int r;

        c.file = strdup(file);
        c.image = image ? strdup(image) : NULL;
        if (!c.file || (image && !c.image)) {
                component_done(&c);
                return -ENOMEM;
        }

        read_binary_version(&c);

        r = cmdline_open(container, p->name, &c.cmdline, &c.cmdline_error);
        if (r == -ENOMEM) {
                component_done(&c);
                return r;
        }
        c.cmdline_ok = r >= 0;

        if (c.cmdline_ok) {
                if (read_compat_flag(&c, "emulated-version", &c.emulated_explicit, &c.emulated_flag) == -ENOMEM ||
                    read_compat_flag(&c, "min-compatibility-version", &c.min_compat_explicit, &c.min_compat_flag) ==
                            -ENOMEM) {
                        component_done(&c);
                        return -ENOMEM;
                }
                for (const char *const *f = p->forward_compatible_flags; f && *f; f++)
                        if (flag_is_on(&c.cmdline, *f))
                                c.forward_compat_set = true;
        }

        if (c.binary_known && c.cmdline_ok && !c.versions_error) {
                _cleanup_free_ char *why = NULL;

                s = (compat_settings){
                        .binary = kversion_minor(&c.binary),
                        .emulated_set = c.emulated_explicit,
                        .emulated = c.emulated_flag,
                        .min_compat_set = c.min_compat_explicit,
                        .min_compat = c.min_compat_flag,
                        .forward_compat_set = c.forward_compat_set,
                };
                r = compat_validate(&s, &c.emulated, &c.min_compat, &why);
                if (r < 0)
                        c.versions_error = strdup_printf("the binary would refuse to start: %s", why);
                else
                        c.versions_known = true;
        }

        *ret = c;
        return 0;
}

bool component_is_plannable(const component *c, const char **ret_reason) {
        const char *reason = !c->binary_known ? c->binary_unknown_reason
                             : !c->cmdline_ok ? c->cmdline_error
                             : !c->versions_known ? c->versions_error
                                                  : NULL;
        bool ok = c->binary_known && c->cmdline_ok && c->versions_known;

        if (!ok && ret_reason)
                *ret_reason = reason ?: "its state cannot be read";
        return ok;
}

json_t *component_container_in(const component *c, json_t *pod) {
        json_t *theirs = json_object_get(json_object_get(pod, "spec"), "containers");
        const char *name = container_name(c->container);
        json_t *v;
        size_t i;

        /* By name: another revision may have added, removed or reordered containers. */
        if (*name)
                json_array_foreach(theirs, i, v)
                        if (streq(container_name(v), name))
                                return v;
        if (pod == c->pod)
                return c->container;
        return NULL;
}

/* Rewrites a --emulated-version style flag for kube, keeping entries for other components
 * (kube=1.34,wardle=1.2). minor NULL removes the kube entry. */
static int set_compat_flag(cmdline *cl, const char *flag, const char *minor) {
        _cleanup_free_ char *others = NULL, *value = NULL, *copy = NULL;
        const char *old = NULL;
        char *save = NULL;

        if (cmdline_get_flag(cl, flag, &old) > 0 && old) {
                copy = strdup(old);
                if (!copy)
                        return -ENOMEM;
                for (char *e = strtok_r(copy, ",", &save); e; e = strtok_r(NULL, ",", &save)) {
                        char *joined;

                        if (!strchr(e, '=') || startswith(e, "kube="))
                                continue;
                        joined = strdup_printf("%s%s%s", others ?: "", others ? "," : "", e);
                        if (!joined)
                                return -ENOMEM;
                        free(others);
                        others = joined;
                }
        }
        if (!minor && !others)
                return cmdline_unset_flag(cl, flag) < 0 ? -ENOMEM : 0;
        if (!others)
                value = strdup(minor);
        else if (!minor)
                value = strdup(others);
        else
                value = strdup_printf("kube=%s,%s", minor, others);
        if (!value)
                return -ENOMEM;
        return cmdline_set_flag(cl, flag, value);
}

int component_apply_step(const component *c, const struct plan_step *step, json_t **ret, char **ret_error) {
        json_auto_t *pod = json_deep_copy(c->pod);
        char e[KMINOR_STRING_MAX], m[KMINOR_STRING_MAX];
        _cleanup_(component_done) component check = {};
        json_t *container;
        cmdline cl;
        int r;

        if (!pod)
                return -ENOMEM;
        container = component_container_in(c, pod);
        if (!container)
                return set_error(ret_error, -EINVAL, "%s: container not found in %s", c->plugin->name, c->file);
        r = cmdline_open(container, c->plugin->name, &cl, ret_error);
        if (r < 0)
                return r;
        /* --drop-removed: the flags, gates and plugins the new binary would refuse. An entry
         * that matches nothing here was dropped by an earlier run of the plan (resume). */
        for (char **d = step->drop; d && *d; d++) {
                r = preflight_drop(&cl, *d);
                if (r < 0)
                        return r;
        }

        kminor_format(step->emulated, e);
        kminor_format(step->min_compat, m);
        /* A step changes only what it is about: the image (a digest pin, the tag as spelled)
         * belongs to binary steps alone. */
        if (step->kind == STEP_BINARY && json_object_set_new(container, "image", json_string(step->image)) < 0)
                return -ENOMEM;
        r = set_compat_flag(&cl, "emulated-version", step->emulated_flag ? e : NULL);
        if (r >= 0)
                r = set_compat_flag(&cl, "min-compatibility-version", step->min_compat_flag ? m : NULL);
        for (const char *const *f = c->plugin->forward_compatible_flags; r >= 0 && f && *f; f++)
                if (!step->forward_compat)
                        r = cmdline_unset_flag(&cl, *f);
        if (r < 0)
                return r;

        /* Read the result back the way status would: it must say exactly what the step says. */
        r = component_read(pod, container, c->plugin, c->file, &check);
        if (r < 0)
                return r;
        if (!check.versions_known || kversion_cmp(&check.binary, &step->binary) != 0 ||
            !kminor_eq(check.emulated, step->emulated) || !kminor_eq(check.min_compat, step->min_compat))
                return set_error(ret_error, -EINVAL, "%s: the rewritten manifest does not show the step's versions (%s)",
                                 c->plugin->name, check.versions_error ?: check.binary_unknown_reason ?: "mismatch");
        *ret = TAKE_PTR(pod);
        return 0;
}
