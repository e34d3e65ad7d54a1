/* SPDX-License-Identifier: Apache-2.0 */
/* The preflight (agent/lib/preflight.h) against the release data of data/releases/, with real
 * flag, gate and plugin names: what the binaries of a minor refuse, what is only a warning, and
 * --drop-removed. */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "macro.h"
#include "preflight.h"

#define FILE_NAME "kube-apiserver.yaml"

/* A container running `component` with the given flags (NULL-terminated), kubeadm's form. */
static json_t *container_of(const char *component, const char *const *flags) {
        json_t *command = json_array();
        json_t *c = json_pack("{s:s, s:s, s:o}", "name", component, "image", "registry.k8s.io/x:v1.33.0", "command",
                              command);

        assert_non_null(c);
        json_array_append_new(command, json_string(component));
        for (const char *const *f = flags; *f; f++)
                json_array_append_new(command, json_string(*f));
        return c;
}

/* The container's command after the component, as one space-separated string. */
static char *flags_text(json_t *container) {
        json_t *command = json_object_get(container, "command"), *v;
        char *s = strdup("");
        size_t i;

        json_array_foreach(command, i, v) {
                char *more;

                if (i == 0)
                        continue;
                more = strdup_printf("%s%s%s", s, *s ? " " : "", json_string_value(v));
                free(s);
                s = more;
                assert_non_null(s);
        }
        return s;
}

typedef struct run {
        json_t *container;
        cmdline c;
        preflight_report r;
} run;

static void run_done(run *x) {
        preflight_report_done(&x->r);
        json_decref(x->container);
}

/* Checks `flags` as kube-apiserver (or `component`) binary.minor emulating emulated.minor. */
static void check_as(run *x, const char *component, unsigned binary, unsigned emulated, const char *const *flags) {
        _cleanup_free_ char *error = NULL;

        *x = (run){ .container = container_of(component, flags) };
        assert_int_equal(cmdline_open(x->container, component, &x->c, &error), 0);
        assert_int_equal(preflight_check(component, FILE_NAME, KMINOR(1, binary), KMINOR(1, emulated), &x->c, &x->r),
                         0);
}

#define CHECK(x, component, binary, emulated, ...)                                                         \
        check_as((x), (component), (binary), (emulated), (const char *const[]){ __VA_ARGS__, NULL })

/* The one finding about `flag` (and `item`), which must exist. */
static const preflight_finding *finding(const run *x, const char *flag, const char *item) {
        for (size_t i = 0; i < x->r.n_findings; i++) {
                const preflight_finding *f = &x->r.findings[i];

                if ((!flag || (f->flag && streq(f->flag, flag))) && (!item || (f->item && streq(f->item, item))))
                        return f;
        }
        for (size_t i = 0; i < x->r.n_findings; i++)
                print_message("# finding: %s\n", x->r.findings[i].message);
        fail_msg("no finding about %s %s", flag ?: "-", item ?: "-");
        return NULL;
}

static void assert_refusal(const preflight_finding *f, const char *drop, const char *message) {
        assert_false(f->warning);
        assert_string_equal(f->component, "kube-apiserver");
        assert_string_equal(f->file, FILE_NAME);
        assert_non_null(f->drop);
        assert_string_equal(f->drop, drop);
        assert_string_equal(f->message, message);
}

static void assert_no_refusal(const run *x) {
        for (size_t i = 0; i < x->r.n_findings; i++)
                if (!x->r.findings[i].warning)
                        fail_msg("unexpected refusal: %s", x->r.findings[i].message);
        assert_int_equal(x->r.n_refusals, 0);
}

static void test_removed_flag(void **state) {
        _cleanup_(run_done) run x = {};
        const preflight_finding *f;

        /* CHANGELOG-1.33 #130162: kube-apiserver --cloud-provider and --cloud-config are gone. */
        CHECK(&x, "kube-apiserver", 33, 33, "--cloud-provider=gce", "--cloud-config=/etc/gce.conf",
              "--secure-port=6443");
        assert_int_equal(x.r.n_refusals, 2);
        assert_int_equal(x.r.n_findings, 2);
        f = finding(&x, "cloud-provider", NULL);
        assert_refusal(f, "cloud-provider",
                       FILE_NAME ": drop --cloud-provider (removed in 1.33; run an external cloud controller manager "
                                 "(kubelet and kube-controller-manager with --cloud-provider=external))");
        assert_null(f->item);
        assert_true(kminor_eq(f->removed_in, KMINOR(1, 33)));
        assert_refusal(finding(&x, "cloud-config", NULL), "cloud-config",
                       FILE_NAME ": drop --cloud-config (removed in 1.33; the cloud configuration file belongs to "
                                 "the external cloud controller manager)");
}

static void test_removed_flag_before_removal(void **state) {
        _cleanup_(run_done) run x = {};
        const preflight_finding *f;

        /* 1.32 still has it, deprecated: a warning with the data's deprecation text. */
        CHECK(&x, "kube-apiserver", 32, 32, "--cloud-provider=gce");
        assert_no_refusal(&x);
        assert_int_equal(x.r.n_findings, 1);
        f = finding(&x, "cloud-provider", NULL);
        assert_true(f->warning);
        assert_null(f->drop);
        assert_non_null(strstr(f->message, "--cloud-provider is deprecated in 1.32: "));
        /* A 1.34 binary emulating 1.32 still refuses it: flags follow the binary. */
        run_done(&x);
        CHECK(&x, "kube-apiserver", 34, 32, "--cloud-provider=gce");
        assert_int_equal(x.r.n_refusals, 1);
}

static void test_removed_flag_pflag_forms(void **state) {
        _cleanup_(run_done) run x = {};
        const preflight_finding *f;

        /* pflag's WordSepNormalizeFunc: --cloud_provider is --cloud-provider. */
        CHECK(&x, "kube-apiserver", 33, 33, "--cloud_provider=gce");
        assert_int_equal(x.r.n_refusals, 1);
        f = finding(&x, "cloud_provider", NULL);
        assert_refusal(f, "cloud-provider",
                       FILE_NAME ": drop --cloud_provider (removed in 1.33; run an external cloud controller manager "
                                 "(kubelet and kube-controller-manager with --cloud-provider=external))");
        run_done(&x);

        /* --flag value: the value is no flag of its own. */
        CHECK(&x, "kube-apiserver", 33, 33, "--cloud-provider", "gce", "--secure-port", "6443");
        assert_int_equal(x.r.n_refusals, 1);
        assert_int_equal(x.r.n_findings, 1);
        assert_string_equal(finding(&x, "cloud-provider", NULL)->drop, "cloud-provider");
}

static void test_kcm_removed_flag(void **state) {
        _cleanup_(run_done) run x = {};
        const preflight_finding *f;

        /* CHANGELOG-1.31 #124948. kube-controller-manager --cloud-provider is not removed. */
        CHECK(&x, "kube-controller-manager", 31, 31, "--horizontal-pod-autoscaler-upscale-delay=3m",
              "--cloud-provider=external");
        assert_int_equal(x.r.n_refusals, 1);
        f = finding(&x, "horizontal-pod-autoscaler-upscale-delay", NULL);
        assert_string_equal(f->component, "kube-controller-manager");
        assert_string_equal(f->drop, "horizontal-pod-autoscaler-upscale-delay");
}

static void test_unknown_flag_warns(void **state) {
        _cleanup_(run_done) run x = {};
        const preflight_finding *f;

        CHECK(&x, "kube-apiserver", 33, 33, "--no-such-flag=1");
        assert_no_refusal(&x);
        f = finding(&x, "no-such-flag", NULL);
        assert_true(f->warning);
        assert_string_equal(f->message, FILE_NAME ": --no-such-flag is not in cplet's list of 1.33 kube-apiserver "
                                                  "flags (the list may be incomplete)");
}

static void test_removed_gate(void **state) {
        _cleanup_(run_done) run x = {};
        const preflight_finding *f;

        /* Gone from the 1.31 binaries (kubermatic#13936): unrecognized whatever the emulation. */
        CHECK(&x, "kube-apiserver", 31, 31, "--feature-gates=InTreePluginvSphereUnregister=true");
        assert_int_equal(x.r.n_refusals, 1);
        f = finding(&x, "feature-gates", "InTreePluginvSphereUnregister");
        assert_refusal(f, "InTreePluginvSphereUnregister",
                       FILE_NAME ": drop feature gate InTreePluginvSphereUnregister from --feature-gates (removed in "
                                 "1.31)");
        assert_true(kminor_eq(f->removed_in, KMINOR(1, 31)));
        run_done(&x);

        CHECK(&x, "kube-apiserver", 30, 30, "--feature-gates=InTreePluginvSphereUnregister=true");
        assert_no_refusal(&x);
}

static void test_locked_gate_follows_emulation(void **state) {
        _cleanup_(run_done) run x = {};

        /* ImageMaximumGCAge: 1.30 Beta, 1.35 GA locked to true. A 1.35 binary emulating 1.34 takes
         * the 1.34 spec (not locked); at 1.35 it is locked. */
        CHECK(&x, "kube-apiserver", 35, 34, "--feature-gates=ImageMaximumGCAge=false");
        assert_no_refusal(&x);
        run_done(&x);

        CHECK(&x, "kube-apiserver", 35, 35, "--feature-gates=ImageMaximumGCAge=false");
        assert_int_equal(x.r.n_refusals, 1);
        assert_refusal(finding(&x, "feature-gates", "ImageMaximumGCAge"), "ImageMaximumGCAge",
                       FILE_NAME ": drop feature gate ImageMaximumGCAge from --feature-gates (at emulated version "
                                 "1.35: \"cannot set feature gate ImageMaximumGCAge to false, feature is locked to "
                                 "true\")");
        run_done(&x);

        /* Set to its locked value: accepted. */
        CHECK(&x, "kube-apiserver", 35, 35, "--feature-gates=ImageMaximumGCAge=true");
        assert_no_refusal(&x);
}

static void test_kube_prefix(void **state) {
        _cleanup_(run_done) run x = {};

        /* 1.31+: "kube:" is the default component's prefix. */
        CHECK(&x, "kube-apiserver", 35, 35, "--feature-gates", "kube:ImageMaximumGCAge=false");
        assert_int_equal(x.r.n_refusals, 1);
        assert_string_equal(finding(&x, "feature-gates", "ImageMaximumGCAge")->drop, "ImageMaximumGCAge");
        run_done(&x);

        CHECK(&x, "kube-apiserver", 31, 31, "--feature-gates=kube:InTreePluginvSphereUnregister=true");
        assert_int_equal(x.r.n_refusals, 1);
        run_done(&x);

        /* Mixed forms: the registry's own error. */
        CHECK(&x, "kube-apiserver", 33, 33, "--feature-gates=kube:ImageMaximumGCAge=true",
              "--feature-gates=AllAlpha=false");
        assert_int_equal(x.r.n_refusals, 1);
        assert_non_null(strstr(finding(&x, "feature-gates", NULL)->message,
                               "\"set kube feature gates with default empty prefix or kube: prefix consistently, do "
                               "not mix use\""));
        assert_null(finding(&x, "feature-gates", NULL)->drop);
        run_done(&x);

        /* 1.30's mapStringBool knows no prefix. */
        CHECK(&x, "kube-apiserver", 30, 30, "--feature-gates=kube:ImageMaximumGCAge=true");
        assert_int_equal(x.r.n_refusals, 1);
        assert_non_null(strstr(finding(&x, "feature-gates", NULL)->message,
                               "\"unrecognized feature gate: kube:ImageMaximumGCAge\""));
}

static void test_gate_newer_than_emulation(void **state) {
        _cleanup_(run_done) run x = {};

        /* UserNamespacesHostNetworkSupport: first spec 1.35 (Alpha). */
        CHECK(&x, "kube-apiserver", 36, 34, "--feature-gates=UserNamespacesHostNetworkSupport=true");
        assert_int_equal(x.r.n_refusals, 1);
        assert_non_null(strstr(finding(&x, "feature-gates", "UserNamespacesHostNetworkSupport")->message,
                               "\"cannot set feature gate UserNamespacesHostNetworkSupport to true, feature is "
                               "PreAlpha at emulated version 1.34\""));
        run_done(&x);

        CHECK(&x, "kube-apiserver", 35, 35, "--feature-gates=UserNamespacesHostNetworkSupport=true");
        assert_no_refusal(&x);
        run_done(&x);

        /* A 1.34 binary does not register it at all. */
        CHECK(&x, "kube-apiserver", 34, 34, "--feature-gates=UserNamespacesHostNetworkSupport=true");
        assert_int_equal(x.r.n_refusals, 1);
        assert_non_null(strstr(finding(&x, "feature-gates", "UserNamespacesHostNetworkSupport")->message,
                               "does not know it yet (added in 1.35"));
}

static void test_gate_values(void **state) {
        _cleanup_(run_done) run x = {};
        const preflight_finding *f;

        /* Unknown to the data: a warning. strconv.ParseBool spellings are accepted. */
        CHECK(&x, "kube-apiserver", 33, 33, "--feature-gates=NoSuchGateAnywhere=true,ImageMaximumGCAge=T");
        assert_no_refusal(&x);
        f = finding(&x, "feature-gates", "NoSuchGateAnywhere");
        assert_true(f->warning);
        assert_non_null(strstr(f->message, "is not in cplet's data"));
        run_done(&x);

        CHECK(&x, "kube-apiserver", 33, 33, "--feature-gates=ImageMaximumGCAge=yes,ImageMaximumGCAge");
        assert_int_equal(x.r.n_refusals, 1);
        assert_non_null(strstr(finding(&x, "feature-gates", "ImageMaximumGCAge")->message,
                               "\"invalid value of ImageMaximumGCAge=yes\""));
}

static void test_admission_plugins(void **state) {
        _cleanup_(run_done) run x = {};
        const preflight_finding *f;

        /* CHANGELOG-1.31 #124505. */
        CHECK(&x, "kube-apiserver", 31, 31, "--enable-admission-plugins=NodeRestriction, PersistentVolumeLabel",
              "--disable-admission-plugins=FooPlugin");
        assert_int_equal(x.r.n_refusals, 1);
        f = finding(&x, "enable-admission-plugins", "PersistentVolumeLabel");
        assert_refusal(f, "PersistentVolumeLabel",
                       FILE_NAME ": drop admission plugin PersistentVolumeLabel from --enable-admission-plugins "
                                 "(removed in 1.31; use kubernetes-sigs/cloud-pv-admission-labeler if PV zone labels "
                                 "are still needed)");
        f = finding(&x, "disable-admission-plugins", "FooPlugin");
        assert_true(f->warning);
        assert_non_null(strstr(f->message, "not in cplet's list of 1.31 admission plugins"));
        run_done(&x);

        CHECK(&x, "kube-apiserver", 30, 30, "--enable-admission-plugins=NodeRestriction,PersistentVolumeLabel");
        assert_int_equal(x.r.n_findings, 0);
}

static void test_release_outside_data(void **state) {
        _cleanup_(run_done) run x = {};

        assert_true(preflight_release_known(KMINOR(1, 30)));
        assert_true(preflight_release_known(KMINOR(1, 36)));
        assert_false(preflight_release_known(KMINOR(1, 29)));
        CHECK(&x, "kube-apiserver", 40, 40, "--cloud-provider=gce", "--no-such-flag",
              "--feature-gates=InTreePluginvSphereUnregister=true");
        assert_int_equal(x.r.n_findings, 1);
        assert_true(x.r.findings[0].warning);
        assert_string_equal(x.r.findings[0].message, FILE_NAME ": cplet has no release data for kube-apiserver 1.40 "
                                                              "(it knows 1.30 to 1.36): its flags are not checked");
}

static void test_dedup(void **state) {
        _cleanup_(run_done) run x = {};

        CHECK(&x, "kube-apiserver", 33, 33, "--cloud-provider=gce", "--cloud-provider=aws", "--no-such-flag");
        assert_int_equal(x.r.n_findings, 2);
        assert_int_equal(preflight_check("kube-apiserver", FILE_NAME, KMINOR(1, 33), KMINOR(1, 33), &x.c, &x.r), 0);
        assert_int_equal(x.r.n_findings, 2);
        assert_int_equal(x.r.n_refusals, 1);
}

static void test_removed_in_next(void **state) {
        _cleanup_(run_done) run x = {};

        CHECK(&x, "kube-apiserver", 32, 32, "--cloud-provider=gce", "--enable-admission-plugins=NodeRestriction",
              "--feature-gates=ImageMaximumGCAge=true");
        preflight_report_done(&x.r);
        assert_int_equal(preflight_removed_in("kube-apiserver", FILE_NAME, KMINOR(1, 33), &x.c, &x.r), 0);
        assert_int_equal(x.r.n_findings, 1);
        assert_string_equal(x.r.findings[0].drop, "cloud-provider");
        assert_non_null(strstr(x.r.findings[0].message, "(removed in 1.33;"));
        preflight_report_done(&x.r);
        assert_int_equal(preflight_removed_in("kube-apiserver", FILE_NAME, KMINOR(1, 34), &x.c, &x.r), 0);
        assert_int_equal(x.r.n_findings, 0);
        /* 1.30 → 1.31: the gate and the plugin. */
        run_done(&x);
        CHECK(&x, "kube-apiserver", 30, 30, "--feature-gates=InTreePluginvSphereUnregister=true",
              "--enable-admission-plugins=PersistentVolumeLabel");
        preflight_report_done(&x.r);
        assert_int_equal(preflight_removed_in("kube-apiserver", FILE_NAME, KMINOR(1, 31), &x.c, &x.r), 0);
        assert_int_equal(x.r.n_findings, 2);
}

static void drop_case(const char *const *flags, const char *entry, int expected, const char *after) {
        _cleanup_free_ char *error = NULL, *text = NULL;
        json_auto_t *container = container_of("kube-apiserver", flags);
        cmdline c;

        assert_int_equal(cmdline_open(container, "kube-apiserver", &c, &error), 0);
        assert_int_equal(preflight_drop(&c, entry), expected);
        text = flags_text(container);
        assert_string_equal(text, after);
}

#define DROP(entry, expected, after, ...)                                                                    \
        drop_case((const char *const[]){ __VA_ARGS__, NULL }, (entry), (expected), (after))

static void test_drop(void **state) {
        /* Every occurrence of a flag, with a separate value. */
        DROP("cloud-provider", 1, "--secure-port=6443", "--cloud-provider", "gce", "--secure-port=6443",
             "--cloud_provider=aws");
        /* One gate of several; the rest keeps its form and place. */
        DROP("InTreePluginvSphereUnregister", 1, "--v=2 --feature-gates=A=true,B=false --secure-port=6443", "--v=2",
             "--feature-gates=A=true,InTreePluginvSphereUnregister=true,B=false", "--secure-port=6443");
        DROP("InTreePluginvSphereUnregister", 1, "--feature-gates kube:A=true",
             "--feature-gates", "kube:InTreePluginvSphereUnregister=true,kube:A=true");
        /* The last gate: the flag goes. */
        DROP("InTreePluginvSphereUnregister", 1, "--v=2", "--feature-gates=InTreePluginvSphereUnregister=true",
             "--v=2");
        /* Plugins, from both lists. */
        DROP("PersistentVolumeLabel", 1, "--enable-admission-plugins=NodeRestriction",
             "--enable-admission-plugins=NodeRestriction,PersistentVolumeLabel",
             "--disable-admission-plugins=PersistentVolumeLabel");
        /* Nothing of that name: nothing changes. */
        DROP("cloud-config", 0, "--cloud-provider=gce --feature-gates=A=true", "--cloud-provider=gce",
             "--feature-gates=A=true");
        DROP("Persistent", 0, "--enable-admission-plugins=PersistentVolumeLabel",
             "--enable-admission-plugins=PersistentVolumeLabel");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_removed_flag),
                cmocka_unit_test(test_removed_flag_before_removal),
                cmocka_unit_test(test_removed_flag_pflag_forms),
                cmocka_unit_test(test_kcm_removed_flag),
                cmocka_unit_test(test_unknown_flag_warns),
                cmocka_unit_test(test_removed_gate),
                cmocka_unit_test(test_locked_gate_follows_emulation),
                cmocka_unit_test(test_kube_prefix),
                cmocka_unit_test(test_gate_newer_than_emulation),
                cmocka_unit_test(test_gate_values),
                cmocka_unit_test(test_admission_plugins),
                cmocka_unit_test(test_release_outside_data),
                cmocka_unit_test(test_dedup),
                cmocka_unit_test(test_removed_in_next),
                cmocka_unit_test(test_drop),
        };

        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
