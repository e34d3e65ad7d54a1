/* SPDX-License-Identifier: Apache-2.0 */
/* Manifest parse -> render -> parse: the trees are equal (rendering keeps the meaning the
 * kubelet would read) and rendering is idempotent, render(parse(render(x))) == render(x). */
#include <errno.h>
#include <stdbool.h>
#include <jansson.h>

#include "fuzz.h"
#include "manifest.h"

#define NAME "fuzz.yaml"

/* json_equal() looks keys up by strlen(), so it calls two trees with a key holding a NUL byte
 * ("\0" in YAML) different; this compares keys by length, and in order, as rendering keeps it. */
static bool tree_equal(json_t *a, json_t *b) {
        if (json_typeof(a) != json_typeof(b))
                return false;
        switch (json_typeof(a)) {
        case JSON_OBJECT: {
                void *ia = json_object_iter(a), *ib = json_object_iter(b);

                if (json_object_size(a) != json_object_size(b))
                        return false;
                for (; ia && ib; ia = json_object_iter_next(a, ia), ib = json_object_iter_next(b, ib)) {
                        size_t la = json_object_iter_key_len(ia), lb = json_object_iter_key_len(ib);

                        if (la != lb || memcmp(json_object_iter_key(ia), json_object_iter_key(ib), la) != 0 ||
                            !tree_equal(json_object_iter_value(ia), json_object_iter_value(ib)))
                                return false;
                }
                return !ia && !ib;
        }
        case JSON_ARRAY:
                if (json_array_size(a) != json_array_size(b))
                        return false;
                for (size_t i = 0; i < json_array_size(a); i++)
                        if (!tree_equal(json_array_get(a, i), json_array_get(b, i)))
                                return false;
                return true;
        default:
                return json_equal(a, b);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        json_t *tree = NULL, *again = NULL;
        char *error = NULL, *text = NULL, *text2 = NULL;
        size_t text_size = 0, text2_size = 0;
        int r;

        r = manifest_parse((const char *) data, size, NAME, &tree, &error);
        if (r < 0) {
                fuzz_assert(r == -EINVAL || r == -E2BIG || r == -ENOMEM, "unexpected error %d: %s", r,
                            error ? error : "(none)");
                fuzz_check_error(r, error, NAME);
                free(error);
                return 0;
        }
        fuzz_assert(json_is_object(tree), "parsed document is not a mapping");

        r = manifest_render(tree, &text, &text_size);
        fuzz_assert(r >= 0, "cannot render a parsed tree: %d", r);
        fuzz_assert(strlen(text) == text_size, "rendered size %zu, but strlen %zu", text_size, strlen(text));
        fuzz_assert(text_size > 0 && text[text_size - 1] == '\n', "rendering does not end in a newline");

        /* Quoting may grow a document past the size limit: that is a refusal, not a defect. */
        if (text_size <= MANIFEST_SIZE_MAX) {
                r = manifest_parse(text, text_size, "rendered", &again, &error);
                fuzz_assert(r >= 0, "rendered manifest does not parse back: %s\n--- rendered:\n%s",
                            error ? error : "(no message)", text);
                fuzz_assert(tree_equal(tree, again), "the tree changed through render + parse\n--- rendered:\n%s", text);

                r = manifest_render(again, &text2, &text2_size);
                fuzz_assert(r >= 0, "cannot render the re-parsed tree: %d", r);
                fuzz_assert(text_size == text2_size && memcmp(text, text2, text_size) == 0,
                            "rendering is not idempotent\n--- first:\n%s--- second:\n%s", text, text2);
        }

        free(text);
        free(text2);
        json_decref(again);
        json_decref(tree);
        return 0;
}
