/* SPDX-License-Identifier: Apache-2.0 */
#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "cli.h"
#include "macro.h"

/* These move only through plan/upgrade, which keeps every intermediate state valid. */
static const char *const compat_flags[] = {
        "emulated-version",
        "min-compatibility-version",
        "emulation-forward-compatible",
        "runtime-config-emulation-forward-compatible",
};

static bool valid_flag_name(const char *s, size_t len) {
        if (len == 0 || len > 128 || !isalnum((unsigned char) s[0]))
                return false;
        for (size_t i = 0; i < len; i++)
                if (!isalnum((unsigned char) s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
                        return false;
        return true;
}

static int check_name(const char *name, size_t len) {
        if (!valid_flag_name(name, len)) {
                cli_error("flags: \"%.*s\" is not a flag name", (int) len, name);
                return EXIT_INVALID;
        }
        for (size_t k = 0; k < ELEMENTSOF(compat_flags); k++)
                if (cmdline_flag_name_equal(name, len, compat_flags[k])) {
                        cli_error("flags: --%s is a compatibility flag; change it with cplet plan/upgrade, which "
                                  "keeps every intermediate state valid",
                                  compat_flags[k]);
                        return EXIT_INVALID;
                }
        return EXIT_OK;
}

/* The component's manifest with the requested flag changes, built from the node as it is when
 * called (under the lock for a real write). */
static int build_flags_pod(cli *c, const component *co, json_t **ret, void *userdata) {
        _cleanup_free_ char *error = NULL;
        json_auto_t *pod = NULL;
        bool set = streq(c->args[0], "set");
        json_t *container;
        cmdline cl;
        int r;

        if (!co->cmdline_ok) {
                cli_error("%s: %s", co->plugin->name, co->cmdline_error);
                return EXIT_INVALID;
        }
        pod = json_deep_copy(co->pod);
        container = pod ? component_container_in(co, pod) : NULL;
        if (!container || cmdline_open(container, co->plugin->name, &cl, &error) < 0)
                return EXIT_FAILED;

        for (int i = 2; i < c->n_args; i++) {
                const char *a = startswith(c->args[i], "--") ?: c->args[i];
                _cleanup_free_ char *name = NULL;
                const char *eq = strchr(a, '=');

                name = strndup(a, eq ? (size_t) (eq - a) : strlen(a));
                if (!name)
                        return EXIT_FAILED;
                if (set)
                        r = cmdline_set_flag(&cl, name, eq ? eq + 1 : NULL);
                else {
                        r = cmdline_unset_flag(&cl, name);
                        if (r == 0) {
                                cli_error("flags unset: %s has no flag --%s", co->plugin->name, name);
                                return EXIT_INVALID;
                        }
                }
                if (r < 0)
                        return EXIT_FAILED;
        }
        *ret = TAKE_PTR(pod);
        return EXIT_OK;
}

int cmd_flags(cli *c) {
        _cleanup_free_ char *reason = NULL;
        bool set;
        int r;

        if (!streq(c->args[0], "set") && !streq(c->args[0], "unset")) {
                cli_error("flags: expected \"set\" or \"unset\", got \"%s\"", c->args[0]);
                return EXIT_INVALID;
        }
        set = streq(c->args[0], "set");
        if (c->n_args < 3) {
                cli_error("flags %s: give a component and at least one flag (see cplet flags --help)", c->args[0]);
                return EXIT_INVALID;
        }

        /* Check every argument before reading anything. */
        for (int i = 2; i < c->n_args; i++) {
                const char *a = c->args[i], *name = a, *eq;

                if (set) {
                        if (!startswith(a, "--")) {
                                cli_error("flags set: \"%s\" is not of the form --NAME=VALUE", a);
                                return EXIT_INVALID;
                        }
                        name = a + 2;
                } else if (startswith(a, "--"))
                        name = a + 2;
                eq = strchr(name, '=');
                if (!set && eq) {
                        cli_error("flags unset: give flag names without values, not \"%s\"", a);
                        return EXIT_INVALID;
                }
                r = check_name(name, eq ? (size_t) (eq - name) : strlen(name));
                if (r != EXIT_OK)
                        return r;
                for (const char *v = eq ? eq + 1 : ""; *v; v++)
                        if (isspace((unsigned char) *v) || iscntrl((unsigned char) *v)) {
                                cli_error("flags set: the value of \"%s\" contains white space or a control "
                                          "character; a value must be a single command-line item",
                                          a);
                                return EXIT_INVALID;
                        }
        }

        reason = strdup_printf("flags %s", c->args[0]);
        for (int i = 2; reason && i < c->n_args; i++) {
                char *more = strdup_printf("%s %s", reason, c->args[i]);

                free(reason);
                reason = more;
        }
        if (!reason)
                return EXIT_FAILED;
        return cli_write_component(c, c->args[1], build_flags_pod, NULL, "flags", reason);
}
