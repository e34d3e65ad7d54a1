/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: bytes as ROOT/var/lib/cplet/rollout.json. The parser and validator never
 * crash, leak or read out of bounds, and a journal they accept serialises to JSON that parses
 * back equal, and serialises again to the same text (what cplet saves, it can load). */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "journal.h"
#include "macro.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(journal_freep) journal *j = NULL, *again = NULL;
        _cleanup_free_ char *error = NULL, *text = NULL, *text2 = NULL;
        json_auto_t *o = NULL, *o2 = NULL;

        if (journal_parse((const char *) data, size, "fuzz", &j, &error) < 0) {
                /* A refusal always says why. */
                if (!error)
                        abort();
                return 0;
        }
        if (error)
                abort(); /* an accepted journal carries no error */
        (void) journal_in_progress(j);
        o = journal_to_json(j);
        if (!o)
                return 0; /* out of memory */
        text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (!text)
                return 0;
        if (journal_parse(text, strlen(text), "fuzz (serialised)", &again, &error) < 0)
                abort(); /* cplet would refuse what it wrote */
        if (!journal_equal(j, again))
                abort();
        o2 = journal_to_json(again);
        text2 = o2 ? json_dumps(o2, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
        if (text2 && !streq(text, text2))
                abort();
        return 0;
}
