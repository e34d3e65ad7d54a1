/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The command layer: parses options, calls one library operation, prints, picks the exit
 * code. Nothing here decides anything about the node. */

#include <stdbool.h>

#include "operation.h"

#define CLI_IMAGES_MAX 16
#define CLI_COMPONENTS_MAX 16

enum {
        EXIT_OK = 0,
        EXIT_FAILED = 1,  /* the operation failed */
        EXIT_INVALID = 2, /* invalid input, or a plan refused by the safety rules */
};

typedef struct cli {
        char *root; /* absolute */
        char *command_line; /* argv joined, for the lock holder's description */
        const char *config_path;
        const char *plugin_dir_option;
        bool json;

        /* positional arguments after the command */
        char **args;
        int n_args;

        bool no_wait;
        bool dry_run;
        bool quiet;
        bool force;
        const char *stable_for;
        const char *step_timeout;
        const char *on_failure;
        const char *component;
        const char *to_revision;
        const char *kubeconfig;
        const char *context;
        const char *node_name;
        bool insecure_skip_tls_verify;

        op_target target;
        plan_image images[CLI_IMAGES_MAX]; /* --image COMPONENT=REF; component points into image_names */
        char image_names[CLI_IMAGES_MAX][64];
        /* --components C[,C...] (repeatable); target.components points here. */
        const char *components[CLI_COMPONENTS_MAX + 1];
        char component_names[CLI_COMPONENTS_MAX][64];
        size_t n_components;

        op_env *env; /* loaded by cli_env() */
} cli;

/* Prints "cplet: MESSAGE" on stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints an operation's error (its sentence, else strerror) and returns the exit code. */
int cli_fail(int r, const char *error);
/* Maps an operation's return value to an exit code. */
int cli_exit_code(int r);
/* Loads configuration and plugins once; prints and returns an exit code (> 0) on failure. */
int cli_env(cli *c);
/* Records one --image COMPONENT=REF (REF is checked against the plan later); prints and
 * returns an exit code (> 0) when it is not of that form. */
int cli_add_image_option(cli *c, const char *arg);
/* Records --components C[,C...] (the names are checked against the node later); prints and
 * returns an exit code (> 0) when it is not a comma-separated list of names. */
int cli_add_components_option(cli *c, const char *arg);
/* Prints a unified diff. */
int cli_print_diff(const op_diff *d);

/* A writing operation run with the terminal's progress, signals and result rendering. */
typedef int (*cli_write_fn)(cli *c, const op_options *o, op_result *res, char **ret_error);
int cli_run_write(cli *c, cli_write_fn fn);

int cmd_status(cli *c);
int cmd_plan(cli *c);
int cmd_upgrade(cli *c);
int cmd_rollback(cli *c);
int cmd_flags(cli *c);
int cmd_history(cli *c);
int cmd_diff(cli *c);
int cmd_resume(cli *c);
int cmd_abort(cli *c);
int cmd_daemon(cli *c);
