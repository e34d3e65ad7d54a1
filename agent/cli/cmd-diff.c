/* SPDX-License-Identifier: Apache-2.0 */
#include "cli.h"
#include "macro.h"

int cmd_diff(cli *c) {
        _cleanup_(op_diff_done) op_diff d = {};
        _cleanup_free_ char *error = NULL;
        int r;

        r = cli_env(c);
        if (r != EXIT_OK)
                return r;
        r = op_diff_revisions(c->env, c->args[0], c->args[1], c->n_args > 2 ? c->args[2] : NULL, &d, &error);
        if (r < 0)
                return cli_fail(r, error);
        return cli_print_diff(&d) < 0 ? EXIT_FAILED : EXIT_OK;
}
