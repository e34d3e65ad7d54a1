/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <unistd.h>

#include "cli.h"
#include "daemon.h"
#include "macro.h"

int cmd_daemon(cli *c) {
        _cleanup_free_ char *error = NULL, *holder = NULL;
        daemon_options o;
        int r;

        /* Named in the lock file while a rollout runs, so that a command refused meanwhile
         * says who holds it. */
        holder = strdup_printf("cplet daemon (pid %d)", (int) getpid());
        if (!holder)
                return cli_fail(-ENOMEM, NULL);
        o = (daemon_options){
                .root = c->root,
                .config_path = c->config_path,
                .plugin_dir = c->plugin_dir_option,
                .holder = holder,
                .kubeconfig = c->kubeconfig,
                .context = c->context,
                .node_name = c->node_name,
                .insecure_skip_tls_verify = c->insecure_skip_tls_verify,
        };
        r = daemon_run(&o, &error);
        if (r < 0)
                return cli_fail(r, error);
        return EXIT_OK;
}
