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

/* The planner's floor: the store's min-compatibility high-water mark. An unreadable mark
 * refuses (it would otherwise let a plan go below it); a deleted one is rebuilt. */
static int load_high_water(cli *c, kminor *ret) {
        _cleanup_(store_freep) store *s = NULL;
        _cleanup_free_ char *error = NULL;
        int r;

        *ret = KMINOR(0, 0);
        if (store_open(c->root, 0, false, &s, NULL) < 0)
                return EXIT_OK;
        r = store_high_water_get(s, ret, &error);
        if (r < 0) {
                cli_error("%s", error ?: strerror(-r));
                return cli_exit_code(r);
        }
        if (r > 0) {
                char m[KMINOR_STRING_MAX];

                kminor_format(*ret, m);
                fprintf(stderr, "warning: %s/%s/%s was missing; rebuilt from the revisions' metadata: %s\n",
                        c->root, STORE_STATE_DIR, STORE_HIGH_WATER_FILE, m);
        }
        return EXIT_OK;
}

void cli_plan_component(const component *co, plan_component *ret) {
        *ret = (plan_component){
                .name = co->plugin->name,
                .emulated_since = co->plugin->emulated_version_since,
                .min_compat_since = co->plugin->min_compatibility_version_since,
                .forward_compat_since = co->plugin->emulation_forward_compatible_since,
                .repository = co->image_ref.repository,
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

        r = load_high_water(c, &target.min_compat_floor);
        if (r != EXIT_OK)
                return r;
        target.force = c->force;
        r = plan_compute(pc, n->n_components, &target, &p, &error);
        if (r < 0) {
                cli_error("plan refused: %s", error ?: strerror(-r));
                return cli_exit_code(r);
        }
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
