/* SPDX-License-Identifier: Apache-2.0 */
/* One source, built once per -DTEST_PLUGIN_* variant: plugins the loader must refuse (and one
 * from a future ABI minor that it must accept). */

#include <stddef.h>

#include "cplet-plugin.h"

#define EXPORT __attribute__((visibility("default")))

static const struct cplet_health_endpoint health[] __attribute__((unused)) = {
        { .scheme = "HTTPS", .port = 10259, .path = "/healthz" },
};

#if defined(TEST_PLUGIN_FUTURE_MINOR)
/* A plugin built against ABI 1.7: a larger struct with fields this host does not know. */
struct future_plugin {
        struct cplet_plugin base;
        const char *field_from_the_future;
        void (*callback_from_the_future)(void);
};
static const struct future_plugin future = {
        .base = {
                .abi_major = CPLET_PLUGIN_ABI_MAJOR,
                .abi_minor = 7,
                .size = sizeof(struct future_plugin),
                .name = "test-future",
                .manifest_file = "test-future.yaml",
                .rank = 40,
                .health_endpoints = health,
                .n_health_endpoints = 1,
        },
        .field_from_the_future = "unknown to the host",
};
EXPORT const struct cplet_plugin *cplet_plugin_entry(void);
const struct cplet_plugin *cplet_plugin_entry(void) {
        return &future.base;
}
#elif defined(TEST_PLUGIN_NO_ENTRY_SYMBOL)
EXPORT int not_the_entry_point(void);
int not_the_entry_point(void) {
        return 42;
}
#elif defined(TEST_PLUGIN_NULL_ENTRY)
EXPORT const struct cplet_plugin *cplet_plugin_entry(void);
const struct cplet_plugin *cplet_plugin_entry(void) {
        return NULL;
}
#elif defined(TEST_PLUGIN_SIZE_TOO_SMALL)
/* Only the three leading fields exist: reading name would run off the end. */
static const struct {
        uint32_t abi_major, abi_minor, size;
} truncated = { CPLET_PLUGIN_ABI_MAJOR, 0, 12 };
EXPORT const struct cplet_plugin *cplet_plugin_entry(void);
const struct cplet_plugin *cplet_plugin_entry(void) {
        return (const struct cplet_plugin *) (const void *) &truncated;
}
#else
static const struct cplet_plugin plugin = {
#  if defined(TEST_PLUGIN_ABI_MAJOR_99)
        .abi_major = 99,
#  else
        .abi_major = CPLET_PLUGIN_ABI_MAJOR,
#  endif
        .abi_minor = 0,
        .size = sizeof(struct cplet_plugin),
#  if defined(TEST_PLUGIN_BAD_NAME)
        .name = "../etc/passwd",
#  else
        .name = "kube-scheduler",
#  endif
        .manifest_file = "kube-scheduler.yaml",
        .rank = 30,
        .health_endpoints = health,
        .n_health_endpoints = 1,
};
EXPORT const struct cplet_plugin *cplet_plugin_entry(void);
const struct cplet_plugin *cplet_plugin_entry(void) {
        return &plugin;
}
#endif
