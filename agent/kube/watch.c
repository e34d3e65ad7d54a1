/* SPDX-License-Identifier: Apache-2.0 */
/* TEMPORARY: a minimal decoder so that kube-client.c links and its tests run in the kube lane.
 * The watch lane's watch.c replaces this file at merge. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "macro.h"
#include "watch.h"

struct watch_decoder {
        watch_event_fn on_event;
        void *userdata;
        buffer line;
        size_t offset; /* of line's first byte in the stream */
        int failed;
};

int watch_decoder_new(watch_event_fn on_event, void *userdata, watch_decoder **ret) {
        watch_decoder *d;

        if (!on_event || !ret)
                return -EINVAL;
        d = calloc(1, sizeof(watch_decoder));
        if (!d)
                return -ENOMEM;
        d->on_event = on_event;
        d->userdata = userdata;
        *ret = d;
        return 0;
}

watch_decoder *watch_decoder_free(watch_decoder *d) {
        if (d) {
                free(d->line.data);
                free(d);
        }
        return NULL;
}

static bool blank(const char *s, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (!strchr(" \t\r\n", s[i]))
                        return false;
        return true;
}

static int decode_line(watch_decoder *d, const char *s, size_t n, char **ret_error) {
        static const char *const types[] = { "ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR" };
        json_error_t e;
        json_auto_t *ev = NULL;
        const char *type;
        json_t *object;

        if (blank(s, n))
                return 0;
        ev = json_loadb(s, n, JSON_REJECT_DUPLICATES, &e);
        if (!ev)
                return set_error(ret_error, -EBADMSG, "watch event at offset %zu is not JSON: %s", d->offset,
                                 e.text);
        type = json_string_value(json_object_get(ev, "type"));
        object = json_object_get(ev, "object");
        if (!type)
                return set_error(ret_error, -EBADMSG, "watch event at offset %zu has no type", d->offset);
        for (size_t i = 0; i < ELEMENTSOF(types); i++)
                if (streq(type, types[i])) {
                        if (!json_is_object(object))
                                return set_error(ret_error, -EBADMSG,
                                                 "watch event at offset %zu has no object", d->offset);
                        return d->on_event(type, object, d->userdata);
                }
        return set_error(ret_error, -EBADMSG, "watch event at offset %zu has an unknown type \"%s\"", d->offset,
                         type);
}

int watch_decoder_feed(watch_decoder *d, const char *data, size_t size, char **ret_error) {
        int r;

        if (d->failed < 0)
                return set_error(ret_error, d->failed, "the watch stream failed before");
        while (size > 0) {
                const char *nl = memchr(data, '\n', size);
                size_t n = nl ? (size_t) (nl - data) : size;

                if (d->line.size + n > WATCH_EVENT_MAX) {
                        d->failed = -E2BIG;
                        return set_error(ret_error, -E2BIG, "watch event at offset %zu is larger than %d bytes",
                                         d->offset, WATCH_EVENT_MAX);
                }
                if (buffer_append(&d->line, data, n) < 0)
                        return -ENOMEM;
                data += n;
                size -= n;
                if (!nl)
                        break;
                data++;
                size--;
                r = decode_line(d, d->line.data, d->line.size, ret_error);
                d->offset += d->line.size + 1;
                d->line.size = 0;
                if (r < 0) {
                        d->failed = r;
                        return r;
                }
        }
        return 0;
}

int watch_decoder_finish(watch_decoder *d, char **ret_error) {
        if (d->failed < 0)
                return set_error(ret_error, d->failed, "the watch stream failed before");
        if (d->line.size > 0 && !blank(d->line.data, d->line.size))
                return set_error(ret_error, -EBADMSG, "watch stream cut inside the event at offset %zu",
                                 d->offset);
        return 0;
}
