/* SPDX-License-Identifier: Apache-2.0 */
/* The watch stream decoder: events as the API server writes them (one JSON object per line), cut
 * into chunks anywhere, and every malformed stream refused with the byte offset and the value. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "macro.h"
#include "watch.h"

/* The test links with -Wl,--wrap=json_loadb: counting the parses shows that an event cut into
 * many chunks is parsed once, not once per chunk. */
json_t *__real_json_loadb(const char *buffer, size_t buflen, size_t flags, json_error_t *error);
json_t *__wrap_json_loadb(const char *buffer, size_t buflen, size_t flags, json_error_t *error);
static unsigned parses;
json_t *__wrap_json_loadb(const char *buffer, size_t buflen, size_t flags, json_error_t *error) {
        parses++;
        return __real_json_loadb(buffer, buflen, flags, error);
}

/* What the API server writes for a watch on one Node (kubectl get --raw
 * '/api/v1/nodes?watch=1&fieldSelector=metadata.name=cp-1&allowWatchBookmarks=true'), shortened. */
#define EV_ADDED                                                                                           \
        "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Node\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"cp-1\","  \
        "\"uid\":\"4f1c1a5e-6b0e-4a4b-9d0e-0d2a3c1b2a10\",\"resourceVersion\":\"1001\",\"labels\":{"          \
        "\"kubernetes.io/hostname\":\"cp-1\",\"node-role.kubernetes.io/control-plane\":\"\"},"               \
        "\"annotations\":{\"cplet.io/target\":\"{\\\"id\\\":\\\"up-135\\\",\\\"generation\\\":1}\"}},"        \
        "\"spec\":{\"podCIDR\":\"10.244.0.0/24\"},\"status\":{\"nodeInfo\":{\"kubeletVersion\":\"v1.34.2\"}}}}\n"
#define EV_MODIFIED                                                                                        \
        "{\"type\":\"MODIFIED\",\"object\":{\"kind\":\"Node\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"cp-1\"," \
        "\"resourceVersion\":\"1042\",\"annotations\":{\"cplet.io/status\":\"{}\"}},\"spec\":{}}}\n"
#define EV_BOOKMARK                                                                                        \
        "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Node\",\"apiVersion\":\"v1\",\"metadata\":{"            \
        "\"resourceVersion\":\"1077\",\"creationTimestamp\":null,\"annotations\":{"                          \
        "\"k8s.io/initial-events-end\":\"true\"}}}}\n"
#define EV_GONE                                                                                            \
        "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},"           \
        "\"status\":\"Failure\",\"message\":\"too old resource version: 1001 (1077)\",\"reason\":\"Expired\"," \
        "\"code\":410}}\n"

typedef struct recorder {
        unsigned count;
        char types[16][16];
        char *objects[16];  /* compact, sorted keys */
        unsigned fail_at;   /* 1-based: the event whose handler fails; 0: none */
        int fail_with;
} recorder;

static int record(const char *type, json_t *object, void *userdata) {
        recorder *rec = userdata;

        assert_true(json_is_object(object));
        rec->count++;
        if (rec->fail_at == rec->count)
                return rec->fail_with;
        if (rec->count <= ELEMENTSOF(rec->objects)) {
                snprintf(rec->types[rec->count - 1], sizeof(rec->types[0]), "%s", type);
                rec->objects[rec->count - 1] = json_dumps(object, JSON_COMPACT | JSON_SORT_KEYS);
        }
        return 0;
}

static void recorder_done(recorder *rec) {
        for (size_t i = 0; i < ELEMENTSOF(rec->objects); i++)
                free(rec->objects[i]);
        *rec = (recorder){};
}

/* Decodes `chunks` (NULL-terminated) and finishes; returns the first error. */
static int decode(recorder *rec, const char *const *chunks, size_t const *sizes, char **ret_error) {
        _cleanup_(watch_decoder_freep) watch_decoder *d = NULL;
        int r;

        assert_int_equal(watch_decoder_new(record, rec, &d), 0);
        for (size_t i = 0; chunks[i]; i++) {
                r = watch_decoder_feed(d, chunks[i], sizes ? sizes[i] : strlen(chunks[i]), ret_error);
                if (r < 0)
                        return r;
        }
        return watch_decoder_finish(d, ret_error);
}

static int decode_one(recorder *rec, const char *stream, char **ret_error) {
        return decode(rec, (const char *const[]){ stream, NULL }, NULL, ret_error);
}

static void assert_stream_of_three(const recorder *rec) {
        assert_int_equal(rec->count, 3);
        assert_string_equal(rec->types[0], "ADDED");
        assert_string_equal(rec->types[1], "MODIFIED");
        assert_string_equal(rec->types[2], "BOOKMARK");
        assert_non_null(strstr(rec->objects[0], "\"cplet.io/target\":\"{\\\"id\\\":\\\"up-135\\\""));
        assert_non_null(strstr(rec->objects[1], "\"resourceVersion\":\"1042\""));
        assert_non_null(strstr(rec->objects[2], "\"resourceVersion\":\"1077\""));
}

static void test_whole_events(void **state) {
        _cleanup_(recorder_done) recorder rec = {};
        _cleanup_free_ char *error = NULL;

        assert_int_equal(decode(&rec, (const char *const[]){ EV_ADDED, EV_MODIFIED, EV_BOOKMARK, NULL }, NULL, &error),
                         0);
        assert_null(error);
        assert_stream_of_three(&rec);
}

static void test_several_events_in_one_chunk(void **state) {
        _cleanup_(recorder_done) recorder rec = {};
        _cleanup_free_ char *error = NULL;

        assert_int_equal(decode_one(&rec, EV_ADDED EV_MODIFIED EV_BOOKMARK, &error), 0);
        assert_stream_of_three(&rec);
}

static void test_split_at_every_byte(void **state) {
        static const char stream[] = EV_ADDED EV_MODIFIED EV_BOOKMARK;
        size_t n = strlen(stream);

        for (size_t i = 0; i <= n; i++) {
                _cleanup_(recorder_done) recorder rec = {};
                _cleanup_free_ char *error = NULL;

                assert_int_equal(decode(&rec, (const char *const[]){ stream, stream + i, NULL },
                                        (const size_t[]){ i, n - i }, &error),
                                 0);
                assert_stream_of_three(&rec);
        }
}

/* Every pair of cut points in a stream of two short events: three chunks each time. */
static void test_split_in_three_everywhere(void **state) {
        static const char stream[] = "{\"type\":\"ADDED\",\"object\":{\"a\":1}}\r\n"
                                     "{\"type\":\"DELETED\",\"object\":{\"b\":[2,\"\\n\"]}}\n";
        size_t n = strlen(stream);

        for (size_t i = 0; i <= n; i++)
                for (size_t j = i; j <= n; j++) {
                        _cleanup_(recorder_done) recorder rec = {};
                        _cleanup_free_ char *error = NULL;

                        assert_int_equal(decode(&rec, (const char *const[]){ stream, stream + i, stream + j, NULL },
                                                (const size_t[]){ i, j - i, n - j }, &error),
                                         0);
                        assert_int_equal(rec.count, 2);
                        assert_string_equal(rec.objects[0], "{\"a\":1}");
                        assert_string_equal(rec.objects[1], "{\"b\":[2,\"\\n\"]}");
                }
}

/* What a client reading with a JSON decoder accepts between objects. */
static void test_blank_lines_crlf_and_spaces(void **state) {
        _cleanup_(recorder_done) recorder rec = {};
        _cleanup_free_ char *error = NULL;

        assert_int_equal(decode_one(&rec,
                                    "\n\r\n  \t\n{\"type\":\"ADDED\",\"object\":{}}\r\n\r\n"
                                    "  {\"type\":\"MODIFIED\",\"object\":{\"x\":1}}  \t\r\n"
                                    "{\"type\":\"DELETED\",\"object\":{}} {\"type\":\"ADDED\",\"object\":{}}"
                                    "{\"type\":\"BOOKMARK\",\"object\":{}}\n\n",
                                    &error),
                         0);
        assert_int_equal(rec.count, 5);
        assert_string_equal(rec.types[1], "MODIFIED");
        assert_string_equal(rec.objects[1], "{\"x\":1}");
        assert_string_equal(rec.types[2], "DELETED");
        assert_string_equal(rec.types[3], "ADDED");
        assert_string_equal(rec.types[4], "BOOKMARK");
}

static void test_bookmark_with_only_resource_version(void **state) {
        _cleanup_(recorder_done) recorder rec = {};
        _cleanup_free_ char *error = NULL;

        assert_int_equal(decode_one(&rec, "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"12746\"}}}\n",
                                    &error),
                         0);
        assert_int_equal(rec.count, 1);
        assert_string_equal(rec.types[0], "BOOKMARK");
        assert_string_equal(rec.objects[0], "{\"metadata\":{\"resourceVersion\":\"12746\"}}");
}

static void test_error_event_410(void **state) {
        _cleanup_(recorder_done) recorder rec = {};
        _cleanup_free_ char *error = NULL;
        json_auto_t *status = NULL;

        assert_int_equal(decode_one(&rec, EV_GONE, &error), 0);
        assert_int_equal(rec.count, 1);
        assert_string_equal(rec.types[0], "ERROR");
        status = json_loads(rec.objects[0], 0, NULL);
        assert_int_equal(json_integer_value(json_object_get(status, "code")), 410);
        assert_string_equal(json_string_value(json_object_get(status, "reason")), "Expired");
}

/* Fields the API may add one day are ignored; a NUL in a string (Go writes \u0000; anyone who
 * can patch the Node can put one in an annotation) does not stop the watch. */
static void test_extra_fields_and_nul_in_strings(void **state) {
        _cleanup_(recorder_done) recorder rec = {};
        _cleanup_free_ char *error = NULL;

        assert_int_equal(decode_one(&rec,
                                    "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"annotations\":"
                                    "{\"x\":\"a\\u0000b\"}}},\"future\":[1]}\n",
                                    &error),
                         0);
        assert_int_equal(rec.count, 1);
        assert_string_equal(rec.objects[0], "{\"metadata\":{\"annotations\":{\"x\":\"a\\u0000b\"}}}");
}

static void test_malformed_events(void **state) {
        static const struct {
                const char *stream;
                const char *says[3];
        } cases[] = {
                { "not json\n", { "byte 0: event not JSON", "\"not json\"" } },
                { EV_MODIFIED "{\"type\":\"ADDED\",\"object\":{}\n",
                  { "byte 164: event not JSON", "'}' expected", "\"{\\\"type\\\":\\\"ADDED\\\"" } },
                { "[{\"type\":\"ADDED\",\"object\":{}}]\n", { "byte 0: event [{\"type\":\"ADDED\"", "expected a JSON object" } },
                { "\n\n  {\"object\":{}}\n", { "byte 4: event type (none): expected ADDED, MODIFIED" } },
                { "{\"type\":\"UPDATED\",\"object\":{}}\n", { "byte 0: event type \"UPDATED\": expected ADDED" } },
                { "{\"type\":\"added\",\"object\":{}}\n", { "event type \"added\"" } },
                { "{\"type\":\"ADDED\\u0000\",\"object\":{}}\n", { "event type \"ADDED\\u0000\"" } },
                { "{\"type\":7,\"object\":{}}\n", { "event type 7" } },
                /* JSON leaves DEL as it is; a message does not. */
                { "{\"type\":\"A\x7f\",\"object\":{}}\n", { "event type \"A\\x7f\"" } },
                { "{\"type\":\"ADDED\",\"object\":\"cp-1\"}\n", { "ADDED event: object \"cp-1\": expected a JSON object" } },
                { "{\"type\":\"DELETED\",\"object\":[]}\n", { "DELETED event: object []" } },
                { "{\"type\":\"ERROR\"}\n", { "ERROR event: object (none)" } },
                { "{\"type\":\"ADDED\",\"type\":\"DELETED\",\"object\":{}}\n", { "duplicate object key" } },
                /* An object across lines: never written by a server. */
                { "{\"type\":\"ADDED\",\n\"object\":{}}\n", { "byte 0: event not JSON" } },
                { "{\"type\":\"ADDED\",\"object\":{}} trailing\n", { "byte 29: event not JSON", "\"trailing\"" } },
                { "{\"type\":\"ADDED\",\"object\":{\"x\":\"\xff\"}}\n", { "unable to decode byte 0xff", "\\xff" } },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(recorder_done) recorder rec = {};
                _cleanup_free_ char *error = NULL;

                if (decode_one(&rec, cases[i].stream, &error) != -EBADMSG)
                        fail_msg("case %zu: not refused", i);
                for (size_t j = 0; j < ELEMENTSOF(cases[i].says) && cases[i].says[j]; j++)
                        if (!strstr(error, cases[i].says[j]))
                                fail_msg("case %zu: \"%s\" does not say \"%s\"", i, error, cases[i].says[j]);
                assert_true(strlen(error) < 300);
                for (const char *p = error; *p; p++)
                        if ((unsigned char) *p < 0x20 || (unsigned char) *p >= 0x7f)
                                fail_msg("case %zu: byte 0x%02x in \"%s\"", i, (unsigned char) *p, error);
        }
}

/* A raw NUL byte is not JSON (only \u0000 is): refused, and quoted escaped. */
static void test_raw_nul_refused(void **state) {
        static const char stream[] = "{\"type\":\"ADDED\",\"object\":{\"x\":\"\0\"}}\n";
        _cleanup_(recorder_done) recorder rec = {};
        _cleanup_free_ char *error = NULL;

        assert_int_equal(decode(&rec, (const char *const[]){ stream, NULL }, (const size_t[]){ sizeof(stream) - 1 },
                                &error),
                         -EBADMSG);
        assert_int_equal(rec.count, 0);
assert_non_null(strstr(error, "byte 0: event not JSON (byte 31: control character 0x0"));
        assert_non_null(strstr(error, "\\x00\\\"}}\""));
}

static void test_long_values_are_cut_short(void **state) {
        _cleanup_(recorder_done) recorder rec = {};
        _cleanup_free_ char *error = NULL, *stream = NULL, *big = malloc(100001);

        memset(big, 'x', 100000);
        big[100000] = 0;
        stream = strdup_printf("{\"type\":\"%s\",\"object\":{}}\n", big);
        assert_int_equal(decode_one(&rec, stream, &error), -EBADMSG);
        assert_non_null(strstr(error, "xxx..."));
        assert_true(strlen(error) < 200);
        free(error);
        error = NULL;

        stream[0] = '<';
        assert_int_equal(decode_one(&rec, stream, &error), -EBADMSG);
        assert_non_null(strstr(error, "\"<\\\"type\\\":\\\"xxx"));
        assert_true(strlen(error) < 300);
}

static void test_oversized_event(void **state) {
        _cleanup_(watch_decoder_freep) watch_decoder *d = NULL;
        _cleanup_(recorder_done) recorder rec = {};
        _cleanup_free_ char *error = NULL, *chunk = malloc(1024 * 1024);

        memset(chunk, ' ', 1024 * 1024);
        memcpy(chunk, "{\"type\":\"ADDED\",\"object\":{\"x\":\"", 31);
        assert_int_equal(watch_decoder_new(record, &rec, &d), 0);
        assert_int_equal(watch_decoder_feed(d, EV_MODIFIED, strlen(EV_MODIFIED), &error), 0);
        for (int i = 0; i < 4; i++)
                assert_int_equal(watch_decoder_feed(d, chunk, 1024 * 1024, &error), 0);
        /* One byte more than WATCH_EVENT_MAX without a newline: refused before it is kept. */
        assert_int_equal(watch_decoder_feed(d, "x", 1, &error), -E2BIG);
        assert_non_null(strstr(error, "byte 164: an event larger than 4194304 bytes"));
        assert_int_equal(rec.count, 1);
}

/* A whole event of exactly WATCH_EVENT_MAX bytes, fed one byte at a time: decoded, and parsed
 * once (a decoder that tried to parse at each chunk, or looked for the newline from the start of
 * the event each time, would do 4 million times the work and not finish). */
static void test_largest_event_one_byte_at_a_time(void **state) {
        static const char head[] = "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"annotations\":{\"big\":\"";
        static const char tail[] = "\"}}}}";
        _cleanup_(watch_decoder_freep) watch_decoder *d = NULL;
        _cleanup_(recorder_done) recorder rec = {};
        _cleanup_free_ char *error = NULL, *event = malloc(WATCH_EVENT_MAX + 1);

        memset(event, 'v', WATCH_EVENT_MAX);
        memcpy(event, head, strlen(head));
        memcpy(event + WATCH_EVENT_MAX - strlen(tail), tail, strlen(tail));
        event[WATCH_EVENT_MAX] = '\n';
        assert_int_equal(watch_decoder_new(record, &rec, &d), 0);
        parses = 0;
        for (size_t i = 0; i <= WATCH_EVENT_MAX; i++)
                assert_int_equal(watch_decoder_feed(d, event + i, 1, &error), 0);
        assert_int_equal(watch_decoder_finish(d, &error), 0);
        assert_int_equal(parses, 1);
        assert_int_equal(rec.count, 1);
        assert_string_equal(rec.types[0], "MODIFIED");
        assert_int_equal(strlen(rec.objects[0]), WATCH_EVENT_MAX - strlen("{\"type\":\"MODIFIED\",\"object\":}"));
}

static void test_handler_failure_stops(void **state) {
        _cleanup_(watch_decoder_freep) watch_decoder *d = NULL;
        _cleanup_(recorder_done) recorder rec = { .fail_at = 2, .fail_with = -ENOSPC };
        _cleanup_free_ char *error = NULL;

        assert_int_equal(watch_decoder_new(record, &rec, &d), 0);
        assert_int_equal(watch_decoder_feed(d, EV_ADDED EV_MODIFIED EV_BOOKMARK, strlen(EV_ADDED EV_MODIFIED EV_BOOKMARK),
                                            &error),
                         -ENOSPC);
        assert_int_equal(rec.count, 2); /* the BOOKMARK after it was not handed over */
        assert_non_null(strstr(error, "MODIFIED event not handled"));
        assert_int_equal(watch_decoder_feed(d, EV_GONE, strlen(EV_GONE), &error), -ENOSPC);
        assert_int_equal(watch_decoder_finish(d, &error), -ENOSPC);
        assert_int_equal(rec.count, 2);
}

static void test_poisoned_after_error(void **state) {
        _cleanup_(watch_decoder_freep) watch_decoder *d = NULL;
        _cleanup_(recorder_done) recorder rec = {};
        _cleanup_free_ char *error = NULL;

        assert_int_equal(watch_decoder_new(record, &rec, &d), 0);
        assert_int_equal(watch_decoder_feed(d, "{\"type\":\"NOPE\",\"object\":{}}\n" EV_ADDED,
                                            strlen("{\"type\":\"NOPE\",\"object\":{}}\n" EV_ADDED), &error),
                         -EBADMSG);
        assert_int_equal(rec.count, 0);
        free(error);
        error = NULL;
        assert_int_equal(watch_decoder_feed(d, EV_MODIFIED, strlen(EV_MODIFIED), &error), -EBADMSG);
        assert_non_null(strstr(error, "\"NOPE\""));
        assert_non_null(strstr(error, "unusable"));
        assert_int_equal(watch_decoder_feed(d, "", 0, &error), -EBADMSG);
        assert_int_equal(watch_decoder_finish(d, &error), -EBADMSG);
        assert_int_equal(rec.count, 0);
}

static void test_finish(void **state) {
        static const struct {
                const char *stream;
                int r;
                unsigned events;
                const char *says;
        } cases[] = {
                { "", 0, 0, NULL },
                { EV_ADDED, 0, 1, NULL },
                { EV_ADDED "  \r\n\r \t", 0, 1, NULL },
                { EV_ADDED "{\"type\":\"MODIFIED\",\"obj", -EBADMSG, 1,
                  "byte 402: the stream ends inside an event (23 bytes, no newline): \"{\\\"type\\\":\\\"MODIFIED" },
                /* Whole, but the server would have ended it with a newline: the stream was cut. */
                { "{\"type\":\"ADDED\",\"object\":{}}", -EBADMSG, 0, "ends inside an event" },
                { "\n  x", -EBADMSG, 0, "byte 3: the stream ends inside an event (1 bytes, no newline): \"x\"" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(recorder_done) recorder rec = {};
                _cleanup_free_ char *error = NULL;

                assert_int_equal(decode_one(&rec, cases[i].stream, &error), cases[i].r);
                assert_int_equal(rec.count, cases[i].events);
                if (cases[i].says && !strstr(error, cases[i].says))
                        fail_msg("case %zu: \"%s\" does not say \"%s\"", i, error, cases[i].says);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_whole_events),
                cmocka_unit_test(test_several_events_in_one_chunk),
                cmocka_unit_test(test_split_at_every_byte),
                cmocka_unit_test(test_split_in_three_everywhere),
                cmocka_unit_test(test_blank_lines_crlf_and_spaces),
                cmocka_unit_test(test_bookmark_with_only_resource_version),
                cmocka_unit_test(test_error_event_410),
                cmocka_unit_test(test_extra_fields_and_nul_in_strings),
                cmocka_unit_test(test_malformed_events),
                cmocka_unit_test(test_raw_nul_refused),
                cmocka_unit_test(test_long_values_are_cut_short),
                cmocka_unit_test(test_oversized_event),
                cmocka_unit_test(test_largest_event_one_byte_at_a_time),
                cmocka_unit_test(test_handler_failure_stops),
                cmocka_unit_test(test_poisoned_after_error),
                cmocka_unit_test(test_finish),
        };

        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
