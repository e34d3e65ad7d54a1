/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <string.h>

#include "component.h"
#include "macro.h"

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
