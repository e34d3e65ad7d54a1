/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The daemon's state, shared by its parts: daemon.c (the loop, the Node, signals, setup),
 * agent-report.c (what cplet.io/status says, and the progress of a rollout) and agent-target.c
 * (validating and running targets, resuming, settling what a stop left unreported). */

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "daemon.h"
#include "handled.h"
#include "http.h"
#include "kube-client.h"
#include "kubeconfig.h"
#include "node-watch.h"
#include "operation.h"
#include "reporter.h"
#include "status.h"
#include "target.h"

#define TARGET_ANNOTATION "cplet.io/target"
#define STATUS_ANNOTATION "cplet.io/status"

typedef struct agent {
        const daemon_options *options;
        sd_event *event;
        op_env *env;
        kubeconfig *kubeconfig;
        kube_client *kube;
        node_watch *watch;
        reporter *reporter;
        char *node_name;

        /* The target annotation as last seen on the Node (NULL: none), and whether it changed
         * since it was last handled. */
        char *target_text;
        size_t target_size; /* the annotation may hold a NUL (the watch lets \u0000 through) */
        bool target_changed;
        char *refused_text; /* the last target refused: not evaluated again until it changes */
        size_t refused_size;
        bool node_seen;     /* the Node was read once */
        handled last;       /* the last target run (ROOT/var/lib/cplet/daemon.json) */

        /* What cplet.io/status says. */
        status_phase phase;
        char *id;
        uint64_t generation;
        char *message;
        char *plan_id;
        size_t step_index, step_total;
        /* A resumed rollout plans its remaining steps anew (numbered from 1): the plan steps its
         * journal already holds come first, so the status counts as the original plan did. */
        size_t resume_offset;
        char *step_component, *step_kind, *waiting_for;
        json_t *health; /* component name → true/false, as the last gate saw it */

        volatile bool interrupted; /* a signal: ends the waits of a rollout */
        bool stopping, reload, running, manifests_changed;
        uint64_t watchdog_usec;
        sd_event_source *watchdog;
        http_pem version_cert, version_key; /* the kubeconfig's client certificate, for /version */
} agent;

/* agent-report.c */
void set_string(char **p, const char *s);
void set_bytes(char **p, size_t *size, const char *s, size_t n);
bool bytes_equal(const char *a, size_t na, const char *b, size_t nb);
bool streq_ptr(const char *a, const char *b);
void clear_step(agent *d);
/* Builds cplet.io/status from the node as it is now and hands it to the reporter. */
void publish_status(agent *d);
void set_phase(agent *d, status_phase phase, const char *message);
void on_progress(const rollout_event *ev, void *userdata);

/* agent-target.c */
int read_target(agent *d, const char *text, size_t size, target **ret, char **ret_error);
op_target op_target_of(const target *t);
void handle_target(agent *d);
void resume_interrupted(agent *d, json_t *unfinished);
void adopt_previous_status(agent *d, json_t *annotations);
