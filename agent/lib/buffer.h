/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* A growable byte buffer, always NUL-terminated (data NULL while empty); the caller frees
 * data. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"

typedef struct buffer {
        char *data;
        size_t size, allocated;
} buffer;

static inline int buffer_append(buffer *b, const void *p, size_t n) {
        if (b->size + n + 1 > b->allocated) {
                size_t a = MAX(b->allocated * 2, b->size + n + 1);
                char *d = realloc(b->data, a);

                if (!d)
                        return -ENOMEM;
                b->data = d;
                b->allocated = a;
        }
        memcpy(b->data + b->size, p, n);
        b->size += n;
        b->data[b->size] = 0;
        return 0;
}
