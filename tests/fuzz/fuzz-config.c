/* SPDX-License-Identifier: Apache-2.0 */
/* /etc/cplet/config.yaml (kind: CpletConfiguration) from bytes, as config_load() reads it. */
#include <errno.h>

#include "config.h"
#include "fuzz.h"

#define NAME "/etc/cplet/config.yaml"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *error = NULL;
        config c = {};
        int r;

        r = config_parse((const char *) data, size, NAME, &c, &error);
        if (r < 0) {
                fuzz_assert(r == -EINVAL || r == -E2BIG || r == -ENOMEM, "unexpected error %d", r);
                fuzz_check_error(r, error, NAME);
                free(error);
                return 0;
        }
        fuzz_assert(c.keep_revisions == 0 || (c.keep_revisions >= 2 && c.keep_revisions <= 10000),
                    "revisionsToKeep %u accepted", c.keep_revisions);
        fuzz_assert(!c.plugin_dir || c.plugin_dir[0] == '/', "relative pluginDir \"%s\" accepted", c.plugin_dir);
        config_done(&c);
        return 0;
}
