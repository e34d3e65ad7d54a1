/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <string.h>

#include "cli.h"
#include "macro.h"
#include "plan.h"
#include "store.h"

/* "host[:port]/path/elements": a port only on the first element, no tag, no digest. */
static bool valid_registry_prefix(const char *s) {
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

static int parse_target(const cli *c, plan_target *ret) {
        _cleanup_free_ char *error = NULL;
        plan_target t = {};
        bool has_kube;
        int r;

        if (!c->binary_version) {
                cli_error("plan: --binary-version is required (see cplet plan --help)");
                return -EINVAL;
        }
        r = kversion_parse(c->binary_version, &t.binary, &error);
        if (r < 0) {
                cli_error("--binary-version: %s", error);
                return r;
        }
        if (c->emulated_version) {
                r = kminor_parse_flag("--emulated-version", c->emulated_version, &t.emulated, &has_kube, &error);
                if (r >= 0 && !has_kube)
                        r = set_error(&error, -EINVAL, "--emulated-version=%s: names no kube version",
                                      c->emulated_version);
                if (r < 0) {
                        cli_error("%s", error);
                        return r;
                }
                t.emulated_set = true;
        }
        if (c->min_compat_version) {
                r = kminor_parse_flag("--min-compatibility-version", c->min_compat_version, &t.min_compat, &has_kube,
                                      &error);
                if (r >= 0 && !has_kube)
                        r = set_error(&error, -EINVAL, "--min-compatibility-version=%s: names no kube version",
                                      c->min_compat_version);
                if (r < 0) {
                        cli_error("%s", error);
                        return r;
                }
                t.min_compat_set = true;
        }
        if (c->image_repository) {
                if (!valid_registry_prefix(c->image_repository)) {
                        cli_error("--image-repository \"%s\": expected a registry prefix such as registry.k8s.io or "
                                  "localhost:5000/k8s, without tag or digest (each component keeps its image name)",
                                  c->image_repository);
                        return -EINVAL;
                }
                t.image_repository = c->image_repository;
        }
        t.images = c->images;
        t.n_images = c->n_images;
        *ret = t;
        return 0;
}

json_t *step_to_json(const node *n, const plan_step *s) {
        char b[KVERSION_STRING_MAX], e[KMINOR_STRING_MAX], m[KMINOR_STRING_MAX];

        kversion_format(&s->binary, b);
        kminor_format(s->emulated, e);
        kminor_format(s->min_compat, m);
        return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}",
                         "component", n->components[s->component].plugin->name,
                         "manifest", n->components[s->component].file,
                         "kind", step_kind_to_string(s->kind),
                         "image", s->image,
                         "binaryVersion", b,
                         "emulatedVersion", e,
                         "minCompatibilityVersion", m);
}

static void print_step(const node *n, size_t i, const plan_step *s) {
        char b[KVERSION_STRING_MAX], e[KMINOR_STRING_MAX], m[KMINOR_STRING_MAX], what[160];

        kversion_format(&s->binary, b);
        kminor_format(s->emulated, e);
        kminor_format(s->min_compat, m);
        switch (s->kind) {
        case STEP_BINARY:
                snprintf(what, sizeof(what), "image %s", s->image);
                break;
        case STEP_EMULATION:
                snprintf(what, sizeof(what), "emulated version -> %s", e);
                break;
        case STEP_MIN_COMPAT:
                snprintf(what, sizeof(what), "min-compatibility version -> %s", m);
                break;
        }
        printf("%3zu. %-24s %-18s %s\n", i + 1, n->components[s->component].plugin->name,
               step_kind_to_string(s->kind), what);
        printf("     after: binary %s, emulated %s%s, min-compatibility %s%s\n", b, e,
               s->emulated_flag ? " (flag)" : "", m, s->min_compat_flag ? " (flag)" : "");
}

/* Raising --min-compatibility-version to a version is the point after which storage may use
 * encodings older releases cannot read; a plan that would go below the highest version ever
 * raised to is refused unless --force. */
static int check_high_water(cli *c, const plan *p) {
        _cleanup_(store_freep) store *s = NULL;
        char mark[24];
        kminor hw;

        if (c->force || store_open(c->root, 0, false, &s, NULL) < 0)
                return EXIT_OK;
        store_high_water_load(s, mark);
        if (!*mark || kminor_parse(mark, &hw, NULL) < 0)
                return EXIT_OK;
        for (size_t i = 0; i < p->n_steps; i++)
                if (kminor_cmp(p->steps[i].min_compat, hw) < 0) {
                        char m[KMINOR_STRING_MAX];

                        kminor_format(p->steps[i].min_compat, m);
                        cli_error("plan refused: step %zu would lower the min-compatibility version of %s to %s, "
                                  "below %s, which it was raised to before: storage may already use encodings "
                                  "older releases cannot read. Pass --force if you are sure",
                                  i + 1, c->node->components[p->steps[i].component].plugin->name, m, mark);
                        return EXIT_INVALID;
                }
        return EXIT_OK;
}

int cli_add_image_option(cli *c, const char *arg) {
        const char *eq = strchr(arg, '=');
        size_t l = eq ? (size_t) (eq - arg) : 0;

        if (!eq || l == 0 || l >= sizeof(c->image_names[0]) || !eq[1]) {
                cli_error("--image \"%s\": expected COMPONENT=IMAGE, e.g. "
                          "kube-apiserver=registry.k8s.io/kube-apiserver:v1.35.0@sha256:<digest>", arg);
                return -EINVAL;
        }
        if (c->n_images >= CLI_IMAGES_MAX) {
                cli_error("--image: at most %d", CLI_IMAGES_MAX);
                return -EINVAL;
        }
        memcpy(c->image_names[c->n_images], arg, l);
        c->image_names[c->n_images][l] = 0;
        c->images[c->n_images] = (plan_image){ .component = c->image_names[c->n_images], .image = eq + 1 };
        c->n_images++;
        return 0;
}

void cli_plan_component(const component *co, plan_component *ret) {
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

int cli_compute_plan(cli *c, plan **ret, plan_component **ret_components) {
        _cleanup_(plan_freep) plan *p = NULL;
        _cleanup_free_ plan_component *pc = NULL;
        _cleanup_free_ char *error = NULL;
        plan_target target;
        const node *n;
        int r;

        if (parse_target(c, &target) < 0)
                return EXIT_INVALID;
        if (!c->node) {
                r = cli_load_node(c);
                if (r != EXIT_OK)
                        return r;
        }
        n = c->node;

        if (n->n_components == 0) {
                cli_error("no control-plane components in %s", n->manifest_dir);
                return EXIT_INVALID;
        }
        pc = calloc(n->n_components, sizeof(*pc));
        if (!pc)
                return EXIT_FAILED;
        for (size_t i = 0; i < n->n_components; i++) {
                const component *co = &n->components[i];
                const char *why;

                if (!component_is_plannable(co, &why)) {
                        cli_error("cannot plan: %s (%s/%s): %s", co->plugin->name, n->manifest_dir, co->file, why);
                        return EXIT_INVALID;
                }
                cli_plan_component(co, &pc[i]);
        }

        r = plan_compute(pc, n->n_components, &target, &p, &error);
        if (r < 0) {
                cli_error("plan refused: %s", error ?: strerror(-r));
                return cli_exit_code(r);
        }
        r = check_high_water(c, p);
        if (r != EXIT_OK)
                return r;
        *ret = TAKE_PTR(p);
        if (ret_components)
                *ret_components = TAKE_PTR(pc);
        return EXIT_OK;
}

int cmd_plan(cli *c) {
        _cleanup_(plan_freep) plan *p = NULL;
        char e[KMINOR_STRING_MAX], m[KMINOR_STRING_MAX], v[KVERSION_STRING_MAX];
        const node *n;
        int r;

        r = cli_compute_plan(c, &p, NULL);
        if (r != EXIT_OK)
                return r;
        n = c->node;

        kversion_format(&p->binary, v);
        kminor_format(p->emulated, e);
        kminor_format(p->min_compat, m);
        if (c->json) {
                json_auto_t *root = json_pack("{s:{s:s, s:s, s:s}, s:[]}", "target", "binaryVersion", v,
                                              "emulatedVersion", e, "minCompatibilityVersion", m, "steps");
                json_t *steps = json_object_get(root, "steps");

                for (size_t i = 0; i < p->n_steps; i++)
                        json_array_append_new(steps, step_to_json(n, &p->steps[i]));
                json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
                fputc('\n', stdout);
                return EXIT_OK;
        }

        if (p->n_steps == 0) {
                printf("Nothing to do: the node already runs binary %s, emulated %s, min-compatibility %s.\n", v, e,
                       m);
                return EXIT_OK;
        }
        printf("Plan: %zu step%s to binary %s, emulated %s, min-compatibility %s\n\n", p->n_steps,
               p->n_steps == 1 ? "" : "s", v, e, m);
        for (size_t i = 0; i < p->n_steps; i++)
                print_step(n, i, &p->steps[i]);
        return EXIT_OK;
}
