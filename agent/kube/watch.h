/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The decoder of a watch stream: the API server writes one JSON object per event, each
 * {"type": "ADDED|MODIFIED|DELETED|BOOKMARK|ERROR", "object": {...}}, each ended by a newline
 * (the JSON serializer's encoder; its framer writes the objects as they are), in chunks that
 * split events anywhere. The decoder takes the bytes as they arrive and hands over whole
 * events. Pure: no I/O, so it can be fuzzed.
 *
 * What it accepts, beyond what the server writes, is what a client reading with a JSON decoder
 * would: whitespace between objects (blank lines, "\r\n", spaces), several objects on one line,
 * fields of an event other than type and object (ignored), strings holding \u0000. What it
 * refuses: an object spread over lines (never written; see watch.c), duplicate keys.
 * Linear: each byte is looked at a bounded number of times, however the stream is cut. */

#include <jansson.h>
#include <stddef.h>

/* One event at most this large (its line, without the '\n'): a Node object is tens of KiB, a
 * watch event carries one. The fuzz build sets a small one, so that inputs reach it. */
#ifndef WATCH_EVENT_MAX
#define WATCH_EVENT_MAX (4 * 1024 * 1024)
#endif

typedef struct watch_decoder watch_decoder;

/* Called for each whole event, in stream order; type is one of the five (a static string),
 * object a JSON object (borrowed: json_incref() it to keep it). Returning < 0 stops the
 * decoding: watch_decoder_feed() returns that value, and the decoder refuses everything after
 * it (the rest of the chunk was not decoded). It must not free the decoder: return < 0 instead
 * and free it after watch_decoder_feed() returns. */
typedef int (*watch_event_fn)(const char *type, json_t *object, void *userdata);

int watch_decoder_new(watch_event_fn on_event, void *userdata, watch_decoder **ret);
watch_decoder *watch_decoder_free(watch_decoder *d);
static inline void watch_decoder_freep(watch_decoder **d) {
        watch_decoder_free(*d);
}

/* Feeds bytes. -EBADMSG with a reason (naming the stream's byte offset and what was wrong, the
 * offending value quoted and cut short) for an event that is not JSON, not an object, has an
 * unknown type or no object; -E2BIG for an event larger than WATCH_EVENT_MAX (found as soon as
 * the bytes without a newline pass it). After an error, the decoder refuses everything with the
 * same error (the stream is unusable: watch again). */
int watch_decoder_feed(watch_decoder *d, const char *data, size_t size, char **ret_error);
/* At the end of the stream: -EBADMSG when an event was cut short (bytes other than whitespace
 * are left over after the last newline, even a whole object: the server ends each with one). */
int watch_decoder_finish(watch_decoder *d, char **ret_error);
