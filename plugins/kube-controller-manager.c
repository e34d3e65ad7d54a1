/* SPDX-License-Identifier: Apache-2.0 */
/* kube-controller-manager: follows the API servers; health on 10257. It serves no /version
 * that cplet reads (it needs credentials there), so the process and health gates apply. */

#include "cplet-plugin.h"

static const struct cplet_health_endpoint health_endpoints[] = {
        { .scheme = "HTTPS", .port = 10257, .path = "/healthz" },
};

static const struct cplet_plugin plugin = {
        .abi_major = CPLET_PLUGIN_ABI_MAJOR,
        .abi_minor = CPLET_PLUGIN_ABI_MINOR,
        .size = sizeof(struct cplet_plugin),
        .name = "kube-controller-manager",
        .manifest_file = "kube-controller-manager.yaml",
        .rank = 20,
        .emulated_version_since = { 1, 31 },
        .min_compatibility_version_since = { 1, 35 },
        .health_endpoints = health_endpoints,
        .n_health_endpoints = sizeof(health_endpoints) / sizeof(health_endpoints[0]),
};

__attribute__((visibility("default"))) const struct cplet_plugin *cplet_plugin_entry(void);
const struct cplet_plugin *cplet_plugin_entry(void) {
        return &plugin;
}
