/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The built-in plugins, loaded once for a test group from the build directory
 * (CPLET_PLUGIN_BUILD_DIR, set by tests/meson.build). Include after <cmocka.h>. */

#include <stdlib.h>

#include "plugin-loader.h"

static plugin_set *plugins;

static inline int plugins_setup(void **state) {
        const char *dir = getenv("CPLET_PLUGIN_BUILD_DIR");

        if (!dir || plugin_set_load(dir, &plugins, NULL) < 0)
                return -1;
        return 0;
}

static inline int plugins_teardown(void **state) {
        plugins = plugin_set_free(plugins);
        return 0;
}
