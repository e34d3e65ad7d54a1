/* SPDX-License-Identifier: Apache-2.0 */
/* The watch stream decoder, fed the stream in chunks cut where the input's first bytes say: the
 * events and the error must be the same as when the stream comes in one piece. This build sets
 * WATCH_EVENT_MAX small (meson.build), so inputs reach the size limit too.
 *
 * Input: byte 0 % 8 = the number of cuts N, then N little-endian 16-bit cut positions (taken
 * modulo the stream's length + 1, in any order), then the stream. */
#include <errno.h>
#include <stdbool.h>

#include "buffer.h"
#include "fuzz.h"
#include "watch.h"

#define CUTS_MAX 7

static const char *const types[] = { "ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR" };

typedef struct seen {
        buffer events; /* "TYPE object\n" for each event, the object compact with its keys sorted */
        unsigned count;
} seen;

static int on_event(const char *type, json_t *object, void *userdata) {
        seen *s = userdata;
        bool known = false;
        char *dump;

        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
                known = known || type == types[i] || strcmp(type, types[i]) == 0;
        fuzz_assert(known, "event type \"%s\" handed over", type);
        fuzz_assert(json_is_object(object), "event object of JSON type %d handed over", json_typeof(object));
        dump = json_dumps(object, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
        if (!dump)
                abort();
        if (buffer_append(&s->events, type, strlen(type)) < 0 || buffer_append(&s->events, " ", 1) < 0 ||
            buffer_append(&s->events, dump, strlen(dump)) < 0 || buffer_append(&s->events, "\n", 1) < 0)
                abort();
        free(dump);
        s->count++;
        return 0;
}

/* The error must start with "watch stream" and name a byte of the stream. */
static void check_error(int r, const char *error, size_t size) {
        const char *byte;

        fuzz_assert(r == -EBADMSG || r == -E2BIG || r == -ENOMEM, "unexpected error %d", r);
        fuzz_check_error(r, error, "watch stream");
        if (r == -ENOMEM)
                return;
        byte = strstr(error, "watch stream, byte ");
        fuzz_assert(byte, "the error names no byte: %s", error);
        fuzz_assert(strtoull(byte + strlen("watch stream, byte "), NULL, 10) <= size, "byte beyond the stream: %s",
                    error);
        fuzz_assert(strlen(error) < 600, "error of %zu bytes: not cut short", strlen(error));
        for (const char *p = error; *p; p++)
                fuzz_assert((unsigned char) *p >= 0x20 && (unsigned char) *p < 0x7f, "byte 0x%02x in the error: %s",
                            (unsigned char) *p, error);
}

/* Feeds `stream` cut at `cuts` (sorted), then finishes. Returns the first error, with its message. */
static int run(const char *stream, size_t size, const size_t *cuts, size_t n_cuts, seen *s, char **ret_error) {
        watch_decoder *d = NULL;
        size_t at = 0;
        int r = 0;

        if (watch_decoder_new(on_event, s, &d) < 0)
                abort();
        for (size_t i = 0; i <= n_cuts && r >= 0; i++) {
                size_t end = i < n_cuts ? cuts[i] : size;

                r = watch_decoder_feed(d, stream + at, end - at, ret_error);
                at = end;
        }
        if (r >= 0)
                r = watch_decoder_finish(d, ret_error);
        if (r < 0) {
                /* Poisoned: the same error again, and nothing more handed over. */
                unsigned count = s->count;
                char *again = NULL;

                fuzz_assert(watch_decoder_feed(d, "{\"type\":\"ADDED\",\"object\":{}}\n", 29, &again) == r,
                            "a feed after error %d was not refused the same way", r);
                fuzz_assert(watch_decoder_finish(d, NULL) == r, "finish after error %d was not refused", r);
                fuzz_assert(s->count == count, "an event handed over after an error");
                free(again);
        }
        watch_decoder_free(d);
        return r;
}

static int cmp_size(const void *a, const void *b) {
        size_t x = *(const size_t *) a, y = *(const size_t *) b;

        return x < y ? -1 : x > y;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        size_t cuts[CUTS_MAX], n_cuts, header;
        seen whole = {}, split = {};
        char *error_whole = NULL, *error_split = NULL;
        const char *stream;
        int r_whole, r_split;

        if (size < 1)
                return 0;
        n_cuts = data[0] % (CUTS_MAX + 1);
        header = 1 + 2 * n_cuts;
        if (size < header)
                return 0;
        stream = (const char *) data + header;
        size -= header;
        for (size_t i = 0; i < n_cuts; i++)
                cuts[i] = (size_t) (data[1 + 2 * i] | data[2 + 2 * i] << 8) % (size + 1);
        qsort(cuts, n_cuts, sizeof(cuts[0]), cmp_size);

        r_whole = run(stream, size, NULL, 0, &whole, &error_whole);
        r_split = run(stream, size, cuts, n_cuts, &split, &error_split);

        fuzz_assert(r_whole == r_split, "whole: %d (%s), split: %d (%s)", r_whole, error_whole ?: "-", r_split,
                    error_split ?: "-");
        fuzz_assert(whole.count == split.count, "whole: %u events, split: %u", whole.count, split.count);
        fuzz_assert(whole.events.size == split.events.size &&
                            (whole.events.size == 0 || memcmp(whole.events.data, split.events.data, whole.events.size) == 0),
                    "the events differ when the stream is cut");
        if (r_whole < 0) {
                check_error(r_whole, error_whole, size);
                fuzz_assert(strcmp(error_whole, error_split) == 0, "whole: \"%s\", split: \"%s\"", error_whole,
                            error_split);
        } else
                fuzz_assert(!error_whole && !error_split, "a message without an error");
        free(whole.events.data);
        free(split.events.data);
        free(error_whole);
        free(error_split);
        return 0;
}
