/* SPDX-License-Identifier: Apache-2.0 */
/* What a step may change in a component's image: emulation and min-compatibility steps leave
 * it byte for byte as written (a digest pin, a tag without "v"); a binary step on an image
 * pinned by digest needs the new image named exactly, and refuses without it. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "component.h"
#include "macro.h"
#include "manifest.h"
#include "plan.h"
#include "test-plugins.h"
#include "test-util.h"

#define DIGEST "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define NEW_DIGEST "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

static const char *const names[] = { "kube-apiserver", "kube-controller-manager", "kube-scheduler" };
/* A node of three components whose manifests carry `images[i]` and `flags`. */
typedef struct test_node {
        component comps[3];
        plan_component pc[3];
} test_node;

static void node_make(test_node *n, const char *const images[3], const char *flags) {
        for (size_t i = 0; i < 3; i++) {
                _cleanup_free_ char *yaml = strdup_printf(
                        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\nspec:\n  containers:\n  - name: %s\n"
                        "    image: %s\n    command: [%s%s%s]\n",
                        names[i], names[i], images[i], names[i], *flags ? ", " : "", flags);
                json_auto_t *pod = NULL;
                const plugin *p = plugin_set_find(plugins, names[i]);
                component *c = &n->comps[i];
                const char *why = NULL;

                assert_non_null(p);
                assert_int_equal(manifest_parse(yaml, strlen(yaml), names[i], &pod, NULL), 0);
                assert_int_equal(component_read(pod, json_array_get(json_object_get(json_object_get(pod, "spec"),
                                                                                      "containers"), 0),
                                                p, names[i], c),
                                 0);
                if (!component_is_plannable(c, &why))
                        fail_msg("%s: %s", images[i], why);
                n->pc[i] = (plan_component){
                        .name = p->name,
                        .emulated_since = p->emulated_version_since,
                        .min_compat_since = p->min_compatibility_version_since,
                        .forward_compat_since = p->emulation_forward_compatible_since,
                        .repository = c->image_ref.repository,
                        .image = c->image,
                        .binary = c->binary,
                        .emulated = c->emulated,
                        .min_compat = c->min_compat,
                        .min_compat_explicit = c->min_compat_explicit,
                        .forward_compat = c->forward_compat_set,
                };
        }
}

static void node_done(test_node *n) {
        for (size_t i = 0; i < 3; i++)
                component_done(&n->comps[i]);
}

/* Applies every step to the component trees in turn; returns the image each manifest ends with. */
static void apply_all(test_node *n, const plan *p, char *ret_images[3]) {
        json_t *trees[3] = {};

        for (size_t k = 0; k < p->n_steps; k++) {
                const plan_step *st = &p->steps[k];
                component cur = n->comps[st->component];
                _cleanup_free_ char *error = NULL;
                json_t *next = NULL;

                if (trees[st->component]) {
                        cur.pod = trees[st->component];
                        cur.container = component_container_in(&n->comps[st->component], cur.pod);
                }
                if (component_apply_step(&cur, st, &next, &error) < 0)
                        fail_msg("step %zu: %s", k + 1, error);
                /* The step's own record of the image matches what it wrote. */
                assert_string_equal(json_string_value(json_object_get(component_container_in(&cur, next), "image")),
                                    st->image);
                json_decref(trees[st->component]);
                trees[st->component] = next;
        }
        for (size_t i = 0; i < 3; i++) {
                json_t *pod = trees[i] ?: n->comps[i].pod;

                ret_images[i] = strdup(
                        json_string_value(json_object_get(component_container_in(&n->comps[i], pod), "image")));
                json_decref(trees[i]);
        }
}

/* Lowering emulation on an unchanged binary: the image stays exactly as written, digest and
 * tag spelling included. */
static void test_emulation_keeps_image(void **state) {
        static const char *const images[3] = {
                "registry.k8s.io/kube-apiserver:v1.34.2@" DIGEST,
                "registry.k8s.io/kube-controller-manager:1.34.2",
                "registry.k8s.io/kube-scheduler:v1.34.2",
        };
        _cleanup_(plan_freep) plan *p = NULL;
        _cleanup_(node_done) test_node n = {};
        /* Forced: emulating 1.33 implies min-compatibility 1.32, below the 1.33 the node ran with. */
        plan_target t = { .emulated_set = true, .emulated = KMINOR(1, 33), .force = true };
        char *after[3];

        node_make(&n, images, "");
        assert_int_equal(kversion_parse("v1.34.2", &t.binary, NULL), 0);
        assert_int_equal(plan_compute(n.pc, 3, &t, &p, NULL), 0);
        assert_int_equal(p->n_steps, 3);
        for (size_t k = 0; k < p->n_steps; k++) {
                assert_int_equal(p->steps[k].kind, STEP_EMULATION);
                assert_string_equal(p->steps[k].image, images[p->steps[k].component]);
        }
        apply_all(&n, p, after);
        for (size_t i = 0; i < 3; i++) {
                assert_string_equal(after[i], images[i]);
                free(after[i]);
        }
}

/* Raising min-compatibility on 1.35 binaries pinned by digest: the pins stay. */
static void test_min_compat_keeps_image(void **state) {
        static const char *const images[3] = {
                "registry.k8s.io/kube-apiserver:v1.35.0@" DIGEST,
                "registry.k8s.io/kube-controller-manager:v1.35.0@" DIGEST,
                "registry.k8s.io/kube-scheduler:1.35.0",
        };
        _cleanup_(plan_freep) plan *p = NULL;
        _cleanup_(node_done) test_node n = {};
        plan_target t = { .min_compat_set = true, .min_compat = KMINOR(1, 35) };
        char *after[3];

        node_make(&n, images, "");
        assert_int_equal(kversion_parse("v1.35.0", &t.binary, NULL), 0);
        assert_int_equal(plan_compute(n.pc, 3, &t, &p, NULL), 0);
        assert_int_equal(p->n_steps, 3);
        for (size_t k = 0; k < p->n_steps; k++)
                assert_int_equal(p->steps[k].kind, STEP_MIN_COMPAT);
        apply_all(&n, p, after);
        for (size_t i = 0; i < 3; i++) {
                assert_string_equal(after[i], images[i]);
                free(after[i]);
        }
}

/* Even a step whose image field says otherwise: only a binary step writes `image`. */
static void test_apply_emulation_step_ignores_image(void **state) {
        static const char *const images[3] = {
                "registry.k8s.io/kube-apiserver:v1.34.2@" DIGEST,
                "registry.k8s.io/kube-controller-manager:v1.34.2",
                "registry.k8s.io/kube-scheduler:v1.34.2",
        };
        _cleanup_(node_done) test_node n = {};
        _cleanup_free_ char *error = NULL;
        json_auto_t *next = NULL;
        plan_step st = {
                .component = 0,
                .kind = STEP_EMULATION,
                .image = (char *) "registry.k8s.io/kube-apiserver:v1.34.2",
                .emulated = KMINOR(1, 33),
                .min_compat = KMINOR(1, 32),
                .emulated_flag = true,
        };

        node_make(&n, images, "");
        st.binary = n.comps[0].binary;
        assert_int_equal(component_apply_step(&n.comps[0], &st, &next, &error), 0);
        assert_string_equal(json_string_value(json_object_get(component_container_in(&n.comps[0], next), "image")),
                            images[0]);
}

static const char *const pinned[3] = {
        "registry.k8s.io/kube-apiserver:v1.34.2@" DIGEST,
        "registry.k8s.io/kube-controller-manager:v1.34.2@" DIGEST,
        "registry.k8s.io/kube-scheduler:v1.34.2",
};

/* A binary step cannot make up a digest: refused, saying how to give it. */
static void test_binary_step_on_pin_refused(void **state) {
        _cleanup_(node_done) test_node n = {};
        _cleanup_free_ char *error = NULL;
        plan_target t = {};
        plan *p = NULL;

        node_make(&n, pinned, "");
        assert_int_equal(kversion_parse("v1.35.0", &t.binary, NULL), 0);
        assert_int_equal(plan_compute(n.pc, 3, &t, &p, &error), -EINVAL);
        assert_null(p);
        if (!strstr(error, "kube-apiserver") || !strstr(error, "digest") || !strstr(error, "--image kube-apiserver="))
                fail_msg("error \"%s\" should name the pinned component and say to pass --image", error);
}

/* With the new images named, the binary steps write exactly them; the unpinned scheduler gets
 * the plain tag. */
static void test_binary_step_with_images(void **state) {
        static const plan_image images[] = {
                { "kube-apiserver", "registry.k8s.io/kube-apiserver:v1.35.0@" NEW_DIGEST },
                { "kube-controller-manager", "registry.k8s.io/kube-controller-manager:v1.35.0@" NEW_DIGEST },
        };
        _cleanup_(node_done) test_node n = {};
        _cleanup_(plan_freep) plan *p = NULL;
        plan_target t = { .images = images, .n_images = ELEMENTSOF(images) };
        char *after[3];

        node_make(&n, pinned, "");
        assert_int_equal(kversion_parse("v1.35.0", &t.binary, NULL), 0);
        assert_int_equal(plan_compute(n.pc, 3, &t, &p, NULL), 0);
        apply_all(&n, p, after);
        assert_string_equal(after[0], images[0].image);
        assert_string_equal(after[1], images[1].image);
        assert_string_equal(after[2], "registry.k8s.io/kube-scheduler:v1.35.0");
        for (size_t i = 0; i < 3; i++)
                free(after[i]);
}

typedef struct bad_image {
        const char *component;
        const char *image;
        const char *reason;
} bad_image;

static const bad_image bad_images[] = {
        { "kube-apiserver", "registry.k8s.io/kube-apiserver:v1.35.1@" NEW_DIGEST, "v1.35.0" },
        { "kube-apiserver", "registry.k8s.io/kube-apiserver@" NEW_DIGEST, "v1.35.0" },
        { "kube-apiserver", "evil.example.com/kube-apiserver:v1.35.0@" NEW_DIGEST, "registry.k8s.io/kube-apiserver" },
        { "kube-apiserver", "registry.k8s.io/kube-scheduler:v1.35.0@" NEW_DIGEST, "registry.k8s.io/kube-apiserver" },
        { "kube-apiserver", "registry.k8s.io/kube-apiserver:v1.35.0@sha256:xyz", "digest" },
        { "kube-apiserver", "", "empty" },
        { "kube-proxy", "registry.k8s.io/kube-proxy:v1.35.0", "kube-proxy" },
};

static void test_bad_image_refused(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(bad_images); i++) {
                const plan_image images[] = {
                        { bad_images[i].component, bad_images[i].image },
                        { "kube-controller-manager", "registry.k8s.io/kube-controller-manager:v1.35.0@" NEW_DIGEST },
                };
                _cleanup_(node_done) test_node n = {};
                _cleanup_free_ char *error = NULL;
                plan_target t = { .images = images, .n_images = ELEMENTSOF(images) };
                plan *p = NULL;

                node_make(&n, pinned, "");
                assert_int_equal(kversion_parse("v1.35.0", &t.binary, NULL), 0);
                assert_int_equal(plan_compute(n.pc, 3, &t, &p, &error), -EINVAL);
                assert_null(p);
                if (!strstr(error, "--image") || !strstr(error, bad_images[i].reason))
                        fail_msg("%s=%s: error \"%s\" should name --image and say \"%s\"", bad_images[i].component,
                                 bad_images[i].image, error, bad_images[i].reason);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_emulation_keeps_image),
                cmocka_unit_test(test_min_compat_keeps_image),
                cmocka_unit_test(test_apply_emulation_step_ignores_image),
                cmocka_unit_test(test_binary_step_on_pin_refused),
                cmocka_unit_test(test_binary_step_with_images),
                cmocka_unit_test(test_bad_image_refused),
        };

        return RUN_TAP_GROUP("test-step-image", tests, plugins_setup, plugins_teardown);
}
