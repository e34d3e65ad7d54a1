/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#include "gate.h"
#include "macro.h"
#include "manifest.h"
#include "podlog.h"
#include "rollout.h"

/* Steps of the plan (or of a single write), as opposed to the restores and unwinds that undo
 * them. */
static bool is_plan_kind(const char *kind) {
        return !streq(kind, "restore") && !streq(kind, "unwind");
}

typedef struct expected {
        kversion binary;
        kminor emulated;
        kminor min_compat;
} expected;

rollout *rollout_free(rollout *r) {
        if (!r)
                return NULL;
        for (size_t i = 0; r->trees && i < r->node->n_components; i++)
                json_decref(r->trees[i]);
        free(r->trees);
        free(r->live);
        json_decref(r->journal);
        free(r->error);
        free(r);
        return NULL;
}

int rollout_new(store *s, const node *n, sd_event *e, http_client *http, const rollout_options *o, rollout **ret) {
        rollout *r = calloc(1, sizeof(*r));

        if (!r)
                return -ENOMEM;
        r->store = s;
        s->defer_prune = true;
        r->node = n;
        r->event = e;
        r->http = http;
        r->options = *o;
        r->trees = calloc(n->n_components + 1, sizeof(json_t *));
        r->live = calloc(n->n_components + 1, sizeof(unsigned));
        if (!r->trees || !r->live) {
                rollout_free(r);
                return -ENOMEM;
        }
        *ret = r;
        return 0;
}

bool rollout_journal_in_progress(json_t *journal) {
        const char *phase = json_string_value(json_object_get(journal, "phase"));

        return phase && (streq(phase, "running") || streq(phase, "unwinding"));
}

static void emit(rollout *r, const char *event, size_t step, size_t n_planned, const char *name,
                 const char *kind, unsigned number, const char *detail, uint64_t elapsed) {
        rollout_event ev = {
                .event = event,
                .step = step,
                .n_planned = n_planned,
                .component = name,
                .kind = kind,
                .revision = number,
                .detail = detail,
                .elapsed_usec = elapsed,
        };

        if (r->progress)
                r->progress(&ev, r->userdata);
}

static int save(rollout *r) {
        _cleanup_free_ char *error = NULL;
        char now[32];
        int k;

        now_rfc3339(now);
        json_object_set_new(r->journal, "updated", json_string(now));
        k = store_journal_save(r->store, r->journal, &error);
        if (k < 0) {
                free(r->error);
                r->error = TAKE_PTR(error);
        }
        return k;
}

static json_t *steps_of(rollout *r) {
        return json_object_get(r->journal, "steps");
}

static void set_error_msg(rollout *r, const char *fmt, ...) _printf_(2, 3);
static void set_error_msg(rollout *r, const char *fmt, ...) {
        va_list ap;
        char *m = NULL;

        va_start(ap, fmt);
        if (vasprintf(&m, fmt, ap) < 0)
                m = NULL;
        va_end(ap);
        free(r->error);
        r->error = m;
}

static size_t component_index(const rollout *r, const char *name) {
        for (size_t i = 0; i < r->node->n_components; i++)
                if (streq(r->node->components[i].plugin->name, name))
                        return i;
        return SIZE_MAX;
}

static json_t *tree_of(const rollout *r, size_t i) {
        return r->trees[i] ?: r->node->components[i].pod;
}

/* A component as `tree` would make it, for applying steps and reading expected versions. */
static int component_view(const rollout *r, size_t i, json_t *tree, component *ret) {
        const component *co = &r->node->components[i];
        component v = *co;

        v.pod = tree;
        v.container = component_container_in(co, tree);
        if (!v.container)
                return -EINVAL;
        *ret = v;
        return 0;
}

static int expected_of(const rollout *r, size_t i, json_t *tree, expected *ret, char **ret_error) {
        _cleanup_(component_done) component c = {};
        component view;
        const char *why;
        int k;

        k = component_view(r, i, tree, &view);
        if (k >= 0)
                k = component_read(tree, view.container, view.plugin, view.file, &c);
        if (k < 0)
                return set_error(ret_error, k, "%s: cannot read the manifest", r->node->components[i].plugin->name);
        if (!component_is_plannable(&c, &why))
                return set_error(ret_error, -EINVAL, "%s: %s", c.plugin->name, why);
        *ret = (expected){ .binary = c.binary, .emulated = c.emulated, .min_compat = c.min_compat };
        return 0;
}

/* The kernel's id of this boot, as a JSON string (null when unreadable). */
static json_t *boot_id_json(void) {
        char buf[64] = "";
        FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");

        if (f) {
                if (!fgets(buf, sizeof(buf), f))
                        buf[0] = 0;
                fclose(f);
        }
        buf[strcspn(buf, "\n")] = 0;
        return *buf ? json_string(buf) : json_null();
}

/* The swap time of a journaled step, when it is comparable with process start times now:
 * same boot. After a reboot every process is newer than the swap: 0. */
static uint64_t swap_ticks_of(json_t *step) {
        json_auto_t *now = boot_id_json();
        json_t *then = json_object_get(step, "bootId");

        if (!json_is_string(then) || !json_is_string(now) || !json_equal(then, now))
                return 0;
        return (uint64_t) json_integer_value(json_object_get(step, "swapTicks"));
}

typedef struct gate_progress {
        rollout *r;
        size_t step, n_planned;
        const char *component, *kind;
        unsigned revision;
        uint64_t start;
} gate_progress;

static void on_gate_phase(gate_phase phase, const char *detail, void *userdata) {
        gate_progress *p = userdata;
        bool tick = detail && streq(detail, "tick");
        static const char *const what[] = {
                [GATE_PROCESS] = "the new process",
                [GATE_VERSIONS] = "the reported versions",
                [GATE_HEALTH] = "health",
                [GATE_STABLE] = "the stability window",
                [GATE_DONE] = "nothing",
        };

        emit(p->r, tick ? "tick" : "waiting", p->step, p->n_planned, p->component, p->kind, p->revision, what[phase],
             now_usec() - p->start);
}

/* After a failed swap: unless the new revision is live after all (only the directory fsync
 * failed), the step never happened and store_swap removed its revision; the journal says so. */
static void abandon_if_not_swapped(rollout *r, size_t i, json_t *step, unsigned number) {
        _cleanup_(revision_list_done) revision_list l = {};
        _cleanup_free_ char *live = NULL;
        size_t size;

        if (store_list(r->store, r->node->components[i].plugin->name, &l, NULL) < 0 ||
            store_read_live(r->store, r->node->components[i].file, &live, &size, NULL) < 0 ||
            store_live_number(&l, live, size) == number)
                return;
        json_object_set_new(step, "state", json_string("abandoned"));
        (void) save(r);
}

/* Writes `tree` as a new revision of component i, swaps it in and waits at the gate. The
 * journal step records every transition before the next. Returns 0 with *ret_ok, or -EINTR
 * (the step stays "waiting" in the journal), or another negative errno. */
static int write_and_gate(rollout *r, size_t i, json_t *tree, const char *kind, const char *reason,
                          const expected *ex, size_t step_number, size_t n_planned, bool *ret_ok) {
        const component *co = &r->node->components[i];
        _cleanup_(gate_result_done) gate_result result = {};
        _cleanup_free_ char *error = NULL;
        char b[KVERSION_STRING_MAX], e[KMINOR_STRING_MAX], m[KMINOR_STRING_MAX];
        const char *plan_id = json_string_value(json_object_get(r->journal, "planId"));
        json_t *step;
        component view;
        gate_progress gp;
        gate_spec spec;
        uint64_t ticks;
        unsigned number;
        size_t index;
        int k;

        kversion_format(&ex->binary, b);
        kminor_format(ex->emulated, e);
        kminor_format(ex->min_compat, m);

        step = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:s, s:s, s:n}", "component", co->plugin->name,
                         "manifest", co->file, "kind", kind, "from", (json_int_t) r->live[i], "to", (json_int_t) 0,
                         "state", "writing", "binaryVersion", b, "emulatedVersion", e, "minCompatibilityVersion", m,
                         "message");
        if (!step || json_array_append_new(steps_of(r), step) < 0)
                return -ENOMEM;
        /* Progress counts plan steps; restores and unwinds count journal entries. */
        index = step_number > 0 ? step_number : json_array_size(steps_of(r));
        k = save(r);
        if (k < 0)
                return k;

        {
                revision_info info = {
                        .reason = reason,
                        .plan_id = plan_id,
                        .binary_version = b,
                        .emulated_version = e,
                        .min_compat_version = m,
                };

                k = store_prepare(r->store, co->plugin->name, co->file, tree, &info, r->live[i], &number, &error);
        }
        if (k < 0) {
                set_error_msg(r, "%s", error ?: strerror(-k));
                return k;
        }
        /* When the swap happens, in the clock process start times use: after a crash, resume
         * must still tell the new process from the old one (same command line on a patch
         * upgrade, still terminating). The boot id says whether that clock still holds. */
        ticks = boot_ticks_now();
        json_object_set_new(step, "to", json_integer(number));
        json_object_set_new(step, "swapTicks", json_integer((json_int_t) ticks));
        json_object_set_new(step, "bootId", boot_id_json());
        json_object_set_new(step, "state", json_string("swapping"));
        k = save(r);
        if (k < 0) {
                /* Never swapped: the revision never went live and leaves no trace. */
                store_discard(r->store, co->plugin->name, number);
                return k;
        }

        k = store_swap(r->store, co->plugin->name, co->file, number, &error);
        if (k < 0) {
                set_error_msg(r, "%s", error ?: strerror(-k));
                abandon_if_not_swapped(r, i, step, number);
                return k;
        }
        r->live[i] = number;
        json_decref(r->trees[i]);
        r->trees[i] = json_incref(tree);
        json_object_set_new(step, "state", json_string("waiting"));
        k = save(r);
        if (k < 0)
                return k;
        emit(r, "written", index, n_planned, co->plugin->name, kind, number, NULL, 0);

        k = component_view(r, i, tree, &view);
        if (k < 0)
                return k;
        gp = (gate_progress){ .r = r, .step = index, .n_planned = n_planned, .component = co->plugin->name,
                              .kind = kind, .revision = number, .start = now_usec() };
        spec = (gate_spec){
                .pod = view.pod,
                .container = view.container,
                .plugin = co->plugin,
                .binary = ex->binary,
                .emulated = ex->emulated,
                .min_compat = ex->min_compat,
                .not_before_ticks = ticks,
                .stable_usec = r->options.stable_usec,
                .timeout_usec = r->options.step_timeout_usec,
                .progress = on_gate_phase,
                .userdata = &gp,
                .interrupted = r->interrupted,
        };
        k = gate_wait(r->event, r->http, &spec, &result);
        if (k == -EINTR)
                return k;
        if (k < 0) {
                set_error_msg(r, "%s: cannot wait for revision %u: %s", co->plugin->name, number,
                              result.message ?: strerror(-k));
                result.ok = false;
        }

        if (!result.ok && (result.exited || result.phase == GATE_PROCESS)) {
                /* It exited (or never stayed up long enough to be seen): what it said last, as
                 * the kubelet logged it. */
                json_t *meta = json_object_get(tree, "metadata");
                _cleanup_free_ char *said = NULL;

                if (pod_last_log_line(r->store->root,
                                      json_string_value(json_object_get(meta, "namespace")) ?: "kube-system",
                                      json_string_value(json_object_get(meta, "name")) ?: co->plugin->name,
                                      container_name(view.container), &said) >= 0) {
                        char *with_log = strdup_printf("%s; its last log line: %s", result.message ?: "failed", said);

                        if (with_log) {
                                free(result.message);
                                result.message = with_log;
                        }
                }
        }
        if (result.ok) {
                /* Retention keeps the newest revision known to run healthy. */
                k = store_mark_healthy(r->store, co->plugin->name, number, &error);
                if (k < 0) {
                        set_error_msg(r, "%s", error ?: strerror(-k));
                        return k;
                }
        }
        json_object_set_new(step, "state", json_string(result.ok ? "done" : "failed"));
        if (!result.ok)
                json_object_set_new(step, "message", json_string(result.message ?: r->error ?: "failed"));
        k = save(r);
        if (k < 0)
                return k;
        emit(r, result.ok ? "done" : "failed", index, n_planned, co->plugin->name, kind, number,
             result.ok ? result.warning : result.message, now_usec() - gp.start);
        if (!result.ok) {
                free(r->error);
                r->error = strdup_printf("%s revision %u (%s): %s", co->plugin->name, number, kind,
                                         result.message ?: "failed");
        }
        *ret_ok = result.ok;
        return 0;
}

/* Writes revision `rev` of component i back (as a new revision) and waits for it. */
static int restore_revision(rollout *r, size_t i, unsigned rev, const char *kind, const char *reason) {
        const component *co = &r->node->components[i];
        _cleanup_free_ char *data = NULL, *error = NULL, *name = NULL;
        json_auto_t *tree = NULL;
        expected ex;
        size_t size;
        bool ok = false;
        int k;

        k = store_read(r->store, co->plugin->name, rev, &data, &size, &error);
        if (k >= 0) {
                name = strdup_printf("%s revision %u", co->plugin->name, rev);
                k = name ? manifest_parse(data, size, name, &tree, &error) : -ENOMEM;
        }
        if (k >= 0)
                k = expected_of(r, i, tree, &ex, &error);
        if (k < 0) {
                set_error_msg(r, "cannot restore %s to revision %u: %s", co->plugin->name, rev,
                              error ?: strerror(-k));
                return k;
        }
        k = write_and_gate(r, i, tree, kind, reason, &ex, 0, 0, &ok);
        if (k < 0)
                return k;
        if (!ok) {
                _cleanup_free_ char *why = TAKE_PTR(r->error);

                set_error_msg(r,
                              "%s did not come back healthy on revision %u either: %s. The node needs attention: "
                              "see cplet history and cplet diff %s",
                              co->plugin->name, rev, why ?: "failed", co->plugin->name);
                return -ENOTRECOVERABLE;
        }
        return 0;
}

static int sync_live(store *s, const component *co, unsigned *ret_live, bool *ret_recorded, char **ret_error) {
        char b[KVERSION_STRING_MAX] = "", e[KMINOR_STRING_MAX] = "", m[KMINOR_STRING_MAX] = "";
        revision_info info;

        if (co->binary_known)
                kversion_format(&co->binary, b);
        if (co->versions_known) {
                kminor_format(co->emulated, e);
                kminor_format(co->min_compat, m);
        }
        info = (revision_info){ .binary_version = *b ? b : NULL, .emulated_version = *e ? e : NULL,
                                .min_compat_version = *m ? m : NULL };
        return store_sync_live_recorded(s, co->plugin->name, co->file, &info, ret_live, ret_recorded, ret_error);
}

int component_sync_live(store *s, const component *co, unsigned *ret_live, char **ret_error) {
        return sync_live(s, co, ret_live, NULL, ret_error);
}

int components_sync_live(store *s, const node *n, unsigned *live, char **ret_error) {
        _cleanup_free_ bool *recorded = calloc(n->n_components + 1, sizeof(bool));
        int k;

        if (!recorded)
                return -ENOMEM;
        for (size_t i = 0; i < n->n_components; i++) {
                k = sync_live(s, &n->components[i], &live[i], &recorded[i], ret_error);
                if (k < 0) {
                        /* Some adopted and others not would be a write half done. */
                        while (i-- > 0)
                                if (recorded[i])
                                        store_discard(s, n->components[i].plugin->name, live[i]);
                        return k;
                }
        }
        return 0;
}

int rollout_begin(rollout *r, const char *plan_id, const char *command, json_t *target, char **ret_error) {
        char now[32];
        int k;

        k = components_sync_live(r->store, r->node, r->live, ret_error);
        if (k < 0)
                return k;

        now_rfc3339(now);
        json_decref(r->journal);
        r->journal = json_pack("{s:s, s:s, s:s, s:O, s:{s:I, s:I, s:s}, s:s, s:n, s:[]}", "planId", plan_id,
                               "command", command, "started", now, "target", target, "options", "stableForUsec",
                               (json_int_t) r->options.stable_usec, "stepTimeoutUsec",
                               (json_int_t) r->options.step_timeout_usec, "onFailure",
                               r->options.unwind_on_failure ? "rollback" : "stop", "phase", "running", "message",
                               "steps");
        if (!r->journal)
                return -ENOMEM;
        k = save(r);
        if (k < 0)
                return set_error(ret_error, k, "%s", r->error ?: strerror(-k));
        return 0;
}


/* Whether revision `rev` of component i runs below the min-compatibility high-water mark
 * (or with versions unknown): an unwind does not go back to it. */
static int below_high_water(rollout *r, size_t i, unsigned rev, bool *ret) {
        _cleanup_(revision_list_done) revision_list l = {};
        _cleanup_free_ char *error = NULL;
        const revision *rv;
        kminor mark, m;
        int k;

        k = store_high_water_get(r->store, &mark, &error);
        if (k >= 0)
                k = store_list(r->store, r->node->components[i].plugin->name, &l, &error);
        if (k < 0) {
                set_error_msg(r, "%s", error ?: strerror(-k));
                return k;
        }
        rv = revision_list_find(&l, rev);
        *ret = mark.major > 0 &&
               (!rv || !rv->min_compat_version || kminor_parse(rv->min_compat_version, &m, NULL) < 0 ||
                kminor_cmp(m, mark) < 0);
        return 0;
}

int rollout_unwind(rollout *r) {
        json_t *steps = steps_of(r);
        int k;

        json_object_set_new(r->journal, "phase", json_string("unwinding"));
        k = save(r);
        if (k < 0)
                return k;

        /* Reverse order through the steps that completed: each restores what it replaced, so
         * the node walks back along the same valid states. */
        for (size_t j = json_array_size(steps); j-- > 0;) {
                json_t *st = json_array_get(steps, j);
                const char *state = json_string_value(json_object_get(st, "state")) ?: "";
                const char *kind = json_string_value(json_object_get(st, "kind")) ?: "";
                size_t i = component_index(r, json_string_value(json_object_get(st, "component")) ?: "");
                unsigned from = (unsigned) json_integer_value(json_object_get(st, "from"));
                _cleanup_free_ char *reason = NULL;
                bool stop;

                if ((!streq(state, "done") && !streq(state, "interrupted")) || !is_plan_kind(kind) ||
                    i == SIZE_MAX || from == 0)
                        continue;
                stop = streq(kind, "min-compatibility");
                if (!stop && !r->options.force) {
                        k = below_high_water(r, i, from, &stop);
                        if (k < 0)
                                return k;
                }
                if (stop) {
                        /* Not past a raise of min-compatibility (explicit, or implied by a raised
                         * emulated version): data may already need it. */
                        emit(r, "unwind", j + 1, 0, r->node->components[i].plugin->name, kind, 0,
                             "stopped: not unwinding a min-compatibility raise", 0);
                        json_object_set_new(r->journal, "unwindStoppedAt", json_integer((json_int_t) j + 1));
                        return save(r);
                }
                if (r->interrupted && *r->interrupted)
                        return -EINTR;
                reason = strdup_printf("unwind step %zu: back to revision %u", j + 1, from);
                if (!reason)
                        return -ENOMEM;
                emit(r, "unwind", j + 1, 0, r->node->components[i].plugin->name, kind, from, NULL, 0);
                k = restore_revision(r, i, from, "unwind", reason);
                if (k < 0)
                        return k;
                json_object_set_new(st, "state", json_string("unwound"));
                k = save(r);
                if (k < 0)
                        return k;
        }
        return 0;
}

/* After a step failed: back to the revision it replaced, then unwind by policy. */
static int handle_failure(rollout *r, size_t i, unsigned from, const char *what) {
        _cleanup_free_ char *failure = TAKE_PTR(r->error), *reason = NULL;
        int k;

        reason = strdup_printf("restore after failed %s", what);
        if (!reason)
                return -ENOMEM;
        emit(r, "restore", 0, 0, r->node->components[i].plugin->name, "restore", from, failure, 0);
        k = restore_revision(r, i, from, "restore", reason);
        if (k >= 0 && r->options.unwind_on_failure)
                k = rollout_unwind(r);
        if (k == -EINTR)
                return k;
        if (k < 0) {
                _cleanup_free_ char *why = TAKE_PTR(r->error);

                set_error_msg(r, "%s; then: %s", failure ?: "a step failed", why ?: strerror(-k));
                return k;
        }
        if (r->options.unwind_on_failure && json_object_get(r->journal, "unwindStoppedAt"))
                set_error_msg(r,
                              "%s; %s restored to revision %u, and the plan's steps unwound back to step %lld, a "
                              "min-compatibility raise, which is never unwound (data may already need it)",
                              failure ?: "a step failed", r->node->components[i].plugin->name, from,
                              (long long) json_integer_value(json_object_get(r->journal, "unwindStoppedAt")));
        else
                set_error_msg(r, "%s; %s restored to revision %u%s", failure ?: "a step failed",
                              r->node->components[i].plugin->name, from,
                              r->options.unwind_on_failure ? ", and the plan's earlier steps were unwound" : "");
        return -EIO;
}


int rollout_write_tree(rollout *r, size_t i, json_t *tree, const char *kind, const char *reason) {
        _cleanup_free_ char *error = NULL, *what = NULL;
        unsigned from = r->live[i];
        expected ex;
        bool ok = false;
        int k;

        k = expected_of(r, i, tree, &ex, &error);
        if (k < 0) {
                set_error_msg(r, "%s", error ?: strerror(-k));
                return k;
        }
        emit(r, "step", 1, 1, r->node->components[i].plugin->name, kind, 0, NULL, 0);
        k = write_and_gate(r, i, tree, kind, reason, &ex, 1, 1, &ok);
        if (k < 0)
                return k;
        if (ok)
                return 0;
        what = strdup_printf("%s of %s", kind, r->node->components[i].plugin->name);
        return what ? handle_failure(r, i, from, what) : -ENOMEM;
}

int rollout_run(rollout *r, const plan *p) {
        for (size_t s = 0; s < p->n_steps; s++) {
                const plan_step *st = &p->steps[s];
                _cleanup_free_ char *error = NULL, *reason = NULL, *what = NULL;
                json_auto_t *next = NULL;
                expected ex = { .binary = st->binary, .emulated = st->emulated, .min_compat = st->min_compat };
                component view;
                unsigned from = r->live[st->component];
                bool ok = false;
                int k;

                if (r->interrupted && *r->interrupted)
                        return -EINTR;
                k = component_view(r, st->component, tree_of(r, st->component), &view);
                if (k >= 0)
                        k = component_apply_step(&view, st, &next, &error);
                if (k < 0) {
                        set_error_msg(r, "step %zu: %s", s + 1, error ?: strerror(-k));
                        return k;
                }
                emit(r, "step", s + 1, p->n_steps, view.plugin->name, step_kind_to_string(st->kind), 0, NULL, 0);
                reason = strdup_printf("upgrade step %zu/%zu: %s", s + 1, p->n_steps, step_kind_to_string(st->kind));
                what = strdup_printf("step %zu/%zu (%s %s)", s + 1, p->n_steps, view.plugin->name,
                                     step_kind_to_string(st->kind));
                if (!reason || !what)
                        return -ENOMEM;
                k = write_and_gate(r, st->component, next, step_kind_to_string(st->kind), reason, &ex, s + 1,
                                   p->n_steps, &ok);
                if (k < 0)
                        return k;
                if (!ok)
                        return handle_failure(r, st->component, from, what);
        }
        return 0;
}

/* A plan step journaled "failed" whose restore never completed (cplet died in between):
 * restore it now. Returns the failed step's index + 1, or 0 when there is none to finish. */
static int finish_failed_step(rollout *r, json_t *steps, size_t *ret_failed) {
        json_t *st;
        size_t j, failed = SIZE_MAX;
        int k;

        json_array_foreach(steps, j, st) {
                const char *state = json_string_value(json_object_get(st, "state")) ?: "";
                const char *kind = json_string_value(json_object_get(st, "kind")) ?: "";

                if (streq(state, "failed") && is_plan_kind(kind))
                        failed = j;
        }
        if (failed == SIZE_MAX)
                return 0;
        *ret_failed = failed;

        st = json_array_get(steps, failed);
        {
                const char *name = json_string_value(json_object_get(st, "component")) ?: "";
                unsigned from = (unsigned) json_integer_value(json_object_get(st, "from"));
                size_t i = component_index(r, name);
                bool restored = false;
                json_t *later;

                for (size_t q = failed + 1; q < json_array_size(steps); q++) {
                        later = json_array_get(steps, q);
                        if (streq(json_string_value(json_object_get(later, "kind")) ?: "", "restore") &&
                            streq(json_string_value(json_object_get(later, "component")) ?: "", name) &&
                            streq(json_string_value(json_object_get(later, "state")) ?: "", "done"))
                                restored = true;
                }
                if (restored || i == SIZE_MAX)
                        return 1;
                emit(r, "restore", 0, 0, name, "restore", from, json_string_value(json_object_get(st, "message")), 0);
                k = restore_revision(r, i, from, "restore", "restore after failed step (finished after an interruption)");
                if (k < 0)
                        return k;
        }
        return 1;
}

int rollout_take_over(rollout *r, json_t *journal, bool settle, char **ret_error) {
        json_t *steps, *st;
        size_t j;
        int k;

        json_decref(r->journal);
        r->journal = json_incref(journal);
        steps = steps_of(r);
        if (!json_is_array(steps))
                return set_error(ret_error, -EINVAL, "the rollout journal has no steps list");

        /* The live revision of every component, as the disk shows it. */
        for (size_t i = 0; i < r->node->n_components; i++) {
                const component *co = &r->node->components[i];
                _cleanup_(revision_list_done) revision_list l = {};
                _cleanup_free_ char *live = NULL;
                size_t size;

                k = store_list(r->store, co->plugin->name, &l, ret_error);
                if (k >= 0)
                        k = store_read_live(r->store, co->file, &live, &size, ret_error);
                if (k < 0)
                        return k;
                r->live[i] = store_live_number(&l, live, size);
        }

        /* What the journal says each component's live revision is: the last step that touched it
         * decides (never swapped: its `from`; otherwise its `to`). */
        for (size_t i = 0; i < r->node->n_components; i++) {
                const char *name = r->node->components[i].plugin->name;
                unsigned want = 0;
                bool touched = false;

                json_array_foreach(steps, j, st) {
                        const char *state = json_string_value(json_object_get(st, "state")) ?: "";
                        unsigned from = (unsigned) json_integer_value(json_object_get(st, "from"));
                        unsigned to = (unsigned) json_integer_value(json_object_get(st, "to"));

                        if (!streq(json_string_value(json_object_get(st, "component")) ?: "", name))
                                continue;
                        touched = true;
                        want = streq(state, "writing") || streq(state, "abandoned") ||
                                               (streq(state, "swapping") && r->live[i] == from)
                                       ? from
                                       : to;
                }
                if (touched && r->live[i] != want)
                        return set_error(ret_error, -ESTALE,
                                         "the live manifest of %s is %s, but the rollout journal expects revision %u: "
                                         "it was changed outside cplet. Inspect it (cplet history, cplet diff %s %u) "
                                         "and put it back before resuming or aborting",
                                         name, r->live[i] ? "another revision" : "not a stored revision", want, name,
                                         want);
        }

        /* Settle the step that was caught mid-way. */
        st = json_array_get(steps, json_array_size(steps) - 1);
        if (st) {
                const char *state = json_string_value(json_object_get(st, "state")) ?: "";
                const char *name = json_string_value(json_object_get(st, "component")) ?: "";
                unsigned from = (unsigned) json_integer_value(json_object_get(st, "from"));
                unsigned to = (unsigned) json_integer_value(json_object_get(st, "to"));
                size_t i = component_index(r, name);

                if (streq(state, "writing") || (streq(state, "swapping") && r->live[i] == from)) {
                        json_object_set_new(st, "state", json_string("abandoned"));
                        k = save(r);
                        if (k < 0)
                                return k;
                } else if (!settle && (streq(state, "swapping") || streq(state, "waiting"))) {
                        json_object_set_new(st, "state", json_string("interrupted"));
                        k = save(r);
                        if (k < 0)
                                return k;
                } else if (streq(state, "swapping") || streq(state, "waiting")) {
                        /* It is live: wait for it as if the step had just been written. */
                        _cleanup_(gate_result_done) gate_result result = {};
                        _cleanup_free_ char *error = NULL;
                        expected ex;
                        component view;
                        gate_spec spec;

                        k = expected_of(r, i, tree_of(r, i), &ex, &error);
                        if (k >= 0)
                                k = component_view(r, i, tree_of(r, i), &view);
                        if (k < 0)
                                return set_error(ret_error, k, "%s", error ?: strerror(-k));
                        spec = (gate_spec){
                                .pod = view.pod,
                                .container = view.container,
                                .plugin = view.plugin,
                                .binary = ex.binary,
                                .emulated = ex.emulated,
                                .min_compat = ex.min_compat,
                                .not_before_ticks = swap_ticks_of(st),
                                .stable_usec = r->options.stable_usec,
                                .timeout_usec = r->options.step_timeout_usec,
                                .interrupted = r->interrupted,
                        };
                        emit(r, "waiting", json_array_size(steps), 0, name,
                             json_string_value(json_object_get(st, "kind")), to, "the interrupted step", 0);
                        k = gate_wait(r->event, r->http, &spec, &result);
                        if (k == -EINTR)
                                return k;
                        json_object_set_new(st, "state", json_string(result.ok ? "done" : "failed"));
                        if (!result.ok)
                                json_object_set_new(st, "message", json_string(result.message ?: "failed"));
                        k = save(r);
                        if (k < 0)
                                return k;
                        if (!result.ok) {
                                free(r->error);
                                r->error = strdup_printf("%s revision %u: %s", name, to, result.message ?: "failed");
                                if (streq(json_string_value(json_object_get(st, "kind")) ?: "", "unwind") ||
                                    streq(json_string_value(json_object_get(st, "kind")) ?: "", "restore"))
                                        return -ENOTRECOVERABLE;
                                return handle_failure(r, i, from, "the interrupted step");
                        }
                        emit(r, "done", json_array_size(steps), 0, name,
                             json_string_value(json_object_get(st, "kind")), to, NULL, 0);
                }
        }
        /* A failure that was not fully handled: the failed step goes back first. Resume then
         * finishes the failure by policy (the plan does not go on past a failed step); abort
         * unwinds everything anyway. */
        {
                size_t failed = 0;

                k = finish_failed_step(r, steps, &failed);
                if (k < 0)
                        return k;
                if (k > 0) {
                        st = json_array_get(steps, failed);
                        if (settle && r->options.unwind_on_failure) {
                                k = rollout_unwind(r);
                                if (k < 0)
                                        return k;
                        }
                        if (settle) {
                                set_error_msg(r, "%s %s had failed (%s); it is restored%s",
                                              json_string_value(json_object_get(st, "component")) ?: "?",
                                              json_string_value(json_object_get(st, "kind")) ?: "step",
                                              json_string_value(json_object_get(st, "message")) ?: "?",
                                              r->options.unwind_on_failure ? " and the plan's earlier steps unwound"
                                                                           : "");
                                return -EIO;
                        }
                        return 0;
                }
        }
        return 0;
}

int rollout_finish(rollout *r, const char *phase) {
        /* Nothing may need restoring any more: retention applies again. */
        for (size_t i = 0; i < r->node->n_components; i++)
                if (r->live[i])
                        store_prune(r->store, r->node->components[i].plugin->name, r->live[i]);
        json_object_set_new(r->journal, "phase", json_string(phase));
        json_object_set_new(r->journal, "message", r->error ? json_string(r->error) : json_null());
        return save(r);
}
