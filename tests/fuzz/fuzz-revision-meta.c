/* SPDX-License-Identifier: Apache-2.0 */
/* The metadata of a revision (revisions/<component>/<N>.json) as the store reads it. */
#include <errno.h>

#include "fuzz.h"
#include "store.h"

#define NAME "revisions/kube-apiserver/1.json"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *error = NULL;
        revision rev = {};
        int r;

        r = store_parse_revision_meta((const char *) data, size, NAME, &rev, &error);
        if (r < 0) {
                fuzz_assert(r == -EINVAL || r == -ENOMEM, "unexpected error %d", r);
                fuzz_check_error(r, error, NAME);
                free(error);
                return 0;
        }
        fuzz_assert(rev.number >= 1 && rev.number <= 999999999u, "revision number %u", rev.number);
        fuzz_assert(rev.parent <= 999999999u, "parent %u", rev.parent);
        fuzz_assert(strlen(rev.sha256) == 64, "sha256 of length %zu", strlen(rev.sha256));
        fuzz_assert(rev.component && rev.reason, "component or reason missing");
        revision_done(&rev);
        return 0;
}
