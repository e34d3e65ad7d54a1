/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The command layer: parses options, calls one library operation, prints, picks the exit
 * code. Nothing here decides anything about the node. */

#include <stdbool.h>

#include "operation.h"

#define CLI_IMAGES_MAX 16
#define CLI_COMPONENTS_MAX 16
#define CLI_DROP_MAX 64

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
        const char *node_timeout;   /* cplet cluster */
        const char *max_status_age;

        op_target target;
        plan_image images[CLI_IMAGES_MAX]; /* --image COMPONENT=REF; component points into image_names */
        char image_names[CLI_IMAGES_MAX][64];
        /* --components C[,C...] (repeatable); target.components points here. */
        const char *components[CLI_COMPONENTS_MAX + 1];
        char component_names[CLI_COMPONENTS_MAX][64];
        size_t n_components;
        /* --drop-removed NAME[,NAME...] (repeatable); target.drop_removed points here. */
        const char *drop_removed[CLI_DROP_MAX + 1];
        char drop_names[CLI_DROP_MAX][128];
        size_t n_drop_removed;

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
/* Records --drop-removed NAME[,NAME...] (checked against the plan's refusals later); prints and
 * returns an exit code (> 0) when it is not a comma-separated list of names. */
int cli_add_drop_removed_option(cli *c, const char *arg);
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
int cmd_cluster(cli *c);

#define CMD_CLUSTER_HELP                                                                                   \
        "Usage: cplet cluster status [--json] [API options]\n"                                              \
        "       cplet cluster plan --binary-version V [--emulated-version E]\n"                             \
        "                          [--min-compatibility-version M] [--json] [API options]\n"                \
        "       cplet cluster upgrade (same target options) [--dry-run] [--stable-for D]\n"                 \
        "                          [--step-timeout D] [--on-failure P] [--node-timeout D] [API options]\n"  \
        "       cplet cluster rollback --emulated-version E | --binary-version V (same options)\n"          \
        "\n"                                                                                                \
        "The reference controller of docs/protocol.md, run with an admin's credentials. It drives\n"        \
        "the cplet daemon of every control-plane node (label node-role.kubernetes.io/control-plane)\n"      \
        "through the cplet.io/target annotation, in the order the version-skew policy requires:\n"          \
        "binaries first (emulated version pinned), then each emulated minor, then\n"                        \
        "min-compatibility; in each phase kube-apiserver on every node one node at a time, then\n"         \
        "kube-controller-manager, then kube-scheduler. Rollback goes in reverse. After each step\n"         \
        "the mirror pod must show the new revision, image and flags and be Ready, and the\n"                \
        "leader-election Lease of a controller-manager or scheduler must be renewed again.\n"               \
        "The first failure stops (exit 1); re-running the same command continues. See docs/cluster.md.\n" \
        "\n"                                                                                                \
        "  --kubeconfig FILE      admin credentials (default: $KUBECONFIG's first file, else\n"            \
        "                         ~/.kube/config)\n"                                                        \
        "  --context NAME         the kubeconfig context (default: its current-context)\n"                  \
        "  --insecure-skip-tls-verify  do not verify the API server's certificate\n"                       \
        "  --max-status-age D     an agent status older than D is stale (default 15m; 0s: never)\n"         \
        "  --dry-run              print each node's target and write nothing\n"                             \
        "  --stable-for D, --step-timeout D, --on-failure P   into each target (the agent's gate)\n"       \
        "  --node-timeout D       bound of each (node, component) step, checks included (default 15m)\n"   \
        "\n"                                                                                                \
        "Exit status: 0 done, 1 a step failed (the node, component and reason are printed),\n"             \
        "2 invalid input, a plan the rules refuse, or another controller holding the Lease.\n"

