/* SPDX-License-Identifier: Apache-2.0 */
#include "cli.h"
#include "macro.h"

static int run_flags(cli *c, const op_options *o, op_result *res, char **ret_error) {
        return op_flags(c->env, streq(c->args[0], "set"), c->args[1], c->args + 2, (size_t) (c->n_args - 2), o, res,
                        ret_error);
}

int cmd_flags(cli *c) {
        if (!streq(c->args[0], "set") && !streq(c->args[0], "unset")) {
                cli_error("flags: expected \"set\" or \"unset\", got \"%s\"", c->args[0]);
                return EXIT_INVALID;
        }
        if (c->n_args < 3) {
                cli_error("flags %s: give a component and at least one flag (see cplet flags --help)", c->args[0]);
                return EXIT_INVALID;
        }
        return cli_run_write(c, run_flags);
}
