/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "buffer.h"
#include "macro.h"
#include "watch.h"

/* How much of an offending value a message quotes: enough to recognise it, never a flood in a
 * log or in the status annotation. */
#define QUOTE_MAX 60

struct watch_decoder {
        watch_event_fn on_event;
        void *userdata;
        buffer line;     /* the bytes of the line in progress (no '\n' seen yet) */
        uint64_t offset; /* the stream offset of the line in progress */
        int error;       /* < 0 once the stream is unusable */
        char *error_message;
};

static const char *const event_types[] = { "ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR" };

int watch_decoder_new(watch_event_fn on_event, void *userdata, watch_decoder **ret) {
        watch_decoder *d = calloc(1, sizeof(watch_decoder));

        if (!d)
                return -ENOMEM;
        d->on_event = on_event;
        d->userdata = userdata;
        *ret = d;
        return 0;
}

watch_decoder *watch_decoder_free(watch_decoder *d) {
        if (!d)
                return NULL;
        free(d->line.data);
        free(d->error_message);
        free(d);
        return NULL;
}

/* Text as a message may show it: printable ASCII as is (quotes and backslashes escaped when
 * `raw`), the rest as \xNN, cut after QUOTE_MAX bytes. */
static char *printable(const char *p, size_t n, bool raw) {
        buffer b = {};
        int r = raw ? buffer_append(&b, "\"", 1) : 0;

        for (size_t i = 0; r >= 0 && i < MIN(n, (size_t) QUOTE_MAX); i++) {
                unsigned char c = (unsigned char) p[i];
                char esc[5];

                if (raw && (c == '"' || c == '\\'))
                        r = buffer_append(&b, (char[]){ '\\', (char) c }, 2);
                else if (c >= 0x20 && c < 0x7f)
                        r = buffer_append(&b, &c, 1);
                else
                        r = buffer_append(&b, esc, (size_t) snprintf(esc, sizeof(esc), "\\x%02x", c));
        }
        if (r >= 0 && n > QUOTE_MAX)
                r = buffer_append(&b, "...", 3);
        if (r >= 0 && raw)
                r = buffer_append(&b, "\"", 1);
        if (r < 0) {
                free(b.data);
                return NULL;
        }
        return b.data ?: strdup("");
}

/* Bytes of the stream as a message may quote them: in double quotes, cut short. */
static char *quote_bytes(const char *p, size_t n) {
        return printable(p, n, true);
}

/* A JSON value as a message may quote it: compact, ASCII (and no DEL, which JSON leaves as it
 * is), cut short. */
static char *quote_json(json_t *v) {
        _cleanup_free_ char *s = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_ENSURE_ASCII) : NULL;

        if (!s)
                return strdup(v ? "?" : "(none)");
        return printable(s, strlen(s), false);
}

/* Remembers the first error: the stream cannot be trusted past it (an event may be lost, and the
 * next bytes may be the middle of one), so every later call returns it again. */
static int fail(watch_decoder *d, char **ret_error, int r, const char *fmt, ...) _printf_(4, 5);
static int fail(watch_decoder *d, char **ret_error, int r, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        d->error_message = strdup_vprintf(fmt, ap);
        va_end(ap);
        d->error = r;
        return set_error(ret_error, r, "%s", d->error_message ?: "watch stream: out of memory");
}

static int refused(watch_decoder *d, char **ret_error) {
        return set_error(ret_error, d->error, "%s (the stream is unusable after it)",
                         d->error_message ?: "watch stream: out of memory");
}

static bool is_json_space(char c) {
        return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* One parsed event: {"type": one of the five, "object": {...}}; other fields are allowed (the API
 * may add some, as clients ignore what they do not know). */
static int deliver(watch_decoder *d, json_t *event, uint64_t offset, char **ret_error) {
        json_t *type = json_object_get(event, "type"), *object = json_object_get(event, "object");
        _cleanup_free_ char *q = NULL;
        const char *name = NULL;
        int r;

        if (!json_is_object(event)) {
                q = quote_json(event);
                return fail(d, ret_error, -EBADMSG,
                            "watch stream, byte %" PRIu64 ": event %s: expected a JSON object", offset,
                            q ?: "?");
        }
        for (size_t i = 0; json_is_string(type) && i < ELEMENTSOF(event_types); i++)
                /* By length too: "ADDED\u0000..." must not pass for ADDED. */
                if (json_string_length(type) == strlen(event_types[i]) &&
                    streq(json_string_value(type), event_types[i]))
                        name = event_types[i];
        if (!name) {
                q = quote_json(type);
                return fail(d, ret_error, -EBADMSG,
                            "watch stream, byte %" PRIu64
                            ": event type %s: expected ADDED, MODIFIED, DELETED, BOOKMARK or ERROR",
                            offset, q ?: "?");
        }
        if (!json_is_object(object)) {
                q = quote_json(object);
                return fail(d, ret_error, -EBADMSG,
                            "watch stream, byte %" PRIu64 ": %s event: object %s: expected a JSON object",
                            offset, name, q ?: "?");
        }
        r = d->on_event(name, object, d->userdata);
        if (r < 0)
                return fail(d, ret_error, r, "watch stream, byte %" PRIu64 ": %s event not handled: %s",
                            offset, name, strerror(-r));
        return 0;
}

/* One line of the stream. The API server writes each event on a line of its own (the JSON
 * serializer's encoder ends each object with '\n'); a client reading with a JSON decoder sees
 * whitespace between objects, so this accepts blank lines, "\r\n" and several objects on one line
 * too. An object across lines is refused: no server writes one, and waiting for its end would mean
 * parsing the same bytes again at each line. */
static int decode_line(watch_decoder *d, const char *p, size_t n, char **ret_error) {
        size_t i = 0;
        int r;

        for (;;) {
                json_auto_t *event = NULL;
                json_error_t e;

                while (i < n && is_json_space(p[i]))
                        i++;
                if (i == n)
                        return 0;
                /* JSON_ALLOW_NUL: Go writes a NUL in a string as \u0000, and anyone who can patch the
                 * Node can put one in an annotation: refusing it here would stop the whole watch.
                 * Whoever reads a string checks its length (target_parse does). Duplicate keys are
                 * refused: the server never writes them, and which "type" would count? */
                event = json_loadb(p + i, n - i,
                                   JSON_DISABLE_EOF_CHECK | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &e);
                if (!event) {
                        _cleanup_free_ char *q = quote_bytes(p + i, n - i);

                        /* jansson's text quotes the token it stopped at, as it was. */
                        for (char *c = e.text; *c; c++)
                                if ((unsigned char) *c < 0x20 || (unsigned char) *c >= 0x7f)
                                        *c = '?';
                        return fail(
                                d, ret_error, -EBADMSG,
                                "watch stream, byte %" PRIu64 ": event not JSON (byte %" PRIu64 ": %s): %s",
                                d->offset + i, d->offset + i + (size_t) MAX(e.position, 0), e.text, q ?: "?");
                }
                r = deliver(d, event, d->offset + i, ret_error);
                if (r < 0)
                        return r;
                i += (size_t) e.position;
        }
}

int watch_decoder_feed(watch_decoder *d, const char *data, size_t size, char **ret_error) {
        int r;

        if (d->error < 0)
                return refused(d, ret_error);
        while (size > 0) {
                const char *nl = memchr(data, '\n', size);
                size_t n = nl ? (size_t) (nl - data) : size, line;

                /* Checked before anything is kept: a stream that never ends a line cannot make the
                 * decoder hold more than one event. */
                if (d->line.size + n > WATCH_EVENT_MAX)
                        return fail(d, ret_error, -E2BIG,
                                    "watch stream, byte %" PRIu64 ": an event larger than %d bytes",
                                    d->offset, WATCH_EVENT_MAX);
                if (!nl) {
                        r = buffer_append(&d->line, data, n);
                        return r < 0 ? fail(d, ret_error, r, "watch stream: out of memory") : 0;
                }
                if (d->line.size == 0)
                        /* The whole line is in this chunk: no copy. */
                        r = decode_line(d, data, n, ret_error);
                else {
                        r = buffer_append(&d->line, data, n);
                        if (r < 0)
                                return fail(d, ret_error, r, "watch stream: out of memory");
                        r = decode_line(d, d->line.data, d->line.size, ret_error);
                }
                if (r < 0)
                        return r;
                line = d->line.size ?: n;
                d->line.size = 0;
                d->offset += line + 1;
                data += n + 1;
                size -= n + 1;
        }
        return 0;
}

int watch_decoder_finish(watch_decoder *d, char **ret_error) {
        _cleanup_free_ char *q = NULL;
        size_t i = 0;

        if (d->error < 0)
                return refused(d, ret_error);
        while (i < d->line.size && is_json_space(d->line.data[i]))
                i++;
        if (i == d->line.size)
                return 0;
        /* The server ends every event with '\n': without one the event may be whole, but the stream
         * was cut, and the caller watches again from the last resourceVersion it saw. */
        q = quote_bytes(d->line.data + i, d->line.size - i);
        return fail(d, ret_error, -EBADMSG,
                    "watch stream, byte %" PRIu64
                    ": the stream ends inside an event (%zu bytes, no newline): %s",
                    d->offset + i, d->line.size - i, q ?: "?");
}
