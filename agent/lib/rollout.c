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

typedef struct expected {
        kversion binary;
        kminor emulated;
        kminor min_compat;
} expected;

/* One write to make and gate: a plan step, a single write, a restore or an unwind. */
typedef struct step_request {
        size_t component;
        json_t *tree;
        journal_kind kind;
        const char *reason;
        expected ex;
        size_t progress;  /* the 1-based plan step shown in progress; 0: the journal index */
        size_t n_planned; /* 0 for restores and unwinds */
        size_t undoes;    /* restores and unwinds: the 1-based journal step they undo */
} step_request;

rollout *rollout_free(rollout *r) {
        if (!r)
                return NULL;
        for (size_t i = 0; r->trees && i < r->node->n_components; i++)
                json_decref(r->trees[i]);
        free(r->trees);
        free(r->live);
        journal_free(r->journal);
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
        k = journal_set_string(&r->journal->updated, now);
        if (k >= 0)
                k = journal_save(r->store, r->journal, &error);
        if (k < 0) {
                free(r->error);
                r->error = TAKE_PTR(error);
        }
        return k;
}

static void set_error_msg(rollout *r, const char *fmt, ...) _printf_(2, 3);
static void set_error_msg(rollout *r, const char *fmt, ...) {
        va_list ap;
        char *m;

        va_start(ap, fmt);
        m = strdup_vprintf(fmt, ap);
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

static const char *name_of(const rollout *r, size_t i) {
        return r->node->components[i].plugin->name;
}

static journal_step *last_step(const rollout *r) {
        return r->journal->n_steps > 0 ? r->journal->steps[r->journal->n_steps - 1] : NULL;
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
                return set_error(ret_error, k, "%s: cannot read the manifest", name_of(r, i));
        if (!component_is_plannable(&c, &why))
                return set_error(ret_error, -EINVAL, "%s: %s", c.plugin->name, why);
        *ret = (expected){ .binary = c.binary, .emulated = c.emulated, .min_compat = c.min_compat };
        return 0;
}

/* The kernel's id of this boot (NULL when unreadable). */
static char *boot_id(void) {
        char buf[64] = "";
        FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");

        if (f) {
                if (!fgets(buf, sizeof(buf), f))
                        buf[0] = 0;
                fclose(f);
        }
        buf[strcspn(buf, "\n")] = 0;
        return *buf ? strdup(buf) : NULL;
}

/* The swap time of a journaled step, when it is comparable with process start times now:
 * same boot. After a reboot every process is newer than the swap: 0. */
static uint64_t swap_ticks_of(const journal_step *st) {
        _cleanup_free_ char *now = boot_id();

        if (!st->boot_id || !now || !streq(st->boot_id, now))
                return 0;
        return st->swap_ticks;
}

/* The latest step after step i that undoes it with `kind` (a restore of a failed step, an
 * unwind of a completed one), or NULL. Journals written before steps said what they undo
 * matched restores by component. */
static const journal_step *undoing_step(const journal *j, size_t i, journal_kind kind) {
        const journal_step *found = NULL;

        for (size_t k = i + 1; k < j->n_steps; k++) {
                const journal_step *st = j->steps[k];

                if (st->kind != kind || !streq(st->component, j->steps[i]->component))
                        continue;
                if (st->undoes == i + 1 || (st->undoes == 0 && kind == JOURNAL_KIND_RESTORE))
                        found = st;
        }
        return found;
}

/* A restore or unwind that ran to its verdict, healthy or not. */
static bool finished(const journal_step *st) {
        return st && (st->state == JOURNAL_STEP_DONE || st->state == JOURNAL_STEP_FAILED);
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

/* Waits until component i runs `tree` healthy (or fails). gp: progress, may be NULL. A wait
 * that could not even be set up is a failed gate, with the reason. */
static int wait_at_gate(rollout *r, size_t i, json_t *tree, const expected *ex, uint64_t not_before,
                        gate_progress *gp, gate_result *ret) {
        component view;
        gate_spec spec;
        int k;

        k = component_view(r, i, tree, &view);
        if (k < 0)
                return k;
        spec = (gate_spec){
                .container = view.container,
                .plugin = view.plugin,
                .binary = ex->binary,
                .emulated = ex->emulated,
                .min_compat = ex->min_compat,
                .not_before_ticks = not_before,
                .stable_usec = r->options.stable_usec,
                .timeout_usec = r->options.step_timeout_usec,
                .progress = gp ? on_gate_phase : NULL,
                .userdata = gp,
                .interrupted = r->interrupted,
                .client_cert = r->version_cert,
                .client_key = r->version_key,
        };
        k = gate_wait(r->event, r->http, &spec, ret);
        if (k == -EINTR)
                return k;
        if (k < 0) {
                _cleanup_free_ char *why = strdup_printf("%s: cannot wait for it: %s", name_of(r, i),
                                                          ret->message ?: strerror(-k));

                free(ret->message);
                ret->message = TAKE_PTR(why);
                ret->ok = false;
        }
        return 0;
}

/* It exited (or never stayed up long enough to be seen): what it said last, as the kubelet
 * logged it, goes into the failure message. */
static void add_last_log_line(rollout *r, size_t i, json_t *tree, gate_result *result) {
        const component *co = &r->node->components[i];
        json_t *meta = json_object_get(tree, "metadata");
        json_t *container = component_container_in(co, tree);
        _cleanup_free_ char *said = NULL, *with_log = NULL;

        if (result->ok || !(result->exited || result->phase == GATE_PROCESS) || !container)
                return;
        if (pod_last_log_line(r->store->root, json_string_value(json_object_get(meta, "namespace")) ?: "kube-system",
                              json_string_value(json_object_get(meta, "name")) ?: co->plugin->name,
                              container_name(container), &said) < 0)
                return;
        with_log = strdup_printf("%s; its last log line: %s", result->message ?: "failed", said);
        if (with_log) {
                free(result->message);
                result->message = TAKE_PTR(with_log);
        }
}

/* Records the live manifest of component i as a revision (an "external edit" unless it
 * equals a stored one), labelled with the versions it runs when they can be read. */
static int record_live(rollout *r, size_t i, unsigned *ret, char **ret_error) {
        const component *co = &r->node->components[i];
        _cleanup_(component_done) component c = {};
        _cleanup_free_ char *data = NULL;
        json_auto_t *tree = NULL;
        json_t *container;
        size_t size;

        if (store_read_live(r->store, co->file, &data, &size, NULL) >= 0 &&
            manifest_parse(data, size, co->file, &tree, NULL) >= 0 && (container = component_container_in(co, tree)) &&
            component_read(tree, container, co->plugin, co->file, &c) >= 0)
                return component_sync_live(r->store, &c, ret, ret_error);
        /* Not readable as the component: kept all the same, its versions unknown. */
        return store_sync_live(r->store, co->plugin->name, co->file, &(revision_info){}, ret, ret_error);
}

/* The live manifest changed outside cplet while the rollout ran (a hand edit, a kubeadm
 * run): it is never overwritten. It becomes a revision, the step is abandoned, the rollout
 * stops. Returns -ESTALE (or the error that kept the edit from being recorded). */
static int stop_for_external_edit(rollout *r, size_t i, journal_step *st, const char *why) {
        _cleanup_free_ char *error = NULL;
        unsigned edit = 0;
        int k;

        k = record_live(r, i, &edit, &error);
        st->state = JOURNAL_STEP_ABANDONED;
        (void) journal_set_string(&st->message, why);
        if (k < 0)
                set_error_msg(r, "%s; cplet stopped the rollout there, but could not record the edit: %s", why,
                              error ?: strerror(-k));
        else {
                set_error_msg(r,
                              "%s/%s was changed outside cplet during the rollout; the edit is kept as %s revision %u "
                              "(\"external edit\") and the rollout stopped there without overwriting it. "
                              "Inspect it (cplet diff %s %u %u), then plan again",
                              r->store->manifest_dir, st->manifest, name_of(r, i), edit, name_of(r, i), st->from,
                              edit);
                r->live[i] = edit;
                json_decref(r->trees[i]);
                r->trees[i] = NULL;
        }
        if (save(r) < 0)
                return -EIO;
        return k < 0 ? k : -ESTALE;
}

/* Journals the step as "writing". */
static int begin_step(rollout *r, const step_request *q, journal_step **ret) {
        const component *co = &r->node->components[q->component];
        char b[KVERSION_STRING_MAX], e[KMINOR_STRING_MAX], m[KMINOR_STRING_MAX];
        journal_step *st;

        kversion_format(&q->ex.binary, b);
        kminor_format(q->ex.emulated, e);
        kminor_format(q->ex.min_compat, m);
        st = journal_add_step(r->journal, &(journal_step){
                                                  .component = (char *) co->plugin->name,
                                                  .manifest = co->file,
                                                  .kind = q->kind,
                                                  .from = r->live[q->component],
                                                  .state = JOURNAL_STEP_WRITING,
                                                  .binary_version = b,
                                                  .emulated_version = e,
                                                  .min_compat_version = m,
                                                  .undoes = q->undoes,
                                          });
        if (!st)
                return -ENOMEM;
        *ret = st;
        return save(r);
}

/* Writes the revision (not live yet), then journals "swapping" with the clock process start
 * times use: after a crash, resume must still tell the new process from the old one (same
 * command line on a patch upgrade, still terminating). The boot id says whether that clock
 * still holds. */
static int write_revision(rollout *r, const step_request *q, journal_step *st) {
        const component *co = &r->node->components[q->component];
        _cleanup_free_ char *error = NULL;
        revision_info info = {
                .reason = q->reason,
                .plan_id = r->journal->plan_id,
                .binary_version = st->binary_version,
                .emulated_version = st->emulated_version,
                .min_compat_version = st->min_compat_version,
        };
        unsigned number;
        int k;

        /* A hand edit made since the rollout read the manifest stops it before anything is
         * written; store_swap checks again at the rename. */
        k = store_check_live(r->store, co->plugin->name, co->file, st->from, &error);
        if (k == -ESTALE)
                return stop_for_external_edit(r, q->component, st, error);
        if (k >= 0)
                k = store_prepare(r->store, co->plugin->name, co->file, q->tree, &info, st->from, &number, &error);
        if (k < 0) {
                set_error_msg(r, "%s", error ?: strerror(-k));
                return k;
        }
        st->to = number;
        st->swap_ticks = boot_ticks_now();
        free(st->boot_id);
        st->boot_id = boot_id();
        st->state = JOURNAL_STEP_SWAPPING;
        k = save(r);
        if (k < 0)
                /* Never swapped: the revision never went live and leaves no trace. */
                store_discard(r->store, co->plugin->name, number);
        return k;
}

/* After a failed swap: unless the new revision is live after all (only the directory fsync
 * failed), the step never happened and store_swap removed its revision; the journal says so. */
static void abandon_if_not_swapped(rollout *r, size_t i, journal_step *st) {
        _cleanup_(revision_list_done) revision_list l = {};
        _cleanup_free_ char *live = NULL;
        size_t size;

        if (store_list(r->store, name_of(r, i), &l, NULL) < 0 ||
            store_read_live(r->store, r->node->components[i].file, &live, &size, NULL) < 0 ||
            store_live_number(&l, live, size) == st->to)
                return;
        st->state = JOURNAL_STEP_ABANDONED;
        (void) save(r);
}

/* Swaps the revision in (compare-and-swap against the revision the step started from) and
 * journals "waiting". */
static int swap_in(rollout *r, const step_request *q, journal_step *st, size_t index) {
        const component *co = &r->node->components[q->component];
        _cleanup_free_ char *error = NULL;
        int k;

        k = store_swap(r->store, co->plugin->name, co->file, st->to, &error);
        if (k == -ESTALE)
                return stop_for_external_edit(r, q->component, st, error);
        if (k < 0) {
                set_error_msg(r, "%s", error ?: strerror(-k));
                abandon_if_not_swapped(r, q->component, st);
                return k;
        }
        r->live[q->component] = st->to;
        json_decref(r->trees[q->component]);
        r->trees[q->component] = json_incref(q->tree);
        st->state = JOURNAL_STEP_WAITING;
        k = save(r);
        if (k < 0)
                return k;
        emit(r, "written", index, q->n_planned, co->plugin->name, journal_kind_to_string(q->kind), st->to, NULL, 0);
        return 0;
}

/* Journals the gate's verdict ("done" or "failed") and reports it. */
static int record_verdict(rollout *r, const step_request *q, journal_step *st, size_t index,
                          const gate_result *result, uint64_t started) {
        const char *name = name_of(r, q->component), *kind = journal_kind_to_string(q->kind);
        _cleanup_free_ char *error = NULL;
        int k;

        if (result->ok) {
                /* Retention keeps the newest revision known to run healthy. */
                k = store_mark_healthy(r->store, name, st->to, &error);
                if (k < 0) {
                        set_error_msg(r, "%s", error ?: strerror(-k));
                        return k;
                }
        }
        st->state = result->ok ? JOURNAL_STEP_DONE : JOURNAL_STEP_FAILED;
        if (!result->ok && journal_set_string(&st->message, result->message ?: "failed") < 0)
                return -ENOMEM;
        k = save(r);
        if (k < 0)
                return k;
        emit(r, result->ok ? "done" : "failed", index, q->n_planned, name, kind, st->to,
             result->ok ? result->warning : result->message, now_usec() - started);
        if (!result->ok)
                set_error_msg(r, "%s revision %u (%s): %s", name, st->to, kind, result->message ?: "failed");
        return 0;
}

/* Writes q->tree as a new revision, swaps it in and waits at the gate, journaling every
 * transition before the next. Returns 0 with *ret_ok, -EINTR (the step stays "waiting"),
 * -ESTALE (changed outside cplet: kept, rollout stopped), or another negative errno. */
static int write_and_gate(rollout *r, const step_request *q, bool *ret_ok) {
        _cleanup_(gate_result_done) gate_result result = {};
        journal_step *st;
        gate_progress gp;
        size_t index;
        int k;

        k = begin_step(r, q, &st);
        if (k < 0)
                return k;
        index = q->progress > 0 ? q->progress : r->journal->n_steps;
        k = write_revision(r, q, st);
        if (k >= 0)
                k = swap_in(r, q, st, index);
        if (k < 0)
                return k;

        gp = (gate_progress){ .r = r, .step = index, .n_planned = q->n_planned, .component = st->component,
                              .kind = journal_kind_to_string(q->kind), .revision = st->to, .start = now_usec() };
        k = wait_at_gate(r, q->component, q->tree, &q->ex, st->swap_ticks, &gp, &result);
        if (k < 0)
                return k;
        add_last_log_line(r, q->component, q->tree, &result);
        k = record_verdict(r, q, st, index, &result, gp.start);
        if (k < 0)
                return k;
        *ret_ok = result.ok;
        return 0;
}

/* Writes revision `rev` of component i back (as a new revision) and waits for it. `undoes`:
 * the 1-based journal step this restore or unwind undoes. */
static int restore_revision(rollout *r, size_t i, unsigned rev, journal_kind kind, const char *reason,
                            size_t undoes) {
        _cleanup_free_ char *data = NULL, *error = NULL, *name = NULL;
        json_auto_t *tree = NULL;
        step_request q = { .component = i, .kind = kind, .reason = reason, .undoes = undoes };
        size_t size;
        bool ok = false;
        int k;

        k = store_read(r->store, name_of(r, i), rev, &data, &size, &error);
        if (k >= 0) {
                name = strdup_printf("%s revision %u", name_of(r, i), rev);
                k = name ? manifest_parse(data, size, name, &tree, &error) : -ENOMEM;
        }
        if (k >= 0)
                k = expected_of(r, i, tree, &q.ex, &error);
        if (k < 0) {
                set_error_msg(r, "cannot restore %s to revision %u: %s", name_of(r, i), rev, error ?: strerror(-k));
                return k;
        }
        q.tree = tree;
        k = write_and_gate(r, &q, &ok);
        if (k < 0)
                return k;
        if (!ok) {
                _cleanup_free_ char *why = TAKE_PTR(r->error);

                set_error_msg(r,
                              "%s did not come back healthy on revision %u either: %s. The node needs attention: "
                              "see cplet history and cplet diff %s",
                              name_of(r, i), rev, why ?: "failed", name_of(r, i));
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

/* The journal on disk must not be overwritten while it shows a rollout in progress, nor when
 * it cannot be trusted: it may be all that says where an interrupted rollout stood. */
static int refuse_unfinished(rollout *r, char **ret_error) {
        _cleanup_(journal_freep) journal *old = NULL;
        int k;

        k = journal_load(r->store, &old, ret_error);
        if (k == -ENOENT)
                return 0;
        if (k < 0)
                return k;
        if (journal_in_progress(old))
                return set_error(ret_error, -EBUSY,
                                 "rollout %s (%s) did not finish: run cplet resume to continue it or cplet abort to "
                                 "undo it first",
                                 old->plan_id, old->command);
        return 0;
}

int rollout_begin(rollout *r, const char *plan_id, const char *command, json_t *target, char **ret_error) {
        char now[32];
        int k;

        k = refuse_unfinished(r, ret_error);
        if (k < 0)
                return k;
        k = components_sync_live(r->store, r->node, r->live, ret_error);
        if (k < 0)
                return k;

        now_rfc3339(now);
        r->journal = journal_free(r->journal);
        k = journal_new(plan_id, command, now, target, &r->options, &r->journal, ret_error);
        if (k < 0)
                return k;
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
                k = store_list(r->store, name_of(r, i), &l, &error);
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

/* Undoes completed plan step j (0-based) of the journal. Returns 0 to go on, 1 when the
 * unwind stops there (a min-compatibility raise), or a negative errno. */
static int unwind_step(rollout *r, size_t j) {
        journal_step *st = r->journal->steps[j];
        const journal_step *undo = undoing_step(r->journal, j, JOURNAL_KIND_UNWIND);
        const char *kind = journal_kind_to_string(st->kind);
        size_t i = component_index(r, st->component);
        _cleanup_free_ char *reason = NULL;
        bool stop;
        int k;

        if ((st->state != JOURNAL_STEP_DONE && st->state != JOURNAL_STEP_INTERRUPTED) ||
            !journal_kind_is_plan(st->kind))
                return 0;
        if (i == SIZE_MAX) {
                set_error_msg(r, "step %zu changed %s, which is not on this node any more", j + 1, st->component);
                return -EINVAL;
        }
        stop = st->kind == JOURNAL_KIND_MIN_COMPAT;
        if (!stop && !r->options.force) {
                k = below_high_water(r, i, st->from, &stop);
                if (k < 0)
                        return k;
        }
        if (stop) {
                /* Not past a raise of min-compatibility (explicit, or implied by a raised
                 * emulated version): data may already need it. */
                emit(r, "unwind", j + 1, 0, st->component, kind, 0, "stopped: not unwinding a min-compatibility raise",
                     0);
                r->journal->unwind_stopped_at = j + 1;
                k = save(r);
                return k < 0 ? k : 1;
        }
        if (undo && undo->state == JOURNAL_STEP_DONE) {
                /* Its unwind went through before an interruption: once is enough. */
                st->state = JOURNAL_STEP_UNWOUND;
                return save(r);
        }
        if (r->interrupted && *r->interrupted)
                return -EINTR;
        reason = strdup_printf("unwind step %zu: back to revision %u", j + 1, st->from);
        if (!reason)
                return -ENOMEM;
        emit(r, "unwind", j + 1, 0, st->component, kind, st->from, NULL, 0);
        k = restore_revision(r, i, st->from, JOURNAL_KIND_UNWIND, reason, j + 1);
        if (k < 0)
                return k;
        st->state = JOURNAL_STEP_UNWOUND;
        return save(r);
}

int rollout_unwind(rollout *r) {
        int k;

        r->journal->phase = JOURNAL_UNWINDING;
        k = save(r);
        if (k < 0)
                return k;
        /* Reverse order through the steps that completed: each restores what it replaced, so
         * the node walks back along the same valid states. */
        for (size_t j = r->journal->n_steps; j-- > 0;) {
                k = unwind_step(r, j);
                if (k != 0)
                        return k < 0 ? k : 0;
        }
        return 0;
}

/* After a step failed: back to the revision it replaced, then unwind by policy. `failed`:
 * the failed step's 1-based journal index. */
static int handle_failure(rollout *r, size_t i, unsigned from, const char *what, size_t failed) {
        _cleanup_free_ char *failure = TAKE_PTR(r->error), *reason = NULL;
        int k;

        reason = strdup_printf("restore after failed %s", what);
        if (!reason)
                return -ENOMEM;
        emit(r, "restore", 0, 0, name_of(r, i), "restore", from, failure, 0);
        k = restore_revision(r, i, from, JOURNAL_KIND_RESTORE, reason, failed);
        if (k >= 0 && r->options.unwind_on_failure)
                k = rollout_unwind(r);
        if (k == -EINTR)
                return k;
        if (k < 0) {
                _cleanup_free_ char *why = TAKE_PTR(r->error);

                set_error_msg(r, "%s; then: %s", failure ?: "a step failed", why ?: strerror(-k));
                return k;
        }
        if (r->options.unwind_on_failure && r->journal->unwind_stopped_at > 0)
                set_error_msg(r,
                              "%s; %s restored to revision %u, and the plan's steps unwound back to step %zu, a "
                              "min-compatibility raise, which is never unwound (data may already need it)",
                              failure ?: "a step failed", name_of(r, i), from, r->journal->unwind_stopped_at);
        else
                set_error_msg(r, "%s; %s restored to revision %u%s", failure ?: "a step failed", name_of(r, i), from,
                              r->options.unwind_on_failure ? ", and the plan's earlier steps were unwound" : "");
        return -EIO;
}

int rollout_write_tree(rollout *r, size_t i, json_t *tree, const char *kind, const char *reason) {
        _cleanup_free_ char *error = NULL, *what = NULL;
        step_request q = { .component = i, .tree = tree, .kind = journal_kind_from_string(kind), .reason = reason,
                           .progress = 1, .n_planned = 1 };
        unsigned from = r->live[i];
        bool ok = false;
        int k;

        if (q.kind == _JOURNAL_KIND_MAX || !journal_kind_is_plan(q.kind)) {
                set_error_msg(r, "\"%s\" is not a kind of write the journal knows", kind);
                return -EINVAL;
        }
        k = expected_of(r, i, tree, &q.ex, &error);
        if (k < 0) {
                set_error_msg(r, "%s", error ?: strerror(-k));
                return k;
        }
        emit(r, "step", 1, 1, name_of(r, i), kind, 0, NULL, 0);
        k = write_and_gate(r, &q, &ok);
        if (k < 0)
                return k;
        if (ok)
                return 0;
        what = strdup_printf("%s of %s", kind, name_of(r, i));
        return what ? handle_failure(r, i, from, what, r->journal->n_steps) : -ENOMEM;
}

static journal_kind journal_kind_of(step_kind k) {
        switch (k) {
        case STEP_BINARY:
                return JOURNAL_KIND_BINARY;
        case STEP_EMULATION:
                return JOURNAL_KIND_EMULATION;
        case STEP_MIN_COMPAT:
                return JOURNAL_KIND_MIN_COMPAT;
        }
        return _JOURNAL_KIND_MAX;
}

static int run_step(rollout *r, const plan *p, size_t s) {
        const plan_step *st = &p->steps[s];
        const char *kind = step_kind_to_string(st->kind);
        _cleanup_free_ char *error = NULL, *reason = NULL, *what = NULL;
        json_auto_t *next = NULL;
        component view;
        unsigned from = r->live[st->component];
        bool ok = false;
        int k;

        k = component_view(r, st->component, tree_of(r, st->component), &view);
        if (k >= 0)
                k = component_apply_step(&view, st, &next, &error);
        if (k < 0) {
                set_error_msg(r, "step %zu: %s", s + 1, error ?: strerror(-k));
                return k;
        }
        emit(r, "step", s + 1, p->n_steps, view.plugin->name, kind, 0, NULL, 0);
        reason = strdup_printf("upgrade step %zu/%zu: %s", s + 1, p->n_steps, kind);
        what = strdup_printf("step %zu/%zu (%s %s)", s + 1, p->n_steps, view.plugin->name, kind);
        if (!reason || !what)
                return -ENOMEM;
        /* store_prepare raises the high-water mark before the revision can run. */
        k = write_and_gate(r,
                           &(step_request){ .component = st->component, .tree = next, .kind = journal_kind_of(st->kind),
                                            .reason = reason,
                                            .ex = { .binary = st->binary, .emulated = st->emulated,
                                                    .min_compat = st->min_compat },
                                            .progress = s + 1, .n_planned = p->n_steps },
                           &ok);
        if (k < 0)
                return k;
        return ok ? 0 : handle_failure(r, st->component, from, what, r->journal->n_steps);
}

int rollout_run(rollout *r, const plan *p) {
        for (size_t s = 0; s < p->n_steps; s++) {
                int k;

                if (r->interrupted && *r->interrupted)
                        return -EINTR;
                k = run_step(r, p, s);
                if (k < 0)
                        return k;
        }
        return 0;
}

/* ---- taking over an interrupted rollout */

/* The revision the journal says is live for a component, given the step that touched it
 * last and what the disk shows (which tells a swap that happened from one that did not). */
static unsigned expected_live(const journal_step *st, unsigned live) {
        switch (st->state) {
        case JOURNAL_STEP_WRITING:
        case JOURNAL_STEP_ABANDONED:
                return st->from;
        case JOURNAL_STEP_SWAPPING:
                return live == st->from ? st->from : st->to;
        default:
                return st->to;
        }
}

static const journal_step *last_step_of(const journal *j, const char *name) {
        const journal_step *found = NULL;

        for (size_t s = 0; s < j->n_steps; s++)
                if (streq(j->steps[s]->component, name))
                        found = j->steps[s];
        return found;
}

/* A step names a component whose manifest is gone (moved out of the directory, the usual
 * way to stop a static pod): nothing can be checked, restored or gated. Say what to put back. */
static int check_components_present(rollout *r, char **ret_error) {
        for (size_t s = 0; s < r->journal->n_steps; s++) {
                const char *name = r->journal->steps[s]->component;
                const journal_step *last = last_step_of(r->journal, name);
                _cleanup_free_ char *path = NULL, *alt = NULL;
                unsigned want;

                if (component_index(r, name) != SIZE_MAX)
                        continue;
                want = expected_live(last, last->from);
                if (last->state == JOURNAL_STEP_SWAPPING)
                        alt = strdup_printf(" (or revision %u, which was being swapped in)", last->to);
                path = journal_path(r->store);
                return set_error(ret_error, -EINVAL,
                                 "%s: the rollout changed %s, but no manifest of %s is in %s any more: put %s back "
                                 "there as %s revision %u%s (cplet's copy: %s/%s/%u.yaml), then run cplet resume or "
                                 "cplet abort again",
                                 path ?: JOURNAL_FILE, name, name, r->store->manifest_dir, last->manifest, name, want,
                                 alt ?: "", r->store->revisions_dir, name, want);
        }
        return 0;
}

/* The live revision of every component, as the disk shows it (0: matches none). */
static int read_live_revisions(rollout *r, char **ret_error) {
        for (size_t i = 0; i < r->node->n_components; i++) {
                const component *co = &r->node->components[i];
                _cleanup_(revision_list_done) revision_list l = {};
                _cleanup_free_ char *live = NULL;
                size_t size;
                int k;

                k = store_list(r->store, co->plugin->name, &l, ret_error);
                if (k >= 0)
                        k = store_read_live(r->store, co->file, &live, &size, ret_error);
                if (k < 0)
                        return k;
                r->live[i] = store_live_number(&l, live, size);
        }
        return 0;
}

/* Each component the journal touched must be live at the revision its last step says. */
static int check_live_against_journal(rollout *r, char **ret_error) {
        for (size_t i = 0; i < r->node->n_components; i++) {
                const char *name = name_of(r, i);
                const journal_step *last = last_step_of(r->journal, name);
                unsigned want;

                if (!last)
                        continue;
                want = expected_live(last, r->live[i]);
                if (r->live[i] != want)
                        return set_error(ret_error, -ESTALE,
                                         "the live manifest of %s is %s, but the rollout journal expects revision %u: "
                                         "it was changed outside cplet. Inspect it (cplet history, cplet diff %s %u) "
                                         "and put it back before resuming or aborting",
                                         name, r->live[i] ? "another revision" : "not a stored revision", want, name,
                                         want);
        }
        return 0;
}

/* A component the rollout has not touched yet, edited by hand meanwhile: its next step starts
 * from the edit, so the edit must be a revision a failure can restore. */
static int adopt_untouched(rollout *r, char **ret_error) {
        for (size_t i = 0; i < r->node->n_components; i++) {
                int k;

                if (r->live[i] > 0 || last_step_of(r->journal, name_of(r, i)))
                        continue;
                k = component_sync_live(r->store, &r->node->components[i], &r->live[i], ret_error);
                if (k < 0)
                        return k;
        }
        return 0;
}

/* The step caught mid-way is live: wait for it as if it had just been written. */
static int regate(rollout *r, size_t i, journal_step *st, char **ret_error) {
        _cleanup_(gate_result_done) gate_result result = {};
        _cleanup_free_ char *error = NULL;
        const char *kind = journal_kind_to_string(st->kind);
        size_t index = r->journal->n_steps;
        expected ex;
        int k;

        k = expected_of(r, i, tree_of(r, i), &ex, &error);
        if (k < 0)
                return set_error(ret_error, k, "%s", error ?: strerror(-k));
        emit(r, "waiting", index, 0, st->component, kind, st->to, "the interrupted step", 0);
        k = wait_at_gate(r, i, tree_of(r, i), &ex, swap_ticks_of(st), NULL, &result);
        if (k < 0)
                return k;
        st->state = result.ok ? JOURNAL_STEP_DONE : JOURNAL_STEP_FAILED;
        if (!result.ok && journal_set_string(&st->message, result.message ?: "failed") < 0)
                return -ENOMEM;
        k = save(r);
        if (k < 0)
                return k;
        if (result.ok) {
                emit(r, "done", index, 0, st->component, kind, st->to, NULL, 0);
                return 0;
        }
        set_error_msg(r, "%s revision %u: %s", st->component, st->to, result.message ?: "failed");
        if (!journal_kind_is_plan(st->kind))
                return -ENOTRECOVERABLE;
        return handle_failure(r, i, st->from, "the interrupted step", index);
}

/* Settles the last step: not swapped in → abandoned; a plan step swapped in → gated again
 * when `settle`, else "interrupted" (the unwind restores it); a restore or unwind swapped in
 * → gated again either way, since writing it again would only restart the component. */
static int settle_last_step(rollout *r, bool settle, char **ret_error) {
        journal_step *st = last_step(r);
        size_t i;

        if (!st)
                return 0;
        i = component_index(r, st->component);
        if (st->state == JOURNAL_STEP_WRITING || (st->state == JOURNAL_STEP_SWAPPING && r->live[i] == st->from)) {
                st->state = JOURNAL_STEP_ABANDONED;
                return save(r);
        }
        if (!journal_state_in_flight(st->state))
                return 0;
        if (!settle && journal_kind_is_plan(st->kind)) {
                st->state = JOURNAL_STEP_INTERRUPTED;
                return save(r);
        }
        return regate(r, i, st, ret_error);
}

/* A plan step journaled "failed" whose restore never completed (cplet died in between, or
 * the restore could not be made): restore it now. Returns 1 when the journal has a failed
 * plan step (restored now or before), 0 when none, or a negative errno. */
static int finish_failed_step(rollout *r, size_t *ret_failed) {
        const journal *j = r->journal;
        journal_step *st;
        size_t failed = SIZE_MAX;
        int k;

        for (size_t s = 0; s < j->n_steps; s++)
                if (j->steps[s]->state == JOURNAL_STEP_FAILED && journal_kind_is_plan(j->steps[s]->kind))
                        failed = s;
        if (failed == SIZE_MAX)
                return 0;
        *ret_failed = failed;
        st = j->steps[failed];
        if (finished(undoing_step(j, failed, JOURNAL_KIND_RESTORE)))
                return 1;
        emit(r, "restore", 0, 0, st->component, "restore", st->from, st->message, 0);
        k = restore_revision(r, component_index(r, st->component), st->from, JOURNAL_KIND_RESTORE,
                             "restore after failed step (finished after an interruption)", failed + 1);
        return k < 0 ? k : 1;
}

/* A failure that was not fully handled: the failed step goes back first. Resume then finishes
 * the failure by policy (the plan does not go on past a failed step); abort unwinds
 * everything anyway. */
static int finish_failure(rollout *r, bool settle) {
        const journal_step *st;
        size_t failed = 0;
        int k;

        k = finish_failed_step(r, &failed);
        if (k <= 0 || !settle)
                return k < 0 ? k : 0;
        if (r->options.unwind_on_failure) {
                k = rollout_unwind(r);
                if (k < 0)
                        return k;
        }
        st = r->journal->steps[failed];
        set_error_msg(r, "%s %s had failed (%s); it is restored%s", st->component, journal_kind_to_string(st->kind),
                      st->message ?: "?", r->options.unwind_on_failure ? " and the plan's earlier steps unwound" : "");
        return -EIO;
}

/* Everything that can refuse a take-over; reads only. */
static int check_journal_against_disk(rollout *r, char **ret_error) {
        int k;

        k = check_components_present(r, ret_error);
        if (k >= 0)
                k = read_live_revisions(r, ret_error);
        if (k >= 0)
                k = check_live_against_journal(r, ret_error);
        return k;
}

int rollout_check_journal(store *s, const node *n, journal *j, char **ret_error) {
        _cleanup_free_ unsigned *live = calloc(n->n_components + 1, sizeof(unsigned));
        rollout r = { .store = s, .node = n, .journal = j, .live = live };

        if (!live)
                return -ENOMEM;
        return check_journal_against_disk(&r, ret_error);
}

int rollout_take_over(rollout *r, journal *j, bool settle, char **ret_error) {
        int k;

        journal_free(r->journal);
        r->journal = j;
        /* Everything that can refuse comes first: a refusal changes nothing. */
        k = check_journal_against_disk(r, ret_error);
        if (k >= 0)
                k = adopt_untouched(r, ret_error);
        if (k >= 0)
                k = settle_last_step(r, settle, ret_error);
        if (k < 0)
                return k;
        return finish_failure(r, settle);
}

/* ---- closing the journal */

/* Whether the plan's completed steps are still to be unwound: an unwind began (or policy
 * asks for one after a failure) and a completed step after the point it stops at was
 * neither unwound nor had its unwind run to the end. */
static bool unwind_pending(const rollout *r) {
        const journal *j = r->journal;
        bool failed = false;

        for (size_t s = 0; s < j->n_steps; s++)
                failed = failed || (j->steps[s]->state == JOURNAL_STEP_FAILED && journal_kind_is_plan(j->steps[s]->kind));
        if (j->phase != JOURNAL_UNWINDING && !(failed && r->options.unwind_on_failure))
                return false;
        for (size_t s = j->unwind_stopped_at; s < j->n_steps; s++) {
                const journal_step *st = j->steps[s];

                if (journal_kind_is_plan(st->kind) && st->state == JOURNAL_STEP_DONE &&
                    !finished(undoing_step(j, s, JOURNAL_KIND_UNWIND)))
                        return true;
        }
        return false;
}

bool rollout_may_close(const rollout *r) {
        const journal *j = r->journal;
        const journal_step *last;

        if (!j)
                return true;
        last = last_step(r);
        if (last && journal_state_in_flight(last->state))
                return false;
        for (size_t s = 0; s < j->n_steps; s++) {
                const journal_step *st = j->steps[s];

                if (!journal_kind_is_plan(st->kind))
                        continue;
                if (st->state == JOURNAL_STEP_FAILED && !finished(undoing_step(j, s, JOURNAL_KIND_RESTORE)))
                        return false;
                /* (A min-compatibility raise is where an unwind stops: it stays as it is.) */
                if (st->state == JOURNAL_STEP_INTERRUPTED && s + 1 != j->unwind_stopped_at &&
                    !finished(undoing_step(j, s, JOURNAL_KIND_UNWIND)))
                        return false;
        }
        return !unwind_pending(r);
}

int rollout_finish(rollout *r, journal_phase phase) {
        int k;

        if (!rollout_may_close(r))
                return -EBUSY;
        /* Nothing may need restoring any more: retention applies again. */
        for (size_t i = 0; i < r->node->n_components; i++)
                if (r->live[i])
                        store_prune(r->store, r->node->components[i].plugin->name, r->live[i]);
        r->journal->phase = phase;
        k = journal_set_string(&r->journal->message, r->error);
        return k < 0 ? k : save(r);
}
