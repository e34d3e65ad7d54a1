/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The gate of a rollout step: after a manifest is swapped in, wait until
 *   1. a process runs with exactly the manifest's command line, started after the swap;
 *   2. the component reports the step's versions (where its plugin reads them; a /version that
 *      refuses anonymous requests with 401/403 leaves them unverified: health alone gates then,
 *      and the result carries a warning saying so);
 *   3. the manifest's own probes answer 2xx, held for the stability window;
 * or fail: timeout, the process exited, wrong versions. Everything runs on one sd-event
 * loop: /proc is looked at on a short timer while a process is awaited, probes are issued
 * back to back while waiting and spaced out during the stability window. */

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "http.h"
#include "plugin-loader.h"
#include "probe.h"
#include "version.h"

typedef enum gate_phase {
        GATE_PROCESS,
        GATE_VERSIONS,
        GATE_HEALTH,
        GATE_STABLE,
        GATE_DONE,
} gate_phase;

const char *gate_phase_to_string(gate_phase p);

typedef struct gate_spec {
        json_t *pod;       /* the manifest that was swapped in (borrowed; may be NULL) */
        json_t *container; /* its component's container (borrowed) */
        const plugin *plugin;
        kversion binary; /* expected versions (reported ones are checked where available) */
        kminor emulated;
        kminor min_compat;
        uint64_t not_before_ticks; /* the swap time, boot_ticks_now() before the rename */
        uint64_t stable_usec;
        uint64_t timeout_usec;
        /* Called on every phase change (may be NULL), and with detail "tick" once a second
         * while waiting, so that a terminal can show the time going by. */
        void (*progress)(gate_phase phase, const char *detail, void *userdata);
        void *userdata;
        /* Set (by the caller's signal handler on the same loop) to stop waiting: -EINTR. */
        const volatile bool *interrupted;
        /* The identity /version is asked with (the daemon's client certificate: an API server may
         * refuse anonymous requests); NULL: anonymous. Never a token: the probe does not verify
         * the server, so nothing secret is sent. */
        const http_pem *client_cert, *client_key;
} gate_spec;

typedef struct gate_result {
        bool ok;
        gate_phase phase;     /* where it stopped */
        char *message;        /* why it failed, with the last probe result */
        char *warning;        /* what was not checked although it passed (NULL: everything was) */
        proc_info process;
        bool exited; /* the new process ran and exited */
} gate_result;

void gate_result_done(gate_result *r);

/* Runs the event loop until the gate opens or fails. Returns 0 with *ret filled (ret->ok says
 * which), or a negative errno if waiting itself was impossible; -EINTR when *interrupted
 * became true (a signal source of the caller's on the same loop). */
int gate_wait(sd_event *e, http_client *http, const gate_spec *spec, gate_result *ret);
