/* SPDX-License-Identifier: Apache-2.0 */
/* Running a writing operation from a terminal: SIGINT/SIGTERM end a wait (never a write),
 * progress is one line per step on a terminal (rewritten while waiting), JSON lines with
 * --json, errors only with --quiet; then the result: diffs (--dry-run), the revisions written
 * (--no-wait), or a summary of the gated run. */

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "macro.h"

typedef struct output {
        cli *c;
        bool tty;
        size_t steps_done;
} output;

static void print_event_json(const rollout_event *ev) {
        json_auto_t *j = NULL;
        struct timespec now;

        /* Wall-clock time, so that a controller (or a benchmark) can line events up with what
         * the components and the kubelet logged. */
        clock_gettime(CLOCK_REALTIME, &now);
        j = json_pack("{s:s, s:f, s:I, s:s?, s:s?, s:I, s:s?, s:f}", "event", ev->event, "time",
                      now.tv_sec + now.tv_nsec / 1e9, "step", (json_int_t) ev->step, "component", ev->component,
                      "kind", ev->kind, "revision", (json_int_t) ev->revision, "detail", ev->detail, "elapsed",
                      ev->elapsed_usec / 1e6);
        if (j) {
                json_dumpf(j, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
                fputc('\n', stdout);
        }
}

static void print_begin(const cli *c, const rollout_event *ev) {
        const rollout_options *o = NULL;
        rollout_options parsed;

        if (streq(ev->kind, "resume"))
                printf("Resuming %s %s.\n", ev->component ?: "rollout", ev->detail);
        else if (streq(ev->kind, "abort"))
                printf("Aborting %s %s: unwinding its completed steps.\n", ev->component ?: "rollout", ev->detail);
        else if (!c->component && !streq(ev->kind, "flags") &&
                 op_parse_rollout_options(c->stable_for, c->step_timeout, c->on_failure, &parsed, NULL) >= 0) {
                o = &parsed;
                printf("%s %s: %zu steps (stable for %.0fs, step timeout %.0fs, on failure: %s)\n", ev->kind,
                       ev->detail, ev->n_planned, o->stable_usec / 1e6, o->step_timeout_usec / 1e6,
                       o->unwind_on_failure ? "rollback" : "stop");
        }
}

static void print_event_text(output *o, const rollout_event *ev) {
        char step[32];

        if (ev->n_planned > 0)
                snprintf(step, sizeof(step), "[%zu/%zu]", ev->step, ev->n_planned);
        else
                snprintf(step, sizeof(step), "[undo]");

        if (streq(ev->event, "begin"))
                print_begin(o->c, ev);
        else if (streq(ev->event, "pull"))
                printf("pulling %s (%zu/%zu)\n", ev->detail, ev->step, ev->n_planned);
        else if (streq(ev->event, "pulled"))
                printf("pulled %s (%zu/%zu) in %.2fs\n", ev->detail, ev->step, ev->n_planned, ev->elapsed_usec / 1e6);
        else if (streq(ev->event, "waiting") || streq(ev->event, "tick")) {
                if (o->tty)
                        printf("\r\033[K%-8s %-24s %-18s revision %-4u waiting for %s (%.1fs)", step, ev->component,
                               ev->kind, ev->revision, ev->detail ?: "", ev->elapsed_usec / 1e6);
        } else if (streq(ev->event, "done") || streq(ev->event, "failed")) {
                if (o->tty)
                        printf("\r\033[K");
                printf("%-8s %-24s %-18s revision %-4u %s in %.2fs%s%s\n", step, ev->component, ev->kind,
                       ev->revision, streq(ev->event, "done") ? "healthy" : "FAILED", ev->elapsed_usec / 1e6,
                       ev->detail ? ": " : "", ev->detail ?: "");
        } else if (streq(ev->event, "restore") || streq(ev->event, "unwind")) {
                if (ev->revision)
                        printf("%-8s %-24s %-18s back to revision %u\n", step, ev->component, ev->event, ev->revision);
                else
                        printf("%-8s %-24s %-18s %s\n", step, ev->component, ev->event, ev->detail ?: "");
        }
}

static void on_progress(const rollout_event *ev, void *userdata) {
        output *o = userdata;

        if (streq(ev->event, "done") && ev->n_planned > 0)
                o->steps_done++;
        if (o->c->json) {
                if (!streq(ev->event, "tick") && !streq(ev->event, "begin"))
                        print_event_json(ev); /* one object per transition */
        } else if (!o->c->quiet)
                print_event_text(o, ev);
        fflush(stdout);
}

static volatile bool interrupted;

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        interrupted = true;
        return 0;
}

static int event_loop_new(sd_event **ret) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        sigset_t mask;

        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0 || sd_event_new(&e) < 0 ||
            sd_event_add_signal(e, NULL, SIGINT, on_signal, NULL) < 0 ||
            sd_event_add_signal(e, NULL, SIGTERM, on_signal, NULL) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(e);
        return 0;
}

static json_t *written_to_json(const op_written *w) {
        return json_pack("{s:s, s:s, s:s, s:s?, s:s, s:s, s:s, s:I, s:I}", "component", w->component, "manifest",
                         w->manifest, "kind", w->kind, "image", w->image, "binaryVersion", w->binary_version,
                         "emulatedVersion", w->emulated_version, "minCompatibilityVersion", w->min_compat_version,
                         "step", (json_int_t) w->step, "revision", (json_int_t) w->revision);
}

/* --no-wait: the revisions written, also when a later step failed. */
static void print_written(const cli *c, const op_result *res, bool complete) {
        bool single = !streq(res->command, "upgrade") && !streq(res->command, "rollback");

        if (c->json && single) {
                for (size_t i = 0; i < res->n_written; i++)
                        printf("{\"component\": \"%s\", \"revision\": %u, \"parent\": %u}\n", res->written[i].component,
                               res->written[i].revision, res->written[i].parent);
                return;
        }
        if (c->json) {
                json_auto_t *root = json_pack("{s:s?, s:[], s:b}", "planId", *res->plan_id ? res->plan_id : NULL,
                                              "steps", "complete", complete);

                for (size_t i = 0; root && i < res->n_written; i++)
                        json_array_append_new(json_object_get(root, "steps"), written_to_json(&res->written[i]));
                json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
                fputc('\n', stdout);
                return;
        }
        for (size_t i = 0; i < res->n_written; i++) {
                const op_written *w = &res->written[i];

                if (single || streq(w->kind, "rollback"))
                        printf("%s: revision %u is live (%s; binary %s, emulated %s, min-compatibility %s)\n",
                               w->component, w->revision, w->reason, w->binary_version, w->emulated_version,
                               w->min_compat_version);
                else
                        printf("step %zu/%zu: %-24s %-18s -> revision %u (binary %s, emulated %s, "
                               "min-compatibility %s)\n",
                               w->step, w->n_steps, w->component, w->kind, w->revision, w->binary_version,
                               w->emulated_version, w->min_compat_version);
        }
}

static int print_gated_result(const cli *c, const output *out, const op_result *res, int r, const char *error,
                              uint64_t started) {
        double secs = (now_usec() - started) / 1e6;

        if (r == 0 && res->nothing_to_resume) {
                if (!c->quiet)
                        printf("Nothing to %s: no rollout was interrupted.\n", res->command);
                return EXIT_OK;
        }
        if (r == 0 && res->n_steps == 0 && !*res->plan_id) {
                if (!c->quiet)
                        printf(c->json ? "{\"event\":\"finished\",\"result\":\"nothing to do\"}\n"
                                       : "Nothing to do: the node is already at the target.\n");
                return EXIT_OK;
        }
        if (r == -EINTR && !*res->plan_id) {
                cli_error("%s", error ?: "interrupted before the first write: nothing was written");
                return EXIT_FAILED;
        }
        if (r == -EINTR) {
                cli_error("interrupted: the journal keeps the rollout where it stopped (nothing half-written); "
                          "run cplet resume to continue or cplet abort to undo it");
                return EXIT_FAILED;
        }
        if (c->json && *res->plan_id)
                printf("{\"event\":\"finished\",\"result\":\"%s\",\"elapsed\":%.6f}\n", r == 0 ? "done" : "failed",
                       secs);
        else if (r == 0 && !c->quiet)
                printf("%s complete: %zu step%s in %.2fs.\n", res->command, out->steps_done,
                       out->steps_done == 1 ? "" : "s", secs);
        return EXIT_OK;
}

int cli_run_write(cli *c, cli_write_fn fn) {
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        _cleanup_(op_result_done) op_result res = {};
        _cleanup_free_ char *error = NULL;
        output out = { .c = c, .tty = isatty(STDOUT_FILENO) };
        op_options o = { .no_wait = c->no_wait, .dry_run = c->dry_run, .force = c->force,
                         .rollout_given = c->stable_for || c->step_timeout || c->on_failure,
                         .interrupted = &interrupted, .progress = on_progress, .userdata = &out };
        uint64_t started = now_usec();
        int r;

        r = op_parse_rollout_options(c->stable_for, c->step_timeout, c->on_failure, &o.rollout, &error);
        if (r >= 0)
                r = op_parse_pull_timeout(c->pull_timeout, &o.pull_timeout_usec, &error);
        if (r < 0)
                return cli_fail(r, error);
        o.skip_pull = c->skip_pull;
        r = cli_env(c);
        if (r != EXIT_OK)
                return r;
        if (event_loop_new(&event) < 0) {
                cli_error("cannot set up the event loop");
                return EXIT_FAILED;
        }
        o.event = event;

        r = fn(c, &o, &res, &error);
        if (c->dry_run) {
                for (size_t i = 0; r == 0 && i < res.n_diffs; i++)
                        if (cli_print_diff(&res.diffs[i]) < 0)
                                return EXIT_FAILED;
                if (r == 0 && res.n_diffs == 0)
                        printf("Nothing to do: the node is already at the target.\n");
        } else if (c->no_wait) {
                /* A single write (flags, a revision) counts no plan steps: what was written says
                 * whether there was anything to do. */
                if (r == 0 && res.n_steps == 0 && res.n_written == 0)
                        printf(c->json ? "{\"steps\": [], \"complete\": true}\n"
                                       : "Nothing to do: the node is already at the target.\n");
                else if (res.n_written > 0 || r == 0)
                        print_written(c, &res, r == 0);
        } else {
                int k = print_gated_result(c, &out, &res, r, error, started);

                if (r == -EINTR || r == 0)
                        return k;
        }
        if (r < 0) {
                cli_error("%s%s%s", *res.plan_id && !c->dry_run && !c->no_wait ? res.command : "",
                          *res.plan_id && !c->dry_run && !c->no_wait ? " failed: " : "", error ?: strerror(-r));
                return cli_exit_code(r);
        }
        return EXIT_OK;
}

static int run_resume(cli *c, const op_options *o, op_result *res, char **ret_error) {
        return op_resume(c->env, o, res, ret_error);
}

static int run_abort(cli *c, const op_options *o, op_result *res, char **ret_error) {
        return op_abort(c->env, o, res, ret_error);
}

int cmd_resume(cli *c) {
        return cli_run_write(c, run_resume);
}

int cmd_abort(cli *c) {
        return cli_run_write(c, run_abort);
}
