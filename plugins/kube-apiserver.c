/* SPDX-License-Identifier: Apache-2.0 */
/* kube-apiserver: goes first on upgrades, reports its versions on /version. */

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cplet-plugin.h"

#define BODY_MAX (64 * 1024)

static int read_minor_pair(json_t *obj, const char *major_key, const char *minor_key, struct cplet_minor *ret) {
        const char *ma = json_string_value(json_object_get(obj, major_key));
        const char *mi = json_string_value(json_object_get(obj, minor_key));
        char *end;
        unsigned long major, minor;

        if (!ma || !mi || !*ma || !*mi)
                return -ENOENT;
        major = strtoul(ma, &end, 10);
        if (*end)
                return -EINVAL;
        /* Some distributions report minor "34+" for builds past the tag. */
        minor = strtoul(mi, &end, 10);
        if (*end && strcmp(end, "+") != 0)
                return -EINVAL;
        if (major > 1000 || minor > 100000)
                return -EINVAL;
        ret->major = (uint32_t) major;
        ret->minor = (uint32_t) minor;
        return 0;
}

/* Fields as apimachinery's version.Info marshals them; the emulation fields exist from 1.33
 * and are omitted when empty. */
static int read_versions(const char *body, size_t size, struct cplet_reported_versions *ret) {
        struct cplet_reported_versions v = {};
        json_error_t error;
        json_t *root;
        const char *git;
        int r;

        if (size > BODY_MAX)
                return -E2BIG;
        root = json_loadb(body, size, JSON_REJECT_DUPLICATES, &error);
        if (!root)
                return -EINVAL;
        if (!json_is_object(root)) {
                json_decref(root);
                return -EINVAL;
        }

        r = read_minor_pair(root, "major", "minor", &v.binary);
        if (r < 0)
                goto finish;
        git = json_string_value(json_object_get(root, "gitVersion"));
        if (git)
                snprintf(v.git_version, sizeof(v.git_version), "%s", git);

        r = read_minor_pair(root, "emulationMajor", "emulationMinor", &v.emulated);
        if (r == -EINVAL)
                goto finish;
        v.has_emulation = r == 0;
        r = read_minor_pair(root, "minCompatibilityMajor", "minCompatibilityMinor", &v.min_compat);
        if (r == -EINVAL)
                goto finish;
        v.has_min_compat = r == 0;
        r = 0;
        *ret = v;
finish:
        json_decref(root);
        return r;
}

static const char *const forward_compatible_flags[] = {
        "emulation-forward-compatible",
        "runtime-config-emulation-forward-compatible",
        NULL,
};

static const struct cplet_health_endpoint health_endpoints[] = {
        { .scheme = "HTTPS", .port = 6443, .path = "/readyz" },
        { .scheme = "HTTPS", .port = 6443, .path = "/livez" },
};

static const struct cplet_plugin plugin = {
        .abi_major = CPLET_PLUGIN_ABI_MAJOR,
        .abi_minor = CPLET_PLUGIN_ABI_MINOR,
        .size = sizeof(struct cplet_plugin),
        .name = "kube-apiserver",
        .manifest_file = "kube-apiserver.yaml",
        .rank = 10,
        .emulated_version_since = { 1, 31 },
        .min_compatibility_version_since = { 1, 35 },
        .emulation_forward_compatible_since = { 1, 33 },
        .forward_compatible_flags = forward_compatible_flags,
        .health_endpoints = health_endpoints,
        .n_health_endpoints = sizeof(health_endpoints) / sizeof(health_endpoints[0]),
        .version_path = "/version",
        .read_versions = read_versions,
};

__attribute__((visibility("default"))) const struct cplet_plugin *cplet_plugin_entry(void);
const struct cplet_plugin *cplet_plugin_entry(void) {
        return &plugin;
}
