/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <string.h>

#include "fs-util.h"
#include "kubeconfig.h"
#include "macro.h"
#include "manifest.h"

static void pem_done(kube_pem *p) {
        free(p->file);
        free(p->data);
        *p = (kube_pem){};
}

kubeconfig *kubeconfig_free(kubeconfig *k) {
        if (!k)
                return NULL;
        free(k->path);
        free(k->context);
        free(k->server);
        free(k->tls_server_name);
        pem_done(&k->ca);
        pem_done(&k->client_cert);
        pem_done(&k->client_key);
        free(k->token);
        free(k->token_file);
        free(k->namespace);
        free(k);
        return NULL;
}

/* The entry of a named list (clusters, users, contexts) with that name: its inner object. */
static json_t *named(json_t *doc, const char *list, const char *inner, const char *name) {
        json_t *item;
        size_t i;

        json_array_foreach(json_object_get(doc, list), i, item)
                if (streq(json_string_value(json_object_get(item, "name")) ?: "", name))
                        return json_object_get(item, inner);
        return NULL;
}

static int optional_string(const kubeconfig *k, json_t *obj, const char *what, const char *field,
                           const char **ret, char **ret_error) {
        json_t *v = json_object_get(obj, field);

        *ret = NULL;
        if (!v || json_is_null(v))
                return 0;
        if (!json_is_string(v) || json_string_length(v) == 0)
                return set_error(ret_error, -EINVAL, "%s: %s.%s: expected a non-empty string", k->path, what,
                                 field);
        *ret = json_string_value(v);
        return 0;
}

/* A path as clientcmd resolves it: relative to the kubeconfig's directory. */
static int resolve_path(const kubeconfig *k, const char *p, char **ret) {
        const char *slash = strrchr(k->path, '/');

        if (p[0] == '/')
                *ret = strdup(p);
        else
                *ret = strdup_printf("%.*s/%s", (int) (slash - k->path), k->path, p);
        return *ret ? 0 : -ENOMEM;
}

static int base64_value(char c) {
        static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        const char *p = c ? strchr(alphabet, c) : NULL;

        return p ? (int) (p - alphabet) : -1;
}

/* Base64 as clientcmd decodes -data (Go's base64.StdEncoding): padded, '=' only at the end, and
 * line breaks ignored (a value wrapped by base64(1) in a YAML literal block); anything else is
 * refused. */
static int base64_decode(const char *in, unsigned char **ret, size_t *ret_size) {
        _cleanup_free_ unsigned char *out = malloc(strlen(in) / 4 * 3 + 3);
        uint32_t quantum = 0;
        size_t n = 0, chars = 0, pad = 0;

        if (!out)
                return -ENOMEM;
        for (const char *p = in; *p; p++) {
                int v = base64_value(*p);

                if (*p == '\r' || *p == '\n')
                        continue;
                if (*p == '=' && chars % 4 >= 2 && pad < 2)
                        pad++;
                else if (v < 0 || pad > 0)
                        return -EINVAL;
                quantum = quantum << 6 | (uint32_t) (v < 0 ? 0 : v);
                if (++chars % 4 == 0) {
                        out[n++] = (unsigned char) (quantum >> 16);
                        out[n++] = (unsigned char) (quantum >> 8);
                        out[n++] = (unsigned char) quantum;
                        quantum = 0;
                }
        }
        /* "xx=" without its last '=' ends short of a quantum. */
        if (chars == 0 || chars % 4 != 0)
                return -EINVAL;
        *ret_size = n - pad;
        out[*ret_size] = 0;
        *ret = TAKE_PTR(out);
        return 0;
}

/* FIELD (a path) or FIELD-data (base64 PEM). */
static int pem_field(const kubeconfig *k, json_t *obj, const char *what, const char *field, kube_pem *ret,
                     char **ret_error) {
        _cleanup_free_ char *data_field = strdup_printf("%s-data", field);
        const char *file, *data;
        int r;

        if (!data_field)
                return -ENOMEM;
        r = optional_string(k, obj, what, field, &file, ret_error);
        if (r >= 0)
                r = optional_string(k, obj, what, data_field, &data, ret_error);
        if (r < 0)
                return r;
        if (file && data)
                return set_error(ret_error, -EINVAL, "%s: %s: both %s and %s are set; give one", k->path, what, field,
                                 data_field);
        if (data) {
                r = base64_decode(data, &ret->data, &ret->size);
                if (r == -EINVAL)
                        return set_error(ret_error, r, "%s: %s.%s: not base64", k->path, what, data_field);
                return r;
        }
        return file ? resolve_path(k, file, &ret->file) : 0;
}

static int load_cluster(kubeconfig *k, json_t *cluster, char **ret_error) {
        const char *server, *host, *tls_name;
        size_t end;
        json_t *skip;
        int r;

        r = optional_string(k, cluster, "cluster", "server", &server, ret_error);
        if (r < 0)
                return r;
        /* A host after the scheme; every trailing slash goes, as request paths are appended. */
        host = server ? startswith(server, "https://") : NULL;
        if (!host || !*host || *host == '/' || strlen(server) > 2048 || strpbrk(server, " \t\r\n"))
                return set_error(ret_error, -EINVAL, "%s: cluster.server \"%s\": expected an https:// URL", k->path,
                                 server ?: "");
        end = strlen(server);
        while (server[end - 1] == '/')
                end--;
        k->server = strndup(server, end);
        r = optional_string(k, cluster, "cluster", "tls-server-name", &tls_name, ret_error);
        if (r < 0)
                return r;
        k->tls_server_name = tls_name ? strdup(tls_name) : NULL;
        skip = json_object_get(cluster, "insecure-skip-tls-verify");
        if (skip && !json_is_boolean(skip))
                return set_error(ret_error, -EINVAL, "%s: cluster.insecure-skip-tls-verify: expected true or false",
                                 k->path);
        k->insecure_skip_tls_verify = json_is_true(skip);
        r = pem_field(k, cluster, "cluster", "certificate-authority", &k->ca, ret_error);
        if (r < 0)
                return r;
        if (!k->ca.file && !k->ca.data && !k->insecure_skip_tls_verify)
                return set_error(ret_error, -EINVAL,
                                 "%s: cluster: no certificate-authority or certificate-authority-data: the server "
                                 "cannot be verified",
                                 k->path);
        return k->server ? 0 : -ENOMEM;
}

static int load_user(kubeconfig *k, json_t *user, char **ret_error) {
        const char *token, *token_file;
        bool has_cert, has_key;
        int r;

        r = pem_field(k, user, "user", "client-certificate", &k->client_cert, ret_error);
        if (r >= 0)
                r = pem_field(k, user, "user", "client-key", &k->client_key, ret_error);
        if (r >= 0)
                r = optional_string(k, user, "user", "token", &token, ret_error);
        if (r >= 0)
                r = optional_string(k, user, "user", "tokenFile", &token_file, ret_error);
        if (r < 0)
                return r;
        has_cert = k->client_cert.file || k->client_cert.data;
        has_key = k->client_key.file || k->client_key.data;
        if (has_cert != has_key)
                return set_error(ret_error, -EINVAL, "%s: user: a client certificate needs its key (and a key its "
                                                     "certificate)",
                                 k->path);
        if (token && !(k->token = strdup(token)))
                return -ENOMEM;
        if (token_file) {
                r = resolve_path(k, token_file, &k->token_file);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int resolve_context(kubeconfig *k, json_t *doc, const char *context, char **ret_error) {
        const char *name = context ?: json_string_value(json_object_get(doc, "current-context"));
        const char *cluster_name, *user_name, *ns;
        json_t *ctx, *cluster, *user;
        int r;

        if (!name || !*name)
                return set_error(ret_error, -EINVAL, "%s: no current-context (and none given)", k->path);
        ctx = named(doc, "contexts", "context", name);
        if (!json_is_object(ctx))
                return set_error(ret_error, -EINVAL, "%s: context \"%s\" does not exist", k->path, name);
        k->context = strdup(name);
        r = optional_string(k, ctx, "context", "cluster", &cluster_name, ret_error);
        if (r >= 0)
                r = optional_string(k, ctx, "context", "user", &user_name, ret_error);
        if (r >= 0)
                r = optional_string(k, ctx, "context", "namespace", &ns, ret_error);
        if (r < 0)
                return r;
        k->namespace = strdup(ns ?: "default");
        cluster = cluster_name ? named(doc, "clusters", "cluster", cluster_name) : NULL;
        if (!json_is_object(cluster))
                return set_error(ret_error, -EINVAL, "%s: context \"%s\": cluster \"%s\" does not exist", k->path,
                                 name, cluster_name ?: "");
        user = user_name ? named(doc, "users", "user", user_name) : NULL;
        if (user_name && !json_is_object(user))
                return set_error(ret_error, -EINVAL, "%s: context \"%s\": user \"%s\" does not exist", k->path, name,
                                 user_name);
        if (!k->context || !k->namespace)
                return -ENOMEM;
        r = load_cluster(k, cluster, ret_error);
        if (r >= 0 && user)
                r = load_user(k, user, ret_error);
        return r;
}

int kubeconfig_load(const char *path, const char *context, kubeconfig **ret, char **ret_error) {
        _cleanup_(kubeconfig_freep) kubeconfig *k = calloc(1, sizeof(kubeconfig));
        _cleanup_free_ char *data = NULL;
        json_auto_t *doc = NULL;
        char real[PATH_MAX];
        size_t size;
        int r;

        if (!k)
                return -ENOMEM;
        if (!realpath(path, real))
                return set_error(ret_error, -errno, "kubeconfig %s: %s", path, strerror(errno));
        k->path = strdup(real);
        if (!k->path)
                return -ENOMEM;
        r = read_file_at(AT_FDCWD, k->path, KUBECONFIG_SIZE_MAX, &data, &size);
        if (r < 0)
                return set_error(ret_error, r, "kubeconfig %s: %s", k->path,
                                 r == -E2BIG ? "larger than 1 MiB" : strerror(-r));
        r = manifest_parse(data, size, k->path, &doc, ret_error);
        if (r < 0)
                return r;
        if (!streq(json_string_value(json_object_get(doc, "kind")) ?: "Config", "Config"))
                return set_error(ret_error, -EINVAL, "%s: kind \"%s\": not a kubeconfig (kind: Config)", k->path,
                                 json_string_value(json_object_get(doc, "kind")));
        r = resolve_context(k, doc, context, ret_error);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(k);
        return 0;
}

static X509 *read_certificate(const kube_pem *p) {
        BIO *bio = p->data ? BIO_new_mem_buf(p->data, (int) p->size) : BIO_new_file(p->file, "r");
        X509 *x = NULL;

        if (bio) {
                x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
                BIO_free(bio);
        }
        return x;
}

int kubeconfig_node_name(const kubeconfig *k, char **ret, char **ret_error) {
        char cn[256] = "";
        const char *name;
        X509 *x;
        int n;

        if (!k->client_cert.file && !k->client_cert.data)
                return -ENOENT;
        x = read_certificate(&k->client_cert);
        if (!x)
                return set_error(ret_error, -EINVAL, "%s: the client certificate%s%s cannot be read", k->path,
                                 k->client_cert.file ? " " : "", k->client_cert.file ?: "");
        n = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
        X509_free(x);
        name = n > 0 ? startswith(cn, "system:node:") : NULL;
        if (!name || !*name)
                return set_error(ret_error, -EINVAL,
                                 "%s: the client certificate's CN \"%s\" is not a node's (system:node:NAME): give "
                                 "--node-name",
                                 k->path, cn);
        *ret = strdup(name);
        return *ret ? 0 : -ENOMEM;
}
