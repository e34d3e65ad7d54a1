/* SPDX-License-Identifier: Apache-2.0 */
/* The cplet.io/target annotation (anyone who can patch the Node can write it), as target_parse()
 * reads it with the limits of a kubeadm control-plane node. Whatever it accepts must stay inside
 * those limits: no free-form value reaches a command line. */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>

#include "fuzz.h"
#include "operation.h"
#include "target.h"
#include "version.h"

static const char *const components[] = { "kube-apiserver", "kube-controller-manager", "kube-scheduler", NULL };
static const char *const repositories[] = { "registry.k8s.io", "localhost:5000/k8s", NULL };
static const target_limits limits = { .known_components = components, .allowed_repositories = repositories };

static bool listed(const char *const *list, const char *s) {
        for (; *list; list++)
                if (strcmp(*list, s) == 0)
                        return true;
        return false;
}

/* A value that reaches a flag or a message: short, printable, no separator of a command line. */
static void check_value(const char *field, const char *v) {
        if (!v)
                return;
        fuzz_assert(*v && strlen(v) <= 256, "%s of length %zu accepted", field, strlen(v));
        for (const char *p = v; *p; p++)
                fuzz_assert(isgraph((unsigned char) *p), "%s \"%s\" with byte 0x%02x accepted", field, v,
                            (unsigned char) *p);
}

static void check_target(const target *t) {
        rollout_options options;
        char *error = NULL;
        kminor m;
        size_t n = 0;

        fuzz_assert(t->id && *t->id && strlen(t->id) <= TARGET_ID_MAX && isalnum((unsigned char) t->id[0]),
                    "id \"%s\" accepted", t->id ?: "(null)");
        for (const char *p = t->id; *p; p++)
                fuzz_assert(isalnum((unsigned char) *p) || strchr("-._", *p), "id \"%s\" accepted", t->id);
        fuzz_assert(t->generation >= 1 && t->generation <= INT64_MAX, "generation %llu accepted",
                    (unsigned long long) t->generation);
        fuzz_assert(t->binary_version, "no binaryVersion");
        check_value("binaryVersion", t->binary_version);
        check_value("emulatedVersion", t->emulated_version);
        check_value("minCompatibilityVersion", t->min_compat_version);
        check_value("stableFor", t->stable_for);
        check_value("stepTimeout", t->step_timeout);
        fuzz_assert(!t->emulated_version || kminor_parse(t->emulated_version, &m, NULL) >= 0,
                    "emulatedVersion \"%s\" accepted", t->emulated_version);
        fuzz_assert(!t->min_compat_version || kminor_parse(t->min_compat_version, &m, NULL) >= 0,
                    "minCompatibilityVersion \"%s\" accepted", t->min_compat_version);
        fuzz_assert(!t->image_repository || listed(repositories, t->image_repository),
                    "imageRepository \"%s\" accepted", t->image_repository);
        for (char **c = t->components; c && *c; c++, n++) {
                fuzz_assert(listed(components, *c), "component \"%s\" accepted", *c);
                for (char **o = t->components; o < c; o++)
                        fuzz_assert(strcmp(*o, *c) != 0, "component \"%s\" named twice", *c);
        }
        fuzz_assert(!t->components || (n >= 1 && n <= TARGET_COMPONENTS_MAX), "%zu components accepted", n);
        /* What the daemon hands to the rollout must be accepted there too. */
        fuzz_assert(op_parse_rollout_options(t->stable_for, t->step_timeout, t->on_failure_stop ? "stop" : NULL,
                                             &options, &error) >= 0,
                    "accepted, then refused by the rollout: %s", error ?: "?");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        target *t = NULL;
        char *error = NULL;
        int r;

        r = target_parse((const char *) data, size, &limits, &t, &error);
        if (r < 0) {
                fuzz_assert(r == -EINVAL || r == -E2BIG || r == -ENOMEM, "unexpected error %d", r);
                fuzz_check_error(r, error, "target");
                /* Quoted and cut short: a hostile value must not flood a log or the status, nor
                 * write a line of its own in them. */
                if (error) {
                        fuzz_assert(strlen(error) < 300, "error of %zu bytes: %s", strlen(error), error);
                        for (const char *p = error; *p; p++)
                                fuzz_assert((unsigned char) *p >= 0x20 && (unsigned char) *p < 0x7f,
                                            "byte 0x%02x in the error: %s", (unsigned char) *p, error);
                }
                fuzz_assert(!t, "refused, but a target handed out");
                free(error);
                return 0;
        }
        fuzz_assert(size <= TARGET_SIZE_MAX, "%zu bytes accepted", size);
        fuzz_assert(!error, "accepted with a message: %s", error);
        check_target(t);
        target_free(t);
        return 0;
}
