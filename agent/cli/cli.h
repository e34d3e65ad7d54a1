/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The command layer: parses options, calls the library, prints, picks the exit code. */

#include <stdbool.h>

#include "config.h"
#include "node.h"
#include "plan.h"
#include "plugin-loader.h"

#define CLI_IMAGES_MAX 16

enum {
        EXIT_OK = 0,
        EXIT_FAILED = 1,  /* the operation failed */
        EXIT_INVALID = 2, /* invalid input, or a plan refused by the safety rules */
};

typedef struct cli {
        char *root; /* absolute, no trailing slash except for "/" */
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
        char *rollback_owned[2]; /* target strings rollback made up (freed at exit) */
        const char *component;
        const char *to_revision;

        /* plan options */
        const char *binary_version;
        const char *emulated_version;
        const char *min_compat_version;
        const char *image_repository;
        plan_image images[CLI_IMAGES_MAX]; /* --image COMPONENT=REF; component points into image_names */
        char image_names[CLI_IMAGES_MAX][64];
        size_t n_images;

        config config;
        plugin_set *plugins;
        node *node;
        bool keep_broken; /* status: load a node with unusable manifests, to show them */
} cli;

/* Prints "cplet: MESSAGE" on stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Maps a library error to an exit code: bad input is 2, anything else 1. */
int cli_exit_code(int r);
/* Loads configuration, plugins and the node; prints the error and returns an exit code
 * (> 0) on failure. */
int cli_load_node(cli *c);

struct plan;
struct plan_component;
/* Parses the target options, loads the node and computes the plan; prints the error and
 * returns an exit code (> 0) on failure. *ret_components is in node order. */
int cli_compute_plan(cli *c, struct plan **ret, struct plan_component **ret_components);
/* Builds the planner's view of one component (which must be plannable). */
void cli_plan_component(const component *co, struct plan_component *ret);
/* Records one --image COMPONENT=REF (REF is checked against the plan later); prints and
 * returns -EINVAL when it is not of that form. */
int cli_add_image_option(cli *c, const char *arg);
/* A new plan id ("plan-1a2b3c4d"), for the journal and the revisions a plan writes. */
void cli_new_plan_id(char buf[static 32]);
/* Takes the node lock; prints and returns an exit code (> 0) on failure. */
int cli_lock(cli *c, int *ret_fd);
struct store;
/* Opens the revision store read-only; prints and returns an exit code (> 0) on failure. */
int cli_open_store(cli *c, struct store **ret);
/* Builds a component's new manifest from the node as it is when called (prints and returns
 * an exit code > 0 on failure). */
typedef int (*component_builder)(cli *c, const component *co, json_t **ret_pod, void *userdata);
/* Builds (under the lock, from the node as read then), checks (rules, skew against the
 * others) and writes a component's new manifest as a new revision: gated like an upgrade
 * step, or at once with --no-wait, or only shown with --dry-run. `command` names it in the
 * journal ("rollback", "flags"). */
int cli_write_component(cli *c, const char *name, component_builder build, void *userdata, const char *command,
                        const char *reason);
/* The check alone; fills *ret_next with the component as the tree would make it. */
int cli_check_component_tree(cli *c, const component *co, json_t *new_pod, component *ret_next);
/* The gated write of one component's new tree (journaled; restored if it fails). */
int cli_run_gated_write(cli *c, const char *name, component_builder build, void *userdata, const char *command,
                        const char *reason);
/* Takes the lock for a write and, holding it, refuses (exit 2) when an unfinished rollout's
 * journal says resume or abort must come first. */
int cli_lock_for_write(cli *c, int *ret_fd);
/* Prints a unified diff of two manifests. */
int cli_print_diff(const char *a, const char *b, const char *label_a, const char *label_b);

struct plan_step;
json_t *step_to_json(const node *n, const struct plan_step *s);

int cmd_status(cli *c);
int cmd_plan(cli *c);
int cmd_upgrade(cli *c);
int cmd_rollback(cli *c);
int cmd_flags(cli *c);
int cmd_history(cli *c);
int cmd_diff(cli *c);
int cmd_resume(cli *c);
int cmd_abort(cli *c);

/* Runs a plan gated (the heart of upgrade and of rollback by version). `command` names it in
 * the journal ("upgrade", "rollback"). */
int cli_run_gated(cli *c, const char *command);
struct rollout_options;
/* Parses --stable-for, --step-timeout, --on-failure (defaults otherwise); prints the error and
 * returns -EINVAL on a bad value. */
int cli_rollout_options(cli *c, struct rollout_options *ret);
/* Refuses (exit 2) when the journal shows a rollout that has not finished. */
int cli_refuse_if_interrupted(cli *c);
