/* SPDX-License-Identifier: Apache-2.0 */
/* The Kubernetes API client against the fake API server (tests/apiserver/fake_apiserver.py):
 * identities, the node authorizer's answers, patches, events, watches and how they end, fault
 * knobs, TLS trust, tokens and a rotated client certificate. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../unit/test-process.h"
#include "../unit/test-util.h"
#include "kube-client.h"
#include "kubeconfig.h"
#include "macro.h"

#define WAIT_MS 20000

static sd_event *event;
static char tmpdir[] = "/tmp/cplet-kube-client-XXXXXX";
static char *apiserver_dir, *state_dir;
static pid_t server_pid;
static uint16_t port;
static kube_client *admin; /* system:masters, for the knobs and for changes the node may not make */

/* ------------------------------------------------------------------------------------------ */
/* Helpers */

static char *path_of(const char *name) {
        char *p = strdup_printf("%s/%s", tmpdir, name);

        assert_non_null(p);
        return p;
}

static void write_text(const char *name, const char *text) {
        _cleanup_free_ char *p = path_of(name), *tmp = strdup_printf("%s.tmp", p);
        FILE *f = fopen(tmp, "we");

        assert_non_null(f);
        assert_true(fputs(text, f) >= 0);
        assert_int_equal(fclose(f), 0);
        assert_int_equal(rename(tmp, p), 0);
}

static char *read_text(const char *path) {
        FILE *f = fopen(path, "re");
        char *data = NULL;
        size_t n = 0;
        ssize_t k;

        if (!f)
                return NULL;
        /* With NUL as the delimiter: the whole file; nothing read (an empty file) leaves the buffer
         * unterminated, so it is not returned. */
        k = getdelim(&data, &n, 0, f);
        fclose(f);
        if (k < 0) {
                free(data);
                return strdup("");
        }
        return data;
}

/* Runs a command to its end; it must succeed. */
static void run(char *const argv[]) {
        pid_t pid = spawn(argv, -1);
        int status;

        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                fail_msg("%s %s failed", argv[0], argv[1]);
}

/* A kubeconfig from pki.py for a user with a client certificate of the fake's CA. */
static void pki_kubeconfig(const char *name, const char *user, const char *group, bool embed) {
        _cleanup_free_ char *pki = strdup_printf("%s/pki.py", apiserver_dir), *dir = strdup_printf("%s/pki", state_dir),
                            *out = path_of(name), *server = strdup_printf("https://127.0.0.1:%u", port);
        char *argv[] = { "python3", pki, dir, "kubeconfig", out, "--server", server, "--user", (char *) user,
                         "--group", (char *) group, embed ? "--embed" : NULL, NULL };

        run(argv);
}

static kubeconfig *load(const char *name) {
        _cleanup_free_ char *p = path_of(name), *error = NULL;
        kubeconfig *k = NULL;

        if (kubeconfig_load(p, NULL, &k, &error) < 0)
                fail_msg("%s: %s", name, error);
        return k;
}

static kube_client *client_for(const char *name, bool insecure) {
        _cleanup_(kubeconfig_freep) kubeconfig *k = load(name);
        _cleanup_free_ char *error = NULL;
        kube_client *c = NULL;

        if (kube_client_new(event, k, insecure, &c, &error) < 0)
                fail_msg("%s: %s", name, error);
        return c;
}

/* A kubeconfig written here: the fake's server, `cluster_extra` and `user` JSON members. */
static void write_kubeconfig(const char *name, const char *server, const char *cluster_extra, const char *user) {
        _cleanup_free_ char *text = strdup_printf(
                "{\"apiVersion\": \"v1\", \"kind\": \"Config\", \"current-context\": \"c\",\n"
                " \"clusters\": [{\"name\": \"k\", \"cluster\": {\"server\": \"%s\", %s}}],\n"
                " \"users\": [{\"name\": \"u\", \"user\": {%s}}],\n"
                " \"contexts\": [{\"name\": \"c\", \"context\": {\"cluster\": \"k\", \"user\": \"u\"}}]}\n",
                server, cluster_extra, user);

        write_text(name, text);
}

static char *server_url(void) {
        return strdup_printf("https://127.0.0.1:%u", port);
}

static char *fake_ca(void) {
        return strdup_printf("\"certificate-authority\": \"%s/pki/ca.crt\"", state_dir);
}

static void run_until(const unsigned *count, unsigned want) {
        uint64_t deadline = now_ms() + WAIT_MS;

        while (*count < want) {
                if (now_ms() > deadline)
                        fail_msg("only %u of %u callbacks within %d ms", *count, want, WAIT_MS);
                assert_true(sd_event_run(event, 100 * 1000) >= 0);
        }
}

static void run_for(uint64_t ms) {
        uint64_t deadline = now_ms() + ms;

        while (now_ms() < deadline)
                assert_true(sd_event_run(event, 10 * 1000) >= 0);
}

typedef struct result {
        unsigned calls;
        long status;
        bool has_error;
        char error[1024];
        char reason[64];
        json_t *body;
        uint64_t retry_after_usec;
} result;

static void result_done(result *r) {
        json_decref(r->body);
        *r = (result){};
}

static bool in_start; /* a callback from inside kube_request()/kube_watch() would be a bug */

static void on_done(const kube_response *resp, void *userdata) {
        result *r = userdata;

        if (in_start)
                fail_msg("called back from inside the call that started the request");
        r->calls++;
        r->status = resp->status;
        r->has_error = resp->error != NULL;
        snprintf(r->error, sizeof(r->error), "%s", resp->error ?: "");
        snprintf(r->reason, sizeof(r->reason), "%s", resp->reason ?: "");
        json_decref(r->body);
        r->body = json_incref(resp->body);
        r->retry_after_usec = resp->retry_after_usec;
}

/* One request, run to its end. */
static void request(kube_client *c, const char *method, const char *path, json_t *body, const char *ctype,
                    result *r) {
        int k;

        result_done(r);
        in_start = true;
        k = kube_request(c, method, path, body, ctype, 15000, on_done, r);
        in_start = false;
        assert_int_equal(k, 0);
        assert_int_equal(r->calls, 0);
        run_until(&r->calls, 1);
}

static void expect_status(const result *r, long status) {
        if (r->status != status)
                fail_msg("expected %ld, got %ld: %s", status, r->status, r->error);
}

static void knobs(const char *json_text) {
        _cleanup_(result_done) result r = {};
        json_auto_t *body = json_loads(json_text, 0, NULL);

        assert_non_null(body);
        request(admin, "POST", "/fake/knobs", body, NULL, &r);
        expect_status(&r, 200);
}

/* True once the fake lists a watch of `user` whose path contains `path`. */
static bool watch_open(const char *user, const char *path) {
        _cleanup_(result_done) result r = {};
        json_t *w;
        size_t i;

        request(admin, "GET", "/fake/knobs", NULL, NULL, &r);
        expect_status(&r, 200);
        json_array_foreach(json_object_get(r.body, "watches"), i, w) {
                const char *s = json_string_value(w);

                if (s && startswith(s, user) && s[strlen(user)] == ' ' && strstr(s, path))
                        return true;
        }
        return false;
}

static void wait_watch(const char *user, const char *path, bool open) {
        uint64_t deadline = now_ms() + WAIT_MS;

        while (watch_open(user, path) != open) {
                if (now_ms() > deadline)
                        fail_msg("the watch %s %s is %s", user, path, open ? "not open" : "still open");
                run_for(50);
        }
}

/* The user the fake's audit log names for the last request of `path` (the log is written after
 * the response, so wait for it). */
static char *audit_user(const char *method, const char *path, size_t after_lines) {
        _cleanup_free_ char *log = strdup_printf("%s/audit.log", state_dir);
        uint64_t deadline = now_ms() + WAIT_MS;

        for (;;) {
                _cleanup_free_ char *text = read_text(log);
                char *user = NULL, *line, *save = NULL;
                size_t n = 0;

                for (line = text ? strtok_r(text, "\n", &save) : NULL; line; line = strtok_r(NULL, "\n", &save)) {
                        json_auto_t *rec = NULL;

                        if (n++ < after_lines)
                                continue;
                        rec = json_loads(line, 0, NULL);
                        if (rec && streq(json_string_value(json_object_get(rec, "method")) ?: "", method) &&
                            streq(json_string_value(json_object_get(rec, "path")) ?: "", path)) {
                                free(user);
                                user = strdup(json_string_value(json_object_get(rec, "user")) ?: "(none)");
                        }
                }
                if (user)
                        return user;
                if (now_ms() > deadline)
                        fail_msg("no audit record of %s %s", method, path);
                run_for(50);
        }
}

static size_t audit_lines(void) {
        _cleanup_free_ char *log = strdup_printf("%s/audit.log", state_dir);
        _cleanup_free_ char *text = read_text(log);
        size_t n = 0;

        for (const char *p = text; p && (p = strchr(p, '\n')); p++)
                n++;
        return n;
}

static const char *annotation(json_t *node, const char *key) {
        return json_string_value(json_object_get(json_object_get(json_object_get(node, "metadata"), "annotations"), key));
}

static char *resource_version(json_t *o) {
        const char *rv = json_string_value(json_object_get(json_object_get(o, "metadata"), "resourceVersion"));

        assert_non_null(rv);
        return strdup(rv);
}

static void admin_annotate(const char *node, const char *key, const char *value) {
        _cleanup_(result_done) result r = {};
        _cleanup_free_ char *path = strdup_printf("/api/v1/nodes/%s", node);
        json_auto_t *patch = json_pack("{s:{s:{s:s}}}", "metadata", "annotations", key, value);

        request(admin, "PATCH", path, patch, "application/merge-patch+json", &r);
        expect_status(&r, 200);
}

/* ------------------------------------------------------------------------------------------ */
/* Watches */

typedef struct watch_result {
        unsigned events, ends;
        char types[64][12];
        json_t *objects[64];
        result end;
        kube_client **client; /* for the callbacks that cancel or free */
        bool free_in_event, cancel_in_event;
        size_t cancelled;
} watch_result;

static void watch_result_done(watch_result *w) {
        for (size_t i = 0; i < MIN(w->events, ELEMENTSOF(w->objects)); i++)
                json_decref(w->objects[i]);
        result_done(&w->end);
        *w = (watch_result){};
}

static void on_event(const char *type, json_t *object, void *userdata) {
        watch_result *w = userdata;

        if (in_start)
                fail_msg("an event from inside kube_watch()");
        if (w->events < ELEMENTSOF(w->objects)) {
                snprintf(w->types[w->events], sizeof(w->types[0]), "%s", type);
                w->objects[w->events] = json_incref(object);
        }
        w->events++;
        if (w->free_in_event)
                *w->client = kube_client_free(*w->client);
        else if (w->cancel_in_event)
                w->cancelled = kube_client_cancel(*w->client, w);
}

static void on_end(const kube_response *resp, void *userdata) {
        watch_result *w = userdata;

        w->ends++;
        on_done(resp, &w->end);
}

static void watch(kube_client *c, const char *path, watch_result *w) {
        int k;

        in_start = true;
        k = kube_watch(c, path, on_event, on_end, w);
        in_start = false;
        assert_int_equal(k, 0);
}

/* The index of the first event of that type from `from` on, waiting for it. */
static unsigned wait_event(watch_result *w, unsigned from, const char *type) {
        uint64_t deadline = now_ms() + WAIT_MS;

        for (;;) {
                for (unsigned i = from; i < MIN(w->events, ELEMENTSOF(w->types)); i++)
                        if (streq(w->types[i], type))
                                return i;
                if (w->ends > 0)
                        fail_msg("the watch ended (%ld %s) before a %s event", w->end.status, w->end.error, type);
                if (now_ms() > deadline)
                        fail_msg("no %s event within %d ms", type, WAIT_MS);
                assert_true(sd_event_run(event, 100 * 1000) >= 0);
        }
}

/* ------------------------------------------------------------------------------------------ */
/* Requests */

static void test_get_own_node(void **state) {
        _cleanup_(kube_client_freep) kube_client *c = client_for("n1.conf", false);
        _cleanup_(result_done) result r = {};
        size_t before = audit_lines();
        _cleanup_free_ char *user = NULL;

        request(c, "GET", "/api/v1/nodes/n1", NULL, NULL, &r);
        expect_status(&r, 200);
        assert_false(r.has_error);
        assert_string_equal(json_string_value(json_object_get(r.body, "kind")), "Node");
        assert_string_equal(json_string_value(json_object_get(json_object_get(r.body, "metadata"), "name")), "n1");
        user = audit_user("GET", "/api/v1/nodes/n1", before);
        assert_string_equal(user, "system:node:n1");
}

static void test_get_other_node_forbidden(void **state) {
        _cleanup_(kube_client_freep) kube_client *c = client_for("n1.conf", false);
        _cleanup_(result_done) result r = {};

        request(c, "GET", "/api/v1/nodes/n2", NULL, NULL, &r);
        expect_status(&r, 403);
        assert_string_equal(r.error, "nodes \"n2\" is forbidden: User \"system:node:n1\" cannot get resource "
                                     "\"nodes\" in API group \"\" at the cluster scope: node 'n1' cannot read "
                                     "'n2', only its own Node object");
        assert_string_equal(r.reason, "Forbidden");
        assert_string_equal(json_string_value(json_object_get(r.body, "kind")), "Status");
}

static void test_patch_own_annotation(void **state) {
        _cleanup_(kube_client_freep) kube_client *c = client_for("n1.conf", false);
        _cleanup_(result_done) result r = {};
        json_auto_t *patch = json_pack("{s:{s:{s:s}}}", "metadata", "annotations", "cplet.io/status",
                                       "{\"phase\":\"Idle\"}");

        request(c, "PATCH", "/api/v1/nodes/n1", patch, "application/merge-patch+json", &r);
        expect_status(&r, 200);
        assert_string_equal(annotation(r.body, "cplet.io/status"), "{\"phase\":\"Idle\"}");

        request(c, "GET", "/api/v1/nodes/n1", NULL, NULL, &r);
        expect_status(&r, 200);
        assert_string_equal(annotation(r.body, "cplet.io/status"), "{\"phase\":\"Idle\"}");

        /* As JSON, a merge patch is not: the content type is what the server goes by. */
        request(c, "PATCH", "/api/v1/nodes/n1", patch, NULL, &r);
        expect_status(&r, 415);
        assert_true(r.has_error);
}

static void test_post_event(void **state) {
        _cleanup_(kube_client_freep) kube_client *c = client_for("n1.conf", false);
        _cleanup_(result_done) result r = {}, list = {};
        json_auto_t *ev = json_pack(
                "{s:s, s:s, s:{s:s, s:s}, s:{s:s, s:s, s:s}, s:s, s:s, s:s, s:{s:s, s:s}}", "apiVersion", "v1",
                "kind", "Event", "metadata", "generateName", "n1.", "namespace", "default", "involvedObject",
                "kind", "Node", "name", "n1", "uid", "n1", "reason", "UpgradeStarted", "message",
                "upgrading to v1.35.0", "type", "Normal", "source", "component", "cplet", "host", "n1");
        const char *name;

        request(c, "POST", "/api/v1/namespaces/default/events", ev, NULL, &r);
        expect_status(&r, 201);
        name = json_string_value(json_object_get(json_object_get(r.body, "metadata"), "name"));
        assert_non_null(name);
        assert_non_null(startswith(name, "n1."));

        request(admin, "GET", "/api/v1/namespaces/default/events", NULL, NULL, &list);
        expect_status(&list, 200);
        {
                json_t *item;
                size_t i;
                bool found = false;

                json_array_foreach(json_object_get(list.body, "items"), i, item)
                        if (streq(json_string_value(json_object_get(json_object_get(item, "metadata"), "name")) ?: "",
                                  name))
                                found = streq(json_string_value(json_object_get(item, "message")) ?: "",
                                              "upgrading to v1.35.0");
                assert_true(found);
        }
}

static void test_injected_failures(void **state) {
        _cleanup_(kube_client_freep) kube_client *c = client_for("n1.conf", false);
        _cleanup_(result_done) result r = {};

        knobs("{\"fail\": {\"count\": 1, \"code\": 500, \"match\": \"GET /api/v1/nodes/n1\"}}");
        request(c, "GET", "/api/v1/nodes/n1", NULL, NULL, &r);
        expect_status(&r, 500);
        assert_string_equal(r.error, "Internal error occurred: injected by the fake API server");
        assert_string_equal(r.reason, "InternalError");
        assert_int_equal(r.retry_after_usec, 0);

        knobs("{\"fail\": {\"count\": 1, \"code\": 429, \"retry_after\": 7, \"match\": \"GET /api/v1/nodes/n1\"}}");
        request(c, "GET", "/api/v1/nodes/n1", NULL, NULL, &r);
        expect_status(&r, 429);
        assert_string_equal(r.reason, "TooManyRequests");
        assert_int_equal(r.retry_after_usec, 7 * 1000000ULL);

        /* Used up: the next one passes. */
        request(c, "GET", "/api/v1/nodes/n1", NULL, NULL, &r);
        expect_status(&r, 200);
}

/* A list of nodes larger than KUBE_RESPONSE_MAX, made of legitimate objects: annotations of up to
 * 256 KiB each, as the API server allows. */
static void test_oversized_response(void **state) {
        _cleanup_(result_done) result r = {};
        _cleanup_free_ char *big = malloc(250 * 1024 + 1);
        unsigned n = KUBE_RESPONSE_MAX / (250 * 1024) + 1;

        assert_non_null(big);
        memset(big, 'x', 250 * 1024);
        big[250 * 1024] = 0;
        for (unsigned i = 0; i < n; i++) {
                _cleanup_free_ char *name = strdup_printf("big%u", i);
                json_auto_t *node = json_pack("{s:s, s:s, s:{s:s, s:{s:s}}}", "apiVersion", "v1", "kind", "Node",
                                              "metadata", "name", name, "annotations", "test.cplet.io/big", big);

                request(admin, "POST", "/api/v1/nodes", node, NULL, &r);
                expect_status(&r, 201);
        }
        /* One is well within the limit... */
        request(admin, "GET", "/api/v1/nodes/big0", NULL, NULL, &r);
        expect_status(&r, 200);
        assert_int_equal(strlen(annotation(r.body, "test.cplet.io/big")), 250 * 1024);

        /* ...all of them are not. */
        request(admin, "GET", "/api/v1/nodes", NULL, NULL, &r);
        expect_status(&r, 0);
        assert_string_equal(r.error, "response larger than 4194304 bytes");
        assert_null(r.body);

        for (unsigned i = 0; i < n; i++) {
                _cleanup_free_ char *path = strdup_printf("/api/v1/nodes/big%u", i);

                request(admin, "DELETE", path, NULL, NULL, &r);
                expect_status(&r, 200);
        }
        request(admin, "GET", "/api/v1/nodes", NULL, NULL, &r);
        expect_status(&r, 200);
}

static void test_embedded_credentials(void **state) {
        _cleanup_(kube_client_freep) kube_client *c = client_for("n1-embed.conf", false);
        _cleanup_(result_done) result r = {};

        request(c, "GET", "/api/v1/nodes/n1", NULL, NULL, &r);
        expect_status(&r, 200);
        request(c, "GET", "/api/v1/nodes/n2", NULL, NULL, &r);
        expect_status(&r, 403);
}

/* ------------------------------------------------------------------------------------------ */
/* TLS trust */

static void test_tls_other_ca(void **state) {
        _cleanup_free_ char *server = server_url(), *pki = strdup_printf("%s/pki.py", apiserver_dir),
                            *other = path_of("other-pki"), *ca = NULL, *user = NULL;
        _cleanup_(result_done) result r = {};
        kube_client *c;
        char *argv[] = { "python3", pki, other, "init", NULL };

        run(argv);
        ca = strdup_printf("\"certificate-authority\": \"%s/ca.crt\"", other);
        user = strdup_printf("\"client-certificate\": \"%s/pki/client-system_node_n1.crt\", "
                             "\"client-key\": \"%s/pki/client-system_node_n1.key\"",
                             state_dir, state_dir);
        write_kubeconfig("other-ca.conf", server, ca, user);

        /* The server's certificate is not signed by the CA configured: refused, in curl's words. */
        c = client_for("other-ca.conf", false);
        request(c, "GET", "/api/v1/nodes/n1", NULL, NULL, &r);
        expect_status(&r, 0);
        assert_non_null(strstr(r.error, "SSL certificate problem"));
        c = kube_client_free(c);

        /* Unless the user said --insecure-skip-tls-verify. */
        c = client_for("other-ca.conf", true);
        request(c, "GET", "/api/v1/nodes/n1", NULL, NULL, &r);
        expect_status(&r, 200);
        c = kube_client_free(c);
}

static void test_tls_server_name(void **state) {
        _cleanup_free_ char *server = server_url(), *ca = fake_ca(), *good = NULL, *bad = NULL, *user = NULL;
        _cleanup_(result_done) result r = {};
        kube_client *c;

        user = strdup_printf("\"client-certificate\": \"%s/pki/client-system_node_n1.crt\", "
                             "\"client-key\": \"%s/pki/client-system_node_n1.key\"",
                             state_dir, state_dir);
        good = strdup_printf("%s, \"tls-server-name\": \"localhost\"", ca);
        bad = strdup_printf("%s, \"tls-server-name\": \"apiserver.example\"", ca);
        write_kubeconfig("name-good.conf", server, good, user);
        write_kubeconfig("name-bad.conf", server, bad, user);

        /* The certificate (SANs localhost, 127.0.0.1, ::1) is checked against the name given. */
        c = client_for("name-good.conf", false);
        request(c, "GET", "/api/v1/nodes/n1", NULL, NULL, &r);
        expect_status(&r, 200);
        c = kube_client_free(c);

        c = client_for("name-bad.conf", false);
        request(c, "GET", "/api/v1/nodes/n1", NULL, NULL, &r);
        expect_status(&r, 0);
        assert_non_null(strstr(r.error, "apiserver.example"));
        c = kube_client_free(c);
}

/* ------------------------------------------------------------------------------------------ */
/* Credentials */

static void test_token(void **state) {
        _cleanup_free_ char *server = server_url(), *ca = fake_ca(), *file = path_of("token"), *user = NULL;
        _cleanup_(result_done) result r = {};
        _cleanup_free_ char *who = NULL;
        size_t before;
        kube_client *c;

        write_kubeconfig("token.conf", server, ca, "\"token\": \"tok-n1\"");
        c = client_for("token.conf", false);
        before = audit_lines();
        request(c, "GET", "/api/v1/nodes/n1", NULL, NULL, &r);
        expect_status(&r, 200);
        who = audit_user("GET", "/api/v1/nodes/n1", before);
        assert_string_equal(who, "system:node:n1");
        request(c, "GET", "/api/v1/nodes/n2", NULL, NULL, &r);
        expect_status(&r, 403);
        c = kube_client_free(c);

        write_kubeconfig("bad-token.conf", server, ca, "\"token\": \"no-such-token\"");
        c = client_for("bad-token.conf", false);
        request(c, "GET", "/api/v1/nodes/n1", NULL, NULL, &r);
        expect_status(&r, 401);
        assert_string_equal(r.error, "Unauthorized");
        assert_string_equal(r.reason, "Unauthorized");
        c = kube_client_free(c);

        /* A token file is read at each request. */
        write_text("token", "tok-n1\n");
        user = strdup_printf("\"tokenFile\": \"%s\"", file);
        write_kubeconfig("token-file.conf", server, ca, user);
        c = client_for("token-file.conf", false);
        request(c, "GET", "/api/v1/nodes/n1", NULL, NULL, &r);
        expect_status(&r, 200);
        write_text("token", "  tok-n2\n");
        request(c, "GET", "/api/v1/nodes/n2", NULL, NULL, &r);
        expect_status(&r, 200);
        request(c, "GET", "/api/v1/nodes/n1", NULL, NULL, &r);
        expect_status(&r, 403);
        /* Gone for a moment (replaced in two steps): the last token read goes on. */
        assert_int_equal(unlink(file), 0);
        request(c, "GET", "/api/v1/nodes/n2", NULL, NULL, &r);
        expect_status(&r, 200);
        c = kube_client_free(c);
}

static void test_missing_credential_files(void **state) {
        _cleanup_free_ char *server = server_url(), *ca = fake_ca(), *user = NULL, *error = NULL, *p = NULL;
        _cleanup_(kubeconfig_freep) kubeconfig *k = NULL;
        kube_client *c = NULL;

        /* A client certificate that is not there: refused at once, naming the file. */
        user = strdup_printf("\"client-certificate\": \"%s/missing.pem\", \"client-key\": \"%s/missing.pem\"",
                             tmpdir, tmpdir);
        write_kubeconfig("cert-missing.conf", server, ca, user);
        k = load("cert-missing.conf");
        assert_int_equal(kube_client_new(event, k, false, &c, &error), -ENOENT);
        assert_null(c);
        p = strdup_printf("client certificate %s/missing.pem: No such file or directory", tmpdir);
        assert_string_equal(error, p);
        k = kubeconfig_free(k);
        free(TAKE_PTR(user));
        free(TAKE_PTR(error));
        free(TAKE_PTR(p));

        user = strdup_printf("\"tokenFile\": \"%s/no-such-token\"", tmpdir);
        write_kubeconfig("token-missing.conf", server, ca, user);
        k = load("token-missing.conf");
        assert_int_equal(kube_client_new(event, k, false, &c, &error), -ENOENT);
        assert_null(c);
        p = strdup_printf("token file %s/no-such-token: No such file or directory", tmpdir);
        assert_string_equal(error, p);
}

static void concat(const char *out, const char *a, const char *b) {
        _cleanup_free_ char *x = read_text(a), *y = read_text(b), *text = NULL;

        assert_non_null(x);
        assert_non_null(y);
        text = strdup_printf("%s%s", x, y);
        write_text(out, text);
}

/* kubeadm's kubelet-client-current.pem: certificate and key in one file, a symlink replaced by
 * the kubelet's certificate manager when it rotates. */
static void test_rotated_certificate(void **state) {
        _cleanup_free_ char *server = server_url(), *ca = fake_ca(), *user = NULL, *link = path_of("current.pem"),
                            *tmp = path_of("current.pem.new"), *a = path_of("a.pem"), *b = path_of("b.pem"),
                            *a_key = NULL, *b_crt = NULL, *b_key = NULL, *a_crt = NULL,
                            *who = NULL;
        _cleanup_(result_done) result r = {};
        _cleanup_(kube_client_freep) kube_client *c = NULL;
        size_t before;

        a_crt = strdup_printf("%s/pki/client-system_node_n1.crt", state_dir);
        a_key = strdup_printf("%s/pki/client-system_node_n1.key", state_dir);
        b_crt = strdup_printf("%s/pki/client-system_node_n2.crt", state_dir);
        b_key = strdup_printf("%s/pki/client-system_node_n2.key", state_dir);
        concat("a.pem", a_crt, a_key);
        concat("b.pem", b_crt, b_key);
        (void) unlink(link);
        assert_int_equal(symlink(a, link), 0);
        user = strdup_printf("\"client-certificate\": \"%s\", \"client-key\": \"%s\"", link, link);
        write_kubeconfig("rotating.conf", server, ca, user);

        c = client_for("rotating.conf", false);
        /* Twice: a connection is cached with the first certificate. */
        request(c, "GET", "/api/v1/nodes/n1", NULL, NULL, &r);
        expect_status(&r, 200);
        request(c, "GET", "/api/v1/nodes/n1", NULL, NULL, &r);
        expect_status(&r, 200);

        (void) unlink(tmp);
        assert_int_equal(symlink(b, tmp), 0);
        assert_int_equal(rename(tmp, link), 0);

        before = audit_lines();
        request(c, "GET", "/api/v1/nodes/n2", NULL, NULL, &r);
        expect_status(&r, 200);
        who = audit_user("GET", "/api/v1/nodes/n2", before);
        assert_string_equal(who, "system:node:n2");
        request(c, "GET", "/api/v1/nodes/n1", NULL, NULL, &r);
        expect_status(&r, 403);
}

/* ------------------------------------------------------------------------------------------ */
/* Watches */

#define N1_WATCH "/api/v1/nodes?fieldSelector=metadata.name%3Dn1&allowWatchBookmarks=true&watch=true"

static void test_watch_modified(void **state) {
        _cleanup_(kube_client_freep) kube_client *c = client_for("n1.conf", false);
        _cleanup_(result_done) result r = {};
        _cleanup_(watch_result_done) watch_result w = {};
        _cleanup_free_ char *rv = NULL, *path = NULL;
        unsigned i;

        request(c, "GET", "/api/v1/nodes/n1", NULL, NULL, &r);
        expect_status(&r, 200);
        rv = resource_version(r.body);
        path = strdup_printf("%s&resourceVersion=%s", N1_WATCH, rv);

        watch(c, path, &w);
        wait_watch("system:node:n1", "metadata.name%3Dn1", true);
        admin_annotate("n1", "cplet.io/target", "{\"generation\":1}");
        i = wait_event(&w, 0, "MODIFIED");
        assert_string_equal(annotation(w.objects[i], "cplet.io/target"), "{\"generation\":1}");
        assert_int_equal(w.ends, 0);

        /* Bookmarks, when the server sends them, are events too. */
        knobs("{\"bookmark_interval\": 0.3}");
        i = wait_event(&w, i + 1, "BOOKMARK");
        assert_non_null(json_object_get(json_object_get(w.objects[i], "metadata"), "resourceVersion"));
        knobs("{\"bookmark_interval\": 60}");

        /* Cancelled: never called back, and the server sees the watch go. */
        assert_int_equal(kube_client_cancel(c, &w), 1);
        wait_watch("system:node:n1", "metadata.name%3Dn1", false);
        assert_int_equal(w.ends, 0);
}

static void test_watch_other_node_refused(void **state) {
        _cleanup_(kube_client_freep) kube_client *c = client_for("n1.conf", false);
        _cleanup_(watch_result_done) watch_result w = {};

        watch(c, "/api/v1/nodes?fieldSelector=metadata.name%3Dn2&watch=true", &w);
        run_until(&w.ends, 1);
        expect_status(&w.end, 403);
        assert_string_equal(w.end.reason, "Forbidden");
        assert_non_null(strstr(w.end.error, "node 'n1' cannot read 'n2'"));
        assert_int_equal(w.events, 0);

        /* Not a watch: refused before anything is sent. */
        assert_int_equal(kube_watch(c, "/api/v1/nodes/n1", on_event, on_end, &w), -EINVAL);
        assert_int_equal(kube_watch(c, "/api/v1/nodes?watch=false", on_event, on_end, &w), -EINVAL);
        assert_int_equal(kube_request(c, "GET", "/api/v1/nodes/n1", NULL, NULL, 0, on_done, &w), -EINVAL);
        assert_int_equal(kube_request(c, "OPTIONS", "/api/v1/nodes/n1", NULL, NULL, 1000, on_done, &w), -EINVAL);
}

static void test_watch_dropped(void **state) {
        _cleanup_(kube_client_freep) kube_client *c = client_for("n1.conf", false);
        _cleanup_(watch_result_done) watch_result w = {}, w2 = {};

        /* Cut: no final chunk. A transport error, status 0. */
        watch(c, N1_WATCH, &w);
        wait_event(&w, 0, "ADDED");
        wait_watch("system:node:n1", "metadata.name%3Dn1", true);
        knobs("{\"drop_watches\": true, \"drop_mode\": \"close\"}");
        run_until(&w.ends, 1);
        expect_status(&w.end, 0);
        assert_true(w.end.has_error);
        assert_non_null(strstr(w.end.error, "transfer closed"));

        /* Ended as a timeout ends it: status 200, no error. */
        watch(c, N1_WATCH, &w2);
        wait_event(&w2, 0, "ADDED");
        wait_watch("system:node:n1", "metadata.name%3Dn1", true);
        knobs("{\"drop_watches\": true, \"drop_mode\": \"end\"}");
        run_until(&w2.ends, 1);
        expect_status(&w2.end, 200);
        assert_false(w2.end.has_error);
        knobs("{\"drop_mode\": \"close\"}");
}

static void test_watch_timeout_ends_cleanly(void **state) {
        _cleanup_(kube_client_freep) kube_client *c = client_for("n1.conf", false);
        _cleanup_(watch_result_done) watch_result w = {};
        uint64_t start = now_ms();

        watch(c, N1_WATCH "&timeoutSeconds=1", &w);
        run_until(&w.ends, 1);
        expect_status(&w.end, 200);
        assert_false(w.end.has_error);
        assert_int_equal(w.events, 1);
        assert_string_equal(w.types[0], "ADDED");
        assert_true(now_ms() - start >= 900);
}

static void test_watch_gone(void **state) {
        _cleanup_(kube_client_freep) kube_client *c = client_for("n1.conf", false);
        _cleanup_(result_done) result r = {};
        _cleanup_(watch_result_done) watch_result w = {}, w2 = {};
        _cleanup_free_ char *rv = NULL, *path = NULL;

        request(c, "GET", "/api/v1/nodes/n1", NULL, NULL, &r);
        expect_status(&r, 200);
        rv = resource_version(r.body);
        path = strdup_printf("%s&resourceVersion=%s", N1_WATCH, rv);
        admin_annotate("n1", "test.cplet.io/gone", "1");
        knobs("{\"compact\": true}");

        /* As the HTTP status of the refused watch. */
        knobs("{\"gone_mode\": \"status\"}");
        watch(c, path, &w);
        run_until(&w.ends, 1);
        expect_status(&w.end, 410);
        assert_string_equal(w.end.reason, "Expired");
        assert_non_null(startswith(w.end.error, "too old resource version: "));
        assert_int_equal(w.events, 0);

        /* As the watch cache sends it: an ERROR event carrying the 410 Status, then a clean end. */
        knobs("{\"gone_mode\": \"event\"}");
        watch(c, path, &w2);
        run_until(&w2.ends, 1);
        assert_int_equal(w2.events, 1);
        assert_string_equal(w2.types[0], "ERROR");
        assert_int_equal(json_integer_value(json_object_get(w2.objects[0], "code")), 410);
        assert_string_equal(json_string_value(json_object_get(w2.objects[0], "reason")), "Expired");
        expect_status(&w2.end, 200);
        assert_false(w2.end.has_error);
}

static void test_watch_free_in_event(void **state) {
        kube_client *c = client_for("n1.conf", false);
        _cleanup_(watch_result_done) watch_result w = {}, other = {};

        w.client = &c;
        w.free_in_event = true;
        watch(c, N1_WATCH, &w);
        watch(c, N1_WATCH, &other);
        run_until(&w.events, 1);
        assert_null(c);
        admin_annotate("n1", "test.cplet.io/freed", "1");
        run_for(500);
        /* Nothing after the free: no second event, no end, nothing for the other watch. */
        assert_int_equal(w.events, 1);
        assert_int_equal(w.ends, 0);
        assert_true(other.events <= 1);
        assert_int_equal(other.ends, 0);
}

static void test_watch_cancel_in_event(void **state) {
        _cleanup_(kube_client_freep) kube_client *c = client_for("n1.conf", false);
        _cleanup_(watch_result_done) watch_result w = {};
        _cleanup_(result_done) result r = {};

        w.client = &c;
        w.cancel_in_event = true;
        watch(c, N1_WATCH, &w);
        run_until(&w.events, 1);
        assert_int_equal(w.cancelled, 1);
        admin_annotate("n1", "test.cplet.io/cancelled", "1");
        run_for(500);
        assert_int_equal(w.events, 1);
        assert_int_equal(w.ends, 0);

        /* The client goes on. */
        request(c, "GET", "/api/v1/nodes/n1", NULL, NULL, &r);
        expect_status(&r, 200);
}

typedef struct chain {
        kube_client **client;
        unsigned calls;
        bool free_in_done;
        result last;
} chain;

static void on_chain(const kube_response *resp, void *userdata) {
        chain *ch = userdata;

        ch->calls++;
        on_done(resp, &ch->last);
        if (ch->free_in_done)
                *ch->client = kube_client_free(*ch->client);
        else if (ch->calls < 3)
                assert_int_equal(kube_request(*ch->client, "GET", "/api/v1/nodes/n1", NULL, NULL, 15000, on_chain, ch), 0);
}

static void test_reentrant_done(void **state) {
        kube_client *c = client_for("n1.conf", false);
        chain next = { .client = &c }, drop = { .client = &c, .free_in_done = true };
        watch_result w = {};

        /* A done callback may start the next request... */
        assert_int_equal(kube_request(c, "GET", "/api/v1/nodes/n1", NULL, NULL, 15000, on_chain, &next), 0);
        run_until(&next.calls, 3);
        expect_status(&next.last, 200);

        /* ...or free the client while others are in flight: they never call back. */
        watch(c, N1_WATCH, &w);
        assert_int_equal(kube_request(c, "GET", "/api/v1/nodes/n1", NULL, NULL, 15000, on_chain, &drop), 0);
        run_until(&drop.calls, 1);
        assert_null(c);
        run_for(300);
        assert_int_equal(drop.calls, 1);
        assert_int_equal(w.ends, 0);
        result_done(&next.last);
        result_done(&drop.last);
        watch_result_done(&w);
}

/* ------------------------------------------------------------------------------------------ */
/* A malformed stream, from a server that is not the fake (which only writes good ones). */

#define BAD_STREAM_PY                                                                              \
        "import http.server, ssl, sys\n" SERVER_PY_HANDLER                                             \
        "    def do_GET(self):\n"                                                                      \
        "        ev = b'{\"type\":\"ADDED\",\"object\":{\"kind\":\"Node\"}}\\n'\n"                       \
        "        tail = b'not json\\n' if 'bad' in self.path else b'{\"type\":\"MODIFIED\",\"obj'\n"    \
        "        self.send_response(200)\n"                                                            \
        "        self.send_header('Content-Type', 'application/json')\n"                               \
        "        self.send_header('Transfer-Encoding', 'chunked')\n"                                   \
        "        self.end_headers()\n"                                                                 \
        "        for c in (ev, tail):\n"                                                               \
        "            self.wfile.write(b'%x\\r\\n%s\\r\\n' % (len(c), c))\n"                            \
        "        self.wfile.write(b'0\\r\\n\\r\\n')\n"                                                 \
        "s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)\n"                                   \
        "ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"                                             \
        "ctx.load_cert_chain(sys.argv[1], sys.argv[2])\n"                                              \
        "s.socket = ctx.wrap_socket(s.socket, server_side=True)\n"                                     \
        "print(s.server_address[1], flush=True)\n"                                                     \
        "s.serve_forever()\n"

static void test_watch_malformed_stream(void **state) {
        _cleanup_free_ char *crt = strdup_printf("%s/pki/server.crt", state_dir),
                            *key = strdup_printf("%s/pki/server.key", state_dir), *server = NULL, *ca = fake_ca();
        char *argv[] = { "python3", "-c", BAD_STREAM_PY, crt, key, NULL };
        _cleanup_(watch_result_done) watch_result w = {}, w2 = {};
        kube_client *c;
        pid_t pid = 0;
        uint16_t p = spawn_server(argv, &pid);

        if (p == 0) {
                kill_and_reap(pid);
                fail_msg("the stream server did not start");
        }
        server = strdup_printf("https://127.0.0.1:%u", p);
        write_kubeconfig("bad-stream.conf", server, ca, "\"token\": \"t\"");
        c = client_for("bad-stream.conf", false);

        /* An event that is not JSON: status 0 and the decoder's reason; the good event before it
         * was delivered. */
        watch(c, "/api/v1/nodes?watch=true&bad=1", &w);
        run_until(&w.ends, 1);
        assert_int_equal(w.events, 1);
        assert_string_equal(w.types[0], "ADDED");
        expect_status(&w.end, 0);
        assert_non_null(strstr(w.end.error, "not JSON"));

        /* A stream that ends cleanly in the middle of an event. */
        watch(c, "/api/v1/nodes?watch=true&cut=1", &w2);
        run_until(&w2.ends, 1);
        assert_int_equal(w2.events, 1);
        expect_status(&w2.end, 0);
        assert_true(w2.end.has_error);

        kube_client_free(c);
        kill_and_reap(pid);
}

/* ------------------------------------------------------------------------------------------ */

static bool in_path(const char *prog) {
        const char *path = getenv("PATH") ?: "/usr/bin:/bin";
        _cleanup_free_ char *copy = strdup(path);
        char *save = NULL;

        for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
                _cleanup_free_ char *p = strdup_printf("%s/%s", d, prog);

                if (access(p, X_OK) == 0)
                        return true;
        }
        return false;
}

static int group_setup(void **state) {
        _cleanup_free_ char *server_py = NULL, *tokens = NULL;
        char *argv[16];
        size_t n = 0;

        assert_int_equal(sd_event_new(&event), 0);
        assert_non_null(mkdtemp(tmpdir));
        state_dir = path_of("state");
        assert_int_equal(mkdir(state_dir, 0700), 0);
        write_text("tokens.csv", "tok-n1,system:node:n1,uid-n1,\"system:nodes\"\n"
                                 "tok-n2,system:node:n2,uid-n2,\"system:nodes\"\n");
        tokens = path_of("tokens.csv");
        server_py = strdup_printf("%s/fake_apiserver.py", apiserver_dir);
        argv[n++] = "python3";
        argv[n++] = server_py;
        argv[n++] = "--port";
        argv[n++] = "0";
        argv[n++] = "--state-dir";
        argv[n++] = state_dir;
        argv[n++] = "--node";
        argv[n++] = "n1";
        argv[n++] = "--node";
        argv[n++] = "n2";
        argv[n++] = "--token-auth-file";
        argv[n++] = tokens;
        argv[n] = NULL;
        port = spawn_server(argv, &server_pid);
        if (port == 0) {
                kill_and_reap(server_pid);
                fprintf(stderr, "# the fake API server did not start\n");
                return -1;
        }
        pki_kubeconfig("admin.conf", "kubernetes-admin", "system:masters", false);
        pki_kubeconfig("n1.conf", "system:node:n1", "system:nodes", false);
        pki_kubeconfig("n2.conf", "system:node:n2", "system:nodes", false);
        pki_kubeconfig("n1-embed.conf", "system:node:n1", "system:nodes", true);
        admin = client_for("admin.conf", false);
        return 0;
}

static int group_teardown(void **state) {
        admin = kube_client_free(admin);
        kill_and_reap(server_pid);
        rm_rf(tmpdir);
        free(state_dir);
        event = sd_event_unref(event);
        return 0;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_get_own_node),
                cmocka_unit_test(test_get_other_node_forbidden),
                cmocka_unit_test(test_patch_own_annotation),
                cmocka_unit_test(test_post_event),
                cmocka_unit_test(test_injected_failures),
                cmocka_unit_test(test_oversized_response),
                cmocka_unit_test(test_embedded_credentials),
                cmocka_unit_test(test_tls_other_ca),
                cmocka_unit_test(test_tls_server_name),
                cmocka_unit_test(test_token),
                cmocka_unit_test(test_missing_credential_files),
                cmocka_unit_test(test_rotated_certificate),
                cmocka_unit_test(test_watch_modified),
                cmocka_unit_test(test_watch_other_node_refused),
                cmocka_unit_test(test_watch_dropped),
                cmocka_unit_test(test_watch_timeout_ends_cleanly),
                cmocka_unit_test(test_watch_gone),
                cmocka_unit_test(test_watch_free_in_event),
                cmocka_unit_test(test_watch_cancel_in_event),
                cmocka_unit_test(test_reentrant_done),
                cmocka_unit_test(test_watch_malformed_stream),
        };

        apiserver_dir = getenv("CPLET_APISERVER_DIR");
        if (!apiserver_dir) {
                printf("1..0 # SKIP CPLET_APISERVER_DIR is not set (run through meson test)\n");
                return 0;
        }
        if (!in_path("python3") || !in_path("openssl")) {
                printf("1..0 # SKIP the fake API server needs python3 and openssl\n");
                return 0;
        }
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
