/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "fs-util.h"
#include "journal.h"
#include "plugin-loader.h"
#include "macro.h"
#include "version.h"

/* Revision numbers are bounded like the store's. */
#define JOURNAL_REVISION_MAX 999999999u
/* Identifiers and timestamps; messages are bounded by the file size only. */
#define JOURNAL_TEXT_MAX 256

static const char *const phase_names[_JOURNAL_PHASE_MAX] = {
        [JOURNAL_RUNNING] = "running",   [JOURNAL_UNWINDING] = "unwinding", [JOURNAL_DONE] = "done",
        [JOURNAL_FAILED] = "failed",     [JOURNAL_ABORTED] = "aborted",
};

static const char *const state_names[_JOURNAL_STATE_MAX] = {
        [JOURNAL_STEP_WRITING] = "writing",         [JOURNAL_STEP_SWAPPING] = "swapping",
        [JOURNAL_STEP_WAITING] = "waiting",         [JOURNAL_STEP_DONE] = "done",
        [JOURNAL_STEP_FAILED] = "failed",           [JOURNAL_STEP_ABANDONED] = "abandoned",
        [JOURNAL_STEP_INTERRUPTED] = "interrupted", [JOURNAL_STEP_UNWOUND] = "unwound",
};

static const char *const kind_names[_JOURNAL_KIND_MAX] = {
        [JOURNAL_KIND_BINARY] = "binary",   [JOURNAL_KIND_EMULATION] = "emulation",
        [JOURNAL_KIND_MIN_COMPAT] = "min-compatibility", [JOURNAL_KIND_ROLLBACK] = "rollback",
        [JOURNAL_KIND_FLAGS] = "flags",     [JOURNAL_KIND_RESTORE] = "restore",
        [JOURNAL_KIND_UNWIND] = "unwind",
};

static size_t lookup(const char *const *names, size_t n, const char *s) {
        for (size_t i = 0; s && i < n; i++)
                if (streq(names[i], s))
                        return i;
        return n;
}

const char *journal_phase_to_string(journal_phase p) {
        return p < _JOURNAL_PHASE_MAX ? phase_names[p] : "?";
}
journal_phase journal_phase_from_string(const char *s) {
        return (journal_phase) lookup(phase_names, _JOURNAL_PHASE_MAX, s);
}
const char *journal_state_to_string(journal_state s) {
        return s < _JOURNAL_STATE_MAX ? state_names[s] : "?";
}
journal_state journal_state_from_string(const char *s) {
        return (journal_state) lookup(state_names, _JOURNAL_STATE_MAX, s);
}
const char *journal_kind_to_string(journal_kind k) {
        return k < _JOURNAL_KIND_MAX ? kind_names[k] : "?";
}
journal_kind journal_kind_from_string(const char *s) {
        return (journal_kind) lookup(kind_names, _JOURNAL_KIND_MAX, s);
}

static void step_free(journal_step *st) {
        if (!st)
                return;
        free(st->component);
        free(st->manifest);
        free(st->binary_version);
        free(st->emulated_version);
        free(st->min_compat_version);
        free(st->message);
        free(st->boot_id);
        free(st);
}

journal *journal_free(journal *j) {
        if (!j)
                return NULL;
        free(j->plan_id);
        free(j->command);
        free(j->started);
        free(j->updated);
        free(j->target.binary_version);
        free(j->target.emulated_version);
        free(j->target.min_compat_version);
        free(j->target.image_repository);
        for (size_t i = 0; i < j->target.n_images; i++) {
                free(j->target.images[i].component);
                free(j->target.images[i].image);
        }
        free(j->target.images);
        strv_free(j->target.components);
        strv_free(j->target.drop_removed);
        free(j->message);
        for (size_t i = 0; i < j->n_steps; i++)
                step_free(j->steps[i]);
        free(j->steps);
        free(j);
        return NULL;
}

int journal_set_string(char **field, const char *s) {
        char *copy = NULL;

        if (s) {
                copy = strdup(s);
                if (!copy)
                        return -ENOMEM;
        }
        free(*field);
        *field = copy;
        return 0;
}

/* strdup that keeps NULL; sets *oom when a copy fails. */
static char *dup_keep_null(const char *s, bool *oom) {
        char *c;

        if (!s)
                return NULL;
        c = strdup(s);
        if (!c)
                *oom = true;
        return c;
}

static int append(journal *j, journal_step *st) {
        journal_step **grown = realloc(j->steps, (j->n_steps + 1) * sizeof(journal_step *));

        if (!grown)
                return -ENOMEM;
        j->steps = grown;
        j->steps[j->n_steps++] = st;
        return 0;
}

journal_step *journal_add_step(journal *j, const journal_step *step) {
        journal_step *st = calloc(1, sizeof(*st));
        bool oom = false;

        if (!st)
                return NULL;
        *st = *step;
        st->component = dup_keep_null(step->component, &oom);
        st->manifest = dup_keep_null(step->manifest, &oom);
        st->binary_version = dup_keep_null(step->binary_version, &oom);
        st->emulated_version = dup_keep_null(step->emulated_version, &oom);
        st->min_compat_version = dup_keep_null(step->min_compat_version, &oom);
        st->message = dup_keep_null(step->message, &oom);
        st->boot_id = dup_keep_null(step->boot_id, &oom);
        if (oom || append(j, st) < 0) {
                step_free(st);
                return NULL;
        }
        return st;
}

bool journal_in_progress(const journal *j) {
        return j && (j->phase == JOURNAL_RUNNING || j->phase == JOURNAL_UNWINDING);
}

char *journal_path(const store *s) {
        return strdup_printf("%s/%s/%s", streq(s->root, "/") ? "" : s->root, STORE_STATE_DIR, JOURNAL_FILE);
}

/* ---- validation helpers: each refuses with a sentence naming the file and the field */

typedef struct parser {
        const char *display;
        char **ret_error;
        char where[64]; /* "steps[2]." while a step is read */
} parser;

static int invalid(parser *p, const char *field, const char *fmt, ...) _printf_(3, 4);
static int invalid(parser *p, const char *field, const char *fmt, ...) {
        _cleanup_free_ char *why = NULL;
        va_list ap;

        va_start(ap, fmt);
        why = strdup_vprintf(fmt, ap);
        va_end(ap);
        if (!*field && *p->where) /* the object itself: "steps[2]", not "steps[2]." */
                return set_error(p->ret_error, -EINVAL, "%s: %.*s: %s", p->display, (int) strlen(p->where) - 1,
                                 p->where, why ?: "invalid");
        if (!*field)
                return set_error(p->ret_error, -EINVAL, "%s: %s", p->display, why ?: "invalid");
        return set_error(p->ret_error, -EINVAL, "%s: %s%s: %s", p->display, p->where, field, why ?: "invalid");
}

static bool printable(const char *s) {
        for (; *s; s++)
                if ((unsigned char) *s < 0x20 || *s == 0x7f)
                        return false;
        return true;
}

/* A string member: absent or null allowed when `optional`. *ret NULL then. (jansson refuses
 * \u0000 in strings, so C never cuts one short.) */
static int get_string(parser *p, json_t *o, const char *field, bool optional, size_t max, char **ret) {
        json_t *v = json_object_get(o, field);
        const char *s;

        *ret = NULL;
        if (!v || json_is_null(v)) {
                if (optional)
                        return 0;
                return invalid(p, field, "missing");
        }
        if (!json_is_string(v))
                return invalid(p, field, "expected a string");
        s = json_string_value(v);
        if (max > 0 && (strlen(s) > max || !printable(s)))
                return invalid(p, field, "expected a short printable string");
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

static int get_uint(parser *p, json_t *o, const char *field, bool optional, uint64_t min, uint64_t max,
                    uint64_t *ret) {
        json_t *v = json_object_get(o, field);
        json_int_t n;

        *ret = 0;
        if (!v) {
                if (optional)
                        return 0;
                return invalid(p, field, "missing");
        }
        if (!json_is_integer(v))
                return invalid(p, field, "expected an integer");
        n = json_integer_value(v);
        if (n < 0 || (uint64_t) n < min || (uint64_t) n > max)
                return invalid(p, field, "%lld is out of range (%llu..%llu)", (long long) n,
                               (unsigned long long) min, (unsigned long long) max);
        *ret = (uint64_t) n;
        return 0;
}

/* Refuses members other than `known` (NULL-terminated): a field cplet does not know is a file
 * cplet did not write. */
static int check_members(parser *p, json_t *o, const char *const *known) {
        const char *key;
        json_t *v;

        json_object_foreach(o, key, v) {
                bool found = false;

                for (const char *const *k = known; *k && !found; k++)
                        found = streq(*k, key);
                if (!found)
                        return invalid(p, key, "unknown field");
        }
        return 0;
}

/* The journal names manifests as plugins do, and only printable ones (it is shown to people). */
static bool valid_file_name(const char *s) {
        return plugin_file_name_valid(s) && printable(s);
}

static int get_enum(parser *p, json_t *o, const char *field, const char *const *names, size_t n, size_t *ret) {
        _cleanup_free_ char *s = NULL;
        int r;

        r = get_string(p, o, field, false, JOURNAL_TEXT_MAX, &s);
        if (r < 0)
                return r;
        *ret = lookup(names, n, s);
        if (*ret == n)
                return invalid(p, field, "unknown value \"%s\"", s);
        return 0;
}

static int get_versions(parser *p, json_t *o, journal_step *st) {
        kversion b;
        kminor e, m;
        int r;

        r = get_string(p, o, "binaryVersion", false, JOURNAL_TEXT_MAX, &st->binary_version);
        if (r >= 0 && kversion_parse(st->binary_version, &b, NULL) < 0)
                r = invalid(p, "binaryVersion", "\"%s\" is not a version", st->binary_version);
        if (r >= 0)
                r = get_string(p, o, "emulatedVersion", false, JOURNAL_TEXT_MAX, &st->emulated_version);
        if (r >= 0 && kminor_parse(st->emulated_version, &e, NULL) < 0)
                r = invalid(p, "emulatedVersion", "\"%s\" is not a major.minor version", st->emulated_version);
        if (r >= 0)
                r = get_string(p, o, "minCompatibilityVersion", false, JOURNAL_TEXT_MAX, &st->min_compat_version);
        if (r >= 0 && kminor_parse(st->min_compat_version, &m, NULL) < 0)
                r = invalid(p, "minCompatibilityVersion", "\"%s\" is not a major.minor version",
                            st->min_compat_version);
        return r;
}

static int get_names(parser *p, json_t *o, journal_step *st) {
        int r;

        r = get_string(p, o, "component", false, JOURNAL_TEXT_MAX, &st->component);
        if (r >= 0 && !plugin_name_valid(st->component))
                r = invalid(p, "component", "\"%s\" is not a component name ([a-z0-9-], at most 63)", st->component);
        if (r >= 0)
                r = get_string(p, o, "manifest", false, JOURNAL_TEXT_MAX, &st->manifest);
        if (r >= 0 && !valid_file_name(st->manifest))
                r = invalid(p, "manifest", "\"%s\" is not a manifest file name", st->manifest);
        return r;
}

static int get_revisions(parser *p, json_t *o, journal_step *st) {
        uint64_t from, to, undoes;
        int r;

        r = get_uint(p, o, "from", false, 1, JOURNAL_REVISION_MAX, &from);
        if (r >= 0)
                r = get_uint(p, o, "to", false, 0, JOURNAL_REVISION_MAX, &to);
        if (r >= 0)
                r = get_uint(p, o, "swapTicks", true, 0, INT64_MAX, &st->swap_ticks);
        if (r >= 0)
                r = get_uint(p, o, "undoes", true, 1, JOURNAL_REVISION_MAX, &undoes);
        if (r < 0)
                return r;
        st->from = (unsigned) from;
        st->to = (unsigned) to;
        st->undoes = (size_t) undoes;
        /* A new revision is numbered after every existing one, the replaced one included. */
        if (st->to != 0 && st->to <= st->from)
                return invalid(p, "to", "revision %u does not come after from (%u)", st->to, st->from);
        return 0;
}

static int parse_step(parser *p, json_t *o, size_t index, journal_step *st) {
        static const char *const known[] = { "component", "manifest", "kind", "from", "to", "state",
                                             "binaryVersion", "emulatedVersion", "minCompatibilityVersion",
                                             "message", "swapTicks", "bootId", "undoes", NULL };
        size_t kind, state;
        int r;

        snprintf(p->where, sizeof(p->where), "steps[%zu].", index);
        if (!json_is_object(o))
                return invalid(p, "", "expected an object");
        r = check_members(p, o, known);
        if (r >= 0)
                r = get_names(p, o, st);
        if (r >= 0)
                r = get_enum(p, o, "kind", kind_names, _JOURNAL_KIND_MAX, &kind);
        if (r >= 0)
                r = get_enum(p, o, "state", state_names, _JOURNAL_STATE_MAX, &state);
        if (r >= 0)
                r = get_revisions(p, o, st);
        if (r >= 0)
                r = get_versions(p, o, st);
        if (r >= 0)
                r = get_string(p, o, "message", true, 0, &st->message);
        if (r >= 0)
                r = get_string(p, o, "bootId", true, JOURNAL_TEXT_MAX, &st->boot_id);
        if (r < 0)
                return r;
        st->kind = (journal_kind) kind;
        st->state = (journal_state) state;
        if (st->to == 0 && st->state != JOURNAL_STEP_WRITING && st->state != JOURNAL_STEP_ABANDONED)
                return invalid(p, "to", "0 in state %s, which needs the revision written", state_names[state]);
        if (st->state == JOURNAL_STEP_UNWOUND && !journal_kind_is_plan(st->kind))
                return invalid(p, "state", "unwound, but a %s step is never unwound", kind_names[kind]);
        return 0;
}

/* What relates steps to each other: only the last may be in flight; a restore or unwind
 * undoes an earlier plan step of the same component. */
static int check_step_links(parser *p, const journal *j) {
        for (size_t i = 0; i < j->n_steps; i++) {
                const journal_step *st = j->steps[i];

                snprintf(p->where, sizeof(p->where), "steps[%zu].", i);
                if (journal_state_in_flight(st->state) && i + 1 < j->n_steps)
                        return invalid(p, "state", "%s, but later steps follow (only the last step can be in flight)",
                                       state_names[st->state]);
                if (st->undoes == 0)
                        continue;
                if (journal_kind_is_plan(st->kind))
                        return invalid(p, "undoes", "only restore and unwind steps undo another step");
                if (st->undoes > i || !journal_kind_is_plan(j->steps[st->undoes - 1]->kind) ||
                    !streq(j->steps[st->undoes - 1]->component, st->component))
                        return invalid(p, "undoes", "%zu is not an earlier plan step of %s", st->undoes,
                                       st->component);
        }
        p->where[0] = 0;
        /* An unwind stops at a min-compatibility raise, or at any plan step whose previous
         * revision runs below the min-compatibility high-water mark. */
        if (j->unwind_stopped_at > 0 && (j->unwind_stopped_at > j->n_steps ||
                                         !journal_kind_is_plan(j->steps[j->unwind_stopped_at - 1]->kind)))
                return invalid(p, "unwindStoppedAt", "%zu is not the index of a plan step",
                               j->unwind_stopped_at);
        return 0;
}

static int parse_steps(parser *p, json_t *steps, journal *j) {
        json_t *o;
        size_t i;
        int r;

        if (!json_is_array(steps))
                return invalid(p, "steps", "expected a list");
        json_array_foreach(steps, i, o) {
                journal_step *st = calloc(1, sizeof(*st));

                if (!st)
                        return -ENOMEM;
                r = append(j, st);
                if (r < 0) {
                        step_free(st);
                        return r;
                }
                r = parse_step(p, o, i, st);
                if (r < 0)
                        return r;
        }
        p->where[0] = 0;
        return 0;
}

/* "images": {"kube-apiserver": "registry.k8s.io/kube-apiserver:v1.35.0@sha256:...", ...} */
static int parse_images(parser *p, json_t *images, journal_target *ret) {
        const char *name;
        json_t *v;

        if (!images)
                return 0;
        if (!json_is_object(images) || json_object_size(images) > 16)
                return invalid(p, "images", "expected an object of at most 16 component images");
        ret->images = calloc(json_object_size(images) + 1, sizeof(*ret->images));
        if (!ret->images)
                return -ENOMEM;
        json_object_foreach(images, name, v) {
                const char *image = json_string_value(v);

                if (strlen(name) == 0 || strlen(name) > 63 || !image || strlen(image) == 0 ||
                    strlen(image) > JOURNAL_TEXT_MAX || strpbrk(image, " \t\r\n"))
                        return invalid(p, "images", "\"%.63s\" is not a component's image", name);
                ret->images[ret->n_images].component = strdup(name);
                ret->images[ret->n_images].image = strdup(image);
                if (!ret->images[ret->n_images].component || !ret->images[ret->n_images].image)
                        return -ENOMEM;
                ret->n_images++;
        }
        return 0;
}

/* "components": ["kube-apiserver"]: the components the target moves (absent or null: all). */
static int parse_components(parser *p, json_t *components, journal_target *ret) {
        json_t *v;
        size_t i;

        if (!components || json_is_null(components))
                return 0;
        if (!json_is_array(components) || json_array_size(components) == 0 ||
            json_array_size(components) > 16)
                return invalid(p, "components", "expected a list of 1 to 16 component names");
        ret->components = calloc(json_array_size(components) + 1, sizeof(char *));
        if (!ret->components)
                return -ENOMEM;
        json_array_foreach(components, i, v) {
                const char *name = json_string_value(v);

                if (!name || !plugin_name_valid(name))
                        return invalid(p, "components",
                                       "item %zu is not a component name ([a-z0-9-], at most 63)", i);
                for (size_t k = 0; k < i; k++)
                        if (streq(ret->components[k], name))
                                return invalid(p, "components", "%s named twice", name);
                ret->components[i] = strdup(name);
                if (!ret->components[i])
                        return -ENOMEM;
        }
        return 0;
}

/* "dropRemoved": ["cloud-provider"]: what the plan's steps drop (preflight_drop entries). */
static int parse_drop_removed(parser *p, json_t *list, journal_target *ret) {
        json_t *v;
        size_t i;

        if (!list || json_is_null(list))
                return 0;
        if (!json_is_array(list) || json_array_size(list) == 0 || json_array_size(list) > 64)
                return invalid(p, "dropRemoved", "expected a list of 1 to 64 names");
        ret->drop_removed = calloc(json_array_size(list) + 1, sizeof(char *));
        if (!ret->drop_removed)
                return -ENOMEM;
        json_array_foreach(list, i, v) {
                const char *name = json_string_value(v);

                if (!name || !*name || strlen(name) > 256 || strpbrk(name, " \t\n,="))
                        return invalid(p, "dropRemoved", "item %zu is not a flag, feature gate or plugin name", i);
                ret->drop_removed[i] = strdup(name);
                if (!ret->drop_removed[i])
                        return -ENOMEM;
        }
        return 0;
}

static int parse_target(parser *p, json_t *t, journal_target *ret) {
        static const char *const known[] = { "binaryVersion", "emulatedVersion", "minCompatibilityVersion",
                                             "imageRepository", "images", "components", "dropRemoved", NULL };
        kversion b;
        kminor m;
        int r;

        snprintf(p->where, sizeof(p->where), "target.");
        if (!json_is_object(t))
                return invalid(p, "", "expected an object");
        r = check_members(p, t, known);
        if (r >= 0)
                r = get_string(p, t, "binaryVersion", true, JOURNAL_TEXT_MAX, &ret->binary_version);
        if (r >= 0 && ret->binary_version && kversion_parse(ret->binary_version, &b, NULL) < 0)
                r = invalid(p, "binaryVersion", "\"%s\" is not a version", ret->binary_version);
        if (r >= 0)
                r = get_string(p, t, "emulatedVersion", true, JOURNAL_TEXT_MAX, &ret->emulated_version);
        if (r >= 0 && ret->emulated_version && kminor_parse(ret->emulated_version, &m, NULL) < 0)
                r = invalid(p, "emulatedVersion", "\"%s\" is not a major.minor version", ret->emulated_version);
        if (r >= 0)
                r = get_string(p, t, "minCompatibilityVersion", true, JOURNAL_TEXT_MAX, &ret->min_compat_version);
        if (r >= 0 && ret->min_compat_version && kminor_parse(ret->min_compat_version, &m, NULL) < 0)
                r = invalid(p, "minCompatibilityVersion", "\"%s\" is not a major.minor version",
                            ret->min_compat_version);
        if (r >= 0)
                r = get_string(p, t, "imageRepository", true, JOURNAL_TEXT_MAX, &ret->image_repository);
        if (r >= 0 && ret->image_repository && strpbrk(ret->image_repository, " \t"))
                r = invalid(p, "imageRepository", "\"%s\" is not an image repository", ret->image_repository);
        if (r >= 0)
                r = parse_images(p, json_object_get(t, "images"), ret);
        if (r >= 0)
                r = parse_components(p, json_object_get(t, "components"), ret);
        if (r >= 0)
                r = parse_drop_removed(p, json_object_get(t, "dropRemoved"), ret);
        if (r >= 0 && !ret->binary_version && (ret->emulated_version || ret->min_compat_version ||
                                               ret->components))
                r = invalid(p, "binaryVersion", "missing while other target versions are set");
        p->where[0] = 0;
        return r;
}

static int parse_options(parser *p, json_t *o, rollout_options *ret) {
        static const char *const known[] = { "stableForUsec", "stepTimeoutUsec", "onFailure", NULL };
        _cleanup_free_ char *on_failure = NULL;
        int r;

        snprintf(p->where, sizeof(p->where), "options.");
        if (!json_is_object(o))
                return invalid(p, "", "expected an object");
        r = check_members(p, o, known);
        if (r >= 0)
                r = get_uint(p, o, "stableForUsec", false, 0, INT64_MAX, &ret->stable_usec);
        if (r >= 0)
                r = get_uint(p, o, "stepTimeoutUsec", false, 1, INT64_MAX, &ret->step_timeout_usec);
        if (r >= 0)
                r = get_string(p, o, "onFailure", false, JOURNAL_TEXT_MAX, &on_failure);
        if (r >= 0 && !streq(on_failure, "rollback") && !streq(on_failure, "stop"))
                r = invalid(p, "onFailure", "unknown value \"%s\" (expected rollback or stop)", on_failure);
        if (r >= 0)
                ret->unwind_on_failure = streq(on_failure, "rollback");
        p->where[0] = 0;
        return r;
}

static int parse_top(parser *p, json_t *o, journal *j) {
        static const char *const known[] = { "planId",  "command", "started", "target",  "options",
                                             "phase",   "message", "steps",   "updated", "unwindStoppedAt",
                                             NULL };
        uint64_t stopped;
        size_t phase;
        int r;

        if (!json_is_object(o))
                return invalid(p, "", "not a rollout journal (expected a JSON object)");
        r = check_members(p, o, known);
        if (r >= 0)
                r = get_string(p, o, "planId", false, JOURNAL_TEXT_MAX, &j->plan_id);
        if (r >= 0)
                r = get_string(p, o, "command", false, JOURNAL_TEXT_MAX, &j->command);
        if (r >= 0)
                r = get_string(p, o, "started", false, JOURNAL_TEXT_MAX, &j->started);
        if (r >= 0)
                r = get_string(p, o, "updated", true, JOURNAL_TEXT_MAX, &j->updated);
        if (r >= 0)
                r = parse_target(p, json_object_get(o, "target"), &j->target);
        if (r >= 0)
                r = parse_options(p, json_object_get(o, "options"), &j->options);
        if (r >= 0)
                r = get_enum(p, o, "phase", phase_names, _JOURNAL_PHASE_MAX, &phase);
        if (r >= 0)
                r = get_string(p, o, "message", true, 0, &j->message);
        if (r >= 0)
                r = parse_steps(p, json_object_get(o, "steps"), j);
        if (r >= 0)
                r = get_uint(p, o, "unwindStoppedAt", true, 1, JOURNAL_REVISION_MAX, &stopped);
        if (r < 0)
                return r;
        j->phase = (journal_phase) phase;
        j->unwind_stopped_at = (size_t) stopped;
        return check_step_links(p, j);
}

int journal_parse(const char *data, size_t size, const char *display, journal **ret, char **ret_error) {
        _cleanup_(journal_freep) journal *j = NULL;
        json_auto_t *o = NULL;
        json_error_t e;
        parser p = { .display = display, .ret_error = ret_error };
        int r;

        if (size > JOURNAL_SIZE_MAX)
                return set_error(ret_error, -EINVAL, "%s: larger than %u MiB: not a journal cplet wrote", display,
                                 JOURNAL_SIZE_MAX / (1024 * 1024));
        o = json_loadb(data, size, JSON_REJECT_DUPLICATES, &e);
        if (!o)
                return set_error(ret_error, -EINVAL, "%s:%d:%d: not a rollout journal: %s", display, e.line, e.column,
                                 e.text);
        j = calloc(1, sizeof(*j));
        if (!j)
                return -ENOMEM;
        r = parse_top(&p, o, j);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(j);
        return 0;
}

/* ---- serialisation */

static json_t *string_or_null(const char *s) {
        return s ? json_string(s) : json_null();
}

static json_t *step_to_json(const journal_step *st) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:s, s:s, s:o}", "component", st->component,
                              "manifest", st->manifest, "kind", journal_kind_to_string(st->kind), "from",
                              (json_int_t) st->from, "to", (json_int_t) st->to, "state",
                              journal_state_to_string(st->state), "binaryVersion", st->binary_version,
                              "emulatedVersion", st->emulated_version, "minCompatibilityVersion",
                              st->min_compat_version, "message", string_or_null(st->message));
        bool oom = !o;

        if (o && (st->swap_ticks > 0 || st->boot_id)) {
                oom = oom || json_object_set_new(o, "swapTicks", json_integer((json_int_t) st->swap_ticks)) < 0;
                oom = oom || json_object_set_new(o, "bootId", string_or_null(st->boot_id)) < 0;
        }
        if (o && st->undoes > 0)
                oom = oom || json_object_set_new(o, "undoes", json_integer((json_int_t) st->undoes)) < 0;
        if (oom) {
                json_decref(o);
                return NULL;
        }
        return o;
}

json_t *journal_to_json(const journal *j) {
        json_auto_t *o = NULL;
        json_t *steps;

        o = json_pack("{s:s, s:s, s:s, s:{s:o, s:o, s:o, s:o}, s:{s:I, s:I, s:s}, s:s, s:o, s:[]}", "planId",
                      j->plan_id, "command", j->command, "started", j->started, "target", "binaryVersion",
                      string_or_null(j->target.binary_version), "emulatedVersion",
                      string_or_null(j->target.emulated_version), "minCompatibilityVersion",
                      string_or_null(j->target.min_compat_version), "imageRepository",
                      string_or_null(j->target.image_repository), "options", "stableForUsec",
                      (json_int_t) j->options.stable_usec, "stepTimeoutUsec",
                      (json_int_t) j->options.step_timeout_usec, "onFailure",
                      j->options.unwind_on_failure ? "rollback" : "stop", "phase", journal_phase_to_string(j->phase),
                      "message", string_or_null(j->message), "steps");
        if (!o)
                return NULL;
        if (j->target.n_images > 0) {
                json_t *images = json_object();

                if (!images || json_object_set_new(json_object_get(o, "target"), "images", images) < 0)
                        return NULL;
                for (size_t i = 0; i < j->target.n_images; i++)
                        if (json_object_set_new(images, j->target.images[i].component,
                                                json_string(j->target.images[i].image)) < 0)
                                return NULL;
        }
        if (j->target.components) {
                json_t *components = json_array();

                if (!components ||
                    json_object_set_new(json_object_get(o, "target"), "components", components) < 0)
                        return NULL;
                for (char **c = j->target.components; *c; c++)
                        if (json_array_append_new(components, json_string(*c)) < 0)
                                return NULL;
        }
        if (j->target.drop_removed) {
                json_t *drop = json_array();

                if (!drop || json_object_set_new(json_object_get(o, "target"), "dropRemoved", drop) < 0)
                        return NULL;
                for (char **d = j->target.drop_removed; *d; d++)
                        if (json_array_append_new(drop, json_string(*d)) < 0)
                                return NULL;
        }
        steps = json_object_get(o, "steps");
        for (size_t i = 0; i < j->n_steps; i++)
                if (json_array_append_new(steps, step_to_json(j->steps[i])) < 0)
                        return NULL;
        if (j->updated && json_object_set_new(o, "updated", json_string(j->updated)) < 0)
                return NULL;
        if (j->unwind_stopped_at > 0 &&
            json_object_set_new(o, "unwindStoppedAt", json_integer((json_int_t) j->unwind_stopped_at)) < 0)
                return NULL;
        return TAKE_PTR(o);
}

static bool str_eq(const char *a, const char *b) {
        return a == b || (a && b && streq(a, b));
}

static bool step_equal(const journal_step *a, const journal_step *b) {
        return str_eq(a->component, b->component) && str_eq(a->manifest, b->manifest) && a->kind == b->kind &&
               a->from == b->from && a->to == b->to && a->state == b->state &&
               str_eq(a->binary_version, b->binary_version) && str_eq(a->emulated_version, b->emulated_version) &&
               str_eq(a->min_compat_version, b->min_compat_version) && str_eq(a->message, b->message) &&
               a->swap_ticks == b->swap_ticks && str_eq(a->boot_id, b->boot_id) && a->undoes == b->undoes;
}

bool journal_equal(const journal *a, const journal *b) {
        if (!str_eq(a->plan_id, b->plan_id) || !str_eq(a->command, b->command) || !str_eq(a->started, b->started) ||
            !str_eq(a->updated, b->updated) || !str_eq(a->target.binary_version, b->target.binary_version) ||
            !str_eq(a->target.emulated_version, b->target.emulated_version) ||
            !str_eq(a->target.min_compat_version, b->target.min_compat_version) ||
            !str_eq(a->target.image_repository, b->target.image_repository) ||
            a->target.n_images != b->target.n_images ||
            a->options.stable_usec != b->options.stable_usec ||
            a->options.step_timeout_usec != b->options.step_timeout_usec ||
            a->options.unwind_on_failure != b->options.unwind_on_failure || a->phase != b->phase ||
            !str_eq(a->message, b->message) || a->n_steps != b->n_steps ||
            a->unwind_stopped_at != b->unwind_stopped_at)
                return false;
        for (size_t i = 0; i < a->target.n_images; i++)
                if (!str_eq(a->target.images[i].component, b->target.images[i].component) ||
                    !str_eq(a->target.images[i].image, b->target.images[i].image))
                        return false;
        if (!a->target.components != !b->target.components)
                return false;
        for (size_t i = 0; a->target.components && (a->target.components[i] || b->target.components[i]); i++)
                if (!str_eq(a->target.components[i], b->target.components[i]))
                        return false;
        if (!a->target.drop_removed != !b->target.drop_removed)
                return false;
        for (size_t i = 0; a->target.drop_removed && (a->target.drop_removed[i] || b->target.drop_removed[i]); i++)
                if (!str_eq(a->target.drop_removed[i], b->target.drop_removed[i]))
                        return false;
        for (size_t i = 0; i < a->n_steps; i++)
                if (!step_equal(a->steps[i], b->steps[i]))
                        return false;
        return true;
}

int journal_new(const char *plan_id, const char *command, const char *started, json_t *target,
                const rollout_options *o, journal **ret, char **ret_error) {
        _cleanup_(journal_freep) journal *j = calloc(1, sizeof(journal));
        parser p = { .display = "the rollout's target", .ret_error = ret_error };
        int r;

        if (!j)
                return -ENOMEM;
        j->plan_id = strdup(plan_id);
        j->command = strdup(command);
        j->started = strdup(started);
        if (!j->plan_id || !j->command || !j->started)
                return -ENOMEM;
        if (target) {
                r = parse_target(&p, target, &j->target);
                if (r < 0)
                        return r;
        }
        j->options = *o;
        j->phase = JOURNAL_RUNNING;
        *ret = TAKE_PTR(j);
        return 0;
}

/* ---- the file */

static bool revision_was_live(const journal_step *st) {
        return st->to > 0 && st->state != JOURNAL_STEP_WRITING && st->state != JOURNAL_STEP_SWAPPING &&
               st->state != JOURNAL_STEP_ABANDONED;
}

int journal_check_store(const journal *j, store *s, const char *display, char **ret_error) {
        /* A finished journal may name revisions retention has pruned since. */
        if (!journal_in_progress(j))
                return 0;
        for (size_t i = 0; i < j->n_steps; i++) {
                const journal_step *st = j->steps[i];
                _cleanup_(revision_list_done) revision_list l = {};
                unsigned missing = 0;
                int r;

                r = store_list(s, st->component, &l, ret_error);
                if (r < 0)
                        return r;
                if (!revision_list_find(&l, st->from))
                        missing = st->from;
                else if (revision_was_live(st) && !revision_list_find(&l, st->to))
                        missing = st->to;
                if (missing)
                        return set_error(ret_error, -EINVAL,
                                         "%s: steps[%zu] (%s %s) names revision %u of %s, which is not in %s/%s",
                                         display, i, st->component, journal_kind_to_string(st->kind), missing,
                                         st->component, s->revisions_dir, st->component);
        }
        return 0;
}

int journal_load(store *s, journal **ret, char **ret_error) {
        _cleanup_free_ char *data = NULL, *display = NULL, *error = NULL;
        _cleanup_(journal_freep) journal *j = NULL;
        size_t size;
        int r;

        if (s->state_fd < 0)
                return -ENOENT;
        display = journal_path(s);
        if (!display)
                return -ENOMEM;
        r = read_file_at(s->state_fd, JOURNAL_FILE, JOURNAL_SIZE_MAX, &data, &size);
        if (r == -ENOENT)
                return r;
        if (r == -E2BIG)
                r = set_error(&error, -EINVAL, "%s: larger than %u MiB: not a journal cplet wrote", display,
                              JOURNAL_SIZE_MAX / (1024 * 1024));
        else if (r < 0)
                r = set_error(&error, r, "%s: %s", display,
                              r == -ELOOP    ? "is a symbolic link; refusing to follow it"
                              : r == -EBADFD ? "not a regular file"
                                             : strerror(-r));
        if (r >= 0)
                r = journal_parse(data, size, display, &j, &error);
        if (r >= 0)
                r = journal_check_store(j, s, display, &error);
        if (r < 0)
                /* Never "no rollout": the file may be all that says where an interrupted
                 * rollout stood. */
                return set_error(ret_error, r,
                                 "%s. cplet does not act on a journal it cannot trust: restore the file, or, once the "
                                 "node is as it should be (cplet status, cplet history), move it aside",
                                 error ?: strerror(-r));
        *ret = TAKE_PTR(j);
        return 0;
}

int journal_save(store *s, const journal *j, char **ret_error) {
        _cleanup_free_ char *text = NULL, *display = NULL;
        json_auto_t *o = NULL;
        size_t size;
        int r;

        if (s->state_fd < 0)
                return -EROFS;
        display = journal_path(s);
        o = journal_to_json(j);
        if (!display || !o)
                return -ENOMEM;
        text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (!text)
                return -ENOMEM;
        size = strlen(text);
        /* What cplet writes, cplet must be able to read back. */
        if (size > JOURNAL_SIZE_MAX)
                return set_error(ret_error, -EFBIG, "%s: the journal would exceed %u MiB", display,
                                 JOURNAL_SIZE_MAX / (1024 * 1024));
        r = write_file_atomic(s->state_fd, JOURNAL_FILE, text, size, 0600);
        if (r < 0)
                return set_error(ret_error, r, "%s: %s", display, strerror(-r));
        return 0;
}
