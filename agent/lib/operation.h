/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* One library call per operation: status, plan, upgrade, rollback (by version, by revision),
 * flags, resume, abort, history, diff. The CLI and the daemon both call these and nothing
 * below them; each takes the node's environment, plain options and a progress callback, and
 * returns 0 or a negative errno with a sentence in *ret_error. What an error means for an exit
 * code or a reported phase is op_outcome_of()'s to say, once, for every front end.
 *
 * A write is always checked read-only first, so that a refusal touches nothing (not even the
 * lock file); then again under the lock, from the node as it is then. */

#include <jansson.h>
#include <stdbool.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "journal.h"
#include "node.h"
#include "plan.h"
#include "plugin-loader.h"
#include "rollout.h"
#include "store.h"

/* Where a node is and how to read it: loaded once per front-end run. */
typedef struct op_env {
        char *root;      /* absolute */
        char *holder;    /* what the lock file says while we hold it: "COMMAND LINE" */
        config config;
        plugin_set *plugins;
        /* Told what an operation did on its own that its caller should know (may be NULL). */
        void (*warn)(const char *message, void *userdata);
        void *warn_userdata;
} op_env;

/* Loads the configuration (explicit path, or ROOT/etc/cplet/config.yaml when present) and the
 * plugins (plugin_dir, else the configuration's, else the built-in directory). */
int op_env_new(const char *root, const char *config_path, const char *plugin_dir, const char *holder,
               op_env **ret, char **ret_error);
op_env *op_env_free(op_env *e);
static inline void op_env_freep(op_env **e) {
        op_env_free(*e);
}

/* What an operation's return value means to the people and programs that asked for it. */
typedef enum op_outcome {
        OP_OK,
        OP_FAILED,      /* it failed (restored, and unwound where the message says so) */
        OP_REFUSED,     /* invalid input, or refused by the safety rules: nothing changed */
        OP_INTERRUPTED, /* a signal ended a wait: the journal keeps the rollout resumable */
} op_outcome;

op_outcome op_outcome_of(int r);

/* A target as a person or a controller writes it (strings, validated by the operation). */
typedef struct op_target {
        const char *binary_version;
        const char *emulated_version;
        const char *min_compat_version;
        const char *image_repository;
        const plan_image *images; /* --image COMPONENT=REF: the exact image of a binary step */
        size_t n_images;
        /* --components / the target's `components`: the components that move (NULL-terminated
         * names; NULL: all). The others keep their manifests byte for byte and must stay valid
         * with every state of the plan, or it is refused naming the one that would have to move
         * (see plan_target.components). A name not on the node is refused (-EINVAL). Kept in
         * the journal: resume moves no other component. */
        const char *const *components;
        /* --drop-removed / the target's `dropRemoved` (NULL-terminated; NULL: none): flags,
         * feature gates and admission plugins the preflight refuses (preflight.h) that each
         * component's first step of the plan removes. Only what the preflight refuses for that
         * component is removed; an entry that names nothing refused on this node is invalid
         * input. Kept in the journal for resume. */
        const char *const *drop_removed;
} op_target;

/* A registry prefix as kubeadm's imageRepository: "registry.k8s.io", "localhost:5000/k8s"; no
 * scheme, tag, digest or white space. */
bool op_valid_registry_prefix(const char *s);

/* Parses --stable-for, --step-timeout and --on-failure (NULL: the default). The stability
 * window must be shorter than the step timeout, or every step would time out. */
int op_parse_rollout_options(const char *stable_for, const char *step_timeout, const char *on_failure,
                             rollout_options *ret, char **ret_error);

typedef struct op_options {
        bool no_wait;  /* write every step at once, wait for nothing */
        bool dry_run;  /* compute the diffs, write nothing */
        bool force;    /* allow going below the min-compatibility high-water mark */
        rollout_options rollout;
        bool rollout_given; /* resume/abort: these options replace the journal's */
        /* The loop gates wait on; the caller's signal sources set *interrupted to end a wait. */
        sd_event *event;
        const volatile bool *interrupted;
        rollout_progress_fn progress; /* may be NULL */
        void *userdata;
        /* The client certificate and key a gate presents to /version (the daemon's kubeconfig
         * identity; anonymous access may be disabled). NULL: anonymous. */
        const http_pem *version_cert, *version_key;
} op_options;

/* One manifest change, as --dry-run shows it. */
typedef struct op_diff {
        char *label_a, *label_b;
        char *before, *after;
} op_diff;

/* One revision written by --no-wait. */
typedef struct op_written {
        size_t step, n_steps;
        const char *component; /* borrowed from the plugin set */
        const char *kind;
        char *manifest;        /* file name in the manifest directory */
        char *image;           /* after the step */
        char *reason;          /* as the revision records it */
        unsigned revision, parent;
        char binary_version[KVERSION_STRING_MAX];
        char emulated_version[KMINOR_STRING_MAX];
        char min_compat_version[KMINOR_STRING_MAX];
} op_written;

typedef struct op_result {
        char plan_id[32];
        const char *command; /* "upgrade", "rollback", "flags", "resume", "abort" */
        size_t n_steps;      /* steps planned (0: nothing to do) */
        op_diff *diffs;      /* --dry-run */
        size_t n_diffs;
        op_written *written; /* --no-wait */
        size_t n_written;
        bool nothing_to_resume; /* resume/abort found no interrupted rollout */
} op_result;

void op_result_done(op_result *r);

/* cplet status: the node, and the journal of a rollout that did not finish (NULL if none). */
typedef struct op_status_result {
        node *node;
        json_t *interrupted;
        char *journal_error; /* the journal exists but cannot be read: every write is refused */
        /* Per component (node->components order): what the next minor (binary minor + 1)
         * removes of its flags, feature gates and admission plugins (preflight_removed_in());
         * next_known[i] false when the binary is unknown or cplet has no data for that minor. */
        struct preflight_report *removed_next;
        bool *next_known;
} op_status_result;
int op_status(op_env *e, op_status_result *ret, char **ret_error);
void op_status_result_done(op_status_result *r);

/* cplet plan: the node and the plan to the target (refused with a reason). Before anything is
 * written, every step's command line is checked against what the step's binary accepts
 * (preflight.h): a refusal refuses the plan (-EINVAL, one finding per line) unless the target's
 * drop_removed removes it or `force` (then it is a warning, as the preflight's warnings are,
 * through op_env.warn). */
typedef struct op_plan_result {
        node *node;
        plan *plan;
} op_plan_result;
int op_plan(op_env *e, const op_target *t, bool force, op_plan_result *ret, char **ret_error);
void op_plan_result_done(op_plan_result *r);

/* cplet upgrade: gated, or --no-wait, or --dry-run. */
int op_upgrade(op_env *e, const op_target *t, const op_options *o, op_result *ret, char **ret_error);

/* cplet rollback --emulated-version E / --binary-version V (one of them). Always every
 * component: a rollback by version starts from one state the whole node shares. */
int op_rollback_versions(op_env *e, const char *emulated_version, const char *binary_version, const op_options *o,
                         op_result *ret, char **ret_error);

/* cplet rollback --component C --to-revision N. */
int op_rollback_revision(op_env *e, const char *name, const char *number_text, const op_options *o,
                         op_result *ret, char **ret_error);

/* cplet flags set C --NAME=VALUE... / flags unset C NAME... */
int op_flags(op_env *e, bool set, const char *name, char *const *flags, size_t n_flags, const op_options *o,
             op_result *ret, char **ret_error);

/* cplet resume / cplet abort. */
int op_resume(op_env *e, const op_options *o, op_result *ret, char **ret_error);
int op_abort(op_env *e, const op_options *o, op_result *ret, char **ret_error);

/* cplet history: each component's revisions and which is live. */
typedef struct op_history_entry {
        const component *component; /* borrowed from the result's node */
        revision_list revisions;
        unsigned live; /* 0: the live manifest matches no revision */
} op_history_entry;
typedef struct op_history_result {
        node *node;
        op_history_entry *entries;
        size_t n_entries;
} op_history_result;
int op_history(op_env *e, const char *component, op_history_result *ret, char **ret_error);
void op_history_result_done(op_history_result *r);

/* cplet diff C A [B]: revision A against revision B (0: the live manifest). */
int op_diff_revisions(op_env *e, const char *component, const char *a, const char *b, op_diff *ret,
                      char **ret_error);
void op_diff_done(op_diff *d);
