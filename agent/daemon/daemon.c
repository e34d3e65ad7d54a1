/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <string.h>
#include <sys/inotify.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "cplet-build.h"
#include "log.h"
#include "macro.h"

#define KUBELET_KUBECONFIG "/etc/kubernetes/kubelet.conf"
/* How long a stopping daemon waits for its last status to reach the API server. */
#define STOP_FLUSH_USEC (3ULL * 1000000ULL)

static void on_node_changed(json_t *object, void *userdata) {
        agent *d = userdata;
        json_t *metadata = json_object_get(object, "metadata");
        json_t *annotations = json_object_get(metadata, "annotations");
        json_t *value = json_object_get(annotations, TARGET_ANNOTATION);
        const char *text = json_string_value(value);
        size_t size = json_string_length(value);
        bool first = !d->node_seen;

        (void) reporter_set_node_uid(d->reporter, json_string_value(json_object_get(metadata, "uid")));
        reporter_kick(d->reporter);
        if (first) {
                d->node_seen = true;
                if (!d->running)
                        adopt_previous_status(d, annotations);
                publish_status(d);
        }
        if (!bytes_equal(text, size, d->target_text, d->target_size)) {
                set_bytes(&d->target_text, &d->target_size, text, size);
                d->target_changed = true;
        }
}

static void on_node_trouble(long status, const char *error, void *userdata) {
        static long last_status = -1;

        /* Once per kind of trouble: an API server that is away for a minute is one line. */
        if (status == last_status)
                return;
        last_status = status;
        if (status == 403)
                log_error("The API server does not let this node's identity read its Node (403 Forbidden: %s)",
                          error ?: "no reason given");
        else if (status > 0)
                log_warning("Reading the Node failed (HTTP status %ld: %s); retrying with backoff", status,
                            error ?: "no reason given");
        else
                log_warning("The API server cannot be reached (%s); retrying with backoff",
                            error ?: "no reason given");
}

/* A status written every watch period (5 to 10 minutes, when the server ends the watch and it is
 * opened again): `updated` says the agent is alive, so that a controller can tell a quiet agent
 * from a dead one (cplet cluster --max-status-age), with no timer of the agent's own. */
static void on_watch_renewed(void *userdata) {
        agent *d = userdata;

        if (!d->running)
                d->manifests_changed = true; /* published from the main loop, like a change by hand */
}

/* ---- signals, watchdog, the manifest directory */

static int on_stop_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        agent *d = userdata;

        if (!d->stopping)
                log_notice("Stopping on %s%s", strsignal((int) si->ssi_signo),
                           d->running ? ": the rollout's wait ends, the journal keeps it resumable" : "");
        d->stopping = true;
        d->interrupted = true;
        (void) sd_notify(false, "STOPPING=1");
        return 0;
}

static int on_reload_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        agent *d = userdata;

        d->reload = true;
        /* MONOTONIC_USEC: what systemd (Type=notify-reload) matches the reload by. */
        (void) sd_notifyf(false, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long) now_usec());
        return 0;
}

static int on_watchdog(sd_event_source *s, uint64_t usec, void *userdata) {
        agent *d = userdata;

        (void) sd_notify(false, "WATCHDOG=1");
        (void) sd_event_source_set_time(s, usec + d->watchdog_usec / 2);
        return sd_event_source_set_enabled(s, SD_EVENT_ON);
}

static int on_manifests(sd_event_source *s, const struct inotify_event *ev, void *userdata) {
        agent *d = userdata;

        /* A hand edit or a command-line rollout: the status reports the node as it is. */
        d->manifests_changed = true;
        return 0;
}

static int add_sources(agent *d) {
        _cleanup_free_ char *manifests = strdup_printf("%s/etc/kubernetes/manifests", d->options->root);
        sigset_t mask;
        int r;

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        if (!manifests || sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return -ENOMEM;
        r = sd_event_add_signal(d->event, NULL, SIGTERM, on_stop_signal, d);
        if (r >= 0)
                r = sd_event_add_signal(d->event, NULL, SIGINT, on_stop_signal, d);
        if (r >= 0)
                r = sd_event_add_signal(d->event, NULL, SIGHUP, on_reload_signal, d);
        if (r < 0)
                return r;
        /* Only when systemd asks for it: the one timer an idle daemon has. */
        if (sd_watchdog_enabled(false, &d->watchdog_usec) > 0 && d->watchdog_usec > 0) {
                r = sd_event_add_time_relative(d->event, &d->watchdog, CLOCK_MONOTONIC, d->watchdog_usec / 2, 0,
                                               on_watchdog, d);
                if (r < 0)
                        return r;
        }
        r = sd_event_add_inotify(d->event, NULL, manifests,
                                 IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE | IN_ONLYDIR,
                                 on_manifests, d);
        if (r < 0)
                log_warning("Cannot watch %s for changes made by hand (%s): the status shows them at the next target",
                            manifests, strerror(-r));
        return 0;
}

/* ---- setup */

static void warn_to_log(const char *message, void *userdata) {
        log_warning("%s", message);
}

static bool valid_node_name(const char *s) {
        /* A DNS subdomain (RFC 1123), as the API server validates Node names; it goes into URLs. */
        size_t n = strlen(s);

        return n > 0 && n <= 253 && strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789.-") == n && s[0] != '-' &&
               s[0] != '.' && s[n - 1] != '-' && s[n - 1] != '.';
}

static int pick_node_name(agent *d, char **ret_error) {
        _cleanup_free_ char *from_cert = NULL, *error = NULL;
        const char *name = d->options->node_name ?: d->env->config.node_name;
        const char *source = d->options->node_name ? "--node-name" : "nodeName in the configuration";
        char host[HOST_NAME_MAX + 1] = {};
        int r;

        if (!name) {
                r = kubeconfig_node_name(d->kubeconfig, &from_cert, &error);
                if (r >= 0) {
                        name = from_cert;
                        source = "the client certificate";
                } else if (r != -ENOENT)
                        return set_error(ret_error, r, "%s", error);
        }
        if (!name) {
                if (gethostname(host, sizeof(host) - 1) < 0)
                        return set_error(ret_error, -errno, "cannot read the host name: %m");
                name = host;
                source = "the host name";
        }
        if (!valid_node_name(name))
                return set_error(ret_error, -EINVAL, "node name \"%.64s\" (from %s) is not a valid Node name", name,
                                 source);
        d->node_name = strdup(name);
        if (!d->node_name)
                return -ENOMEM;
        log_info("Node %s (from %s)", d->node_name, source);
        return 0;
}

static int load_kubeconfig(agent *d, char **ret_error) {
        _cleanup_free_ char *fallback = NULL;
        const char *path = d->options->kubeconfig ?: d->env->config.kubeconfig;

        if (!path) {
                fallback = strdup_printf("%s%s", streq(d->options->root, "/") ? "" : d->options->root, KUBELET_KUBECONFIG);
                if (!fallback)
                        return -ENOMEM;
                path = fallback;
        }
        return kubeconfig_load(path, d->options->context, &d->kubeconfig, ret_error);
}

static int daemon_setup(agent *d, json_t **ret_journal, char **ret_error) {
        _cleanup_(op_status_result_done) op_status_result sr = {};
        _cleanup_(store_freep) store *s = NULL;
        _cleanup_free_ char *error = NULL;
        int r;

        r = op_env_new(d->options->root, d->options->config_path, d->options->plugin_dir, d->options->holder, &d->env,
                       ret_error);
        if (r < 0)
                return r;
        d->env->warn = warn_to_log;
        r = load_kubeconfig(d, ret_error);
        if (r < 0)
                return r;
        r = pick_node_name(d, ret_error);
        if (r < 0)
                return r;
        d->version_cert = (http_pem){ d->kubeconfig->client_cert.file, d->kubeconfig->client_cert.data,
                                      d->kubeconfig->client_cert.size };
        d->version_key = (http_pem){ d->kubeconfig->client_key.file, d->kubeconfig->client_key.data,
                                     d->kubeconfig->client_key.size };
        r = store_open(d->options->root, 0, false, &s, ret_error);
        if (r < 0)
                return r;
        r = handled_load(s, &d->last, &error);
        if (r < 0 && r != -ENOENT)
                return set_error(ret_error, r, "%s", error);
        /* The node and any journal must be readable before READY=1: a node that cannot be read
         * is for a person to fix, not for a restart loop to hide. */
        r = op_status(d->env, &sr, ret_error);
        if (r < 0)
                return r;
        if (sr.journal_error)
                log_error("The rollout journal cannot be read (%s): every target is refused until it is fixed",
                          sr.journal_error);
        d->health = json_object();
        if (!d->health)
                return -ENOMEM;
        r = kube_client_new(d->event, d->kubeconfig, d->options->insecure_skip_tls_verify, &d->kube, ret_error);
        if (r < 0)
                return r;
        r = reporter_new(d->event, d->kube, d->node_name, &d->reporter);
        if (r < 0)
                return r;
        r = add_sources(d);
        if (r < 0)
                return set_error(ret_error, r, "cannot set up the event loop: %s", strerror(-r));
        *ret_journal = json_incref(sr.interrupted);
        return 0;
}

/* SIGHUP: the configuration is read again and replaces the old one, unless it is invalid (then
 * the old one stays). The plugins stay loaded: code is not swapped under a running agent (a new
 * pluginDir takes a restart). */
static void reload_config(agent *d) {
        _cleanup_(config_done) config fresh = {};
        _cleanup_free_ char *error = NULL;
        int r;

        d->reload = false;
        r = config_load(d->options->root, d->options->config_path, &fresh, &error);
        if (r < 0)
                log_error("Reloading the configuration failed, keeping the old one: %s", error ?: strerror(-r));
        else {
                if (!streq_ptr(fresh.plugin_dir, d->env->config.plugin_dir))
                        log_warning("pluginDir changed: the plugins are loaded again only at the next start");
                config_done(&d->env->config);
                d->env->config = fresh;
                fresh = (config){};
                log_info("Configuration reloaded");
                /* A target refused by the old allow-list may pass now. */
                set_bytes(&d->refused_text, &d->refused_size, NULL, 0);
                d->target_changed = true;
        }
        (void) sd_notify(false, "READY=1");
}

/* Lets the last status reach the API server, for a bounded time. */
static void flush_reports(agent *d) {
        uint64_t deadline = now_usec() + STOP_FLUSH_USEC;

        while (!reporter_idle(d->reporter) && now_usec() < deadline)
                if (sd_event_run(d->event, deadline - now_usec()) < 0)
                        break;
}

static void daemon_done(agent *d) {
        node_watch_free(d->watch);
        reporter_free(d->reporter);
        kube_client_free(d->kube);
        kubeconfig_free(d->kubeconfig);
        op_env_free(d->env);
        handled_done(&d->last);
        json_decref(d->health);
        sd_event_source_disable_unref(d->watchdog);
        sd_event_unref(d->event);
        free(d->node_name);
        free(d->target_text);
        free(d->refused_text);
        free(d->id);
        free(d->message);
        free(d->plan_id);
        clear_step(d);
}

int daemon_run(const daemon_options *o, char **ret_error) {
        _cleanup_(daemon_done) agent d = { .options = o, .phase = STATUS_IDLE };
        json_auto_t *unfinished = NULL;
        int r;

        log_open();
        r = sd_event_default(&d.event);
        if (r < 0)
                return set_error(ret_error, r, "cannot create the event loop: %s", strerror(-r));
        r = daemon_setup(&d, &unfinished, ret_error);
        if (r < 0)
                return r;

        (void) sd_notify(false, "READY=1\nSTATUS=Idle");
        log_info("cplet %s watching Node %s on %s", CPLET_VERSION, d.node_name, d.kubeconfig->server);
        r = node_watch_new(d.event, d.kube, d.node_name, on_node_changed, on_node_trouble, on_watch_renewed, &d,
                           &d.watch);
        if (r < 0)
                return set_error(ret_error, r, "cannot watch the Node: %s", strerror(-r));
        if (unfinished)
                resume_interrupted(&d, unfinished);

        /* A rollout runs from here, not from an event handler: its gates run this same loop
         * (sd_event_run is not re-entrant), so the watch, the reports, the signals and the
         * watchdog are served during every step. */
        while (!d.stopping) {
                if (d.reload)
                        reload_config(&d);
                else if (d.target_changed)
                        handle_target(&d);
                else if (d.manifests_changed) {
                        d.manifests_changed = false;
                        publish_status(&d);
                } else {
                        r = sd_event_run(d.event, UINT64_MAX);
                        if (r < 0)
                                return set_error(ret_error, r, "the event loop failed: %s", strerror(-r));
                }
        }
        flush_reports(&d);
        log_info("Stopped");
        return 0;
}
