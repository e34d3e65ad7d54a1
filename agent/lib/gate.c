/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

#include "cmdline.h"
#include "gate.h"
#include "macro.h"

/* While something is awaited, look often: detection latency is what a person waits for. */
/* A /proc scan costs ~5 µs per process: 10 ms keeps it a few percent of a core on a busy node. */
#define PROC_POLL_USEC (10 * 1000)
#define PROBE_RETRY_USEC (5 * 1000)
#define STABLE_PROBE_USEC (200 * 1000)
#define PROBE_TIMEOUT_MS 2000

const char *gate_phase_to_string(gate_phase p) {
        switch (p) {
        case GATE_PROCESS:
                return "process";
        case GATE_VERSIONS:
                return "versions";
        case GATE_HEALTH:
                return "health";
        case GATE_STABLE:
                return "stable";
        case GATE_DONE:
                return "done";
        }
        return "?";
}

void gate_result_done(gate_result *r) {
        free(r->message);
        free(r->warning);
        *r = (gate_result){};
}

typedef struct gate {
        sd_event *event;
        http_client *http;
        const gate_spec *spec;
        gate_result *result;

        char **argv;
        size_t argc;
        uid_t uid;
        http_probe *probes;
        size_t n_probes;
        char *version_url;

        gate_phase phase;
        size_t probe_index;     /* next probe to pass in GATE_HEALTH */
        bool versions_unverified; /* /version refused cplet (401/403): gating on health alone */
        bool recheck_versions;    /* GATE_STABLE: the window is held, /version is asked once more */
        uint64_t stable_since;  /* monotonic */
        bool request_in_flight;
        char last_probe[256];   /* "GET https://…/readyz: 500" for messages */

        sd_event_source *timer;
        sd_event_source *deadline;
        sd_event_source *ticker;
} gate;

static void gate_finish(gate *g, bool ok, const char *fmt, ...) _printf_(3, 4);
static void gate_finish(gate *g, bool ok, const char *fmt, ...) {
        if (g->phase == GATE_DONE)
                return;
        g->result->ok = ok;
        g->result->phase = ok ? GATE_DONE : g->phase;
        if (fmt) {
                va_list ap;
                char *m;

                va_start(ap, fmt);
                m = strdup_vprintf(fmt, ap);
                va_end(ap);
                free(g->result->message);
                g->result->message = m;
        }
        g->phase = GATE_DONE;
}

static void set_phase(gate *g, gate_phase p, const char *detail) {
        g->phase = p;
        if (g->spec->progress)
                g->spec->progress(p, detail, g->spec->userdata);
}

static void arm(gate *g, uint64_t delay_usec) {
        (void) sd_event_source_set_time(g->timer, now_usec() + delay_usec);
        (void) sd_event_source_set_enabled(g->timer, SD_EVENT_ONESHOT);
}

static bool process_gone(gate *g) {
        if (proc_alive(&g->result->process))
                return false;
        g->result->exited = true;
        gate_finish(g, false, "%s exited (pid %d) while waiting for %s; last probe: %s", g->spec->plugin->name,
                    (int) g->result->process.pid, gate_phase_to_string(g->phase),
                    *g->last_probe ? g->last_probe : "none");
        return true;
}

static void start_health(gate *g, const char *detail);

typedef enum version_verdict {
        VERSIONS_MATCH,
        VERSIONS_WRONG,   /* a different binary or compatibility version: the step failed */
        VERSIONS_NOT_YET, /* another patch: possibly the old process still answering */
} version_verdict;

/* Compares what the component reports with the step's versions. VERSIONS_WRONG fills
 * *ret_message (NULL when out of memory); VERSIONS_NOT_YET says why in g->last_probe. */
static version_verdict check_versions(gate *g, const struct cplet_reported_versions *v, char **ret_message) {
        char want_e[KMINOR_STRING_MAX], want_m[KMINOR_STRING_MAX];
        kminor b = kversion_minor(&g->spec->binary);
        const char *name = g->spec->plugin->name;

        kminor_format(g->spec->emulated, want_e);
        kminor_format(g->spec->min_compat, want_m);
        if (v->binary.major != b.major || v->binary.minor != b.minor) {
                *ret_message = strdup_printf("%s reports binary %u.%u (%s), expected %u.%u", name, v->binary.major,
                                             v->binary.minor, v->git_version, b.major, b.minor);
                return VERSIONS_WRONG;
        }
        /* A patch upgrade keeps major.minor: gitVersion tells the patch (build metadata such
         * as +k3s1 aside). */
        if (*v->git_version) {
                kversion reported;

                if (kversion_parse(v->git_version, &reported, NULL) >= 0 && reported.has_patch &&
                    g->spec->binary.has_patch && reported.patch != g->spec->binary.patch) {
                        char want[KVERSION_STRING_MAX];

                        kversion_format(&g->spec->binary, want);
                        snprintf(g->last_probe, sizeof(g->last_probe), "GET %s: reports %s, expected %s",
                                 g->version_url, v->git_version, want);
                        return VERSIONS_NOT_YET;
                }
        }
        /* The emulation fields exist from 1.33 (FACTS.md); older binaries cannot be checked. */
        if (kminor_cmp(b, KMINOR(1, 33)) < 0)
                return VERSIONS_MATCH;
        if (!v->has_emulation || v->emulated.major != g->spec->emulated.major ||
            v->emulated.minor != g->spec->emulated.minor) {
                char got[KMINOR_STRING_MAX] = "none";

                if (v->has_emulation)
                        kminor_format(KMINOR(v->emulated.major, v->emulated.minor), got);
                *ret_message = strdup_printf("%s reports emulated version %s, expected %s", name, got, want_e);
                return VERSIONS_WRONG;
        }
        if (v->has_min_compat && (v->min_compat.major != g->spec->min_compat.major ||
                                  v->min_compat.minor != g->spec->min_compat.minor)) {
                *ret_message = strdup_printf("%s reports min-compatibility version %u.%u, expected %s", name,
                                             v->min_compat.major, v->min_compat.minor, want_m);
                return VERSIONS_WRONG;
        }
        return VERSIONS_MATCH;
}

/* /version answered 401 or 403: anonymous requests are not authenticated (or not authorized),
 * and cplet has no credentials of its own yet. The component serves, its versions are unknown:
 * the gate goes on with health alone and says so. A 403 can also be a moment of startup
 * (authorization not loaded yet), so /version is asked once more when the window is held. */
static void versions_refused(gate *g, long status) {
        if (g->phase == GATE_STABLE) {
                gate_finish(g, true, NULL); /* the warning stands */
                return;
        }
        g->versions_unverified = true;
        free(g->result->warning);
        g->result->warning = strdup_printf(
                "%s: GET %s answered %ld (%s): the reported versions are not verified, the step is gated on "
                "health alone",
                g->spec->plugin->name, g->version_url, status,
                status == 401 ? "anonymous requests are not authenticated" : "anonymous requests are not authorized");
        start_health(g, g->result->warning);
}

static bool awaiting_versions(const gate *g) {
        return g->phase == GATE_VERSIONS || (g->phase == GATE_STABLE && g->recheck_versions);
}

static void on_version(long status, const char *body, size_t size, const char *error, void *userdata) {
        gate *g = userdata;
        struct cplet_reported_versions v;
        _cleanup_free_ char *message = NULL;

        g->request_in_flight = false;
        if (!awaiting_versions(g) || process_gone(g))
                return;
        /* curl's reason, or the status: never both ("...: Couldn't connect to server0"). */
        if (error)
                snprintf(g->last_probe, sizeof(g->last_probe), "GET %s: %s", g->version_url, error);
        else
                snprintf(g->last_probe, sizeof(g->last_probe), "GET %s: %ld", g->version_url, status);
        if (!error && (status == 401 || status == 403)) {
                versions_refused(g, status);
                return;
        }
        if (status != 200 || g->spec->plugin->read_versions(body, size, &v) < 0) {
                arm(g, PROBE_RETRY_USEC); /* not serving yet */
                return;
        }
        switch (check_versions(g, &v, &message)) {
        case VERSIONS_WRONG:
                gate_finish(g, false, "%s", message ?: "out of memory");
                return;
        case VERSIONS_NOT_YET:
                if (!process_gone(g))
                        arm(g, PROBE_RETRY_USEC);
                return;
        case VERSIONS_MATCH:
                if (g->phase == GATE_STABLE) {
                        /* Verified after all. */
                        free(g->result->warning);
                        g->result->warning = NULL;
                        gate_finish(g, true, NULL);
                } else
                        start_health(g, NULL);
                return;
        }
}

static void on_probe(long status, const char *body, size_t size, const char *error, void *userdata) {
        gate *g = userdata;
        _cleanup_free_ char *url = http_probe_url(&g->probes[g->probe_index]);
        uint64_t now = now_usec();

        g->request_in_flight = false;
        if ((g->phase != GATE_HEALTH && g->phase != GATE_STABLE) || process_gone(g))
                return;
        snprintf(g->last_probe, sizeof(g->last_probe), "GET %s: %s", url ?: "?", error ?: "");
        if (!error)
                snprintf(g->last_probe + strlen(g->last_probe), sizeof(g->last_probe) - strlen(g->last_probe),
                         "%ld", status);

        if (status < 200 || status > 299) {
                /* Not (or no longer) healthy: start over from the first probe. */
                if (g->phase == GATE_STABLE)
                        set_phase(g, GATE_HEALTH, g->last_probe);
                g->probe_index = 0;
                arm(g, PROBE_RETRY_USEC);
                return;
        }
        if (g->probe_index + 1 < g->n_probes) {
                g->probe_index++;
                arm(g, 0);
                return;
        }
        /* Every probe answered 2xx. */
        if (g->phase == GATE_HEALTH) {
                g->stable_since = now;
                set_phase(g, GATE_STABLE, g->last_probe);
        }
        if (now - g->stable_since >= g->spec->stable_usec) {
                if (g->versions_unverified) {
                        g->recheck_versions = true;
                        arm(g, 0);
                        return;
                }
                gate_finish(g, true, NULL);
                return;
        }
        g->probe_index = 0;
        arm(g, MIN(STABLE_PROBE_USEC, g->spec->stable_usec - (now - g->stable_since)));
}

static void start_health(gate *g, const char *detail) {
        g->probe_index = 0;
        set_phase(g, GATE_HEALTH, detail);
        arm(g, 0);
}

/* GATE_PROCESS: one look at /proc. */
static void look_for_process(gate *g) {
        int r;

        r = proc_find(g->argv, g->argc, g->uid, g->spec->not_before_ticks, &g->result->process);
        if (r < 0) {
                gate_finish(g, false, "cannot read /proc: %s", strerror(-r));
                return;
        }
        if (r == 0) {
                arm(g, PROC_POLL_USEC);
                return;
        }
        if (g->version_url) {
                set_phase(g, GATE_VERSIONS, NULL);
                arm(g, 0);
        } else
                start_health(g, NULL);
}

static void on_version_response(const http_response *r, void *userdata) {
        on_version(r->status, r->body, r->size, r->error, userdata);
}

/* GATE_VERSIONS and later: the next request (the process must still run). */
static void send_request(gate *g) {
        bool versions = awaiting_versions(g);
        _cleanup_free_ char *url = NULL;
        int r;

        if (process_gone(g))
                return;
        url = versions ? strdup(g->version_url) : http_probe_url(&g->probes[g->probe_index]);
        if (!url) {
                gate_finish(g, false, "out of memory");
                return;
        }
        if (versions && g->spec->client_cert && g->spec->client_key)
                r = http_client_request(g->http, &(http_request_options){
                                                         .url = url,
                                                         .timeout_ms = PROBE_TIMEOUT_MS,
                                                         .cert = *g->spec->client_cert,
                                                         .key = *g->spec->client_key,
                                                         .done = on_version_response,
                                                         .userdata = g,
                                                 });
        else
                r = http_client_get(g->http, url, PROBE_TIMEOUT_MS, versions ? on_version : on_probe, g);
        if (r < 0) {
                gate_finish(g, false, "cannot probe %s: %s", url, strerror(-r));
                return;
        }
        g->request_in_flight = true;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        gate *g = userdata;

        if (g->phase == GATE_DONE || g->request_in_flight)
                return 0;
        if (g->phase == GATE_PROCESS)
                look_for_process(g);
        else
                send_request(g);
        return 0;
}

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        gate *g = userdata;

        if (g->phase != GATE_DONE && g->spec->progress)
                g->spec->progress(g->phase, "tick", g->spec->userdata);
        (void) sd_event_source_set_time(s, usec + 1000000);
        return 0;
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        gate *g = userdata;

        gate_finish(g, false, "timed out after %llus waiting for %s of %s; last probe: %s",
                    (unsigned long long) (g->spec->timeout_usec / 1000000), gate_phase_to_string(g->phase),
                    g->spec->plugin->name, *g->last_probe ? g->last_probe : "none");
        return 0;
}

/* What the gate looks for, from the container: its command line, its probes, and where it
 * reports its versions. A failure the caller should show fills g->result->message. */
static int gate_prepare(gate *g) {
        const gate_spec *spec = g->spec;
        _cleanup_free_ char *error = NULL;
        const http_probe *p;
        int r;

        /* What the kubelet will run, $(VAR) expanded, and as which user. */
        r = container_process(spec->pod, spec->container, &g->argv, &g->argc, &g->uid, &error);
        if (r < 0) {
                g->result->message = TAKE_PTR(error);
                return r;
        }
        r = probes_from_container(spec->container, spec->plugin, &g->probes, &g->n_probes, &error);
        if (r < 0) {
                g->result->message = TAKE_PTR(error);
                return r;
        }
        if (!spec->plugin->read_versions || !spec->plugin->version_path || g->n_probes == 0)
                return 0;
        /* /version answers where the health endpoints do. */
        p = &g->probes[g->n_probes - 1];
        g->version_url = strdup_printf("%s://%s%s%s:%u%s", streq(p->scheme, "HTTPS") ? "https" : "http",
                                       strchr(p->host, ':') ? "[" : "", p->host, strchr(p->host, ':') ? "]" : "",
                                       p->port, spec->plugin->version_path);
        return g->version_url ? 0 : -ENOMEM;
}

/* The timer that drives the phases, the step's deadline, and the progress ticker. */
static int gate_add_sources(gate *g) {
        int r;

        r = sd_event_add_time(g->event, &g->timer, CLOCK_MONOTONIC, 0, 1, on_timer, g);
        if (r < 0)
                return r;
        r = sd_event_add_time_relative(g->event, &g->deadline, CLOCK_MONOTONIC, g->spec->timeout_usec, 1000,
                                       on_deadline, g);
        if (r < 0 || !g->spec->progress)
                return r;
        r = sd_event_add_time_relative(g->event, &g->ticker, CLOCK_MONOTONIC, 1000000, 100000, on_tick, g);
        if (r < 0)
                return r;
        return sd_event_source_set_enabled(g->ticker, SD_EVENT_ON);
}

/* sd_event_run() rather than sd_event_loop(): the same loop serves every step, and a loop that
 * was told to exit cannot run again. */
static int gate_run(gate *g) {
        int r;

        while (g->phase != GATE_DONE) {
                if (g->spec->interrupted && *g->spec->interrupted)
                        return -EINTR;
                r = sd_event_run(g->event, UINT64_MAX);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void gate_release(gate *g) {
        /* A probe may still be in flight (deadline, interrupt): it must not call back into this
         * stack frame later. */
        (void) http_client_cancel(g->http, g);
        sd_event_source_disable_unref(g->timer);
        sd_event_source_disable_unref(g->deadline);
        sd_event_source_disable_unref(g->ticker);
        strv_free(g->argv);
        http_probes_free(g->probes, g->n_probes);
        free(g->version_url);
}

int gate_wait(sd_event *e, http_client *http, const gate_spec *spec, gate_result *ret) {
        gate g = { .event = e, .http = http, .spec = spec, .result = ret, .phase = GATE_PROCESS };
        int r;

        *ret = (gate_result){ .phase = GATE_PROCESS };
        r = gate_prepare(&g);
        if (r >= 0)
                r = gate_add_sources(&g);
        if (r >= 0) {
                set_phase(&g, GATE_PROCESS, NULL);
                r = gate_run(&g);
        }
        gate_release(&g);
        return r < 0 ? r : 0;
}
