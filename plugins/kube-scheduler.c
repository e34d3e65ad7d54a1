/* SPDX-License-Identifier: Apache-2.0 */
/* kube-scheduler: goes last on upgrades; health on 10259. */

#include "cplet-plugin.h"

static const struct cplet_health_endpoint health_endpoints[] = {
        { .scheme = "HTTPS", .port = 10259, .path = "/readyz" },
        { .scheme = "HTTPS", .port = 10259, .path = "/livez" },
};

static const struct cplet_plugin plugin = {
        .abi_major = CPLET_PLUGIN_ABI_MAJOR,
        .abi_minor = CPLET_PLUGIN_ABI_MINOR,
        .size = sizeof(struct cplet_plugin),
        .name = "kube-scheduler",
        .manifest_file = "kube-scheduler.yaml",
        .rank = 30,
        .emulated_version_since = { 1, 31 },
        .min_compatibility_version_since = { 1, 35 },
        .health_endpoints = health_endpoints,
        .n_health_endpoints = sizeof(health_endpoints) / sizeof(health_endpoints[0]),
};

__attribute__((visibility("default"))) const struct cplet_plugin *cplet_plugin_entry(void);
const struct cplet_plugin *cplet_plugin_entry(void) {
        return &plugin;
}
