/* SPDX-License-Identifier: Apache-2.0 */
/* cplet flags set/unset: other flags of a component, written as one new revision. */

#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "macro.h"
#include "op-internal.h"

/* These move only through plan/upgrade, which keeps every intermediate state valid. */
static const char *const compat_flags[] = {
        "emulated-version",
        "min-compatibility-version",
        "emulation-forward-compatible",
        "runtime-config-emulation-forward-compatible",
};

typedef struct flags_change {
        bool set;
        char *const *flags;
        size_t n_flags;
} flags_change;

static bool valid_flag_name(const char *s, size_t len) {
        if (len == 0 || len > 128 || !isalnum((unsigned char) s[0]))
                return false;
        for (size_t i = 0; i < len; i++)
                if (!isalnum((unsigned char) s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
                        return false;
        return true;
}

static int check_name(const char *name, size_t len, char **ret_error) {
        if (!valid_flag_name(name, len))
                return set_error(ret_error, -EINVAL, "flags: \"%.*s\" is not a flag name", (int) len, name);
        for (size_t k = 0; k < ELEMENTSOF(compat_flags); k++)
                if (cmdline_flag_name_equal(name, len, compat_flags[k]))
                        return set_error(ret_error, -EINVAL,
                                         "flags: --%s is a compatibility flag; change it with cplet plan/upgrade, "
                                         "which keeps every intermediate state valid",
                                         compat_flags[k]);
        return 0;
}

/* Every argument is checked before anything is read. */
static int check_arguments(const flags_change *fc, char **ret_error) {
        if (fc->n_flags == 0)
                return set_error(ret_error, -EINVAL, "flags %s: give a component and at least one flag",
                                 fc->set ? "set" : "unset");
        for (size_t i = 0; i < fc->n_flags; i++) {
                const char *a = fc->flags[i], *name = startswith(a, "--") ?: a, *eq = strchr(name, '=');
                int r;

                if (fc->set && !startswith(a, "--"))
                        return set_error(ret_error, -EINVAL, "flags set: \"%s\" is not of the form --NAME=VALUE", a);
                /* A flag without a value would take the next item, or be a boolean: say which. */
                if (fc->set && !eq)
                        return set_error(ret_error, -EINVAL,
                                         "flags set: \"%s\" has no value; write --NAME=VALUE (--NAME=true for a "
                                         "boolean)",
                                         a);
                if (!fc->set && eq)
                        return set_error(ret_error, -EINVAL, "flags unset: give flag names without values, not \"%s\"",
                                         a);
                r = check_name(name, eq ? (size_t) (eq - name) : strlen(name), ret_error);
                if (r < 0)
                        return r;
                for (const char *v = eq ? eq + 1 : ""; *v; v++)
                        if (isspace((unsigned char) *v) || iscntrl((unsigned char) *v))
                                return set_error(ret_error, -EINVAL,
                                                 "flags set: the value of \"%s\" contains white space or a control "
                                                 "character; a value must be a single command-line item",
                                                 a);
        }
        return 0;
}

static int apply_one(cmdline *cl, const component *co, bool set, const char *arg, char **ret_error) {
        const char *a = startswith(arg, "--") ?: arg, *eq = strchr(a, '=');
        _cleanup_free_ char *name = strndup(a, eq ? (size_t) (eq - a) : strlen(a));
        int r;

        if (!name)
                return -ENOMEM;
        if (set)
                return cmdline_set_flag(cl, name, eq ? eq + 1 : NULL);
        r = cmdline_unset_flag(cl, name);
        if (r == 0)
                return set_error(ret_error, -EINVAL, "flags unset: %s has no flag --%s", co->plugin->name, name);
        return r;
}

/* The component's manifest with the requested flag changes, built from the node as it is when
 * called (under the lock for a real write). */
static int build_flags_pod(op_env *e, const component *co, json_t **ret, void *userdata, char **ret_error) {
        const flags_change *fc = userdata;
        json_auto_t *pod = NULL;
        json_t *container;
        cmdline cl;
        int r;

        if (!co->cmdline_ok)
                return set_error(ret_error, -EINVAL, "%s: %s", co->plugin->name, co->cmdline_error);
        pod = json_deep_copy(co->pod);
        container = pod ? component_container_in(co, pod) : NULL;
        if (!container)
                return -ENOMEM;
        r = cmdline_open(container, co->plugin->name, &cl, ret_error);
        for (size_t i = 0; r >= 0 && i < fc->n_flags; i++)
                r = apply_one(&cl, co, fc->set, fc->flags[i], ret_error);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(pod);
        return 0;
}

int op_flags(op_env *e, bool set, const char *name, char *const *flags, size_t n_flags, const op_options *o,
             op_result *ret, char **ret_error) {
        flags_change fc = { .set = set, .flags = flags, .n_flags = n_flags };
        _cleanup_free_ char *reason = NULL;
        int r;

        *ret = (op_result){ .command = "flags" };
        r = check_arguments(&fc, ret_error);
        if (r < 0)
                return r;
        if (o->no_wait && o->dry_run)
                return set_error(ret_error, -EINVAL, "--no-wait and --dry-run exclude each other");
        reason = strdup_printf("flags %s", set ? "set" : "unset");
        for (size_t i = 0; reason && i < n_flags; i++) {
                char *more = strdup_printf("%s %s", reason, flags[i]);

                free(reason);
                reason = more;
        }
        if (!reason)
                return -ENOMEM;
        return op_write_component(e, name, build_flags_pod, &fc, "flags", reason, o, ret, ret_error);
}
