/* SPDX-License-Identifier: Apache-2.0 */
#include "cli.h"

static int run_rollback_versions(cli *c, const op_options *o, op_result *res, char **ret_error) {
        return op_rollback_versions(c->env, c->target.emulated_version, c->target.binary_version, o, res,
                                    ret_error);
}

static int run_rollback_revision(cli *c, const op_options *o, op_result *res, char **ret_error) {
        return op_rollback_revision(c->env, c->component, c->to_revision, o, res, ret_error);
}

int cmd_rollback(cli *c) {
        const op_target *t = &c->target;

        if (!c->component && !c->to_revision && (t->emulated_version || t->binary_version)) {
                if (t->min_compat_version || t->image_repository) {
                        cli_error("rollback: only --emulated-version or --binary-version (see cplet rollback --help)");
                        return EXIT_INVALID;
                }
                return cli_run_write(c, run_rollback_versions);
        }
        if (!c->component || !c->to_revision) {
                cli_error("rollback: give --component C --to-revision N, or --emulated-version E, or "
                          "--binary-version V (see cplet rollback --help)");
                return EXIT_INVALID;
        }
        if (t->emulated_version || t->binary_version) {
                cli_error("rollback: --to-revision does not combine with version options");
                return EXIT_INVALID;
        }
        return cli_run_write(c, run_rollback_revision);
}
