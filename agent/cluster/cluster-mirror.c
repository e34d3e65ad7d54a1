/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cluster-mirror.h"
#include "cmdline.h"
#include "image.h"
#include "macro.h"

void mirror_pod_done(mirror_pod *m) {
        free(m->image);
        json_decref(m->container);
        *m = (mirror_pod){};
}

char *mirror_pod_name(int component, const char *node) {
        return strdup_printf("%s-%s", cluster_component_names[component], node);
}

static json_t *component_container(json_t *pod, int component) {
        json_t *list = json_object_get(json_object_get(pod, "spec"), "containers"), *c;
        size_t i;

        json_array_foreach(list, i, c) {
                const char *name = json_string_value(json_object_get(c, "name"));

                if (name && streq(name, cluster_component_names[component]))
                        return c;
        }
        return json_array_size(list) == 1 ? json_array_get(list, 0) : NULL;
}

static bool pod_ready(json_t *pod) {
        json_t *list = json_object_get(json_object_get(pod, "status"), "conditions"), *c;
        size_t i;

        json_array_foreach(list, i, c) {
                const char *type = json_string_value(json_object_get(c, "type"));
                const char *status = json_string_value(json_object_get(c, "status"));

                if (type && streq(type, "Ready"))
                        return status && streq(status, "True");
        }
        return false;
}

static unsigned pod_revision(json_t *pod) {
        const char *s = json_string_value(
                json_object_get(json_object_get(json_object_get(pod, "metadata"), "annotations"), "cplet.io/revision"));
        char *end;
        unsigned long v;

        if (!s || !*s || strspn(s, "0123456789") != strlen(s))
                return 0;
        errno = 0;
        v = strtoul(s, &end, 10);
        return errno || v > UINT32_MAX ? 0 : (unsigned) v;
}

int mirror_pod_read(json_t *pod, int component, mirror_pod *ret) {
        json_t *c;
        const char *image;

        *ret = (mirror_pod){};
        if (!json_is_object(pod))
                return 0;
        c = component_container(pod, component);
        image = json_string_value(json_object_get(c, "image"));
        *ret = (mirror_pod){
                .present = true,
                .revision = pod_revision(pod),
                .image = image ? strdup(image) : NULL,
                .ready = pod_ready(pod),
                .container = json_incref(c),
        };
        if (image && !ret->image)
                return -ENOMEM;
        return 0;
}

/* The versions the pod's command line gives its binary: flags, else the defaults. */
static int pod_versions(json_t *container, int component, kminor binary, kminor *ret_e, kminor *ret_m,
                        char **ret_why) {
        const char *ev = NULL, *mv = NULL;
        compat_settings s = { .binary = binary };
        _cleanup_free_ char *why = NULL;
        bool has_kube;
        cmdline cl;
        int r;

        r = cmdline_open(container, cluster_component_names[component], &cl, &why);
        if (r < 0)
                return set_error(ret_why, 0, "its command line cannot be read: %s", why ?: strerror(-r));
        if (cmdline_get_flag(&cl, "emulated-version", &ev) > 0 && ev) {
                r = kminor_parse_flag("--emulated-version", ev, &s.emulated, &has_kube, &why);
                if (r < 0)
                        return set_error(ret_why, 0, "%s", why);
                s.emulated_set = has_kube;
        }
        if (cmdline_get_flag(&cl, "min-compatibility-version", &mv) > 0 && mv) {
                r = kminor_parse_flag("--min-compatibility-version", mv, &s.min_compat, &has_kube, &why);
                if (r < 0)
                        return set_error(ret_why, 0, "%s", why);
                s.min_compat_set = has_kube;
        }
        r = compat_validate(&s, ret_e, ret_m, &why);
        if (r < 0)
                return set_error(ret_why, 0, "its flags are not valid: %s", why);
        return 1;
}

int mirror_pod_shows_step(json_t *pod, const cluster_step *s, unsigned revision, char **ret_why) {
        _cleanup_(mirror_pod_done) mirror_pod m = {};
        _cleanup_(image_ref_done) image_ref ref = {};
        char b[KVERSION_STRING_MAX], x[KMINOR_STRING_MAX], y[KMINOR_STRING_MAX], z[KMINOR_STRING_MAX],
                w[KMINOR_STRING_MAX];
        kversion tag;
        kminor e, mc;
        int r;

        r = mirror_pod_read(pod, s->component, &m);
        if (r < 0)
                return r;
        kversion_format(&s->binary, b);
        if (!m.present)
                return set_error(ret_why, 0, "there is no mirror pod");
        if (m.revision != revision)
                return set_error(ret_why, 0, "the mirror pod shows revision %u, not %u", m.revision, revision);
        if (!m.image || image_ref_parse(m.image, &ref, NULL) < 0 || !ref.tag ||
            kversion_parse(ref.tag, &tag, NULL) < 0 || kversion_cmp(&tag, &s->binary) != 0)
                return set_error(ret_why, 0, "the mirror pod's image is %s, not tagged %s", m.image ?: "(none)", b);
        r = pod_versions(component_container(pod, s->component), s->component, kversion_minor(&s->binary), &e, &mc,
                         ret_why);
        if (r <= 0)
                return r;
        if (!kminor_eq(e, s->emulated) || !kminor_eq(mc, s->min_compat)) {
                kminor_format(e, x);
                kminor_format(mc, y);
                kminor_format(s->emulated, z);
                kminor_format(s->min_compat, w);
                return set_error(ret_why, 0,
                                 "the mirror pod's flags give emulated %s / min-compatibility %s, not %s / %s", x, y, z,
                                 w);
        }
        if (!m.ready)
                return set_error(ret_why, 0, "the mirror pod is not Ready");
        return 1;
}
