/* SPDX-License-Identifier: Apache-2.0 */
/* cplet rollback: back to an earlier emulated or binary version (a plan downwards), or to a
 * stored revision of one component (a single write). */

#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "macro.h"
#include "manifest.h"
#include "op-internal.h"

/* The versions every component runs: a rollback by version starts from one shared state. */
static int common_versions(const node *n, const component **ret, char **ret_error) {
        const component *ref;
        const char *why;

        if (n->n_components == 0)
                return set_error(ret_error, -EINVAL, "no control-plane components in %s", n->manifest_dir);
        ref = &n->components[0];
        for (size_t i = 0; i < n->n_components; i++) {
                const component *co = &n->components[i];

                if (!component_is_plannable(co, &why))
                        return set_error(ret_error, -EINVAL, "cannot plan: %s: %s", co->plugin->name, why);
                if (kversion_cmp(&co->binary, &ref->binary) != 0 || !kminor_eq(co->emulated, ref->emulated))
                        return set_error(ret_error, -EINVAL,
                                         "rollback: the components run different versions (%s and %s differ); "
                                         "finish the rollout or roll back with cplet rollback --component first",
                                         ref->plugin->name, co->plugin->name);
        }
        *ret = ref;
        return 0;
}

static int emulation_target(const component *ref, const char *emulated, char b[static KVERSION_STRING_MAX],
                            char **ret_error) {
        char e[KMINOR_STRING_MAX];
        kminor want;

        kminor_format(ref->emulated, e);
        if (kminor_parse_flag("--emulated-version", emulated, &want, NULL, NULL) >= 0 &&
            kminor_cmp(want, ref->emulated) >= 0)
                return set_error(ret_error, -EINVAL,
                                 "rollback: the emulated version in force is %s; %s is not lower (use cplet upgrade "
                                 "to raise it)",
                                 e, emulated);
        kversion_format(&ref->binary, b);
        return 0;
}

static int binary_target(const component *ref, const char *binary, bool emulated_given,
                         char e[static KMINOR_STRING_MAX], char **ret_error) {
        char b[KVERSION_STRING_MAX], v[KVERSION_STRING_MAX];
        kversion want;

        kversion_format(&ref->binary, b);
        kminor_format(ref->emulated, e);
        if (kversion_parse(binary, &want, NULL) < 0)
                return 0; /* the planner says what is wrong with it */
        kversion_format(&want, v);
        if (kversion_cmp(&want, &ref->binary) >= 0)
                return set_error(ret_error, -EINVAL, "rollback: the binaries run %s; %s is not older (use cplet "
                                                     "upgrade)",
                                 b, v);
        /* FACTS.md: back to 1.(N-1) only while the emulated version is <= 1.(N-1). */
        if (!emulated_given && kminor_cmp(ref->emulated, kversion_minor(&want)) > 0)
                return set_error(ret_error, -EINVAL,
                                 "rollback: binary %s cannot run the emulated version %s in force; roll the emulated "
                                 "version back first (cplet rollback --emulated-version %u.%u)",
                                 v, e, want.major, want.minor);
        return 0;
}

int op_rollback_versions(op_env *e, const char *emulated, const char *binary, const op_options *o, op_result *ret,
                         char **ret_error) {
        _cleanup_(node_freep) node *n = NULL;
        char b[KVERSION_STRING_MAX], em[KMINOR_STRING_MAX];
        const component *ref = NULL;
        op_target t;
        int r;

        *ret = (op_result){ .command = "rollback" };
        if (!emulated && !binary)
                return set_error(ret_error, -EINVAL, "rollback: give --emulated-version or --binary-version");
        r = op_load_node(e, &n, ret_error);
        if (r >= 0)
                r = common_versions(n, &ref, ret_error);
        if (r < 0)
                return r;
        /* The version not named stays as it is in force: the old binary must accept the emulated
         * version in force, so an impossible plan is refused rather than emulation lowered behind
         * one's back. */
        if (!binary) {
                r = emulation_target(ref, emulated, b, ret_error);
                t = (op_target){ .binary_version = b, .emulated_version = emulated };
        } else {
                r = binary_target(ref, binary, emulated, em, ret_error);
                t = (op_target){ .binary_version = binary, .emulated_version = emulated ?: em };
        }
        if (r < 0)
                return r;
        if (o->no_wait && o->dry_run)
                return set_error(ret_error, -EINVAL, "--no-wait and --dry-run exclude each other");
        if (o->no_wait || o->dry_run) {
                r = op_write_plan(e, &t, o, ret, ret_error);
                ret->command = "rollback";
                return r;
        }
        return op_run_gated_plan(e, &t, "rollback", o, ret, ret_error);
}

/* Revision N of the component, parsed. */
static int build_revision_pod(op_env *e, const component *co, json_t **ret, void *userdata, char **ret_error) {
        unsigned number = *(unsigned *) userdata;
        _cleanup_(store_freep) store *s = NULL;
        _cleanup_free_ char *data = NULL, *name = NULL;
        size_t size;
        int r;

        r = store_open(e->root, 0, false, &s, ret_error);
        if (r >= 0)
                r = store_read(s, co->plugin->name, number, &data, &size, ret_error);
        if (r < 0)
                return r;
        name = strdup_printf("%s/%s/%u.yaml", s->revisions_dir, co->plugin->name, number);
        if (!name)
                return -ENOMEM;
        r = manifest_parse(data, size, name, ret, ret_error);
        return r < 0 ? -EINVAL : 0;
}

int op_rollback_revision(op_env *e, const char *name, const char *number_text, const op_options *o,
                         op_result *ret, char **ret_error) {
        _cleanup_free_ char *reason = NULL;
        unsigned long number;
        char *end;

        *ret = (op_result){ .command = "rollback" };
        errno = 0;
        number = strtoul(number_text, &end, 10);
        if (!isdigit((unsigned char) number_text[0]) || *end || errno != 0 || number == 0 || number > 999999999)
                return set_error(ret_error, -EINVAL, "--to-revision \"%s\": expected a revision number (see cplet "
                                                     "history)",
                                 number_text);
        if (o->no_wait && o->dry_run)
                return set_error(ret_error, -EINVAL, "--no-wait and --dry-run exclude each other");
        reason = strdup_printf("rollback to revision %lu", number);
        if (!reason)
                return -ENOMEM;
        return op_write_component(e, name, build_revision_pod, &(unsigned){ number }, "rollback", reason, o,
                                  ret, ret_error);
}
