/* SPDX-License-Identifier: Apache-2.0 */
#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "cli.h"
#include "macro.h"
#include "store.h"

static int parse_number(const char *s, unsigned *ret) {
        char *end;
        unsigned long n = strtoul(s, &end, 10);

        if (!isdigit((unsigned char) s[0]) || *end || n == 0 || n > 999999999) {
                cli_error("diff: \"%s\" is not a revision number (see cplet history)", s);
                return EXIT_INVALID;
        }
        *ret = (unsigned) n;
        return EXIT_OK;
}

int cmd_diff(cli *c) {
        _cleanup_(store_freep) store *s = NULL;
        _cleanup_free_ char *error = NULL, *a = NULL, *b = NULL, *la = NULL, *lb = NULL;
        const component *co;
        unsigned ra, rb = 0;
        size_t size;
        int r;

        r = parse_number(c->args[1], &ra);
        if (r == EXIT_OK && c->n_args > 2)
                r = parse_number(c->args[2], &rb);
        if (r != EXIT_OK)
                return r;
        r = cli_load_node(c);
        if (r != EXIT_OK)
                return r;
        co = node_find(c->node, c->args[0]);
        if (!co) {
                cli_error("no component \"%s\" on this node (see cplet status)", c->args[0]);
                return EXIT_INVALID;
        }
        r = cli_open_store(c, &s);
        if (r != EXIT_OK)
                return r;

        r = store_read(s, co->plugin->name, ra, &a, &size, &error);
        if (r >= 0)
                r = rb ? store_read(s, co->plugin->name, rb, &b, &size, &error)
                       : store_read_live(s, co->file, &b, &size, &error);
        if (r < 0) {
                cli_error("%s", error ?: strerror(-r));
                return cli_exit_code(r);
        }
        la = strdup_printf("%s revision %u", co->plugin->name, ra);
        lb = rb ? strdup_printf("%s revision %u", co->plugin->name, rb) : strdup_printf("%s/%s (live)", s->manifest_dir, co->file);
        if (!la || !lb)
                return EXIT_FAILED;
        return cli_print_diff(a, b, la, lb) < 0 ? EXIT_FAILED : EXIT_OK;
}
