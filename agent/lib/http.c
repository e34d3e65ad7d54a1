/* SPDX-License-Identifier: Apache-2.0 */
#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/epoll.h>

#include "buffer.h"
#include "cplet-build.h"
#include "http.h"
#include "list.h"
#include "macro.h"

/* What the keepalive probes of a long-lived response use: a peer that vanished (a node powered
 * off, a cut cable) is noticed after KEEPIDLE + 9 (Linux's default count) x KEEPINTVL seconds,
 * like client-go's dialer (30 s keepalive). */
#define TCP_KEEPIDLE_SEC 30L
#define TCP_KEEPINTVL_SEC 10L

typedef struct http_socket http_socket;
typedef struct http_request http_request;

struct http_socket {
        http_client *client;
        sd_event_source *source;
        http_socket *prev, *next;
};

struct http_request {
        http_client *client;
        CURL *easy;
        struct curl_slist *headers, *connect_to;
        /* The whole body; or, for a streamed 2xx response, the bytes not handed to on_data yet. */
        buffer body;
        size_t body_max;
        bool too_large, oom;
        bool status_known, streaming;
        bool cancelled; /* cancelled from inside a callback: freed when the handler returns */
        http_data_fn on_data;
        http_done_fn get_done; /* http_client_get()'s form */
        http_response_fn done;
        void *userdata;
        char error[CURL_ERROR_SIZE];
        http_request *prev, *next;
};

struct http_client {
        sd_event *event;
        CURLM *multi;
        sd_event_source *timer; /* curl's single timeout */
        http_socket *sockets;
        http_request *requests;
        http_request *cancelled; /* see http_request.cancelled */
        size_t n_pending;
        /* Inside one of our event handlers: http_client_free() from a callback is deferred to the
         * end of the handler, and so is freeing a request cancelled there. */
        unsigned dispatching;
        bool free_requested;
};

static void http_socket_free(http_client *c, http_socket *s) {
        LIST_REMOVE(c->sockets, s);
        sd_event_source_disable_unref(s->source);
        free(s);
}

static void http_request_free(http_request *r) {
        if (!r)
                return;
        if (r->easy)
                curl_easy_cleanup(r->easy);
        curl_slist_free_all(r->headers);
        curl_slist_free_all(r->connect_to);
        free(r->body.data);
        free(r);
}

/* Takes a request out of the multi handle and the client's list; it is the caller's then. */
static void http_request_detach(http_client *c, http_request *r) {
        (void) curl_multi_remove_handle(c->multi, r->easy);
        LIST_REMOVE(c->requests, r);
        c->n_pending--;
}

static void free_cancelled(http_client *c) {
        while (c->cancelled) {
                http_request *r = c->cancelled;

                LIST_REMOVE(c->cancelled, r);
                http_request_free(r);
        }
}

static void client_free_now(http_client *c) {
        while (c->requests) {
                http_request *r = c->requests;

                http_request_detach(c, r);
                http_request_free(r);
        }
        free_cancelled(c);
        /* Cached connections are closed by curl_multi_cleanup(); drop our sources while their fds
         * are still open, and keep curl from calling back into a client being torn down. */
        (void) curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, NULL);
        (void) curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, NULL);
        while (c->sockets)
                http_socket_free(c, c->sockets);
        curl_multi_cleanup(c->multi);
        sd_event_source_disable_unref(c->timer);
        sd_event_unref(c->event);
        free(c);
}

static void client_enter(http_client *c) {
        c->dispatching++;
}

static void client_leave(http_client *c) {
        if (--c->dispatching > 0)
                return;
        free_cancelled(c);
        if (c->free_requested)
                client_free_now(c);
}

/* Calls back and frees a request already detached (so nothing can cancel it meanwhile). */
static void request_finish(http_request *r, long status, const char *error) {
        http_response resp = {
                .status = error ? 0 : status,
                .body = error || r->streaming ? "" : r->body.data ?: "",
                .size = error || r->streaming ? 0 : r->body.size,
                .error = error,
                .internal = r,
        };

        if (r->get_done)
                r->get_done(resp.status, resp.body, resp.size, resp.error, r->userdata);
        else
                r->done(&resp, r->userdata);
        http_request_free(r);
}

/* Hands the bytes a streamed response received to on_data, outside of any curl call. Returns
 * false when the request is gone (cancelled, or ended by on_data) or the client is being freed. */
static bool request_deliver(http_client *c, http_request *r) {
        _cleanup_free_ char *data = TAKE_PTR(r->body.data), *error = NULL;
        size_t size = r->body.size;
        int k;

        r->body = (buffer){};
        k = r->on_data(data, size, r->userdata, &error);
        if (c->free_requested || r->cancelled)
                return false;
        if (k >= 0)
                return true;
        http_request_detach(c, r);
        request_finish(r, 0, error ?: "the response stream was refused");
        return false;
}

static void client_dispatch_data(http_client *c) {
        bool again = true;

        /* A callback may cancel or end any request: start over after each delivery. There are a
         * handful of requests, and each round delivers everything one of them has. */
        while (again && !c->free_requested) {
                again = false;
                for (http_request *r = c->requests; r; r = r->next)
                        if (r->streaming && r->body.size > 0) {
                                (void) request_deliver(c, r);
                                again = true;
                                break;
                        }
        }
}

static const char *request_error(http_request *r, CURLcode result, long *status) {
        if (r->too_large || result == CURLE_FILESIZE_EXCEEDED) {
                snprintf(r->error, sizeof(r->error), "response larger than %zu bytes", r->body_max);
                return r->error;
        }
        if (r->oom)
                return "out of memory";
        if (result != CURLE_OK)
                return r->error[0] ? r->error : curl_easy_strerror(result);
        if (curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, status) != CURLE_OK || *status <= 0)
                return "no HTTP status in the response";
        return NULL;
}

/* Hands every finished transfer to its done callback. Called only from event handlers, never
 * from inside a curl call, so a callback may start new requests. */
static void client_dispatch_done(http_client *c) {
        CURLMsg *m;
        int left;

        while (!c->free_requested && (m = curl_multi_info_read(c->multi, &left))) {
                char *priv = NULL;
                http_request *r;
                CURLcode result;
                const char *error;
                long status = 0;

                if (m->msg != CURLMSG_DONE)
                        continue;
                result = m->data.result; /* m is invalid once the handle is removed */
                if (curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &priv) != CURLE_OK || !priv)
                        continue;
                r = (http_request *) priv;
                http_request_detach(c, r);
                error = request_error(r, result, &status);
                request_finish(r, status, error);
        }
}

static void client_dispatch(http_client *c) {
        /* Streamed bytes first: a transfer that ended delivers what it received before its end. */
        client_dispatch_data(c);
        client_dispatch_done(c);
}

static int on_io(sd_event_source *source, int fd, uint32_t revents, void *userdata) {
        http_socket *s = userdata;
        http_client *c = s->client; /* s may be freed by curl's REMOVE during the call */
        int flags = 0, running;

        if (revents & (EPOLLIN | EPOLLHUP | EPOLLRDHUP))
                flags |= CURL_CSELECT_IN;
        if (revents & EPOLLOUT)
                flags |= CURL_CSELECT_OUT;
        if (revents & EPOLLERR)
                flags |= CURL_CSELECT_ERR;

        client_enter(c);
        (void) curl_multi_socket_action(c->multi, fd, flags, &running);
        client_dispatch(c);
        client_leave(c);
        return 0;
}

static int on_timer(sd_event_source *source, uint64_t usec, void *userdata) {
        http_client *c = userdata;
        int running;

        client_enter(c);
        (void) curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        client_dispatch(c);
        client_leave(c);
        return 0;
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userdata, void *socketp) {
        http_client *c = userdata;
        http_socket *s = socketp;
        uint32_t events = 0;

        if (what == CURL_POLL_REMOVE) {
                if (s) {
                        (void) curl_multi_assign(c->multi, fd, NULL);
                        http_socket_free(c, s);
                }
                return 0;
        }

        if (what & CURL_POLL_IN)
                events |= EPOLLIN;
        if (what & CURL_POLL_OUT)
                events |= EPOLLOUT;

        if (s)
                return sd_event_source_set_io_events(s->source, events) < 0 ? -1 : 0;

        s = calloc(1, sizeof(http_socket));
        if (!s)
                return -1;
        s->client = c;
        if (sd_event_add_io(c->event, &s->source, fd, events, on_io, s) < 0) {
                free(s);
                return -1;
        }
        (void) sd_event_source_set_description(s->source, "http-socket");
        LIST_PREPEND(c->sockets, s);
        if (curl_multi_assign(c->multi, fd, s) != CURLM_OK) {
                http_socket_free(c, s);
                return -1;
        }
        return 0;
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userdata) {
        http_client *c = userdata;

        /* curl must not be driven from inside its own callback: arm the timer, even for 0 (which
         * is also what keeps done callbacks out of the calls that start requests). */
        if (timeout_ms < 0)
                return sd_event_source_set_enabled(c->timer, SD_EVENT_OFF) < 0 ? -1 : 0;
        if (sd_event_source_set_time(c->timer, now_usec() + (uint64_t) timeout_ms * 1000ULL) < 0 ||
            sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT) < 0)
                return -1;
        return 0;
}

int http_client_new(sd_event *e, http_client **ret) {
        static bool curl_initialized = false;
        http_client *c;
        int r;

        if (!e || !ret)
                return -EINVAL;
        if (!curl_initialized) {
                if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                        return -EIO;
                curl_initialized = true;
        }

        c = calloc(1, sizeof(http_client));
        if (!c)
                return -ENOMEM;
        c->event = sd_event_ref(e);
        c->multi = curl_multi_init();
        if (!c->multi) {
                sd_event_unref(c->event);
                free(c);
                return -ENOMEM;
        }
        /* Accuracy 1 µs: sd-event's default (250 ms) would add that much to every transfer step. */
        r = sd_event_add_time(e, &c->timer, CLOCK_MONOTONIC, 0, 1, on_timer, c);
        if (r >= 0)
                r = sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
        if (r >= 0)
                (void) sd_event_source_set_description(c->timer, "http-timer");
        if (r >= 0 && (curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK ||
                       curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c) != CURLM_OK ||
                       curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
                       curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c) != CURLM_OK))
                r = -EIO;
        if (r < 0) {
                client_free_now(c);
                return r;
        }
        *ret = c;
        return 0;
}

http_client *http_client_free(http_client *c) {
        if (!c)
                return NULL;
        if (c->dispatching > 0)
                c->free_requested = true; /* from a callback: finished when the handler returns */
        else
                client_free_now(c);
        return NULL;
}

size_t http_client_cancel(http_client *c, void *userdata) {
        size_t n = 0;

        if (!c)
                return 0;
        for (http_request *r = c->requests, *next; r; r = next) {
                next = r->next;
                if (r->userdata != userdata)
                        continue;
                http_request_detach(c, r);
                if (c->dispatching > 0) {
                        /* The dispatcher may be looking at it (its own callback cancelled it). */
                        r->cancelled = true;
                        LIST_PREPEND(c->cancelled, r);
                } else
                        http_request_free(r);
                n++;
        }
        return n;
}

size_t http_client_pending(const http_client *c) {
        return c && !c->free_requested ? c->n_pending : 0;
}

const char *http_response_header(const http_response *r, const char *name) {
        const http_request *req = r ? r->internal : NULL;
        struct curl_header *h = NULL;

        if (!req || !name || curl_easy_header(req->easy, name, 0, CURLH_HEADER, -1, &h) != CURLHE_OK)
                return NULL;
        if (h->amount > 1 && curl_easy_header(req->easy, name, h->amount - 1, CURLH_HEADER, -1, &h) != CURLHE_OK)
                return NULL;
        return h->value;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *userdata) {
        http_request *r = userdata;
        size_t n = size * nmemb;

        /* Only a 2xx response is a stream: a refused watch answers with a Status, kept whole. */
        if (r->on_data && !r->status_known) {
                long status = 0;

                (void) curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
                r->streaming = status >= 200 && status <= 299;
                r->status_known = true;
        }
        /* For a stream, this bounds what arrives between two deliveries (curl reads at most a few
         * hundred KiB per socket event). */
        if (n > r->body_max - r->body.size) {
                r->too_large = true;
                return 0; /* curl aborts the transfer */
        }
        if (buffer_append(&r->body, data, n) < 0) {
                r->oom = true;
                return 0;
        }
        return n;
}

#define SETOPT(easy, opt, val)                                                                             \
        do {                                                                                               \
                CURLcode _c_ = curl_easy_setopt((easy), (opt), (val));                                     \
                if (_c_ != CURLE_OK)                                                                       \
                        return _c_ == CURLE_OUT_OF_MEMORY ? -ENOMEM : -EINVAL;                             \
        } while (0)

static int setopt_pem(CURL *e, const http_pem *p, CURLoption file_opt, CURLoption blob_opt) {
        if (p->data) {
                struct curl_blob b = { .data = (void *) p->data, .len = p->size, .flags = CURL_BLOB_COPY };

                SETOPT(e, blob_opt, &b);
        } else if (p->file)
                SETOPT(e, file_opt, p->file);
        return 0;
}

static int request_setup_tls(http_request *r, const http_request_options *o) {
        CURL *e = r->easy;
        int k;

        SETOPT(e, CURLOPT_SSL_VERIFYPEER, o->verify ? 1L : 0L);
        SETOPT(e, CURLOPT_SSL_VERIFYHOST, o->verify ? 2L : 0L);
        if (o->ca.data || o->ca.file) {
                /* The configured CA alone, as client-go trusts it: not also the system's. */
                SETOPT(e, CURLOPT_CAPATH, NULL);
                SETOPT(e, CURLOPT_CAINFO, NULL);
                k = setopt_pem(e, &o->ca, CURLOPT_CAINFO, CURLOPT_CAINFO_BLOB);
                if (k < 0)
                        return k;
        }
        if (!(o->cert.data || o->cert.file) != !(o->key.data || o->key.file))
                return -EINVAL;
        SETOPT(e, CURLOPT_SSLCERTTYPE, "PEM");
        SETOPT(e, CURLOPT_SSLKEYTYPE, "PEM");
        k = setopt_pem(e, &o->cert, CURLOPT_SSLCERT, CURLOPT_SSLCERT_BLOB);
        if (k < 0)
                return k;
        return setopt_pem(e, &o->key, CURLOPT_SSLKEY, CURLOPT_SSLKEY_BLOB);
}

static int request_setup_method(http_request *r, const http_request_options *o) {
        CURL *e = r->easy;
        const char *method = o->method ?: "GET";

        if (o->body || !streq(method, "GET")) {
                /* POSTFIELDS makes it a POST; CUSTOMREQUEST then names the real method. */
                SETOPT(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) (o->body ? o->body_size : 0));
                SETOPT(e, CURLOPT_COPYPOSTFIELDS, o->body ?: "");
                if (!streq(method, "POST"))
                        SETOPT(e, CURLOPT_CUSTOMREQUEST, method);
        } else
                SETOPT(e, CURLOPT_HTTPGET, 1L);

        for (const char *const *h = o->headers; h && *h; h++) {
                struct curl_slist *l = curl_slist_append(r->headers, *h);

                if (!l)
                        return -ENOMEM;
                r->headers = l;
        }
        if (o->body) {
                /* curl waits for a "100 Continue" before sending a large body; the API server never
                 * asks for one to be sent first. */
                struct curl_slist *l = curl_slist_append(r->headers, "Expect:");

                if (!l)
                        return -ENOMEM;
                r->headers = l;
        }
        if (r->headers)
                SETOPT(e, CURLOPT_HTTPHEADER, r->headers);
        return 0;
}

static int request_setup(http_request *r, const http_request_options *o) {
        CURL *e = r->easy;
        int k;

        SETOPT(e, CURLOPT_URL, o->url);
        SETOPT(e, CURLOPT_PROTOCOLS_STR, "http,https");
        /* No proxy from the environment: a node's https_proxy would otherwise receive probes meant
         * for 127.0.0.1, and the API server's credentials. */
        SETOPT(e, CURLOPT_PROXY, "");
        SETOPT(e, CURLOPT_FOLLOWLOCATION, 0L);
        SETOPT(e, CURLOPT_NOSIGNAL, 1L);
        if (o->timeout_ms > 0)
                SETOPT(e, CURLOPT_TIMEOUT_MS, (long) MIN(o->timeout_ms, (uint64_t) LONG_MAX));
        if (o->connect_timeout_ms > 0)
                SETOPT(e, CURLOPT_CONNECTTIMEOUT_MS, (long) MIN(o->connect_timeout_ms, (uint64_t) LONG_MAX));
        /* Refused at once when a Content-Length announces more; a stream has none. */
        if (!o->on_data)
                SETOPT(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) r->body_max);
        if (o->connect_to) {
                r->connect_to = curl_slist_append(NULL, o->connect_to);
                if (!r->connect_to)
                        return -ENOMEM;
                SETOPT(e, CURLOPT_CONNECT_TO, r->connect_to);
        }
        if (o->fresh_connect)
                SETOPT(e, CURLOPT_FRESH_CONNECT, 1L);
        if (o->tcp_keepalive) {
                SETOPT(e, CURLOPT_TCP_KEEPALIVE, 1L);
                SETOPT(e, CURLOPT_TCP_KEEPIDLE, TCP_KEEPIDLE_SEC);
                SETOPT(e, CURLOPT_TCP_KEEPINTVL, TCP_KEEPINTVL_SEC);
        }
        SETOPT(e, CURLOPT_USERAGENT, "cplet/" CPLET_VERSION);
        SETOPT(e, CURLOPT_WRITEFUNCTION, on_write);
        SETOPT(e, CURLOPT_WRITEDATA, r);
        SETOPT(e, CURLOPT_ERRORBUFFER, r->error);
        SETOPT(e, CURLOPT_PRIVATE, r);
        k = request_setup_tls(r, o);
        if (k < 0)
                return k;
        return request_setup_method(r, o);
}

static int request_start(http_client *c, const http_request_options *o, http_done_fn get_done) {
        http_request *r;
        int k;

        if (!c || !o || !o->url || (!o->done && !get_done))
                return -EINVAL;
        if (c->free_requested)
                return -ECANCELED;

        r = calloc(1, sizeof(http_request));
        if (!r)
                return -ENOMEM;
        r->client = c;
        r->body_max = o->body_max ?: HTTP_BODY_MAX;
        r->on_data = o->on_data;
        r->get_done = get_done;
        r->done = o->done;
        r->userdata = o->userdata;
        r->easy = curl_easy_init();
        if (!r->easy) {
                http_request_free(r);
                return -ENOMEM;
        }
        k = request_setup(r, o);
        if (k < 0) {
                http_request_free(r);
                return k;
        }
        /* Only arms the timer (at 0): the transfer starts, and ends, from the event loop. */
        if (curl_multi_add_handle(c->multi, r->easy) != CURLM_OK) {
                http_request_free(r);
                return -ENOMEM;
        }
        LIST_PREPEND(c->requests, r);
        c->n_pending++;
        return 0;
}

int http_client_request(http_client *c, const http_request_options *o) {
        return request_start(c, o, NULL);
}

int http_client_get(http_client *c, const char *url, uint64_t timeout_ms, http_done_fn done, void *userdata) {
        /* Like the kubelet's prober: certificates are not verified. */
        http_request_options o = {
                .url = url,
                .timeout_ms = timeout_ms,
                .userdata = userdata,
        };

        if (!done || timeout_ms == 0)
                return -EINVAL;
        return request_start(c, &o, done);
}
