/* SPDX-License-Identifier: Apache-2.0 */
#include "cli.h"

static int run_upgrade(cli *c, const op_options *o, op_result *res, char **ret_error) {
        return op_upgrade(c->env, &c->target, o, res, ret_error);
}

int cmd_upgrade(cli *c) {
        return cli_run_write(c, run_upgrade);
}
