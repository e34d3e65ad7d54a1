/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The decoder of a watch stream: the API server writes one JSON object per event, each
 * {"type": "ADDED|MODIFIED|DELETED|BOOKMARK|ERROR", "object": {...}}, separated by newlines
 * (the JSON serializer's framer), in chunks that split events anywhere. The decoder takes the
 * bytes as they arrive and hands over whole events. Pure: no I/O, so it can be fuzzed. */

#include <jansson.h>
#include <stddef.h>

/* One event at most this large: a Node object is tens of KiB, a watch event carries one. */
#define WATCH_EVENT_MAX (4 * 1024 * 1024)

typedef struct watch_decoder watch_decoder;

/* Called for each whole event; type is one of the five, object a JSON object (both borrowed).
 * Returning < 0 stops the decoding: watch_decoder_feed() returns that value. */
typedef int (*watch_event_fn)(const char *type, json_t *object, void *userdata);

int watch_decoder_new(watch_event_fn on_event, void *userdata, watch_decoder **ret);
watch_decoder *watch_decoder_free(watch_decoder *d);
static inline void watch_decoder_freep(watch_decoder **d) {
        watch_decoder_free(*d);
}

/* Feeds bytes. -EBADMSG with a reason (naming the offset and what was wrong) for an event that is
 * not JSON, not an object, has an unknown type or no object; -E2BIG for an event larger than
 * WATCH_EVENT_MAX. After an error, the decoder refuses everything (the stream is unusable). */
int watch_decoder_feed(watch_decoder *d, const char *data, size_t size, char **ret_error);
/* At the end of the stream: -EBADMSG when an event was cut short (bytes other than whitespace
 * are left over). */
int watch_decoder_finish(watch_decoder *d, char **ret_error);
