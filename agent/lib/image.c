/* SPDX-License-Identifier: Apache-2.0 */
#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "image.h"
#include "macro.h"

void image_ref_done(image_ref *ref) {
        free(ref->repository);
        free(ref->tag);
        free(ref->digest);
        *ref = (image_ref){};
}

static bool valid_chars(const char *s, const char *extra) {
        for (; *s; s++)
                if (!isalnum((unsigned char) *s) && !strchr(extra, *s))
                        return false;
        return true;
}

/* algorithm:hex, as in the OCI image spec ("sha256:" + 64 hex digits). */
static bool valid_digest(const char *d) {
        const char *colon = strchr(d, ':');
        size_t hex;

        if (!colon || colon == d)
                return false;
        for (const char *p = d; p < colon; p++)
                if (!islower((unsigned char) *p) && !isdigit((unsigned char) *p) && !strchr("+._-", *p))
                        return false;
        hex = strspn(colon + 1, "0123456789abcdef");
        return hex >= 32 && colon[1 + hex] == 0;
}

int image_ref_parse(const char *s, image_ref *ret, char **ret_error) {
        _cleanup_free_ char *copy = NULL;
        image_ref ref = {};
        char *at, *colon, *slash;

        if (!s || !*s)
                return set_error(ret_error, -EINVAL, "empty image");
        if (strlen(s) > 512)
                return set_error(ret_error, -EINVAL, "image reference is longer than 512 characters");
        copy = strdup(s);
        if (!copy)
                return -ENOMEM;

        at = strchr(copy, '@');
        if (at) {
                *at = 0;
                if (!valid_digest(at + 1))
                        return set_error(ret_error, -EINVAL, "image \"%s\": invalid digest (expected sha256:<hex>)", s);
                ref.digest = strdup(at + 1);
                if (!ref.digest)
                        return -ENOMEM;
        }
        slash = strrchr(copy, '/');
        colon = strrchr(copy, ':');
        if (colon && (!slash || colon > slash)) {
                *colon = 0;
                if (!colon[1] || !valid_chars(colon + 1, "._-+")) {
                        image_ref_done(&ref);
                        return set_error(ret_error, -EINVAL, "image \"%s\": invalid tag", s);
                }
                ref.tag = strdup(colon + 1);
                if (!ref.tag) {
                        image_ref_done(&ref);
                        return -ENOMEM;
                }
        }
        if (!*copy || !valid_chars(copy, "._-/:")) {
                image_ref_done(&ref);
                return set_error(ret_error, -EINVAL, "image \"%s\": invalid repository", s);
        }
        ref.repository = TAKE_PTR(copy);
        *ret = ref;
        return 0;
}

char *image_ref_format(const image_ref *ref) {
        return strdup_printf("%s%s%s%s%s", ref->repository, ref->tag ? ":" : "", ref->tag ?: "",
                             ref->digest ? "@" : "", ref->digest ?: "");
}

const char *image_ref_name(const image_ref *ref) {
        const char *slash = strrchr(ref->repository, '/');

        return slash ? slash + 1 : ref->repository;
}
