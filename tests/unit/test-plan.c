/* SPDX-License-Identifier: Apache-2.0 */
/* The planner on a table of cases: each case is a node state, a target, and either the exact
 * list of steps or the refusal (with words the reason must contain). */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "component.h"
#include "macro.h"
#include "manifest.h"
#include "plan.h"
#include "plugin-loader.h"
#include "test-util.h"

/* One component of a test node: binary tag, and the kube minor of --emulated-version and
 * --min-compatibility-version when given (0: absent). */
typedef struct comp_spec {
        const char *binary;
        uint32_t emulated_flag;
        uint32_t min_compat_flag;
        bool forward_compat;
} comp_spec;

typedef struct plan_case {
        const char *name;
        comp_spec comps[3]; /* apiserver, controller-manager, scheduler; binary NULL: absent */
        const char *target_binary;
        uint32_t target_emulated;   /* 0: default */
        uint32_t target_min_compat; /* 0: default */
        const char *repository;     /* NULL: keep */
        uint32_t floor;             /* the store's high-water mark (kube minor); 0: none */
        bool force;                 /* --force: the floor does not hold */
        const char *steps[16];      /* "component kind binary emulated min-compat [flags]" */
        const char *refusal;        /* words the reason contains; NULL: success */
        const char *moving[4];      /* the target's components; none: all */
} plan_case;

static const char *const names[] = { "kube-apiserver", "kube-controller-manager", "kube-scheduler" };

static void build_components(const plan_case *c, plan_component *ret, size_t *ret_n) {
        size_t n = 0;

        for (size_t i = 0; i < 3; i++) {
                const comp_spec *s = &c->comps[i];
                plan_component *p = &ret[n];
                compat_settings cs;

                if (!s->binary)
                        continue;
                *p = (plan_component){
                        .name = names[i],
                        .emulated_since = KMINOR(1, 31),
                        .min_compat_since = KMINOR(1, 35),
                        .forward_compat_since = i == 0 ? KMINOR(1, 33) : KMINOR(0, 0),
                        .repository = i == 0   ? "registry.k8s.io/kube-apiserver"
                                      : i == 1 ? "registry.k8s.io/kube-controller-manager"
                                               : "registry.k8s.io/kube-scheduler",
                        .min_compat_explicit = s->min_compat_flag != 0,
                        .forward_compat = s->forward_compat,
                };
                assert_int_equal(kversion_parse(s->binary, &p->binary, NULL), 0);
                cs = (compat_settings){
                        .binary = kversion_minor(&p->binary),
                        .emulated_set = s->emulated_flag != 0,
                        .emulated = KMINOR(1, s->emulated_flag),
                        .min_compat_set = s->min_compat_flag != 0,
                        .min_compat = KMINOR(1, s->min_compat_flag),
                        .forward_compat_set = s->forward_compat,
                };
                assert_int_equal(compat_validate(&cs, &p->emulated, &p->min_compat, NULL), 0);
                n++;
        }
        *ret_n = n;
}

static void format_step(const plan_component *comps, const plan_step *s, char *buf, size_t size) {
        char b[KVERSION_STRING_MAX], e[KMINOR_STRING_MAX], m[KMINOR_STRING_MAX];

        kversion_format(&s->binary, b);
        kminor_format(s->emulated, e);
        kminor_format(s->min_compat, m);
        snprintf(buf, size, "%s %s %s %s %s%s%s%s", comps[s->component].name, step_kind_to_string(s->kind), b, e, m,
                 s->emulated_flag ? " +E" : "", s->min_compat_flag ? " +M" : "", s->forward_compat ? " +F" : "");
}

static void target_from_case(const plan_case *c, plan_target *t) {
        *t = (plan_target){
                .emulated_set = c->target_emulated != 0,
                .emulated = KMINOR(1, c->target_emulated),
                .min_compat_set = c->target_min_compat != 0,
                .min_compat = KMINOR(1, c->target_min_compat),
                .image_repository = c->repository,
                .min_compat_floor = c->floor ? KMINOR(1, c->floor) : KMINOR(0, 0),
                .force = c->force,
                .components = c->moving[0] ? c->moving : NULL,
        };
        assert_int_equal(kversion_parse(c->target_binary, &t->binary, NULL), 0);
}

static void run_case(const plan_case *c) {
        _cleanup_(plan_freep) plan *p = NULL;
        _cleanup_free_ char *error = NULL;
        plan_component comps[3];
        plan_target t;
        size_t n, expected = 0;
        int r;

        build_components(c, comps, &n);
        target_from_case(c, &t);

        r = plan_compute(comps, n, &t, &p, &error);
        if (c->refusal) {
                if (r != -EINVAL)
                        fail_msg("%s: expected a refusal, got %d", c->name, r);
                if (!error || !strstr(error, c->refusal))
                        fail_msg("%s: reason \"%s\" lacks \"%s\"", c->name, error ?: "", c->refusal);
                return;
        }
        if (r < 0)
                fail_msg("%s: refused: %s", c->name, error ?: "?");

        while (expected < ELEMENTSOF(c->steps) && c->steps[expected])
                expected++;
        for (size_t i = 0; i < p->n_steps || i < expected; i++) {
                char got[256] = "(none)";

                if (i < p->n_steps)
                        format_step(comps, &p->steps[i], got, sizeof(got));
                if (i >= expected || !streq(got, c->steps[i]))
                        fail_msg("%s: step %zu is \"%s\", want \"%s\"", c->name, i + 1, got,
                                 i < expected ? c->steps[i] : "(none)");
        }
}

#define V(b) { .binary = b }
#define ALL(b) { V(b), V(b), V(b) }

static const plan_case cases[] = {
        {
                .name = "1.34 -> 1.35: binaries pinned at 1.34, then emulation",
                .comps = ALL("v1.34.2"),
                .target_binary = "v1.35.0",
                .steps = {
                        "kube-apiserver binary v1.35.0 1.34 1.33 +E",
                        "kube-controller-manager binary v1.35.0 1.34 1.33 +E",
                        "kube-scheduler binary v1.35.0 1.34 1.33 +E",
                        "kube-apiserver emulation v1.35.0 1.35 1.34",
                        "kube-controller-manager emulation v1.35.0 1.35 1.34",
                        "kube-scheduler emulation v1.35.0 1.35 1.34",
                },
        },
        {
                .name = "1.33 -> 1.35 skipping a binary minor, emulation one minor at a time",
                .comps = ALL("v1.33.5"),
                .target_binary = "v1.35.0",
                .steps = {
                        "kube-apiserver binary v1.35.0 1.33 1.32 +E",
                        "kube-controller-manager binary v1.35.0 1.33 1.32 +E",
                        "kube-scheduler binary v1.35.0 1.33 1.32 +E",
                        "kube-apiserver emulation v1.35.0 1.34 1.33 +E",
                        "kube-controller-manager emulation v1.35.0 1.34 1.33 +E",
                        "kube-scheduler emulation v1.35.0 1.34 1.33 +E",
                        "kube-apiserver emulation v1.35.0 1.35 1.34",
                        "kube-controller-manager emulation v1.35.0 1.35 1.34",
                        "kube-scheduler emulation v1.35.0 1.35 1.34",
                },
        },
        {
                .name = "1.30 -> 1.31: no compatibility versions before, the ordinary upgrade",
                .comps = ALL("v1.30.14"),
                .target_binary = "v1.31.0",
                .steps = {
                        "kube-apiserver binary v1.31.0 1.31 1.30",
                        "kube-controller-manager binary v1.31.0 1.31 1.30",
                        "kube-scheduler binary v1.31.0 1.31 1.30",
                },
        },
        {
                .name = "1.29 -> 1.31 is refused: two minors with no way to pin",
                .comps = ALL("v1.29.2"),
                .target_binary = "v1.31.0",
                .refusal = "upgrade the binary to at most v1.30 first",
        },
        {
                .name = "1.31 -> 1.35 is refused: 1.35 cannot emulate 1.31",
                .comps = ALL("v1.31.4"),
                .target_binary = "v1.35.0",
                .refusal = "binary v1.35.0 cannot emulate 1.31 (allowed 1.32..1.35): upgrade the binary to at most v1.34 first",
        },
        {
                .name = "greenfield: min-compatibility raised to the binary (point of no return, asked for)",
                .comps = ALL("v1.35.0"),
                .target_binary = "v1.35.0",
                .target_min_compat = 35,
                .steps = {
                        "kube-apiserver min-compatibility v1.35.0 1.35 1.35 +M",
                        "kube-controller-manager min-compatibility v1.35.0 1.35 1.35 +M",
                        "kube-scheduler min-compatibility v1.35.0 1.35 1.35 +M",
                },
        },
        {
                .name = "1.34 -> 1.35 with min-compatibility 1.35: binaries, emulation, then min-compatibility",
                .comps = ALL("v1.34.2"),
                .target_binary = "v1.35.0",
                .target_min_compat = 35,
                .steps = {
                        "kube-apiserver binary v1.35.0 1.34 1.33 +E",
                        "kube-controller-manager binary v1.35.0 1.34 1.33 +E",
                        "kube-scheduler binary v1.35.0 1.34 1.33 +E",
                        "kube-apiserver emulation v1.35.0 1.35 1.34",
                        "kube-controller-manager emulation v1.35.0 1.35 1.34",
                        "kube-scheduler emulation v1.35.0 1.35 1.34",
                        "kube-apiserver min-compatibility v1.35.0 1.35 1.35 +M",
                        "kube-controller-manager min-compatibility v1.35.0 1.35 1.35 +M",
                        "kube-scheduler min-compatibility v1.35.0 1.35 1.35 +M",
                },
        },
        {
                .name = "emulation downgrade 1.35 -> 1.34 in reverse order keeps the implied min-compatibility 1.34",
                .comps = ALL("v1.35.0"),
                .target_binary = "v1.35.0",
                .target_emulated = 34,
                .steps = {
                        "kube-scheduler emulation v1.35.0 1.34 1.34 +E +M",
                        "kube-controller-manager emulation v1.35.0 1.34 1.34 +E +M",
                        "kube-apiserver emulation v1.35.0 1.34 1.34 +E +M",
                },
        },
        {
                .name = "emulation downgrade with --force lets the implied min-compatibility follow",
                .comps = ALL("v1.35.0"),
                .target_binary = "v1.35.0",
                .target_emulated = 34,
                .floor = 35,
                .force = true,
                .steps = {
                        "kube-scheduler emulation v1.35.0 1.34 1.33 +E",
                        "kube-controller-manager emulation v1.35.0 1.34 1.33 +E",
                        "kube-apiserver emulation v1.35.0 1.34 1.33 +E",
                },
        },
        {
                .name = "emulation downgrade below the min-compatibility in force is refused",
                .comps = ALL("v1.35.0"),
                .target_binary = "v1.35.0",
                .target_emulated = 33,
                .refusal = "cannot lower the emulated version to 1.33: kube-apiserver runs with min-compatibility "
                           "version 1.34, and data may already need 1.34 to be read",
        },
        {
                .name = "second emulation rollback refused: the node has run with min-compatibility 1.34",
                .comps = { { "v1.35.0", 34, 0, false }, { "v1.35.0", 34, 0, false }, { "v1.35.0", 34, 0, false } },
                .target_binary = "v1.35.0",
                .target_emulated = 33,
                .floor = 34,
                .refusal = "cannot lower the emulated version to 1.33: this node has run with min-compatibility "
                           "version 1.34",
        },
        {
                .name = "a min-compatibility below the high-water mark is raised back to it",
                .comps = { { "v1.35.0", 34, 0, false }, { "v1.35.0", 34, 0, false }, { "v1.35.0", 34, 0, false } },
                .target_binary = "v1.35.0",
                .target_emulated = 34,
                .floor = 34,
                .steps = {
                        "kube-apiserver min-compatibility v1.35.0 1.34 1.34 +E +M",
                        "kube-controller-manager min-compatibility v1.35.0 1.34 1.34 +E +M",
                        "kube-scheduler min-compatibility v1.35.0 1.34 1.34 +E +M",
                },
        },
        {
                .name = "an explicit min-compatibility below the high-water mark is refused",
                .comps = ALL("v1.35.0"),
                .target_binary = "v1.35.0",
                .target_min_compat = 33,
                .floor = 34,
                .refusal = "min-compatibility version 1.33 is below 1.34, the highest min-compatibility version "
                           "this node has run with",
        },
        {
                .name = "an explicit min-compatibility below the high-water mark with --force",
                .comps = ALL("v1.35.0"),
                .target_binary = "v1.35.0",
                .target_min_compat = 33,
                .floor = 34,
                .force = true,
                .steps = {
                        "kube-scheduler min-compatibility v1.35.0 1.35 1.33 +M",
                        "kube-controller-manager min-compatibility v1.35.0 1.35 1.33 +M",
                        "kube-apiserver min-compatibility v1.35.0 1.35 1.33 +M",
                },
        },
        {
                .name = "binary rollback 1.35 -> 1.34 after emulation was lowered",
                .comps = { { "v1.35.0", 34, 0, false }, { "v1.35.0", 34, 0, false }, { "v1.35.0", 34, 0, false } },
                .target_binary = "v1.34.2",
                .steps = {
                        "kube-scheduler binary v1.34.2 1.34 1.33",
                        "kube-controller-manager binary v1.34.2 1.34 1.33",
                        "kube-apiserver binary v1.34.2 1.34 1.33",
                },
        },
        {
                .name = "binary rollback 1.35 -> 1.34 refused when the node has run with min-compatibility 1.34",
                .comps = { { "v1.35.0", 34, 0, false }, { "v1.35.0", 34, 0, false }, { "v1.35.0", 34, 0, false } },
                .target_binary = "v1.34.2",
                .floor = 34,
                .refusal = "binary v1.34.2 cannot keep min-compatibility version 1.34",
        },
        {
                .name = "binary rollback 1.35 -> 1.34 while emulating 1.35 is refused (implied min-compatibility 1.34)",
                .comps = ALL("v1.35.0"),
                .target_binary = "v1.34.2",
                .refusal = "binary v1.34.2 cannot keep min-compatibility version 1.34",
        },
        {
                .name = "binary rollback 1.35 -> 1.34 while emulating 1.35 with --force: emulation goes down first",
                .comps = ALL("v1.35.0"),
                .target_binary = "v1.34.2",
                .floor = 34,
                .force = true,
                .steps = {
                        "kube-scheduler emulation v1.35.0 1.34 1.33 +E",
                        "kube-controller-manager emulation v1.35.0 1.34 1.33 +E",
                        "kube-apiserver emulation v1.35.0 1.34 1.33 +E",
                        "kube-scheduler binary v1.34.2 1.34 1.33",
                        "kube-controller-manager binary v1.34.2 1.34 1.33",
                        "kube-apiserver binary v1.34.2 1.34 1.33",
                },
        },
        {
                /* The defect of issue 12: the plan lowered min-compatibility to 1.33 first. */
                .name = "binary rollback refused when the old binary lacks the min-compatibility in force",
                .comps = { { "v1.35.0", 34, 34, false }, { "v1.35.0", 34, 34, false }, { "v1.35.0", 34, 34, false } },
                .target_binary = "v1.34.2",
                .refusal = "binary v1.34.2 cannot keep min-compatibility version 1.34, the highest min-compatibility "
                           "version this node has run with",
        },
        {
                .name = "explicit min-compatibility 1.34 on a binary without the flag is refused as such",
                .comps = { { "v1.35.0", 34, 34, false }, { "v1.35.0", 34, 34, false }, { "v1.35.0", 34, 34, false } },
                .target_binary = "v1.34.2",
                .target_min_compat = 34,
                .refusal = "the target is not valid for binary v1.34.2: unknown flag: --min-compatibility-version",
        },
        {
                .name = "half done: the API server already runs the new binary",
                .comps = { { "v1.35.0", 34, 0, false }, V("v1.34.2"), V("v1.34.2") },
                .target_binary = "v1.35.0",
                .steps = {
                        "kube-controller-manager binary v1.35.0 1.34 1.33 +E",
                        "kube-scheduler binary v1.35.0 1.34 1.33 +E",
                        "kube-apiserver emulation v1.35.0 1.35 1.34",
                        "kube-controller-manager emulation v1.35.0 1.35 1.34",
                        "kube-scheduler emulation v1.35.0 1.35 1.34",
                },
        },
        {
                .name = "already at the target: empty plan",
                .comps = ALL("v1.35.0"),
                .target_binary = "v1.35.0",
                .steps = { NULL },
        },
        {
                .name = "patch upgrade keeps everything else",
                .comps = ALL("v1.35.0"),
                .target_binary = "v1.35.1",
                .steps = {
                        "kube-apiserver binary v1.35.1 1.35 1.34",
                        "kube-controller-manager binary v1.35.1 1.35 1.34",
                        "kube-scheduler binary v1.35.1 1.35 1.34",
                },
        },
        {
                .name = "forward-compatible flag is dropped when emulation reaches the binary",
                .comps = { { "v1.35.0", 34, 0, true }, { "v1.35.0", 34, 0, false }, { "v1.35.0", 34, 0, false } },
                .target_binary = "v1.35.0",
                .steps = {
                        "kube-apiserver emulation v1.35.0 1.35 1.34",
                        "kube-controller-manager emulation v1.35.0 1.35 1.34",
                        "kube-scheduler emulation v1.35.0 1.35 1.34",
                },
        },
        {
                .name = "forward-compatible flag is kept while emulating below the binary, dropped at it",
                .comps = { { "v1.35.0", 33, 0, true }, { "v1.35.0", 33, 0, false }, { "v1.35.0", 33, 0, false } },
                .target_binary = "v1.35.0",
                .steps = {
                        "kube-apiserver emulation v1.35.0 1.34 1.33 +E +F",
                        "kube-controller-manager emulation v1.35.0 1.34 1.33 +E",
                        "kube-scheduler emulation v1.35.0 1.34 1.33 +E",
                        "kube-apiserver emulation v1.35.0 1.35 1.34",
                        "kube-controller-manager emulation v1.35.0 1.35 1.34",
                        "kube-scheduler emulation v1.35.0 1.35 1.34",
                },
        },
        {
                .name = "forward-compatible flag is kept across a binary upgrade that pins emulation",
                .comps = { { "v1.34.2", 33, 0, true }, { "v1.34.2", 33, 0, false }, { "v1.34.2", 33, 0, false } },
                .target_binary = "v1.35.0",
                .target_emulated = 33,
                .steps = {
                        "kube-apiserver binary v1.35.0 1.33 1.32 +E +F",
                        "kube-controller-manager binary v1.35.0 1.33 1.32 +E",
                        "kube-scheduler binary v1.35.0 1.33 1.32 +E",
                },
        },
        {
                .name = "forward-compatible flag is dropped by a binary rollback to the emulated version",
                .comps = { { "v1.35.0", 34, 0, true }, { "v1.35.0", 34, 0, false }, { "v1.35.0", 34, 0, false } },
                .target_binary = "v1.34.2",
                .steps = {
                        "kube-scheduler binary v1.34.2 1.34 1.33",
                        "kube-controller-manager binary v1.34.2 1.34 1.33",
                        "kube-apiserver binary v1.34.2 1.34 1.33",
                },
        },
        {
                .name = "explicit min-compatibility is kept while emulation rises",
                .comps = { { "v1.35.0", 33, 32, false }, { "v1.35.0", 33, 32, false }, { "v1.35.0", 33, 32, false } },
                .target_binary = "v1.35.0",
                .target_min_compat = 32,
                .steps = {
                        "kube-apiserver emulation v1.35.0 1.34 1.32 +E +M",
                        "kube-controller-manager emulation v1.35.0 1.34 1.32 +E +M",
                        "kube-scheduler emulation v1.35.0 1.34 1.32 +E +M",
                        "kube-apiserver emulation v1.35.0 1.35 1.32 +M",
                        "kube-controller-manager emulation v1.35.0 1.35 1.32 +M",
                        "kube-scheduler emulation v1.35.0 1.35 1.32 +M",
                },
        },
        {
                .name = "target emulated version outside the binary's range",
                .comps = ALL("v1.34.2"),
                .target_binary = "v1.35.0",
                .target_emulated = 36,
                .refusal = "emulation version 1.36 is not between [1.32, 1.35]",
        },
        {
                .name = "min-compatibility on a binary that has no such flag",
                .comps = ALL("v1.34.2"),
                .target_binary = "v1.34.2",
                .target_min_compat = 34,
                .refusal = "unknown flag: --min-compatibility-version",
        },
        {
                .name = "a binary version without patch is refused",
                .comps = ALL("v1.34.2"),
                .target_binary = "v1.35",
                .refusal = "give the full version",
        },
        {
                .name = "a controller-manager below the API server's min-compatibility is never planned around",
                .comps = { V("v1.35.0"), { "v1.35.0", 33, 0, false }, V("v1.35.0") },
                .target_binary = "v1.35.1",
                .refusal = "kube-controller-manager would emulate 1.33, below kube-apiserver's min-compatibility version 1.34",
        },
        {
                .name = "a controller-manager above the API server is not planned around by an emulation rollback",
                .comps = { { "v1.35.0", 34, 0, false }, V("v1.35.0"), V("v1.35.0") },
                .target_binary = "v1.35.1",
                .target_emulated = 34,
                .refusal = "step 1 (kube-scheduler emulation) would leave an invalid state: kube-controller-manager "
                           "would emulate 1.35, above kube-apiserver's 1.34",
        },
        {
                .name = "a controller-manager above the API server is repaired by raising the API server first",
                .comps = { { "v1.35.0", 34, 0, false }, V("v1.35.0"), V("v1.35.0") },
                .target_binary = "v1.35.0",
                .steps = { "kube-apiserver emulation v1.35.0 1.35 1.34" },
        },
        {
                .name = "image repository change counts as a binary step",
                .comps = ALL("v1.35.0"),
                .target_binary = "v1.35.0",
                .repository = "mirror.example.com/k8s",
                .steps = {
                        "kube-apiserver binary v1.35.0 1.35 1.34",
                        "kube-controller-manager binary v1.35.0 1.35 1.34",
                        "kube-scheduler binary v1.35.0 1.35 1.34",
                },
        },
        {
                .name = "node with only an API server",
                .comps = { V("v1.34.2") },
                .target_binary = "v1.35.0",
                .steps = {
                        "kube-apiserver binary v1.35.0 1.34 1.33 +E",
                        "kube-apiserver emulation v1.35.0 1.35 1.34",
                },
        },
        /* A target's components (issue 8): the others keep their state and get no step, and
         * every state on the way must still be valid for them. */
        {
                .name = "subset: the API server's binary alone, emulation pinned",
                .comps = ALL("v1.34.2"),
                .target_binary = "v1.35.0",
                .target_emulated = 34,
                .moving = { "kube-apiserver" },
                .steps = { "kube-apiserver binary v1.35.0 1.34 1.33 +E" },
        },
        {
                .name = "subset: the scheduler's binary, the controller-manager frozen at an older binary",
                .comps = { { "v1.35.0", 34, 0, false }, V("v1.34.2"), V("v1.34.2") },
                .target_binary = "v1.35.0",
                .target_emulated = 34,
                .moving = { "kube-scheduler" },
                .steps = { "kube-scheduler binary v1.35.0 1.34 1.33 +E" },
        },
        {
                .name = "subset: the API server's emulation raised while the others still run the old binary",
                .comps = { { "v1.35.0", 34, 0, false }, V("v1.34.2"), V("v1.34.2") },
                .target_binary = "v1.35.0",
                .target_emulated = 35,
                .moving = { "kube-apiserver" },
                .steps = { "kube-apiserver emulation v1.35.0 1.35 1.34" },
        },
        {
                .name = "subset: left to its default, the emulated version rises with the binary",
                .comps = ALL("v1.34.2"),
                .target_binary = "v1.35.0",
                .moving = { "kube-apiserver" },
                .steps = {
                        "kube-apiserver binary v1.35.0 1.34 1.33 +E",
                        "kube-apiserver emulation v1.35.0 1.35 1.34",
                },
        },
        {
                .name = "subset: the controller-manager's binary before the API server's is refused",
                .comps = ALL("v1.34.2"),
                .target_binary = "v1.35.0",
                .target_emulated = 34,
                .moving = { "kube-controller-manager" },
                .refusal = "step 1 (kube-controller-manager binary): kube-apiserver would have to move first, but it "
                           "is not among the components to move: kube-controller-manager binary 1.35 would be newer "
                           "than kube-apiserver's 1.34 (upgrade kube-apiserver's binary to v1.35.0 first, or add "
                           "kube-apiserver to the components)",
        },
        {
                .name = "subset: the controller-manager emulating above the API server is refused",
                .comps = { { "v1.35.0", 34, 0, false }, { "v1.35.0", 34, 0, false }, { "v1.35.0", 34, 0, false } },
                .target_binary = "v1.35.0",
                .target_emulated = 35,
                .moving = { "kube-controller-manager" },
                .refusal = "kube-apiserver would have to move first, but it is not among the components to move: "
                           "kube-controller-manager would emulate 1.35, above kube-apiserver's 1.34 (raise "
                           "kube-apiserver's emulated version to 1.35 first",
        },
        {
                .name = "subset: the API server two emulated minors ahead of the others is refused at the second",
                .comps = { { "v1.35.0", 33, 0, false }, { "v1.35.0", 33, 0, false }, { "v1.35.0", 33, 0, false } },
                .target_binary = "v1.35.0",
                .moving = { "kube-apiserver" },
                .refusal = "step 2 (kube-apiserver emulation): kube-controller-manager would have to move first, but "
                           "it is not among the components to move: kube-controller-manager would emulate 1.33, below "
                           "kube-apiserver's min-compatibility version 1.34 (raise kube-controller-manager's emulated "
                           "version to 1.34 first, or add kube-controller-manager to the components)",
        },
        {
                .name = "subset: min-compatibility, the API server alone",
                .comps = ALL("v1.35.0"),
                .target_binary = "v1.35.0",
                .target_min_compat = 35,
                .moving = { "kube-apiserver" },
                .steps = { "kube-apiserver min-compatibility v1.35.0 1.35 1.35 +M" },
        },
        {
                .name = "subset: min-compatibility, the controller-manager after the API server",
                .comps = { { "v1.35.0", 0, 35, false }, V("v1.35.0"), V("v1.35.0") },
                .target_binary = "v1.35.0",
                .target_emulated = 35,
                .target_min_compat = 35,
                .moving = { "kube-controller-manager" },
                .steps = { "kube-controller-manager min-compatibility v1.35.0 1.35 1.35 +M" },
        },
        {
                .name = "subset: min-compatibility while the scheduler still emulates the old minor is refused",
                .comps = { V("v1.35.0"), V("v1.35.0"), { "v1.35.0", 34, 0, false } },
                .target_binary = "v1.35.0",
                .target_min_compat = 35,
                .moving = { "kube-apiserver" },
                .refusal = "kube-scheduler would have to move first, but it is not among the components to move: "
                           "kube-scheduler would emulate 1.34, below kube-apiserver's min-compatibility version 1.35 "
                           "(raise kube-scheduler's emulated version to 1.35 first",
        },
        {
                .name = "subset: emulation lowered, scheduler and controller-manager first",
                .comps = ALL("v1.35.0"),
                .target_binary = "v1.35.0",
                .target_emulated = 34,
                .moving = { "kube-scheduler", "kube-controller-manager" },
                .steps = {
                        "kube-scheduler emulation v1.35.0 1.34 1.34 +E +M",
                        "kube-controller-manager emulation v1.35.0 1.34 1.34 +E +M",
                },
        },
        {
                .name = "subset: the API server's emulation lowered below the controller-manager's is refused",
                .comps = ALL("v1.35.0"),
                .target_binary = "v1.35.0",
                .target_emulated = 34,
                .moving = { "kube-apiserver" },
                .refusal = "kube-controller-manager would have to move first, but it is not among the components to "
                           "move: kube-controller-manager would emulate 1.35, above kube-apiserver's 1.34 (lower "
                           "kube-controller-manager's emulated version to 1.34 first",
        },
        {
                .name = "subset: the API server's binary downgraded below the controller-manager's is refused",
                .comps = { { "v1.35.0", 34, 0, false }, { "v1.35.0", 34, 0, false }, { "v1.35.0", 34, 0, false } },
                .target_binary = "v1.34.2",
                .moving = { "kube-apiserver" },
                .refusal = "kube-controller-manager would have to move first, but it is not among the components to "
                           "move: kube-controller-manager binary 1.35 would be newer than kube-apiserver's 1.34 "
                           "(downgrade kube-controller-manager's binary to v1.34.2 first",
        },
        {
                .name = "subset: a frozen component already at the target is not touched by a full-node subset",
                .comps = { { "v1.35.0", 34, 0, false }, { "v1.35.0", 34, 0, false }, V("v1.34.2") },
                .target_binary = "v1.35.0",
                .target_emulated = 34,
                .moving = { "kube-scheduler", "kube-apiserver", "kube-controller-manager" },
                .steps = { "kube-scheduler binary v1.35.0 1.34 1.33 +E" },
        },
};

static void test_case(void **state) {
        run_case(*state);
}

static void test_step_images(void **state) {
        _cleanup_(plan_freep) plan *p = NULL;
        plan_component comps[3];
        plan_target t = {};
        size_t n;

        build_components(&cases[0], comps, &n);
        assert_int_equal(kversion_parse("v1.35.0", &t.binary, NULL), 0);
        assert_int_equal(plan_compute(comps, n, &t, &p, NULL), 0);
        assert_int_equal(p->n_steps, 6);
        assert_string_equal(p->steps[0].image, "registry.k8s.io/kube-apiserver:v1.35.0");
        assert_string_equal(p->steps[2].image, "registry.k8s.io/kube-scheduler:v1.35.0");
        plan_free(TAKE_PTR(p));

        t.image_repository = "mirror.example.com/k8s";
        assert_int_equal(plan_compute(comps, n, &t, &p, NULL), 0);
        assert_int_equal(p->n_steps, 6);
        assert_string_equal(p->steps[0].image, "mirror.example.com/k8s/kube-apiserver:v1.35.0");
        assert_string_equal(p->steps[1].image, "mirror.example.com/k8s/kube-controller-manager:v1.35.0");
        plan_free(TAKE_PTR(p));

        /* The registry each manifest already uses: nothing to change. */
        t.image_repository = "registry.k8s.io";
        assert_int_equal(kversion_parse("v1.34.2", &t.binary, NULL), 0);
        assert_int_equal(plan_compute(comps, n, &t, &p, NULL), 0);
        assert_int_equal(p->n_steps, 0);
}

static void test_no_components(void **state) {
        _cleanup_free_ char *error = NULL;
        plan_target t = {};
        plan *p = NULL;

        assert_int_equal(kversion_parse("v1.35.0", &t.binary, NULL), 0);
        assert_int_equal(plan_compute(NULL, 0, &t, &p, &error), -ENOENT);
        assert_null(p);
        assert_non_null(error);
}

/* Every case of the table planned again with all its components named: the same steps, or the
 * same refusal, as without a list. */
static void test_subset_of_all_is_full_plan(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const plan_case *c = &cases[i];
                _cleanup_(plan_freep) plan *full = NULL, *named = NULL;
                _cleanup_free_ char *full_error = NULL, *named_error = NULL;
                const char *all[4] = {};
                plan_component comps[3];
                plan_target t;
                size_t n;
                int r_full, r_named;

                if (c->moving[0])
                        continue;
                build_components(c, comps, &n);
                /* In reverse order: the list names components, it does not order them. */
                for (size_t k = 0; k < n; k++)
                        all[k] = comps[n - 1 - k].name;
                target_from_case(c, &t);
                r_full = plan_compute(comps, n, &t, &full, &full_error);
                t.components = all;
                r_named = plan_compute(comps, n, &t, &named, &named_error);
                if (r_full != r_named)
                        fail_msg("%s: %d without components, %d with all named (%s)", c->name, r_full, r_named,
                                 named_error ?: "");
                if (r_full < 0) {
                        assert_string_equal(full_error, named_error);
                        continue;
                }
                assert_int_equal(full->n_steps, named->n_steps);
                for (size_t k = 0; k < full->n_steps; k++) {
                        char a[256], b[256];

                        format_step(comps, &full->steps[k], a, sizeof(a));
                        format_step(comps, &named->steps[k], b, sizeof(b));
                        if (!streq(a, b) || !streq(full->steps[k].image, named->steps[k].image))
                                fail_msg("%s: step %zu is \"%s\" with all named, \"%s\" without", c->name, k + 1, b,
                                         a);
                }
        }
}

/* The target's components as given: each on the node, once, at least one; --image only for a
 * component that moves. Refused before anything is planned. */
static void test_components_refused(void **state) {
        static const plan_image scheduler_image[] = {
                { "kube-scheduler", "registry.k8s.io/kube-scheduler:v1.35.0@sha256:"
                                    "0000000000000000000000000000000000000000000000000000000000000000" },
        };
        static const struct {
                const char *moving[4];
                bool images;
                const char *refusal;
        } rows[] = {
                { { "kube-proxy" }, false,
                  "--components: no component \"kube-proxy\" on this node (it runs kube-apiserver, "
                  "kube-controller-manager, kube-scheduler)" },
                { { "kube-apiserver", "kube-apiserver" }, false, "--components: kube-apiserver named twice" },
                { {}, false, "--components: the list is empty (leave it out to move every component)" },
                { { "kube-apiserver" }, true,
                  "--image kube-scheduler=registry.k8s.io/kube-scheduler:v1.35.0@sha256:0000000000000000000000000000000"
                  "000000000000000000000000000000000: kube-scheduler is not among the components to move (--components)" },
        };

        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                _cleanup_(plan_freep) plan *p = NULL;
                _cleanup_free_ char *error = NULL;
                plan_component comps[3];
                plan_target t;
                size_t n;

                build_components(&cases[0], comps, &n);
                target_from_case(&cases[0], &t);
                t.components = rows[i].moving;
                if (rows[i].images) {
                        t.images = scheduler_image;
                        t.n_images = ELEMENTSOF(scheduler_image);
                }
                assert_int_equal(plan_compute(comps, n, &t, &p, &error), -EINVAL);
                assert_null(p);
                if (!error || !streq(error, rows[i].refusal))
                        fail_msg("row %zu: \"%s\", want \"%s\"", i, error ?: "", rows[i].refusal);
        }
}

/* The cluster controller's order on one node (DESIGN.md "Cluster-wide"): per phase — binaries
 * with emulation pinned, the next emulated minor, min-compatibility — kube-apiserver, then
 * kube-controller-manager, then kube-scheduler, each a target naming that component alone with
 * every version explicit. Each target is exactly one step of that component; the node after it
 * is valid, and the next target plans from it. */
static void test_cluster_sequence(void **state) {
        static const struct {
                uint32_t emulated, min_compat;
                step_kind kind;
                const char *after; /* the step as format_step prints it, without the component */
        } phases[] = {
                { 34, 33, STEP_BINARY, "binary v1.35.0 1.34 1.33 +E" },
                { 35, 34, STEP_EMULATION, "emulation v1.35.0 1.35 1.34" },
                { 35, 35, STEP_MIN_COMPAT, "min-compatibility v1.35.0 1.35 1.35 +M" },
        };
        char images[3][128];
        plan_component comps[3];
        size_t n;

        build_components(&cases[0], comps, &n);
        assert_int_equal(n, 3);
        for (size_t ph = 0; ph < ELEMENTSOF(phases); ph++)
                for (size_t k = 0; k < n; k++) {
                        _cleanup_(plan_freep) plan *p = NULL;
                        _cleanup_free_ char *error = NULL;
                        const char *moving[] = { names[k], NULL };
                        plan_target t = {
                                .emulated_set = true,
                                .emulated = KMINOR(1, phases[ph].emulated),
                                .min_compat_set = true,
                                .min_compat = KMINOR(1, phases[ph].min_compat),
                                .components = moving,
                        };
                        char got[256], want[256];
                        const plan_step *s;

                        assert_int_equal(kversion_parse("v1.35.0", &t.binary, NULL), 0);
                        if (plan_compute(comps, n, &t, &p, &error) < 0)
                                fail_msg("phase %zu, %s: refused: %s", ph + 1, names[k], error);
                        if (p->n_steps != 1)
                                fail_msg("phase %zu, %s: %zu steps, want 1", ph + 1, names[k], p->n_steps);
                        s = &p->steps[0];
                        assert_int_equal(s->component, k);
                        assert_int_equal(s->kind, phases[ph].kind);
                        format_step(comps, s, got, sizeof(got));
                        snprintf(want, sizeof(want), "%s %s", names[k], phases[ph].after);
                        if (!streq(got, want))
                                fail_msg("phase %zu: step \"%s\", want \"%s\"", ph + 1, got, want);

                        /* The node after the step, as the manifest will say. */
                        snprintf(images[k], sizeof(images[k]), "%s", s->image);
                        comps[k].image = images[k];
                        comps[k].binary = s->binary;
                        comps[k].emulated = s->emulated;
                        comps[k].min_compat = s->min_compat;
                        comps[k].min_compat_explicit = s->min_compat_flag;
                        comps[k].forward_compat = s->forward_compat;
                        if (plan_validate_state(comps, n, &error) < 0)
                                fail_msg("phase %zu, after %s: invalid node: %s", ph + 1, names[k], error);

                        /* The next component is still where it was: this target moved no other. */
                        if (k + 1 < n && ph == 0)
                                assert_int_equal(comps[k + 1].binary.minor, 34);
                }

        /* At the end the whole node is at the target: the full plan has nothing left to do. */
        {
                _cleanup_(plan_freep) plan *p = NULL;
                plan_target t = { .min_compat_set = true, .min_compat = KMINOR(1, 35) };

                assert_int_equal(kversion_parse("v1.35.0", &t.binary, NULL), 0);
                assert_int_equal(plan_compute(comps, n, &t, &p, NULL), 0);
                assert_int_equal(p->n_steps, 0);
        }
}

/* The oracle: FACTS.md's table of allowed values per binary minor, written out here rather
 * than taken from version.c, so that the planner is never checked against its own rules. */
typedef struct allowed {
        uint32_t binary;      /* 1.N */
        uint32_t emulated_lo; /* --emulated-version may be 1.lo .. 1.binary */
        bool min_compat_flag; /* --min-compatibility-version exists */
        uint32_t min_compat_fixed; /* without the flag: the fixed value; 0: emulated - 1, raised to lo */
} allowed;

static const allowed allowed_table[] = {
        { 30, 30, false, 29 }, /* no --emulated-version: emulates itself */
        { 31, 31, false, 30 },
        { 32, 31, false, 31 },
        { 33, 31, false, 0 },
        { 34, 31, false, 0 },
        { 35, 32, true, 0 },
        { 36, 33, true, 0 },
        { 37, 34, true, 0 },
};

/* A component as the oracle tracks it through a plan. */
typedef struct oracle_comp {
        uint32_t binary, emulated, min_compat;
        bool emulated_flag, min_compat_flag, forward_compat;
} oracle_comp;

static const allowed *allowed_for(uint32_t binary) {
        for (size_t i = 0; i < ELEMENTSOF(allowed_table); i++)
                if (allowed_table[i].binary == binary)
                        return &allowed_table[i];
        fail_msg("binary 1.%u is not in the oracle's table", binary);
        return NULL;
}

/* Checks the whole node after a step: each component as its binary would at start, the flag
 * spelling (only where it differs from the default), and the skew rule of the KEP. */
static void oracle_check_node(const char *name, size_t step, const oracle_comp *c, size_t n, size_t changed) {

        for (size_t i = 0; i < n; i++) {
                const allowed *a = allowed_for(c[i].binary);
                /* Only what the step wrote: a hand-written flag may repeat a default. */
                bool spelling = i == changed;
                uint32_t default_min = a->min_compat_fixed ?: (c[i].emulated - 1 > a->emulated_lo ? c[i].emulated - 1
                                                                                                 : a->emulated_lo);

                if (c[i].emulated < a->emulated_lo || c[i].emulated > c[i].binary)
                        fail_msg("%s: step %zu: %s binary 1.%u cannot emulate 1.%u", name, step, names[i],
                                 c[i].binary, c[i].emulated);
                if (spelling && c[i].emulated_flag != (c[i].emulated != c[i].binary))
                        fail_msg("%s: step %zu: %s --emulated-version written %s", name, step, names[i],
                                 c[i].emulated_flag ? "at the default" : "missing");
                if (c[i].emulated_flag && c[i].binary < 31)
                        fail_msg("%s: step %zu: %s 1.%u has no --emulated-version", name, step, names[i], c[i].binary);
                if (a->min_compat_flag) {
                        if (c[i].min_compat < a->emulated_lo || c[i].min_compat > c[i].emulated)
                                fail_msg("%s: step %zu: %s min-compatibility 1.%u not in [1.%u, 1.%u]", name, step,
                                         names[i], c[i].min_compat, a->emulated_lo, c[i].emulated);
                } else if (c[i].min_compat != default_min || c[i].min_compat_flag)
                        fail_msg("%s: step %zu: %s binary 1.%u cannot run with min-compatibility 1.%u%s", name, step,
                                 names[i], c[i].binary, c[i].min_compat, c[i].min_compat_flag ? " (flag)" : "");
                if (spelling && c[i].min_compat_flag != (c[i].min_compat != default_min))
                        fail_msg("%s: step %zu: %s --min-compatibility-version written %s", name, step, names[i],
                                 c[i].min_compat_flag ? "at the default" : "missing");
                if (c[i].forward_compat && (i != 0 || c[i].binary < 33 || c[i].emulated == c[i].binary))
                        fail_msg("%s: step %zu: %s cannot take --emulation-forward-compatible at 1.%u emulating 1.%u",
                                 name, step, names[i], c[i].binary, c[i].emulated);
                /* Skew: controller-manager and scheduler within [API server's min-compat, its
                 * emulated], never a newer binary. */
                if (i > 0 && (c[i].emulated < c[0].min_compat || c[i].emulated > c[0].emulated ||
                              c[i].binary > c[0].binary))
                        fail_msg("%s: step %zu: %s (binary 1.%u, emulated 1.%u) is outside the API server's skew "
                                 "(binary 1.%u, emulated 1.%u, min-compatibility 1.%u)",
                                 name, step, names[i], c[i].binary, c[i].emulated, c[0].binary, c[0].emulated,
                                 c[0].min_compat);
        }
}

static void oracle_from_spec(const comp_spec *s, oracle_comp *ret) {
        kversion b;
        uint32_t binary, lo, emulated;

        assert_int_equal(kversion_parse(s->binary, &b, NULL), 0);
        binary = b.minor;
        emulated = s->emulated_flag ?: binary;
        lo = allowed_for(binary)->emulated_lo;
        *ret = (oracle_comp){
                .binary = binary,
                .emulated = emulated,
                .min_compat = s->min_compat_flag ?: allowed_for(binary)->min_compat_fixed
                                                     ?: (emulated - 1 > lo ? emulated - 1 : lo),
                .emulated_flag = s->emulated_flag != 0,
                .min_compat_flag = s->min_compat_flag != 0,
                .forward_compat = s->forward_compat,
        };
}

/* Every intermediate state of every successful case is valid by the oracle above, emulation
 * moves one minor per step, and no step goes below the min-compatibility floor unless forced. */
static void test_every_step_valid(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                const plan_case *c = &cases[i];
                _cleanup_(plan_freep) plan *p = NULL;
                plan_component comps[3];
                oracle_comp o[3];
                plan_target t;
                uint32_t floor = c->floor;
                size_t n;

                if (c->refusal)
                        continue;
                build_components(c, comps, &n);
                for (size_t k = 0; k < n; k++) {
                        oracle_from_spec(&c->comps[k], &o[k]);
                        if (o[k].min_compat > floor)
                                floor = o[k].min_compat;
                }
                target_from_case(c, &t);
                assert_int_equal(plan_compute(comps, n, &t, &p, NULL), 0);

                for (size_t k = 0; k < p->n_steps; k++) {
                        const plan_step *s = &p->steps[k];
                        oracle_comp *x = &o[s->component];
                        uint32_t before = x->emulated;
                        bool moves = !c->moving[0];

                        for (size_t m = 0; m < ELEMENTSOF(c->moving) && c->moving[m]; m++)
                                moves = moves || streq(c->moving[m], names[s->component]);
                        if (!moves)
                                fail_msg("%s: step %zu moves %s, which is not among the components", c->name, k + 1,
                                         names[s->component]);

                        assert_int_equal(s->binary.major, 1);
                        assert_int_equal(s->emulated.major, 1);
                        assert_int_equal(s->min_compat.major, 1);
                        *x = (oracle_comp){
                                .binary = s->binary.minor,
                                .emulated = s->emulated.minor,
                                .min_compat = s->min_compat.minor,
                                .emulated_flag = s->emulated_flag,
                                .min_compat_flag = s->min_compat_flag,
                                .forward_compat = s->forward_compat,
                        };
                        oracle_check_node(c->name, k + 1, o, n, s->component);
                        if (s->kind == STEP_EMULATION && x->emulated != before + 1 && x->emulated + 1 != before)
                                fail_msg("%s: step %zu moves emulation 1.%u -> 1.%u", c->name, k + 1, before,
                                         x->emulated);
                        if (!c->force && x->min_compat < floor)
                                fail_msg("%s: step %zu leaves %s at min-compatibility 1.%u, below 1.%u", c->name,
                                         k + 1, names[s->component], x->min_compat, floor);
                }
        }
}

/* A node state as it stands, checked by the same skew rules a plan keeps (single writes). */
static void test_validate_state(void **state) {
        static const struct {
                comp_spec comps[3];
                const char *refusal; /* NULL: valid */
        } rows[] = {
                { { V("v1.35.0"), V("v1.35.0"), V("v1.35.0") }, NULL },
                { { V("v1.34.2"), { "v1.35.0", 34, 0, false }, V("v1.34.2") },
                  "kube-controller-manager binary 1.35 would be newer than kube-apiserver's 1.34" },
                { { { "v1.35.0", 34, 0, false }, V("v1.35.0"), { "v1.35.0", 34, 0, false } },
                  "kube-controller-manager would emulate 1.35, above kube-apiserver's 1.34" },
                { { V("v1.35.0"), V("v1.35.0"), { "v1.35.0", 33, 0, false } },
                  "kube-scheduler would emulate 1.33, below kube-apiserver's min-compatibility version 1.34" },
        };

        for (size_t i = 0; i < ELEMENTSOF(rows); i++) {
                _cleanup_free_ char *error = NULL;
                plan_case c = { .name = "validate" };
                plan_component comps[3];
                size_t n;
                int r;

                memcpy(c.comps, rows[i].comps, sizeof(c.comps));
                build_components(&c, comps, &n);
                r = plan_validate_state(comps, n, &error);
                if (!rows[i].refusal && r < 0)
                        fail_msg("row %zu: refused: %s", i, error ?: "?");
                if (rows[i].refusal && (r != -EINVAL || !error || !streq(error, rows[i].refusal)))
                        fail_msg("row %zu: got %d \"%s\", want \"%s\"", i, r, error ?: "", rows[i].refusal);
        }
}

/* A plugin whose binary never has --min-compatibility-version (min_compat_since {0,0}): the
 * planner never writes it, even where the Kubernetes rules would allow it. */
static void test_plugin_without_min_compat_flag(void **state) {
        _cleanup_(plan_freep) plan *p = NULL;
        _cleanup_free_ char *error = NULL;
        plan_case c = { .name = "plugin", .comps = { V("v1.35.0") } };
        plan_component comps[3];
        plan_target t = { .min_compat_set = true, .min_compat = KMINOR(1, 35) };
        size_t n;

        build_components(&c, comps, &n);
        comps[0].min_compat_since = KMINOR(0, 0);
        assert_int_equal(kversion_parse("v1.35.0", &t.binary, NULL), 0);
        assert_int_equal(plan_compute(comps, n, &t, &p, &error), -EINVAL);
        assert_non_null(error);
        if (!strstr(error, "kube-apiserver v1.35.0 has no --min-compatibility-version flag"))
                fail_msg("reason: %s", error);
}

static const char forward_manifest[] =
        "apiVersion: v1\n"
        "kind: Pod\n"
        "metadata:\n"
        "  name: kube-apiserver\n"
        "  namespace: kube-system\n"
        "spec:\n"
        "  containers:\n"
        "  - name: kube-apiserver\n"
        "    image: registry.k8s.io/kube-apiserver:v1.35.0\n"
        "    command:\n"
        "    - kube-apiserver\n"
        "    - --emulated-version=1.33\n"
        "    - --emulation-forward-compatible=true\n"
        "    - --runtime-config-emulation-forward-compatible=true\n"
        "    - --secure-port=6443\n";

static bool has_item(json_t *container, const char *item) {
        json_t *v;
        size_t i;

        json_array_foreach(json_object_get(container, "command"), i, v)
                if (streq(json_string_value(v) ?: "", item))
                        return true;
        return false;
}

/* The planner's steps applied to a real manifest: the forward-compatibility flags stay in the
 * manifest while emulation is below the binary and go when it reaches it (FACTS.md: each is an
 * error when emulation == binary). */
static void test_apply_keeps_forward_compat(void **state) {
        _cleanup_(plugin_set_freep) plugin_set *plugins = NULL;
        _cleanup_(plan_freep) plan *p = NULL;
        _cleanup_free_ char *error = NULL;
        _cleanup_(json_decrefp) json_t *pod = NULL;
        _cleanup_(component_done) component co = {};
        const char *dir = getenv("CPLET_PLUGIN_BUILD_DIR");
        const plugin *api;
        plan_component pc;
        plan_target t = {};

        assert_non_null(dir);
        assert_int_equal(plugin_set_load(dir, &plugins, &error), 0);
        api = plugin_set_find(plugins, "kube-apiserver");
        assert_non_null(api);
        assert_int_equal(manifest_parse(forward_manifest, strlen(forward_manifest), "test", &pod, &error), 0);
        assert_int_equal(component_read(pod, json_array_get(json_object_get(json_object_get(pod, "spec"), "containers"), 0),
                                        api, "kube-apiserver.yaml", &co),
                         0);
        assert_true(co.forward_compat_set);
        pc = (plan_component){
                .name = api->name,
                .emulated_since = api->emulated_version_since,
                .min_compat_since = api->min_compatibility_version_since,
                .forward_compat_since = api->emulation_forward_compatible_since,
                .repository = co.image_ref.repository,
                .binary = co.binary,
                .emulated = co.emulated,
                .min_compat = co.min_compat,
                .min_compat_explicit = co.min_compat_explicit,
                .forward_compat = co.forward_compat_set,
        };
        assert_int_equal(kversion_parse("v1.35.0", &t.binary, NULL), 0);
        assert_int_equal(plan_compute(&pc, 1, &t, &p, &error), 0);
        assert_int_equal(p->n_steps, 2);

        for (size_t k = 0; k < p->n_steps; k++) {
                _cleanup_(json_decrefp) json_t *next = NULL;
                json_t *container;
                bool kept = k == 0;

                assert_int_equal(component_apply_step(&co, &p->steps[k], &next, &error), 0);
                container = component_container_in(&co, next);
                assert_non_null(container);
                if (has_item(container, "--emulation-forward-compatible=true") != kept ||
                    has_item(container, "--runtime-config-emulation-forward-compatible=true") != kept)
                        fail_msg("step %zu (emulated 1.%u): the forward-compatibility flags are %s", k + 1,
                                 p->steps[k].emulated.minor, kept ? "gone" : "still there");
                assert_int_equal(has_item(container, "--emulated-version=1.34"), k == 0);
                /* The next step applies to this result. */
                component_done(&co);
                assert_int_equal(component_read(next, container, api, "kube-apiserver.yaml", &co), 0);
        }
}

int main(void) {
        struct CMUnitTest tests[ELEMENTSOF(cases) + 9] = {
                cmocka_unit_test(test_plugin_without_min_compat_flag),
                cmocka_unit_test(test_validate_state),
                cmocka_unit_test(test_apply_keeps_forward_compat),
                cmocka_unit_test(test_step_images),
                cmocka_unit_test(test_no_components),
                cmocka_unit_test(test_every_step_valid),
                cmocka_unit_test(test_subset_of_all_is_full_plan),
                cmocka_unit_test(test_components_refused),
                cmocka_unit_test(test_cluster_sequence),
        };

        /* One TAP case per table row, named after it. */
        ADD_TABLE_CASES(tests, 9, cases, name, test_case);
        return RUN_TAP_GROUP("test-plan", tests, NULL, NULL);
}
