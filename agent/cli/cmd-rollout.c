/* SPDX-License-Identifier: Apache-2.0 */
/* Gated rollouts from the command line: upgrade (without --no-wait), rollback by version,
 * resume and abort. Progress: one line per step on a terminal (rewritten while waiting),
 * JSON lines with --json, errors only with --quiet. */

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "macro.h"
#include "plan.h"
#include "probe.h"
#include "rollout.h"
#include "store.h"

typedef struct output {
        cli *c;
        bool tty;
        uint64_t started;
        size_t steps_done;
} output;

static void on_progress(const rollout_event *ev, void *userdata) {
        output *o = userdata;
        char step[32] = "";

        if (o->c->json) {
                struct timespec now;

                if (streq(ev->event, "tick"))
                        return; /* one object per transition */
                json_auto_t *j = NULL;

                /* Wall-clock time, so that a controller (or a benchmark) can line events up with
                 * what the components and the kubelet logged. */
                clock_gettime(CLOCK_REALTIME, &now);
                j = json_pack("{s:s, s:f, s:I, s:s?, s:s?, s:I, s:s?, s:f}", "event", ev->event, "time",
                              now.tv_sec + now.tv_nsec / 1e9, "step", (json_int_t) ev->step, "component",
                              ev->component, "kind", ev->kind, "revision", (json_int_t) ev->revision, "detail",
                              ev->detail, "elapsed", ev->elapsed_usec / 1e6);

                if (j) {
                        json_dumpf(j, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
                        fputc('\n', stdout);
                        fflush(stdout);
                }
                return;
        }
        if (o->c->quiet)
                return;
        if (ev->n_planned > 0)
                snprintf(step, sizeof(step), "[%zu/%zu]", ev->step, ev->n_planned);
        else
                snprintf(step, sizeof(step), "[undo]");

        if (streq(ev->event, "waiting") || streq(ev->event, "tick")) {
                if (o->tty) {
                        printf("\r\033[K%-8s %-24s %-18s revision %-4u waiting for %s (%.1fs)", step, ev->component,
                               ev->kind, ev->revision, ev->detail ?: "", ev->elapsed_usec / 1e6);
                        fflush(stdout);
                }
        } else if (streq(ev->event, "done") || streq(ev->event, "failed")) {
                if (o->tty)
                        printf("\r\033[K");
                printf("%-8s %-24s %-18s revision %-4u %s in %.2fs%s%s\n", step, ev->component, ev->kind,
                       ev->revision, streq(ev->event, "done") ? "healthy" : "FAILED", ev->elapsed_usec / 1e6,
                       ev->detail ? ": " : "", ev->detail ?: "");
                if (streq(ev->event, "done") && ev->n_planned > 0)
                        o->steps_done++;
        } else if (streq(ev->event, "restore") || streq(ev->event, "unwind")) {
                if (ev->revision)
                        printf("%-8s %-24s %-18s back to revision %u\n", step, ev->component, ev->event, ev->revision);
                else
                        printf("%-8s %-24s %-18s %s\n", step, ev->component, ev->event, ev->detail ?: "");
        }
        fflush(stdout);
}

int cli_rollout_options(cli *c, rollout_options *ret) {
        rollout_options o = {
                .stable_usec = ROLLOUT_STABLE_DEFAULT_USEC,
                .step_timeout_usec = ROLLOUT_TIMEOUT_DEFAULT_USEC,
                .unwind_on_failure = true,
        };

        if (c->stable_for && parse_duration(c->stable_for, &o.stable_usec) < 0) {
                cli_error("--stable-for \"%s\": expected a duration such as 0s, 10s, 1m30s", c->stable_for);
                return -EINVAL;
        }
        if (c->step_timeout && (parse_duration(c->step_timeout, &o.step_timeout_usec) < 0 || o.step_timeout_usec == 0)) {
                cli_error("--step-timeout \"%s\": expected a duration such as 30s, 5m", c->step_timeout);
                return -EINVAL;
        }
        if (c->on_failure) {
                if (streq(c->on_failure, "rollback"))
                        o.unwind_on_failure = true;
                else if (streq(c->on_failure, "stop"))
                        o.unwind_on_failure = false;
                else {
                        cli_error("--on-failure \"%s\": expected rollback or stop", c->on_failure);
                        return -EINVAL;
                }
        }
        *ret = o;
        return 0;
}

static volatile bool interrupted;

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        interrupted = true;
        return 0;
}

/* Everything a gated run needs besides the plan. */
typedef struct session {
        store *store;
        sd_event *event;
        http_client *http;
        rollout *rollout;
        int lock_fd;
        output out;
} session;

static void session_done(session *s) {
        rollout_free(s->rollout);
        http_client_free(s->http);
        sd_event_unref(s->event);
        store_free(s->store);
        if (s->lock_fd >= 0)
                close(s->lock_fd);
        *s = (session){ .lock_fd = -EBADF };
}

/* Takes the lock and reads the node again under it. Unless the session is there to resume or
 * abort, an unfinished rollout's journal refuses it, checked while holding the lock. Nothing
 * is created but the lock file. */
static int session_lock(cli *c, session *s, bool recovery) {
        int r;

        *s = (session){ .lock_fd = -EBADF };
        r = recovery ? cli_lock(c, &s->lock_fd) : cli_lock_for_write(c, &s->lock_fd);
        if (r != EXIT_OK)
                return r;
        c->node = node_free(c->node);
        return cli_load_node(c);
}

/* Opens the store for writing and sets up one event loop with SIGINT/SIGTERM as sources: a
 * signal ends the wait, never a write. */
static int session_start(cli *c, session *s, const rollout_options *o) {
        _cleanup_free_ char *error = NULL;
        sigset_t mask;
        int r;

        r = store_open(c->root, c->config.keep_revisions, true, &s->store, &error);
        if (r < 0) {
                cli_error("%s", error ?: strerror(-r));
                return cli_exit_code(r);
        }

        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0 || sd_event_new(&s->event) < 0 ||
            sd_event_add_signal(s->event, NULL, SIGINT, on_signal, NULL) < 0 ||
            sd_event_add_signal(s->event, NULL, SIGTERM, on_signal, NULL) < 0 ||
            http_client_new(s->event, &s->http) < 0 ||
            rollout_new(s->store, c->node, s->event, s->http, o, &s->rollout) < 0) {
                cli_error("cannot set up the event loop");
                return EXIT_FAILED;
        }
        s->out = (output){ .c = c, .tty = isatty(STDOUT_FILENO), .started = now_usec() };
        s->rollout->progress = on_progress;
        s->rollout->userdata = &s->out;
        s->rollout->interrupted = &interrupted;
        return EXIT_OK;
}

/* Refuses (exit 2) when the journal shows a rollout that did not finish. */
static int refuse_if_unfinished(cli *c) {
        _cleanup_(store_freep) store *s = NULL;
        _cleanup_(journal_freep) journal *j = NULL;
        _cleanup_free_ char *error = NULL;
        int r;

        if (store_open(c->root, 0, false, &s, NULL) < 0)
                return EXIT_OK;
        r = journal_load(s, &j, &error);
        if (r == -ENOENT || (r >= 0 && !journal_in_progress(j)))
                return EXIT_OK;
        if (r < 0) { /* never taken for "no rollout", and so overwritten */
                cli_error("%s", error ?: strerror(-r));
                return EXIT_INVALID;
        }
        cli_error("rollout %s (%s) did not finish: run cplet resume to continue it or cplet abort to undo it first",
                  j->plan_id, j->command);
        return EXIT_INVALID;
}

int cli_lock_for_write(cli *c, int *ret_fd) {
        _cleanup_close_ int fd = -EBADF;
        int r;

        r = cli_lock(c, &fd);
        if (r != EXIT_OK)
                return r;
        /* Again, holding the lock: a rollout killed since the first look left its journal. */
        r = refuse_if_unfinished(c);
        if (r != EXIT_OK)
                return r;
        *ret_fd = TAKE_FD(fd);
        return EXIT_OK;
}

int cli_refuse_if_interrupted(cli *c) {
        _cleanup_free_ char *holder = NULL;

        /* A rollout that runs right now is not an interrupted one: say who is at work. */
        if (store_lock_holder(c->root, &holder) > 0) {
                const char *space = holder ? strchr(holder, ' ') : NULL;

                if (space)
                        cli_error("another cplet is changing this node: pid %.*s (%s) holds the lock; wait for it "
                                  "to finish",
                                  (int) (space - holder), holder, space + 1);
                else
                        cli_error("another cplet is changing this node (it holds the lock); wait for it to finish");
                return EXIT_INVALID;
        }
        return refuse_if_unfinished(c);
}

/* Ends a run: journal phase, summary line, exit code. */
static int conclude(cli *c, session *s, int r, const char *verb) {
        double secs = (now_usec() - s->out.started) / 1e6;

        if (r == -EINTR) {
                cli_error("interrupted: the journal keeps the rollout where it stopped (nothing half-written); "
                          "run cplet resume to continue or cplet abort to undo it");
                return EXIT_FAILED;
        }
        if (r == 0) {
                (void) rollout_finish(s->rollout, streq(verb, "abort") ? JOURNAL_ABORTED : JOURNAL_DONE);
                if (!c->quiet && !c->json)
                        printf("%s complete: %zu step%s in %.2fs.\n", verb, s->out.steps_done,
                               s->out.steps_done == 1 ? "" : "s", secs);
                if (c->json)
                        printf("{\"event\":\"finished\",\"result\":\"done\",\"elapsed\":%.6f}\n", secs);
                return EXIT_OK;
        }
        /* Only a settled rollout is closed; anything else stays resumable. */
        if (rollout_finish(s->rollout, JOURNAL_FAILED) == -EBUSY)
                cli_error("the rollout did not settle, so its journal stays open: once the cause below is fixed, run "
                          "cplet resume to continue it or cplet abort to undo it");
        if (c->json)
                printf("{\"event\":\"finished\",\"result\":\"failed\",\"elapsed\":%.6f}\n", secs);
        cli_error("%s failed: %s", verb, s->rollout->error ?: strerror(-r));
        return EXIT_FAILED;
}

static json_t *target_to_json(cli *c) {
        return json_pack("{s:s?, s:s?, s:s?, s:s?}", "binaryVersion", c->binary_version, "emulatedVersion",
                         c->emulated_version, "minCompatibilityVersion", c->min_compat_version, "imageRepository",
                         c->image_repository);
}

/* A container without `command` runs its image's entrypoint: its command line is unknown, so
 * the new process cannot be recognised in /proc and a gated step could only time out. */
static int refuse_ungateable(cli *c, const char *component_name) {
        for (size_t i = 0; i < c->node->n_components; i++) {
                const component *co = &c->node->components[i];

                if (component_name && !streq(co->plugin->name, component_name))
                        continue;
                if (co->cmdline_ok && co->cmdline.entrypoint) {
                        cli_error("%s (%s): the container has no command (the image's entrypoint runs), so cplet "
                                  "cannot recognise its process; add command: [%s] to the manifest, or pass "
                                  "--no-wait",
                                  co->plugin->name, co->file, co->plugin->name);
                        return EXIT_INVALID;
                }
        }
        return EXIT_OK;
}

int cli_run_gated(cli *c, const char *command) {
        _cleanup_(plan_freep) plan *p = NULL;
        _cleanup_free_ char *error = NULL;
        json_auto_t *target = NULL;
        rollout_options o;
        session s = { .lock_fd = -EBADF };
        char plan_id[32];
        int r;

        if (cli_rollout_options(c, &o) < 0)
                return EXIT_INVALID;
        r = cli_refuse_if_interrupted(c);
        if (r != EXIT_OK)
                return r;
        /* Plan first, read-only: a refused plan leaves the node exactly as it was. */
        r = cli_compute_plan(c, &p, NULL);
        if (r == EXIT_OK)
                r = refuse_ungateable(c, NULL);
        if (r != EXIT_OK)
                return r;
        if (p->n_steps == 0) {
                if (!c->quiet)
                        printf(c->json ? "{\"event\":\"finished\",\"result\":\"nothing to do\"}\n"
                                       : "Nothing to do: the node is already at the target.\n");
                return EXIT_OK;
        }

        r = session_lock(c, &s, false);
        if (r == EXIT_OK) {
                p = plan_free(p);
                r = cli_compute_plan(c, &p, NULL); /* again, under the lock */
        }
        if (r == EXIT_OK)
                r = refuse_ungateable(c, NULL);
        /* Only a plan that stands under the lock opens the store for writing. */
        if (r == EXIT_OK)
                r = session_start(c, &s, &o);
        if (r != EXIT_OK) {
                session_done(&s);
                return r;
        }
        target = target_to_json(c);
        cli_new_plan_id(plan_id);
        r = target ? rollout_begin(s.rollout, plan_id, command, target, &error) : -ENOMEM;
        if (r < 0) {
                cli_error("%s", error ?: strerror(-r));
                session_done(&s);
                return EXIT_FAILED;
        }
        if (!c->quiet && !c->json)
                printf("%s %s: %zu steps (stable for %.0fs, step timeout %.0fs, on failure: %s)\n", command, plan_id,
                       p->n_steps, o.stable_usec / 1e6, o.step_timeout_usec / 1e6,
                       o.unwind_on_failure ? "rollback" : "stop");
        r = rollout_run(s.rollout, p);
        r = conclude(c, &s, r, command);
        session_done(&s);
        return r;
}

int cli_run_gated_write(cli *c, const char *name, component_builder build, void *userdata, const char *command,
                        const char *reason) {
        _cleanup_(component_done) component next = {};
        _cleanup_free_ char *error = NULL;
        json_auto_t *target = json_object(), *new_pod = NULL;
        rollout_options o;
        session s = { .lock_fd = -EBADF };
        const component *co = NULL;
        char plan_id[32];
        int r;

        if (cli_rollout_options(c, &o) < 0)
                return EXIT_INVALID;
        r = refuse_ungateable(c, name); /* on the read-only pass's node: refused before any lock */
        if (r == EXIT_OK)
                r = cli_refuse_if_interrupted(c);
        if (r != EXIT_OK)
                return r;
        /* Under the lock, from the node as it then is: find, build, check; then write. */
        r = session_lock(c, &s, false);
        if (r == EXIT_OK) {
                co = node_find(c->node, name);
                if (!co) {
                        cli_error("no component \"%s\" on this node (see cplet status)", name);
                        r = EXIT_INVALID;
                }
        }
        if (r == EXIT_OK)
                r = refuse_ungateable(c, name);
        if (r == EXIT_OK)
                r = build(c, co, &new_pod, userdata);
        if (r == EXIT_OK)
                r = cli_check_component_tree(c, co, new_pod, &next);
        if (r == EXIT_OK)
                r = session_start(c, &s, &o);
        if (r != EXIT_OK) {
                session_done(&s);
                return r;
        }
        cli_new_plan_id(plan_id);
        r = target ? rollout_begin(s.rollout, plan_id, command, target, &error) : -ENOMEM;
        if (r < 0) {
                cli_error("%s", error ?: strerror(-r));
                session_done(&s);
                return EXIT_FAILED;
        }
        r = rollout_write_tree(s.rollout, (size_t) (co - c->node->components), new_pod, command, reason);
        r = conclude(c, &s, r, command);
        session_done(&s);
        return r;
}

/* Loads the unfinished journal; EXIT_OK with *ret NULL when there is none. */
static int load_journal(cli *c, session *s, journal **ret) {
        _cleanup_free_ char *error = NULL;
        journal *j = NULL;
        int r;

        r = journal_load(s->store, &j, &error);
        if (r == -ENOENT || (r >= 0 && !journal_in_progress(j))) {
                journal_free(j);
                *ret = NULL;
                return EXIT_OK;
        }
        if (r < 0) {
                cli_error("%s", error ?: strerror(-r));
                return EXIT_INVALID;
        }
        *ret = j;
        return EXIT_OK;
}

static int take_over(cli *c, session *s, journal *j, bool settle) {
        _cleanup_free_ char *error = NULL;
        int r = rollout_take_over(s->rollout, j, settle, &error);

        if (r == -ESTALE || r == -EINVAL) {
                cli_error("%s", error ?: "the node changed since the rollout was interrupted");
                return EXIT_INVALID;
        }
        if (r < 0 && r != -EIO && r != -EINTR && !s->rollout->error) {
                cli_error("%s", error ?: strerror(-r));
                return EXIT_FAILED;
        }
        return r == 0 ? EXIT_OK : conclude(c, s, r, settle ? "resume" : "abort");
}

/* Opens a session on the unfinished rollout: EXIT_OK with *ret NULL (after saying so) when
 * there is none. The rollout takes the journal's options unless given on the command line. */
static int open_unfinished(cli *c, session *s, const rollout_options *o, bool options_given, const char *verb,
                           journal **ret) {
        journal *j = NULL;
        int r;

        r = session_lock(c, s, true);
        if (r == EXIT_OK)
                r = session_start(c, s, o);
        if (r == EXIT_OK)
                r = load_journal(c, s, &j);
        if (r != EXIT_OK || !j) {
                if (r == EXIT_OK && !c->quiet)
                        printf("Nothing to %s: no rollout was interrupted.\n", verb);
                session_done(s);
                *ret = NULL;
                return r;
        }
        s->rollout->options = j->options;
        if (options_given)
                s->rollout->options = *o;
        *ret = j;
        return EXIT_OK;
}

int cmd_resume(cli *c) {
        journal *j = NULL;
        _cleanup_(plan_freep) plan *p = NULL;
        rollout_options o;
        session s = { .lock_fd = -EBADF };
        journal_target *t;
        int r;

        if (cli_rollout_options(c, &o) < 0)
                return EXIT_INVALID;
        r = open_unfinished(c, &s, &o, c->stable_for || c->step_timeout || c->on_failure, "resume", &j);
        if (r != EXIT_OK || !j)
                return r;

        if (!c->quiet && !c->json)
                printf("Resuming %s %s.\n", j->command, j->plan_id);
        r = take_over(c, &s, j, true); /* the rollout owns j from here */
        if (r != EXIT_OK) {
                session_done(&s);
                return r;
        }
        if (s.rollout->journal->phase == JOURNAL_UNWINDING) {
                r = conclude(c, &s, rollout_unwind(s.rollout), "abort");
                session_done(&s);
                return r;
        }

        /* The rest of the way: plan again from the node as it now stands to the same target.
         * A single write (rollback to a revision, flags) has no target: settling it was all. */
        t = &s.rollout->journal->target;
        if (!t->binary_version) {
                r = conclude(c, &s, 0, "resume");
                session_done(&s);
                return r;
        }
        c->binary_version = t->binary_version;
        c->emulated_version = t->emulated_version;
        c->min_compat_version = t->min_compat_version;
        c->image_repository = t->image_repository;
        c->force = true; /* the high-water mark was checked when the rollout began */
        r = cli_compute_plan(c, &p, NULL);
        if (r != EXIT_OK) {
                session_done(&s);
                return r;
        }
        r = conclude(c, &s, rollout_run(s.rollout, p), "resume");
        session_done(&s);
        return r;
}

int cmd_abort(cli *c) {
        journal *j = NULL;
        rollout_options o;
        session s = { .lock_fd = -EBADF };
        int r;

        if (cli_rollout_options(c, &o) < 0)
                return EXIT_INVALID;
        r = open_unfinished(c, &s, &o, c->stable_for || c->step_timeout, "abort", &j);
        if (r != EXIT_OK || !j)
                return r;
        s.rollout->options.unwind_on_failure = true;

        if (!c->quiet && !c->json)
                printf("Aborting %s %s: unwinding its completed steps.\n", j->command, j->plan_id);
        r = take_over(c, &s, j, false); /* the rollout owns j from here */
        if (r == EXIT_OK)
                r = conclude(c, &s, rollout_unwind(s.rollout), "abort");
        session_done(&s);
        return r;
}
