/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers every command shares: messages, exit codes, loading the node, the lock, diffs,
 * plan ids. */

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/random.h>

#include "cli.h"
#include "cplet-build.h"
#include "diff.h"
#include "macro.h"
#include "store.h"

void cli_error(const char *fmt, ...) {
        va_list ap;

        fputs("cplet: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
}

int cli_exit_code(int r) {
        switch (-r) {
        case EINVAL:
        case E2BIG:
        case EOPNOTSUPP:
        case ELOOP:
        case EPERM:
        case EEXIST:
        case EPROTO:
        case ERANGE:
        case ENOENT:
        case ENOTDIR:
                return EXIT_INVALID;
        default:
                return EXIT_FAILED;
        }
}

int cli_load_node(cli *c) {
        _cleanup_free_ char *error = NULL;
        const char *dir;
        int r;

        /* Configuration and plugins are loaded once; the node may be read again (under the
         * lock, after planning read-only). */
        if (!c->plugins) {
                r = config_load(c->root, c->config_path, &c->config, &error);
                if (r < 0) {
                        cli_error("%s", error ?: strerror(-r));
                        return cli_exit_code(r);
                }
                dir = c->plugin_dir_option ?: c->config.plugin_dir ?: CPLET_PLUGIN_DIR;
                r = plugin_set_load(dir, &c->plugins, &error);
                if (r < 0) {
                        cli_error("%s", error ?: strerror(-r));
                        return cli_exit_code(r);
                }
        }
        c->node = node_free(c->node);
        r = node_load_full(c->root, c->plugins, c->keep_broken ? NODE_LOAD_KEEP_BROKEN : 0, &c->node, &error);
        if (r < 0) {
                cli_error("%s", error ?: strerror(-r));
                return cli_exit_code(r);
        }
        return EXIT_OK;
}

int cli_lock(cli *c, int *ret_fd) {
        _cleanup_free_ char *error = NULL;
        int r = store_lock(c->root, c->command_line ?: "cplet", ret_fd, &error);

        if (r < 0) {
                cli_error("%s", error ?: strerror(-r));
                return r == -EBUSY ? EXIT_INVALID : cli_exit_code(r);
        }
        return EXIT_OK;
}

int cli_print_diff(const char *a, const char *b, const char *label_a, const char *label_b) {
        _cleanup_free_ char *d = NULL;
        int r = unified_diff(a, b, label_a, label_b, &d);

        if (r < 0)
                return r;
        fputs(d, stdout);
        return 0;
}

void cli_new_plan_id(char buf[static 32]) {
        uint32_t rnd = 0;

        if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != sizeof(rnd))
                rnd = (uint32_t) getpid();
        snprintf(buf, 32, "plan-%08x", rnd);
}
