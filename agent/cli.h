/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The command layer: parses options, calls the library, prints, picks the exit code. */

#include <stdbool.h>

#include "config.h"
#include "node.h"
#include "plugin-loader.h"

enum {
        EXIT_OK = 0,
        EXIT_FAILED = 1,  /* the operation failed */
        EXIT_INVALID = 2, /* invalid input, or a plan refused by the safety rules */
};

typedef struct cli {
        char *root; /* absolute, no trailing slash except for "/" */
        const char *config_path;
        const char *plugin_dir_option;
        bool json;

        /* plan options */
        const char *binary_version;
        const char *emulated_version;
        const char *min_compat_version;
        const char *image_repository;

        config config;
        plugin_set *plugins;
        node *node;
} cli;

/* Prints "cplet: MESSAGE" on stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Maps a library error to an exit code: bad input is 2, anything else 1. */
int cli_exit_code(int r);
/* Loads configuration, plugins and the node; prints the error and returns an exit code
 * (> 0) on failure. */
int cli_load_node(cli *c);

int cmd_status(cli *c);
int cmd_plan(cli *c);
