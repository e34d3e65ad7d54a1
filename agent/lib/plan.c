/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <string.h>

#include "image.h"
#include "macro.h"
#include "plan.h"

const char *step_kind_to_string(step_kind k) {
        switch (k) {
        case STEP_BINARY:
                return "binary";
        case STEP_EMULATION:
                return "emulation";
        case STEP_MIN_COMPAT:
                return "min-compatibility";
        }
        return "?";
}

/* A component's state while the plan is being built. */
typedef struct working {
        const plan_component *in;
        const char *repository;
        char *target_repository; /* the target's registry prefix + this image's name */
        char *image;             /* as written, until a binary step replaces it */
        const char *target_image; /* the target's exact image for the binary step, or NULL */
        kversion binary;
        kminor emulated, min_compat;
        bool min_compat_explicit;
        bool forward_compat;
        bool frozen; /* not among the target's components: no step, state kept as it is */
} working;

typedef struct builder {
        working *w;
        size_t n;
        plan *plan;
        const plan_target *target;
        kminor target_emulated, target_min_compat;
        kminor floor; /* no component's min-compatibility goes below it; {0,0} with --force */
        char **error;
} builder;

typedef struct working_array {
        working *items;
        size_t n;
} working_array;

static void working_freep(working_array *w) {
        for (size_t i = 0; i < w->n; i++) {
                free(w->items[i].target_repository);
                free(w->items[i].image);
        }
        free(w->items);
}

plan *plan_free(plan *p) {
        if (!p)
                return NULL;
        for (size_t i = 0; i < p->n_steps; i++) {
                free(p->steps[i].image);
                strv_free(p->steps[i].drop);
        }
        free(p->steps);
        free(p);
        return NULL;
}

static kminor max_minor(kminor a, kminor b) {
        return kminor_cmp(a, b) >= 0 ? a : b;
}

static kminor binary_minor(const working *w) {
        return kversion_minor(&w->binary);
}

static bool emulated_flag_needed(const working *w) {
        return !kminor_eq(w->emulated, binary_minor(w));
}

/* A flag is written only when it differs from the binary's default. */
static bool min_compat_flag_needed(const working *w) {
        return !kminor_eq(w->min_compat, compat_default_min_compat(binary_minor(w), w->emulated));
}

/* Forward-compatibility flags only mean something while emulating below the binary, and
 * the binary refuses them otherwise; a step drops them then. */
static bool forward_compat_kept(const working *w) {
        return w->forward_compat && emulated_flag_needed(w) &&
               kminor_cmp(binary_minor(w), w->in->forward_compat_since) >= 0 && w->in->forward_compat_since.major;
}

/* Checks one component as its binary would at start, plus the flags its plugin knows. */
static int check_component(const working *w, char **ret_error) {
        kminor b = binary_minor(w), e, m;
        compat_settings s = {
                .binary = b,
                .emulated_set = emulated_flag_needed(w),
                .emulated = w->emulated,
                .min_compat_set = min_compat_flag_needed(w),
                .min_compat = w->min_compat,
                .forward_compat_set = w->forward_compat,
        };
        char bs[KVERSION_STRING_MAX];
        int r;

        kversion_format(&w->binary, bs);
        if (s.emulated_set && !(w->in->emulated_since.major && kminor_cmp(b, w->in->emulated_since) >= 0))
                return set_error(ret_error, -EINVAL, "%s %s has no --emulated-version flag", w->in->name, bs);
        if (s.min_compat_set && !(w->in->min_compat_since.major && kminor_cmp(b, w->in->min_compat_since) >= 0))
                return set_error(ret_error, -EINVAL, "%s %s has no --min-compatibility-version flag", w->in->name, bs);

        r = compat_validate(&s, &e, &m, ret_error);
        if (r < 0)
                return r;
        /* A binary without the flags (1.31 accepts only 1.31 ...) may imply other versions. */
        if (!kminor_eq(e, w->emulated) || !kminor_eq(m, w->min_compat)) {
                char a[KMINOR_STRING_MAX], z[KMINOR_STRING_MAX];

                kminor_format(w->emulated, a);
                kminor_format(w->min_compat, z);
                return set_error(ret_error, -EINVAL, "%s %s cannot run with emulated %s / min-compatibility %s",
                                 w->in->name, bs, a, z);
        }
        return 0;
}

/* The skew rules between components: nobody emulates above the API server (the lowest rank)
 * or below its min-compatibility version, and nobody runs a newer binary minor than it. */
typedef enum skew_breach {
        SKEW_OK,
        SKEW_EMULATES_ABOVE,
        SKEW_EMULATES_BELOW,
        SKEW_BINARY_NEWER,
} skew_breach;

/* The first component (index into w, never 0) that breaks the skew with the API server. */
static skew_breach find_skew_breach(const working *w, size_t n, size_t *ret) {
        const working *ref = &w[0];

        for (size_t i = 1; i < n; i++) {
                *ret = i;
                if (kminor_cmp(w[i].emulated, ref->emulated) > 0)
                        return SKEW_EMULATES_ABOVE;
                if (kminor_cmp(w[i].emulated, ref->min_compat) < 0)
                        return SKEW_EMULATES_BELOW;
                if (kminor_cmp(binary_minor(&w[i]), binary_minor(ref)) > 0)
                        return SKEW_BINARY_NEWER;
        }
        return SKEW_OK;
}

/* What is wrong, as "kube-scheduler would emulate 1.33, below kube-apiserver's ...". */
static char *skew_reason(const working *w, size_t i, skew_breach k) {
        const working *ref = &w[0], *o = &w[i];
        char x[KMINOR_STRING_MAX], y[KMINOR_STRING_MAX];

        switch (k) {
        case SKEW_EMULATES_ABOVE:
                kminor_format(o->emulated, x);
                kminor_format(ref->emulated, y);
                return strdup_printf("%s would emulate %s, above %s's %s", o->in->name, x, ref->in->name, y);
        case SKEW_EMULATES_BELOW:
                kminor_format(o->emulated, x);
                kminor_format(ref->min_compat, y);
                return strdup_printf("%s would emulate %s, below %s's min-compatibility version %s",
                                     o->in->name, x, ref->in->name, y);
        case SKEW_BINARY_NEWER:
                kminor_format(binary_minor(o), x);
                kminor_format(binary_minor(ref), y);
                return strdup_printf("%s binary %s would be newer than %s's %s", o->in->name, x,
                                     ref->in->name, y);
        case SKEW_OK:
                break;
        }
        return strdup("no breach");
}

static int check_skew(const working *w, size_t n, char **ret_error) {
        _cleanup_free_ char *why = NULL;
        skew_breach k;
        size_t i;

        k = find_skew_breach(w, n, &i);
        if (k == SKEW_OK)
                return 0;
        why = skew_reason(w, i, k);
        return why ? set_error(ret_error, -EINVAL, "%s", why) : -ENOMEM;
}

static char *image_for(const working *w) {
        char tag[KVERSION_STRING_MAX];

        kversion_format(&w->binary, tag);
        return strdup_printf("%s:%s", w->repository, tag);
}

/* The image a binary step writes. A digest pins one exact build: cplet cannot know the new
 * one, so the target must name it (plan_image), or the step is refused. */
static int binary_step_image(builder *b, const working *w, char **ret) {
        _cleanup_(image_ref_done) image_ref ref = {};
        char v[KVERSION_STRING_MAX];

        if (w->target_image) {
                *ret = strdup(w->target_image);
                return *ret ? 0 : -ENOMEM;
        }
        if (w->image && image_ref_parse(w->image, &ref, NULL) >= 0 && ref.digest) {
                kversion_format(&b->target->binary, v);
                return set_error(b->error, -EINVAL,
                                 "%s runs image %s, pinned by digest: moving it to %s needs the new image's digest, "
                                 "which cplet cannot know; pass --image %s=%s:%s@sha256:<digest>",
                                 w->in->name, w->image, v, w->in->name, w->target_repository ?: w->repository, v);
        }
        *ret = image_for(w);
        return *ret ? 0 : -ENOMEM;
}

/* A step that breaks the skew with a component the target's components leave as it is: names
 * that component and what it would have to do first. */
static int refuse_frozen(builder *b, size_t moving, step_kind kind, size_t i, skew_breach k) {
        const working *ref = &b->w[0], *o = &b->w[i];
        bool ref_frozen = ref->frozen;
        const working *frozen = ref_frozen ? ref : o;
        _cleanup_free_ char *why = skew_reason(b->w, i, k), *fix = NULL;
        char x[KVERSION_STRING_MAX];

        switch (k) {
        case SKEW_EMULATES_ABOVE:
                if (ref_frozen) {
                        kminor_format(o->emulated, x);
                        fix = strdup_printf("raise %s's emulated version to %s", ref->in->name, x);
                } else {
                        kminor_format(ref->emulated, x);
                        fix = strdup_printf("lower %s's emulated version to %s", o->in->name, x);
                }
                break;
        case SKEW_EMULATES_BELOW:
                if (ref_frozen) {
                        kminor_format(o->emulated, x);
                        fix = strdup_printf("lower %s's min-compatibility version to %s", ref->in->name, x);
                } else {
                        kminor_format(ref->min_compat, x);
                        fix = strdup_printf("raise %s's emulated version to %s", o->in->name, x);
                }
                break;
        case SKEW_BINARY_NEWER:
        case SKEW_OK:
                if (ref_frozen) {
                        kversion_format(&o->binary, x);
                        fix = strdup_printf("upgrade %s's binary to %s", ref->in->name, x);
                } else {
                        kversion_format(&ref->binary, x);
                        fix = strdup_printf("downgrade %s's binary to %s", o->in->name, x);
                }
                break;
        }
        if (!why || !fix)
                return -ENOMEM;
        return set_error(b->error, -EINVAL,
                         "no safe plan: step %zu (%s %s): %s would have to move first, but it is not among the "
                         "components to move: %s (%s first, or add %s to the components)",
                         b->plan->n_steps + 1, b->w[moving].in->name, step_kind_to_string(kind), frozen->in->name,
                         why, fix, frozen->in->name);
}

/* Applies a change already made to b->w[i], checks the whole node, records the step. */
static int add_step(builder *b, size_t i, step_kind kind) {
        working *w = &b->w[i];
        _cleanup_free_ char *why = NULL;
        plan_step *steps, *s;
        int r = 0;

        w->forward_compat = forward_compat_kept(w);
        w->min_compat_explicit = min_compat_flag_needed(w);

        for (size_t k = 0; k < b->n; k++) {
                r = check_component(&b->w[k], &why);
                if (r < 0)
                        break;
        }
        if (r >= 0) {
                skew_breach breach;
                size_t o;

                breach = find_skew_breach(b->w, b->n, &o);
                /* Exactly one side of the breach moves: the other one, frozen by the target's
                 * components, is what would have to move first. */
                if (breach != SKEW_OK && b->w[0].frozen != b->w[o].frozen)
                        return refuse_frozen(b, i, kind, o, breach);
                r = check_skew(b->w, b->n, &why);
        }
        if (r < 0)
                return set_error(b->error, r, "no safe plan: step %zu (%s %s) would leave an invalid state: %s",
                                 b->plan->n_steps + 1, w->in->name, step_kind_to_string(kind), why);

        steps = realloc(b->plan->steps, (b->plan->n_steps + 1) * sizeof(plan_step));
        if (!steps)
                return -ENOMEM;
        b->plan->steps = steps;
        s = &steps[b->plan->n_steps];
        *s = (plan_step){
                .component = i,
                .kind = kind,
                .image = strdup(w->image),
                .binary = w->binary,
                .emulated = w->emulated,
                .min_compat = w->min_compat,
                .emulated_flag = emulated_flag_needed(w),
                .min_compat_flag = min_compat_flag_needed(w),
                .forward_compat = w->forward_compat,
        };
        if (!s->image)
                return -ENOMEM;
        b->plan->n_steps++;
        return 0;
}

static bool binary_at_target(const builder *b, const working *w) {
        const char *repo = w->target_repository ?: w->repository;

        /* An exact image named for a component that already runs the target version (a new
         * digest of the same release) is a binary step too. */
        return kversion_cmp(&w->binary, &b->target->binary) == 0 && streq(repo, w->repository) &&
               (!w->target_image || streq(w->target_image, w->image));
}

int plan_validate_state(const plan_component *components, size_t n, char **ret_error) {
        _cleanup_free_ working *w = calloc(n ?: 1, sizeof(working));
        int r;

        if (!w)
                return -ENOMEM;
        for (size_t k = 0; k < n; k++) {
                w[k] = (working){
                        .in = &components[k],
                        .repository = components[k].repository,
                        .binary = components[k].binary,
                        .emulated = components[k].emulated,
                        .min_compat = components[k].min_compat,
                        .forward_compat = components[k].forward_compat,
                };
                r = check_component(&w[k], ret_error);
                if (r < 0)
                        return r;
        }
        return n > 0 ? check_skew(w, n, ret_error) : 0;
}

static int binary_step(builder *b, size_t i) {
        working *w = &b->w[i];
        kminor old_binary = binary_minor(w), new_binary = kversion_minor(&b->target->binary);
        kminor floor = compat_floor(new_binary);
        char e[KMINOR_STRING_MAX], lo[KMINOR_STRING_MAX], hi[KMINOR_STRING_MAX], v[KVERSION_STRING_MAX];
        char *image = NULL;
        int r;

        kversion_format(&b->target->binary, v);
        kminor_format(w->emulated, e);

        if (kminor_cmp(w->emulated, new_binary) > 0)
                return set_error(b->error, -EINVAL,
                                 "binary %s cannot run %s while it emulates %s: lower the emulated version to %u.%u first",
                                 v, w->in->name, e, new_binary.major, new_binary.minor);

        if (kminor_cmp(new_binary, KMINOR_EMULATED_FLAG_SINCE) >= 0 && kminor_cmp(w->emulated, floor) < 0) {
                /* A binary from before compatibility versions cannot pin anything: moving from
                 * it to the first minor that has them is the ordinary one-minor upgrade. */
                bool old_has_flag = w->in->emulated_since.major && kminor_cmp(old_binary, w->in->emulated_since) >= 0;

                if (!old_has_flag && kminor_eq(kminor_add(w->emulated, 1), floor))
                        w->emulated = floor;
                else {
                        kminor_format(floor, lo);
                        kminor_format(new_binary, hi);
                        /* The newest binary whose window still holds the emulated version. */
                        kminor reachable = old_has_flag ? kminor_add(w->emulated, 3) : kminor_add(w->emulated, 1);

                        kminor_format(floor, lo);
                        kminor_format(new_binary, hi);
                        return set_error(b->error, -EINVAL,
                                         "binary %s cannot emulate %s (allowed %s..%s): upgrade the binary to at most v%u.%u first",
                                         v, e, lo, hi, reachable.major, reachable.minor);
                }
        }

        w->binary = b->target->binary;
        if (w->target_repository)
                w->repository = w->target_repository;
        r = binary_step_image(b, w, &image);
        if (r < 0)
                return r;
        free(w->image);
        w->image = image;
        if (!w->min_compat_explicit)
                w->min_compat = max_minor(compat_default_min_compat(new_binary, w->emulated), b->floor);
        return add_step(b, i, STEP_BINARY);
}

static int phase_binaries(builder *b) {
        int r;

        /* Downgrades first, in reverse rank order, then upgrades in rank order: at no point
         * does a later component run a newer binary than an earlier one. */
        for (size_t k = b->n; k-- > 0;) {
                working *w = &b->w[k];

                if (!w->frozen && !binary_at_target(b, w) && kversion_cmp(&w->binary, &b->target->binary) > 0) {
                        r = binary_step(b, k);
                        if (r < 0)
                                return r;
                }
        }
        for (size_t k = 0; k < b->n; k++) {
                working *w = &b->w[k];

                if (!w->frozen && !binary_at_target(b, w)) {
                        r = binary_step(b, k);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static int set_emulated(builder *b, size_t i, kminor m) {
        working *w = &b->w[i];

        w->emulated = m;
        if (!w->min_compat_explicit) {
                kminor d = compat_default_min_compat(binary_minor(w), m);

                /* Raising emulation drags an implied min-compatibility along; never past what
                 * the target asks for. */
                if (kminor_cmp(d, b->target_min_compat) > 0 && kminor_cmp(b->target_min_compat, w->min_compat) >= 0) {
                        w->min_compat = b->target_min_compat;
                        w->min_compat_explicit = true;
                } else
                        /* Lowering emulation never drags it below what the node has run with:
                         * it stays, as a flag. */
                        w->min_compat = max_minor(d, b->floor);
        }
        return add_step(b, i, STEP_EMULATION);
}

static int phase_lower_emulation(builder *b) {
        kminor highest = b->target_emulated;
        int r;

        for (size_t k = 0; k < b->n; k++)
                if (kminor_cmp(b->w[k].emulated, highest) > 0)
                        highest = b->w[k].emulated;

        for (kminor m = kminor_add(highest, -1); kminor_cmp(m, b->target_emulated) >= 0; m = kminor_add(m, -1))
                for (size_t k = b->n; k-- > 0;)
                        if (!b->w[k].frozen && kminor_cmp(b->w[k].emulated, m) > 0) {
                                r = set_emulated(b, k, m);
                                if (r < 0)
                                        return r;
                        }
        return 0;
}

static int phase_raise_emulation(builder *b) {
        kminor lowest = b->target_emulated;
        int r;

        for (size_t k = 0; k < b->n; k++)
                if (kminor_cmp(b->w[k].emulated, lowest) < 0)
                        lowest = b->w[k].emulated;

        for (kminor m = kminor_add(lowest, 1); kminor_cmp(m, b->target_emulated) <= 0; m = kminor_add(m, 1))
                for (size_t k = 0; k < b->n; k++)
                        if (!b->w[k].frozen && kminor_cmp(b->w[k].emulated, m) < 0) {
                                r = set_emulated(b, k, m);
                                if (r < 0)
                                        return r;
                        }
        return 0;
}

static int set_min_compat(builder *b, size_t i) {
        working *w = &b->w[i];

        w->min_compat = b->target_min_compat;
        return add_step(b, i, STEP_MIN_COMPAT);
}

static int phase_min_compat(builder *b, bool lower) {
        int r;

        for (size_t j = 0; j < b->n; j++) {
                size_t k = lower ? b->n - 1 - j : j;
                int c = kminor_cmp(b->w[k].min_compat, b->target_min_compat);

                if (!b->w[k].frozen && (lower ? c > 0 : c < 0)) {
                        r = set_min_compat(b, k);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

/* The highest min-compatibility version the node has run with: the store's mark, or any
 * version in force now. */
static kminor node_floor(const builder *b) {
        kminor f = b->target->min_compat_floor;

        for (size_t k = 0; k < b->n; k++)
                f = max_minor(f, b->w[k].min_compat);
        return f;
}

static int refuse_below_floor(builder *b, const char *what, const char *detail) {
        return set_error(b->error, -EINVAL,
                         "%s, the highest min-compatibility version this node has run with%s%s%s: storage may "
                         "already use encodings older releases cannot read. Pass --force if you are sure",
                         what, detail ? " (" : "", detail ?: "", detail ? ")" : "");
}

/* The target's versions, with the min-compatibility version raised to the floor when the
 * target leaves it to its default. */
static int check_target_versions(builder *b) {
        const plan_target *t = b->target;
        kminor binary = kversion_minor(&t->binary);
        char v[KVERSION_STRING_MAX], e[KMINOR_STRING_MAX], f[KMINOR_STRING_MAX], m[KMINOR_STRING_MAX];
        _cleanup_free_ char *why = NULL, *what = NULL;
        bool pinned = false;
        compat_settings s;
        int r;

        kversion_format(&t->binary, v);
        kminor_format(b->floor, f);
        b->target_emulated = t->emulated_set ? t->emulated : binary;
        kminor_format(b->target_emulated, e);
        if (kminor_cmp(b->target_emulated, b->floor) < 0)
                return set_error(b->error, -EINVAL,
                                 "cannot lower the emulated version to %s: this node has run with min-compatibility "
                                 "version %s, and data may already need %s to be read. Pass --force if you are sure",
                                 e, f, f);

        b->target_min_compat = t->min_compat_set ? t->min_compat
                                                 : compat_default_min_compat(binary, b->target_emulated);
        kminor_format(b->target_min_compat, m);
        if (kminor_cmp(b->target_min_compat, b->floor) < 0) {
                if (t->min_compat_set) {
                        what = strdup_printf("min-compatibility version %s is below %s", m, f);
                        return what ? refuse_below_floor(b, what, NULL) : -ENOMEM;
                }
                b->target_min_compat = b->floor;
                pinned = true;
        }
        s = (compat_settings){
                .binary = binary,
                .emulated_set = t->emulated_set,
                .emulated = b->target_emulated,
                .min_compat_set = t->min_compat_set || pinned,
                .min_compat = b->target_min_compat,
        };
        r = compat_validate(&s, NULL, NULL, &why);
        if (r < 0 && pinned) {
                what = strdup_printf("binary %s cannot keep min-compatibility version %s", v, f);
                return what ? refuse_below_floor(b, what, why) : -ENOMEM;
        }
        if (r < 0)
                return set_error(b->error, r, "the target is not valid for binary %s: %s", v, why);
        return 0;
}

static int check_target(builder *b) {
        const plan_target *t = b->target;
        kminor target_emulated = t->emulated_set ? t->emulated : kversion_minor(&t->binary);
        char v[KVERSION_STRING_MAX];

        kversion_format(&t->binary, v);
        if (!t->binary.has_patch)
                return set_error(b->error, -EINVAL, "--binary-version %s: give the full version (e.g. v%u.%u.0)", v,
                                 t->binary.major, t->binary.minor);

        /* Emulation may be rolled back only down to the min-compatibility version in force:
         * storage may already use encodings an older emulation cannot read. --force does not
         * lift this one: the binaries themselves refuse emulated < min-compatibility. */
        for (size_t k = 0; k < b->n; k++)
                if (kminor_cmp(target_emulated, b->w[k].min_compat) < 0) {
                        char e[KMINOR_STRING_MAX], m[KMINOR_STRING_MAX];

                        kminor_format(target_emulated, e);
                        kminor_format(b->w[k].min_compat, m);
                        return set_error(b->error, -EINVAL,
                                         "cannot lower the emulated version to %s: %s runs with min-compatibility version %s, "
                                         "and data may already need %s to be read",
                                         e, b->w[k].in->name, m, m);
                }

        b->floor = t->force ? KMINOR(0, 0) : node_floor(b);
        return check_target_versions(b);
}

/* The target's components: each a component of this node, named once. The others are frozen. */
static int check_target_components(builder *b) {
        const char *const *names = b->target->components;

        if (!names)
                return 0;
        if (!names[0])
                return set_error(b->error, -EINVAL,
                                 "--components: the list is empty (leave it out to move every component)");
        for (size_t k = 0; k < b->n; k++)
                b->w[k].frozen = true;
        for (const char *const *name = names; *name; name++) {
                working *w = NULL;

                for (size_t k = 0; k < b->n; k++)
                        if (streq(b->w[k].in->name, *name))
                                w = &b->w[k];
                if (!w) {
                        _cleanup_free_ char *known = NULL;

                        for (size_t k = 0; k < b->n; k++) {
                                char *more = strdup_printf("%s%s%s", known ?: "", k ? ", " : "", b->w[k].in->name);

                                if (!more)
                                        return -ENOMEM;
                                free(known);
                                known = more;
                        }
                        return set_error(b->error, -EINVAL, "--components: no component \"%.64s\" on this node (it runs %s)",
                                         *name, known);
                }
                if (!w->frozen)
                        return set_error(b->error, -EINVAL, "--components: %s named twice", *name);
                w->frozen = false;
        }
        return 0;
}

/* Each exact image the target names: a component of this node, named once, a valid reference
 * in the repository its binary step moves to, tagged with the target version. Anything else
 * (another repository, another version, a tag that only resembles it) is refused: the option
 * pins a build, it does not choose what runs. */
static int check_target_images(builder *b) {
        const plan_target *t = b->target;
        char v[KVERSION_STRING_MAX];

        kversion_format(&t->binary, v);
        for (size_t i = 0; i < t->n_images; i++) {
                const plan_image *pi = &t->images[i];
                _cleanup_(image_ref_done) image_ref ref = {};
                _cleanup_free_ char *why = NULL;
                const char *repo;
                working *w = NULL;
                kversion tag;

                for (size_t k = 0; k < b->n; k++)
                        if (streq(b->w[k].in->name, pi->component))
                                w = &b->w[k];
                if (!w)
                        return set_error(b->error, -EINVAL, "--image %s=%s: no component %s on this node",
                                         pi->component, pi->image, pi->component);
                if (w->target_image)
                        return set_error(b->error, -EINVAL, "--image %s given twice", pi->component);
                if (w->frozen)
                        return set_error(b->error, -EINVAL,
                                         "--image %s=%s: %s is not among the components to move (--components)",
                                         pi->component, pi->image, pi->component);
                if (image_ref_parse(pi->image, &ref, &why) < 0)
                        return set_error(b->error, -EINVAL, "--image %s=%s: %s", pi->component, pi->image,
                                         why ?: "not an image reference");
                repo = w->target_repository ?: w->repository;
                if (!streq(ref.repository, repo))
                        return set_error(b->error, -EINVAL,
                                         "--image %s=%s: the repository must be %s, the one %s's binary step moves to",
                                         pi->component, pi->image, repo, pi->component);
                if (!ref.tag || kversion_parse(ref.tag, &tag, NULL) < 0 || !tag.has_patch ||
                    kversion_cmp(&tag, &t->binary) != 0)
                        return set_error(b->error, -EINVAL, "--image %s=%s: the tag must be the target version %s",
                                         pi->component, pi->image, v);
                w->target_image = pi->image;
        }
        return 0;
}

int plan_compute(const plan_component *components, size_t n, const plan_target *target, plan **ret,
                 char **ret_error) {
        _cleanup_(plan_freep) plan *p = NULL;
        _cleanup_(working_freep) working_array w = {};
        builder b = {
                .n = n,
                .target = target,
                .error = ret_error,
        };
        int r;

        if (n == 0)
                return set_error(ret_error, -ENOENT, "no control-plane components found");
        p = calloc(1, sizeof(*p));
        w.items = calloc(n, sizeof(working));
        if (!p || !w.items)
                return -ENOMEM;
        w.n = n;
        for (size_t k = 0; k < n; k++) {
                w.items[k] = (working){
                        .in = &components[k],
                        .repository = components[k].repository,
                        .binary = components[k].binary,
                        .emulated = components[k].emulated,
                        .min_compat = components[k].min_compat,
                        .min_compat_explicit = components[k].min_compat_explicit,
                        .forward_compat = components[k].forward_compat,
                };
                w.items[k].image = components[k].image ? strdup(components[k].image) : image_for(&w.items[k]);
                if (!w.items[k].image)
                        return -ENOMEM;
                /* Like kubeadm's imageRepository: a registry prefix; each component keeps
                 * its own image name. */
                if (target->image_repository) {
                        const char *slash = strrchr(components[k].repository, '/');

                        w.items[k].target_repository = strdup_printf("%s/%s", target->image_repository,
                                                                     slash ? slash + 1 : components[k].repository);
                        if (!w.items[k].target_repository)
                                return -ENOMEM;
                }
        }
        b.w = w.items;
        b.plan = p;

        r = check_target_components(&b);
        if (r >= 0)
                r = check_target(&b);
        if (r >= 0)
                r = check_target_images(&b);
        if (r < 0)
                return r;

        r = phase_lower_emulation(&b);
        if (r >= 0)
                r = phase_min_compat(&b, /* lower= */ true);
        if (r >= 0)
                r = phase_binaries(&b);
        if (r >= 0)
                r = phase_raise_emulation(&b);
        if (r >= 0)
                r = phase_min_compat(&b, /* lower= */ false);
        if (r < 0)
                return r;

        p->binary = target->binary;
        p->emulated = b.target_emulated;
        p->min_compat = b.target_min_compat;
        *ret = TAKE_PTR(p);
        return 0;
}
