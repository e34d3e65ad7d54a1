/* SPDX-License-Identifier: Apache-2.0 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buffer.h"
#include "fs-util.h"
#include "http.h"
#include "kube-client.h"
#include "list.h"
#include "macro.h"
#include "watch.h"

/* A PEM file (certificate, key, CA bundle) is a few KiB. */
#define PEM_FILE_MAX (1024 * 1024)
/* A bearer token is a few KiB at most (a projected service account token is ~1 KiB). */
#define TOKEN_FILE_MAX (64 * 1024)
/* client-go's dialer gives up after 30 s; a watch has no overall timeout, so its connection
 * needs its own. */
#define WATCH_CONNECT_TIMEOUT_MS 30000
/* Retry-After beyond a day is not advice a daemon should follow literally. */
#define RETRY_AFTER_MAX_SEC (24 * 3600)

/* The file a credential was last read from, as it was then: a replaced file (kubeadm's
 * kubelet-client-current.pem is a symlink moved to a new file) differs in one of these. */
typedef struct file_id {
        dev_t dev;
        ino_t ino;
        struct timespec mtime;
        off_t size;
} file_id;

/* A client certificate or key. A file's bytes are read by cplet, not by curl, and handed over as
 * bytes: curl keys its connection and TLS session caches on them, so a connection or a resumed
 * session made with the old certificate can never be taken for the new one (with a file name,
 * both would match). */
typedef struct credential {
        const char *what;
        char *file; /* NULL: inline data, never changes */
        unsigned char *data;
        size_t size;
        file_id id;
} credential;

typedef struct kube_call kube_call;

struct kube_call {
        kube_client *client;
        kube_done_fn done;
        kube_watch_event_fn on_event; /* a watch */
        void *userdata;
        watch_decoder *decoder;
        bool cancelled;
        kube_call *prev, *next;
};

struct kube_client {
        http_client *http;
        char *base_url;    /* "https://HOST:PORT[/prefix]", where paths are appended */
        char *connect_to;  /* with a tls-server-name: the address really connected to */
        char *host_header; /* ... and the Host the server expects */
        bool verify;
        char *ca_file;
        unsigned char *ca_data;
        size_t ca_size;
        credential cert, key;
        bool rotated; /* a credential changed: the next request opens a new connection */
        char *token;
        char *token_file;
        kube_call *calls;
        kube_call *cancelled; /* cancelled from inside a callback: freed when it returns */
        unsigned dispatching;
        bool free_requested;
};

/* ------------------------------------------------------------------------------------------ */
/* Credentials from files */

static void file_id_from_stat(const struct stat *st, file_id *ret) {
        *ret = (file_id){ .dev = st->st_dev, .ino = st->st_ino, .mtime = st->st_mtim, .size = st->st_size };
}

static bool file_id_equal(const file_id *a, const file_id *b) {
        return a->dev == b->dev && a->ino == b->ino && a->mtime.tv_sec == b->mtime.tv_sec &&
               a->mtime.tv_nsec == b->mtime.tv_nsec && a->size == b->size;
}

/* Reads a whole file, following symlinks, and says which file it was (the one read, not the one
 * the path may name a moment later). */
static int read_credential_file(const char *path, size_t max, char **ret, size_t *ret_size, file_id *ret_id) {
        _cleanup_close_ int fd = -EBADF;
        struct stat st;
        int r;

        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADFD;
        if ((uint64_t) st.st_size > max)
                return -EFBIG;
        r = read_fd(fd, max, ret, ret_size);
        if (r < 0)
                return r == -E2BIG ? -EFBIG : r;
        file_id_from_stat(&st, ret_id);
        return 0;
}

static const char *file_error(int r) {
        return r == -EFBIG ? "larger than 1 MiB" : r == -EBADFD ? "not a regular file" : strerror(-r);
}

static int credential_load(credential *cr, char **ret_error) {
        _cleanup_free_ char *data = NULL;
        size_t size;
        file_id id;
        int r;

        r = read_credential_file(cr->file, PEM_FILE_MAX, &data, &size, &id);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return set_error(ret_error, r, "%s %s: %s", cr->what, cr->file, file_error(r));
        if (size == 0)
                return set_error(ret_error, -EINVAL, "%s %s: empty file", cr->what, cr->file);
        free(cr->data);
        cr->data = (unsigned char *) TAKE_PTR(data);
        cr->size = size;
        cr->id = id;
        return 0;
}

/* Reads the file again when it is not the one read last. Returns 1 when it changed. A file that
 * cannot be read now (replaced in two steps, say) keeps the last bytes until it can: the server
 * decides whether they are still good, as with client-go's rotating certificate. */
static int credential_refresh(credential *cr) {
        struct stat st;
        file_id id;

        if (!cr->file)
                return 0;
        if (stat(cr->file, &st) < 0)
                return 0;
        file_id_from_stat(&st, &id);
        if (file_id_equal(&id, &cr->id))
                return 0;
        return credential_load(cr, NULL) < 0 ? 0 : 1;
}

static void credential_done(credential *cr) {
        free(cr->file);
        free(cr->data);
        *cr = (credential){};
}

static int credential_init(credential *cr, const char *what, const kube_pem *p, char **ret_error) {
        cr->what = what;
        if (p->file) {
                cr->file = strdup(p->file);
                if (!cr->file)
                        return -ENOMEM;
                return credential_load(cr, ret_error);
        }
        if (!p->data)
                return 0;
        cr->data = malloc(p->size ?: 1);
        if (!cr->data)
                return -ENOMEM;
        memcpy(cr->data, p->data, p->size);
        cr->size = p->size;
        return 0;
}

/* The token file as client-go reads it: surrounding whitespace is not part of the token. */
static int read_token(const char *path, char **ret, char **ret_error) {
        _cleanup_free_ char *data = NULL;
        size_t size, start = 0;
        file_id id;
        int r;

        r = read_credential_file(path, TOKEN_FILE_MAX, &data, &size, &id);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return set_error(ret_error, r, "token file %s: %s", path,
                                 r == -EFBIG ? "larger than 64 KiB" : file_error(r));
        while (size > 0 && strchr(" \t\r\n", data[size - 1]))
                data[--size] = 0;
        while (start < size && strchr(" \t\r\n", data[start]))
                start++;
        if (start == size)
                return set_error(ret_error, -EINVAL, "token file %s: empty", path);
        if (strpbrk(data + start, "\r\n") || memchr(data + start, 0, size - start))
                return set_error(ret_error, -EINVAL, "token file %s: the token spans several lines", path);
        memmove(data, data + start, size - start + 1);
        *ret = TAKE_PTR(data);
        return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* The client */

static void kube_call_free(kube_call *k) {
        if (!k)
                return;
        watch_decoder_free(k->decoder);
        free(k);
}

static void free_cancelled(kube_client *c) {
        while (c->cancelled) {
                kube_call *k = c->cancelled;

                LIST_REMOVE(c->cancelled, k);
                kube_call_free(k);
        }
}

static void client_free_now(kube_client *c) {
        /* First: the HTTP client never calls back into calls being freed. */
        http_client_free(c->http);
        while (c->calls) {
                kube_call *k = c->calls;

                LIST_REMOVE(c->calls, k);
                kube_call_free(k);
        }
        free_cancelled(c);
        free(c->base_url);
        free(c->connect_to);
        free(c->host_header);
        free(c->ca_file);
        free(c->ca_data);
        credential_done(&c->cert);
        credential_done(&c->key);
        free(c->token);
        free(c->token_file);
        free(c);
}

static void client_enter(kube_client *c) {
        c->dispatching++;
}

/* After this, neither c nor a call of it may be touched when the caller saw them going. */
static void client_leave(kube_client *c) {
        if (--c->dispatching > 0)
                return;
        free_cancelled(c);
        if (c->free_requested)
                client_free_now(c);
}

kube_client *kube_client_free(kube_client *c) {
        if (!c)
                return NULL;
        if (c->dispatching > 0)
                c->free_requested = true;
        else
                client_free_now(c);
        return NULL;
}

size_t kube_client_cancel(kube_client *c, void *userdata) {
        size_t n = 0;

        if (!c)
                return 0;
        for (kube_call *k = c->calls, *next; k; k = next) {
                next = k->next;
                if (k->userdata != userdata)
                        continue;
                (void) http_client_cancel(c->http, k);
                LIST_REMOVE(c->calls, k);
                if (c->dispatching > 0) {
                        /* Its own callback may be running, with the decoder in the middle of a feed. */
                        k->cancelled = true;
                        LIST_PREPEND(c->cancelled, k);
                } else
                        kube_call_free(k);
                n++;
        }
        return n;
}

/* Splits "https://HOST[:PORT][/prefix]" into the authority's host (brackets kept), the port and the
 * path prefix. */
static int parse_server(const char *server, char **ret_host, unsigned *ret_port, const char **ret_prefix) {
        const char *a = startswith(server, "https://"), *end, *host_end, *colon;
        unsigned long port = 443;

        if (!a || !*a)
                return -EINVAL;
        end = a + strcspn(a, "/?#");
        if (*a == '[') {
                host_end = memchr(a, ']', (size_t) (end - a));
                if (!host_end)
                        return -EINVAL;
                host_end++;
        } else
                host_end = memchr(a, ':', (size_t) (end - a)) ?: end;
        if (host_end == a)
                return -EINVAL;
        colon = host_end < end && *host_end == ':' ? host_end : NULL;
        if (colon) {
                char *e;

                errno = 0;
                port = strtoul(colon + 1, &e, 10);
                if (errno != 0 || e != end || e == colon + 1 || port == 0 || port > 65535)
                        return -EINVAL;
        } else if (host_end != end)
                return -EINVAL;
        if (*end && *end != '/')
                return -EINVAL;
        *ret_host = strndup(a, (size_t) (host_end - a));
        if (!*ret_host)
                return -ENOMEM;
        *ret_port = (unsigned) port;
        *ret_prefix = end;
        return 0;
}

/* Where requests go. With a tls-server-name, the URL names that name (TLS checks the server's
 * certificate against the URL's host) while CONNECT_TO sends the connection to the server's real
 * address, and the Host header stays what the kubeconfig's server says, as with client-go. */
static int client_set_server(kube_client *c, const kubeconfig *k, char **ret_error) {
        _cleanup_free_ char *host = NULL;
        const char *prefix;
        unsigned port;
        int r;

        r = parse_server(k->server, &host, &port, &prefix);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return set_error(ret_error, r, "%s: server \"%s\" is not https://HOST[:PORT]", k->path ?: "kubeconfig",
                                 k->server);
        if (!k->tls_server_name || !*k->tls_server_name) {
                c->base_url = strdup_printf("https://%s:%u%s", host, port, prefix);
                return c->base_url ? 0 : -ENOMEM;
        }
        if (strpbrk(k->tls_server_name, "/?#@[] \t\r\n"))
                return set_error(ret_error, -EINVAL, "%s: tls-server-name \"%s\" is not a host name",
                                 k->path ?: "kubeconfig", k->tls_server_name);
        {
                bool v6 = strchr(k->tls_server_name, ':');
                const char *lb = v6 ? "[" : "", *rb = v6 ? "]" : "";

                c->base_url = strdup_printf("https://%s%s%s:%u%s", lb, k->tls_server_name, rb, port, prefix);
                c->connect_to = strdup_printf("%s%s%s:%u:%s:%u", lb, k->tls_server_name, rb, port, host, port);
                c->host_header = strdup_printf("Host: %s:%u", host, port);
        }
        return c->base_url && c->connect_to && c->host_header ? 0 : -ENOMEM;
}

int kube_client_new(sd_event *e, const kubeconfig *k, bool insecure_skip_tls_verify, kube_client **ret,
                    char **ret_error) {
        kube_client *c;
        int r;

        if (!e || !k || !k->server || !ret)
                return -EINVAL;
        c = calloc(1, sizeof(kube_client));
        if (!c)
                return -ENOMEM;
        c->verify = !insecure_skip_tls_verify;
        r = http_client_new(e, &c->http);
        if (r >= 0)
                r = client_set_server(c, k, ret_error);
        if (r >= 0 && k->ca.file && !(c->ca_file = strdup(k->ca.file)))
                r = -ENOMEM;
        if (r >= 0 && k->ca.data && !k->ca.file) {
                c->ca_data = malloc(k->ca.size ?: 1);
                if (c->ca_data) {
                        memcpy(c->ca_data, k->ca.data, k->ca.size);
                        c->ca_size = k->ca.size;
                } else
                        r = -ENOMEM;
        }
        if (r >= 0)
                r = credential_init(&c->cert, "client certificate", &k->client_cert, ret_error);
        if (r >= 0)
                r = credential_init(&c->key, "client key", &k->client_key, ret_error);
        if (r >= 0 && !c->cert.data != !c->key.data)
                r = set_error(ret_error, -EINVAL, "%s: a client certificate needs its key, and a key its certificate",
                              k->path ?: "kubeconfig");
        if (r >= 0 && k->token && !(c->token = strdup(k->token)))
                r = -ENOMEM;
        if (r >= 0 && k->token_file) {
                _cleanup_free_ char *t = NULL;

                /* Read now so that a missing file is an error at start, not at the first request. */
                c->token_file = strdup(k->token_file);
                r = c->token_file ? read_token(c->token_file, &t, ret_error) : -ENOMEM;
                if (r >= 0) {
                        free(c->token);
                        c->token = TAKE_PTR(t);
                }
        }
        if (r < 0) {
                client_free_now(c);
                return r;
        }
        *ret = c;
        return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Responses */

static uint64_t parse_retry_after(const char *v) {
        char *end;
        unsigned long long s;
        time_t t, now;

        if (!v || !*v)
                return 0;
        errno = 0;
        s = strtoull(v, &end, 10);
        if (*v >= '0' && *v <= '9' && errno == 0 && *end == 0)
                return (uint64_t) MIN(s, (unsigned long long) RETRY_AFTER_MAX_SEC) * 1000000ULL;
        /* The other form RFC 9110 allows: an HTTP date. */
        t = curl_getdate(v, NULL);
        now = time(NULL);
        if (t <= now)
                return 0;
        return (uint64_t) MIN(t - now, (time_t) RETRY_AFTER_MAX_SEC) * 1000000ULL;
}

/* The first line of a body that is not a Status, for a message; printable ASCII only. */
static char *body_excerpt(const char *body, size_t size) {
        size_t n = 0;

        while (n < size && n < 200 && body[n] >= ' ' && body[n] < 0x7f)
                n++;
        return strndup(body, n);
}

typedef struct response_parts {
        json_t *body;
        char *error;
} response_parts;

static void response_parts_done(response_parts *p) {
        json_decref(p->body);
        free(p->error);
}

/* The kube_response for an HTTP response; for a watch, the stream's body was not kept. */
static void response_build(const http_response *h, bool watch, kube_response *ret, response_parts *parts) {
        bool ok = h->status >= 200 && h->status <= 299;
        json_error_t e;

        *ret = (kube_response){ .status = h->status, .error = h->error };
        if (h->status == 0)
                return;
        ret->retry_after_usec = parse_retry_after(http_response_header(h, "Retry-After"));
        if (h->size > 0) {
                parts->body = json_loadb(h->body, h->size, 0, &e);
                if (!parts->body && ok && !watch) {
                        parts->error = strdup_printf("HTTP %ld response is not JSON: %s", h->status, e.text);
                        *ret = (kube_response){ .error = parts->error ?: "out of memory" };
                        return;
                }
        }
        ret->body = parts->body;
        if (ok)
                return;
        ret->error = json_string_value(json_object_get(parts->body, "message"));
        ret->reason = json_string_value(json_object_get(parts->body, "reason"));
        if (ret->reason && !*ret->reason)
                ret->reason = NULL;
        if (!ret->error || !*ret->error) {
                _cleanup_free_ char *excerpt = body_excerpt(h->body, h->size);

                parts->error = excerpt && *excerpt ? strdup_printf("HTTP %ld: %s", h->status, excerpt)
                                                   : strdup_printf("HTTP %ld", h->status);
                ret->error = parts->error ?: "out of memory";
        }
}

/* Calls the caller back for a finished call, already out of the client's list. */
static void call_finish(kube_call *k, const kube_response *resp) {
        kube_client *c = k->client;

        client_enter(c);
        k->done(resp, k->userdata);
        client_leave(c);
        kube_call_free(k);
}

static void on_http_done(const http_response *h, void *userdata) {
        kube_call *k = userdata;
        _cleanup_(response_parts_done) response_parts parts = {};
        kube_response resp;

        LIST_REMOVE(k->client->calls, k);
        response_build(h, k->decoder, &resp, &parts);
        if (k->decoder && resp.status >= 200 && resp.status <= 299) {
                /* A clean end; unless the last event was cut short. */
                int r = watch_decoder_finish(k->decoder, &parts.error);

                if (r < 0)
                        resp = (kube_response){ .error = parts.error ?: "the watch stream ended inside an event" };
        }
        call_finish(k, &resp);
}

/* ------------------------------------------------------------------------------------------ */
/* Watches */

static int on_watch_event(const char *type, json_t *object, void *userdata) {
        kube_call *k = userdata;
        kube_client *c = k->client;

        if (k->cancelled || c->free_requested)
                return -ECANCELED;
        k->on_event(type, object, k->userdata);
        /* Cancelled or freed from the callback: not one more event. */
        return k->cancelled || c->free_requested ? -ECANCELED : 0;
}

static int on_watch_data(const char *data, size_t size, void *userdata, char **ret_error) {
        kube_call *k = userdata;
        kube_client *c = k->client;
        _cleanup_free_ char *error = NULL;
        bool gone;
        int r;

        client_enter(c);
        r = watch_decoder_feed(k->decoder, data, size, &error);
        gone = k->cancelled || c->free_requested;
        client_leave(c); /* may free c and k when gone */
        if (gone)
                return -ECANCELED; /* the HTTP request was cancelled too: no callback follows */
        if (r < 0 && ret_error)
                *ret_error = TAKE_PTR(error);
        return r < 0 ? r : 0;
}

/* As the API server's request info decides: a /watch/ path, or a watch parameter that is not
 * "false" or "0". */
static bool path_is_watch(const char *path) {
        size_t plen = strcspn(path, "?");
        const char *w = strstr(path, "/watch/");

        if (w && (size_t) (w - path) < plen)
                return true;
        for (const char *p = path + plen; *p;) {
                size_t n;

                p++; /* the '?' or '&' */
                n = strcspn(p, "&");
                if (n >= 6 && strneq(p, "watch=", 6) && !(n == 7 && p[6] == '0') &&
                    !(n == 11 && strncasecmp(p + 6, "false", 5) == 0))
                        return true;
                p += n;
        }
        return false;
}

/* ------------------------------------------------------------------------------------------ */
/* Requests */

static bool method_known(const char *m) {
        return streq(m, "GET") || streq(m, "POST") || streq(m, "PATCH") || streq(m, "PUT") || streq(m, "DELETE");
}

static int call_start(kube_client *c, const char *method, const char *path, json_t *body, const char *content_type,
                      uint64_t timeout_ms, kube_watch_event_fn on_event, kube_done_fn done, void *userdata) {
        _cleanup_free_ char *url = NULL, *data = NULL, *token = NULL, *auth = NULL, *ctype = NULL;
        const char *headers[5] = {};
        size_t n = 0;
        kube_call *k;
        int r;

        if (!c || !path || path[0] != '/' || !done)
                return -EINVAL;
        if (c->free_requested)
                return -ECANCELED;

        /* A rotated certificate must be presented: a new connection, never a cached one. */
        if (credential_refresh(&c->cert) > 0)
                c->rotated = true;
        if (credential_refresh(&c->key) > 0)
                c->rotated = true;
        if (c->token_file) {
                /* Read at every request (a projected or rotated token); the last good one when the
                 * file cannot be read right now. */
                if (read_token(c->token_file, &token, NULL) >= 0) {
                        free(c->token);
                        c->token = TAKE_PTR(token);
                }
        }

        url = strdup_printf("%s%s", c->base_url, path);
        if (!url)
                return -ENOMEM;
        headers[n++] = "Accept: application/json";
        if (body) {
                data = json_dumps(body, JSON_COMPACT);
                ctype = strdup_printf("Content-Type: %s", content_type ?: "application/json");
                if (!data || !ctype)
                        return -ENOMEM;
                headers[n++] = ctype;
        }
        if (c->token) {
                auth = strdup_printf("Authorization: Bearer %s", c->token);
                if (!auth)
                        return -ENOMEM;
                headers[n++] = auth;
        }
        if (c->host_header)
                headers[n++] = c->host_header;

        k = calloc(1, sizeof(kube_call));
        if (!k)
                return -ENOMEM;
        *k = (kube_call){ .client = c, .done = done, .on_event = on_event, .userdata = userdata };
        if (on_event) {
                r = watch_decoder_new(on_watch_event, k, &k->decoder);
                if (r < 0) {
                        kube_call_free(k);
                        return r;
                }
        }

        r = http_client_request(c->http, &(http_request_options){
                .method = method,
                .url = url,
                .headers = headers,
                .body = data,
                .body_size = data ? strlen(data) : 0,
                .timeout_ms = timeout_ms,
                /* A watch has no timeout but the server's timeoutSeconds; a connection that never
                 * comes up must still fail. */
                .connect_timeout_ms = on_event ? WATCH_CONNECT_TIMEOUT_MS : 0,
                .body_max = KUBE_RESPONSE_MAX,
                .verify = c->verify,
                .ca = { .file = c->ca_file, .data = c->ca_data, .size = c->ca_size },
                .cert = { .data = c->cert.data, .size = c->cert.size },
                .key = { .data = c->key.data, .size = c->key.size },
                .connect_to = c->connect_to,
                .fresh_connect = c->rotated,
                /* A watch may be quiet for a minute (bookmarks come every 60 s), so a low-speed
                 * limit would cut healthy watches; TCP keepalive notices a peer that is gone. */
                .tcp_keepalive = on_event != NULL,
                .on_data = on_event ? on_watch_data : NULL,
                .done = on_http_done,
                .userdata = k,
        });
        if (r < 0) {
                kube_call_free(k);
                return r;
        }
        c->rotated = false;
        LIST_PREPEND(c->calls, k);
        return 0;
}

int kube_request(kube_client *c, const char *method, const char *path, json_t *body, const char *content_type,
                 uint64_t timeout_ms, kube_done_fn done, void *userdata) {
        if (!method || !method_known(method) || timeout_ms == 0)
                return -EINVAL;
        return call_start(c, method, path, body, content_type, timeout_ms, NULL, done, userdata);
}

int kube_watch(kube_client *c, const char *path, kube_watch_event_fn on_event, kube_done_fn on_end,
               void *userdata) {
        if (!path || !on_event || !path_is_watch(path))
                return -EINVAL;
        return call_start(c, "GET", path, NULL, NULL, 0, on_event, on_end, userdata);
}
