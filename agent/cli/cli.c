/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers every command shares: messages, exit codes, the environment, diffs. */

#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include "cli.h"
#include "diff.h"
#include "macro.h"

void cli_error(const char *fmt, ...) {
        va_list ap;

        fputs("cplet: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
}

int cli_exit_code(int r) {
        switch (op_outcome_of(r)) {
        case OP_OK:
                return EXIT_OK;
        case OP_REFUSED:
                return EXIT_INVALID;
        default:
                return EXIT_FAILED;
        }
}

int cli_fail(int r, const char *error) {
        cli_error("%s", error ?: strerror(-r));
        return cli_exit_code(r);
}

static void print_warning(const char *message, void *userdata) {
        fprintf(stderr, "warning: %s\n", message);
}

int cli_env(cli *c) {
        _cleanup_free_ char *error = NULL;
        int r;

        if (c->env)
                return EXIT_OK;
        r = op_env_new(c->root, c->config_path, c->plugin_dir_option, c->command_line, &c->env, &error);
        if (r < 0)
                return cli_fail(r, error);
        c->env->warn = print_warning;
        return EXIT_OK;
}

int cli_add_image_option(cli *c, const char *arg) {
        const char *eq = strchr(arg, '=');
        size_t l = eq ? (size_t) (eq - arg) : 0, n = c->target.n_images;

        if (!eq || l == 0 || l >= sizeof(c->image_names[0]) || !eq[1]) {
                cli_error("--image \"%s\": expected COMPONENT=IMAGE, e.g. "
                          "kube-apiserver=registry.k8s.io/kube-apiserver:v1.35.0@sha256:<digest>",
                          arg);
                return EXIT_INVALID;
        }
        if (n >= CLI_IMAGES_MAX) {
                cli_error("--image: at most %d", CLI_IMAGES_MAX);
                return EXIT_INVALID;
        }
        memcpy(c->image_names[n], arg, l);
        c->image_names[n][l] = 0;
        c->images[n] = (plan_image){ .component = c->image_names[n], .image = eq + 1 };
        c->target.images = c->images;
        c->target.n_images = n + 1;
        return EXIT_OK;
}

int cli_add_components_option(cli *c, const char *arg) {
        const char *p = arg;

        do {
                size_t l = strcspn(p, ",");

                if (l == 0 || l >= sizeof(c->component_names[0])) {
                        cli_error("--components \"%s\": expected COMPONENT[,COMPONENT...], e.g. "
                                  "kube-apiserver,kube-controller-manager",
                                  arg);
                        return EXIT_INVALID;
                }
                if (c->n_components >= CLI_COMPONENTS_MAX) {
                        cli_error("--components: at most %d", CLI_COMPONENTS_MAX);
                        return EXIT_INVALID;
                }
                memcpy(c->component_names[c->n_components], p, l);
                c->component_names[c->n_components][l] = 0;
                c->components[c->n_components] = c->component_names[c->n_components];
                c->n_components++;
                p += l;
        } while (*p++ == ',');
        c->components[c->n_components] = NULL;
        c->target.components = c->components;
        return EXIT_OK;
}

int cli_add_drop_removed_option(cli *c, const char *arg) {
        const char *p = arg;

        do {
                size_t l;

                /* "--cloud-provider" as the flag is written is "cloud-provider". */
                for (int dash = 0; dash < 2 && *p == '-'; dash++)
                        p++;
                l = strcspn(p, ",");
                if (l == 0 || l >= sizeof(c->drop_names[0]) || memchr(p, '=', l) || memchr(p, ' ', l)) {
                        cli_error("--drop-removed \"%s\": expected NAME[,NAME...]: flags without dashes, feature "
                                  "gates or admission plugins, e.g. cloud-provider,InTreePluginvSphereUnregister",
                                  arg);
                        return EXIT_INVALID;
                }
                if (c->n_drop_removed >= CLI_DROP_MAX) {
                        cli_error("--drop-removed: at most %d names", CLI_DROP_MAX);
                        return EXIT_INVALID;
                }
                memcpy(c->drop_names[c->n_drop_removed], p, l);
                c->drop_names[c->n_drop_removed][l] = 0;
                c->drop_removed[c->n_drop_removed] = c->drop_names[c->n_drop_removed];
                c->n_drop_removed++;
                p += l;
        } while (*p++ == ',');
        c->drop_removed[c->n_drop_removed] = NULL;
        c->target.drop_removed = c->drop_removed;
        return EXIT_OK;
}

int cli_print_diff(const op_diff *d) {
        _cleanup_free_ char *text = NULL;
        int r = unified_diff(d->before, d->after, d->label_a, d->label_b, &text);

        if (r < 0)
                return r;
        fputs(text, stdout);
        return 0;
}
