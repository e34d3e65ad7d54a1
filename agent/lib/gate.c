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
                char *m = NULL;

                va_start(ap, fmt);
                if (vasprintf(&m, fmt, ap) < 0)
                        m = NULL;
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

static void start_health(gate *g);

static void on_version(long status, const char *body, size_t size, const char *error, void *userdata) {
        gate *g = userdata;
        struct cplet_reported_versions v;
        char want_e[KMINOR_STRING_MAX], want_m[KMINOR_STRING_MAX];
        kminor b = kversion_minor(&g->spec->binary);

        g->request_in_flight = false;
        if (g->phase != GATE_VERSIONS || process_gone(g))
                return;
        snprintf(g->last_probe, sizeof(g->last_probe), "GET %s: %s%ld", g->version_url, error ? error : "",
                 error ? 0L : status);
        if (status != 200 || g->spec->plugin->read_versions(body, size, &v) < 0) {
                arm(g, PROBE_RETRY_USEC); /* not serving yet */
                return;
        }
        kminor_format(g->spec->emulated, want_e);
        kminor_format(g->spec->min_compat, want_m);
        if (v.binary.major != b.major || v.binary.minor != b.minor) {
                gate_finish(g, false, "%s reports binary %u.%u (%s), expected %u.%u", g->spec->plugin->name,
                            v.binary.major, v.binary.minor, v.git_version, b.major, b.minor);
                return;
        }
        /* A patch upgrade keeps major.minor: gitVersion tells the patch (build metadata such
         * as +k3s1 aside). */
        if (*v.git_version) {
                kversion reported;

                if (kversion_parse(v.git_version, &reported, NULL) >= 0 && reported.has_patch &&
                    g->spec->binary.has_patch && reported.patch != g->spec->binary.patch) {
                        char want[KVERSION_STRING_MAX];

                        kversion_format(&g->spec->binary, want);
                        if (process_gone(g))
                                return;
                        /* Possibly the old process still answering while it terminates: ask again. */
                        snprintf(g->last_probe, sizeof(g->last_probe), "GET %s: reports %s, expected %s",
                                 g->version_url, v.git_version, want);
                        arm(g, PROBE_RETRY_USEC);
                        return;
                }
        }
        /* The emulation fields exist from 1.33 (FACTS.md); older binaries cannot be checked. */
        if (kminor_cmp(b, KMINOR(1, 33)) >= 0) {
                if (!v.has_emulation || v.emulated.major != g->spec->emulated.major ||
                    v.emulated.minor != g->spec->emulated.minor) {
                        char got[KMINOR_STRING_MAX] = "none";

                        if (v.has_emulation)
                                kminor_format(KMINOR(v.emulated.major, v.emulated.minor), got);
                        gate_finish(g, false, "%s reports emulated version %s, expected %s", g->spec->plugin->name,
                                    got, want_e);
                        return;
                }
                if (v.has_min_compat && (v.min_compat.major != g->spec->min_compat.major ||
                                         v.min_compat.minor != g->spec->min_compat.minor)) {
                        gate_finish(g, false, "%s reports min-compatibility version %u.%u, expected %s",
                                    g->spec->plugin->name, v.min_compat.major, v.min_compat.minor, want_m);
                        return;
                }
        }
        start_health(g);
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
                gate_finish(g, true, NULL);
                return;
        }
        g->probe_index = 0;
        arm(g, MIN(STABLE_PROBE_USEC, g->spec->stable_usec - (now - g->stable_since)));
}

static void start_health(gate *g) {
        g->probe_index = 0;
        set_phase(g, GATE_HEALTH, NULL);
        arm(g, 0);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        gate *g = userdata;
        _cleanup_free_ char *url = NULL;
        int r;

        if (g->phase == GATE_DONE || g->request_in_flight)
                return 0;

        if (g->phase == GATE_PROCESS) {
                r = proc_find(g->argv, g->argc, g->uid, g->spec->not_before_ticks, &g->result->process);
                if (r < 0) {
                        gate_finish(g, false, "cannot read /proc: %s", strerror(-r));
                        return 0;
                }
                if (r == 0) {
                        arm(g, PROC_POLL_USEC);
                        return 0;
                }
                if (g->version_url) {
                        set_phase(g, GATE_VERSIONS, NULL);
                        arm(g, 0);
                } else
                        start_health(g);
                return 0;
        }
        if (process_gone(g))
                return 0;

        url = g->phase == GATE_VERSIONS ? strdup(g->version_url) : http_probe_url(&g->probes[g->probe_index]);
        if (!url) {
                gate_finish(g, false, "out of memory");
                return 0;
        }
        r = http_client_get(g->http, url, PROBE_TIMEOUT_MS, g->phase == GATE_VERSIONS ? on_version : on_probe, g);
        if (r < 0) {
                gate_finish(g, false, "cannot probe %s: %s", url, strerror(-r));
                return 0;
        }
        g->request_in_flight = true;
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

int gate_wait(sd_event *e, http_client *http, const gate_spec *spec, gate_result *ret) {
        _cleanup_free_ char *error = NULL;
        gate g = { .event = e, .http = http, .spec = spec, .result = ret, .phase = GATE_PROCESS };
        int r;

        *ret = (gate_result){ .phase = GATE_PROCESS };
        /* What the kubelet will run, $(VAR) expanded, and as which user. */
        r = container_process(spec->pod, spec->container, &g.argv, &g.argc, &g.uid, &error);
        if (r < 0) {
                ret->message = TAKE_PTR(error);
                return r;
        }
        r = probes_from_container(spec->container, spec->plugin, &g.probes, &g.n_probes, &error);
        if (r < 0) {
                ret->message = TAKE_PTR(error);
                goto finish;
        }
        if (spec->plugin->read_versions && spec->plugin->version_path && g.n_probes > 0) {
                /* /version answers where the health endpoints do. */
                const http_probe *p = &g.probes[g.n_probes - 1];

                g.version_url = strdup_printf("%s://%s%s%s:%u%s", streq(p->scheme, "HTTPS") ? "https" : "http",
                                              strchr(p->host, ':') ? "[" : "", p->host,
                                              strchr(p->host, ':') ? "]" : "", p->port, spec->plugin->version_path);
                if (!g.version_url) {
                        r = -ENOMEM;
                        goto finish;
                }
        }

        r = sd_event_add_time(e, &g.timer, CLOCK_MONOTONIC, 0, 1, on_timer, &g);
        if (r >= 0)
                r = sd_event_add_time_relative(e, &g.deadline, CLOCK_MONOTONIC, spec->timeout_usec, 1000, on_deadline,
                                               &g);
        if (r >= 0 && spec->progress) {
                r = sd_event_add_time_relative(e, &g.ticker, CLOCK_MONOTONIC, 1000000, 100000, on_tick, &g);
                if (r >= 0)
                        r = sd_event_source_set_enabled(g.ticker, SD_EVENT_ON);
        }
        if (r < 0)
                goto finish;
        set_phase(&g, GATE_PROCESS, NULL);

        /* sd_event_run() rather than sd_event_loop(): the same loop serves every step, and a
         * loop that was told to exit cannot run again. */
        while (g.phase != GATE_DONE) {
                if (spec->interrupted && *spec->interrupted) {
                        r = -EINTR;
                        break;
                }
                r = sd_event_run(e, UINT64_MAX);
                if (r < 0)
                        break;
        }
        if (r > 0)
                r = 0;

finish:
        /* A probe may still be in flight (deadline, interrupt): it must not call back into this
         * stack frame later. */
        (void) http_client_cancel(http, &g);
        sd_event_source_disable_unref(g.timer);
        sd_event_source_disable_unref(g.deadline);
        sd_event_source_disable_unref(g.ticker);
        strv_free(g.argv);
        http_probes_free(g.probes, g.n_probes);
        free(g.version_url);
        return r < 0 ? r : 0;
}
