/* SPDX-License-Identifier: Apache-2.0 */
/* A kubeconfig as kubeconfig_load() reads it: the input is written to
 * $TMP/cplet-fuzz-kubeconfig-XXXXXX/etc/kubernetes/kubelet.conf, beside a pki/ca.crt, and a real
 * kubelet client certificate at var/lib/kubelet/pki/kubelet-client-current.pem of the same
 * scratch root, so that relative paths resolve to files that exist. Contexts, -data (base64),
 * tokens and token files; the node name read from the client certificate where it is inline or
 * one of those files. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz.h"
#include "kubeconfig.h"

static char root[PATH_MAX];
static char conf[PATH_MAX];

static void put(const char *name, const void *data, size_t size) {
        char path[PATH_MAX];
        int fd;

        snprintf(path, sizeof(path), "%s/%s", root, name);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || (size > 0 && write(fd, data, size) != (ssize_t) size) || close(fd) < 0)
                abort();
}

/* A self-signed certificate with CN system:node:cp-1, as the kubelet's client certificate. */
static void put_certificate(const char *name) {
        EVP_PKEY *key = EVP_EC_gen("P-256");
        X509 *x = X509_new();
        BIO *bio = BIO_new(BIO_s_mem());
        char *pem;
        long n;

        if (!key || !x || !bio)
                abort();
        X509_set_version(x, 2);
        ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
        X509_gmtime_adj(X509_getm_notBefore(x), 0);
        X509_gmtime_adj(X509_getm_notAfter(x), 3600);
        X509_set_pubkey(x, key);
        X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "O", MBSTRING_ASC, (const unsigned char *) "system:nodes",
                                   -1, -1, 0);
        X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                                   (const unsigned char *) "system:node:cp-1", -1, -1, 0);
        X509_set_issuer_name(x, X509_get_subject_name(x));
        if (X509_sign(x, key, EVP_sha256()) <= 0 || !PEM_write_bio_X509(bio, x) ||
            !PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL))
                abort();
        n = BIO_get_mem_data(bio, &pem);
        put(name, pem, (size_t) n);
        BIO_free(bio);
        X509_free(x);
        EVP_PKEY_free(key);
}

static void make_root(void) {
        static const char *const dirs[] = { "etc", "etc/kubernetes", "etc/kubernetes/pki", "var", "var/lib",
                                            "var/lib/kubelet", "var/lib/kubelet/pki" };
        char tmpl[PATH_MAX], path[PATH_MAX];

        snprintf(tmpl, sizeof(tmpl), "%s/cplet-fuzz-kubeconfig-XXXXXX", getenv("TMPDIR") ?: "/tmp");
        /* The real path: kubeconfig_load() names the file by it, and resolves paths from it. */
        if (!mkdtemp(tmpl) || !realpath(tmpl, root))
                abort();
        for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
                snprintf(path, sizeof(path), "%s/%s", root, dirs[i]);
                if (mkdir(path, 0700) < 0)
                        abort();
        }
        put_certificate("var/lib/kubelet/pki/kubelet-client-current.pem");
        put_certificate("etc/kubernetes/pki/ca.crt");
        put("etc/kubernetes/pki/token", "abcdef.0123456789abcdef\n", 24);
        snprintf(conf, sizeof(conf), "%s/etc/kubernetes/kubelet.conf", root);
}

/* The scratch root is left behind only if the process dies: libFuzzer exits through exit(). */
static void remove_root(void) {
        char cmd[PATH_MAX + 16];

        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
        (void) !system(cmd);
}

static bool is_absolute_path(const char *p) {
        return p && p[0] == '/';
}

static void check_pem(const kube_pem *p, const char *what) {
        fuzz_assert(!(p->file && p->data), "%s: both a file and data", what);
        fuzz_assert(!p->file || is_absolute_path(p->file), "%s: relative file \"%s\"", what, p->file);
        fuzz_assert(!p->data || p->data[p->size] == 0, "%s: data not NUL-terminated", what);
}

/* The node name is read from inline data, or from a file of the scratch root (never from an
 * arbitrary path the input names: /dev/zero would never end). */
static void check_node_name(const kubeconfig *k) {
        char real[PATH_MAX], *name = NULL, *error = NULL;
        int r;

        if (k->client_cert.file &&
            (!realpath(k->client_cert.file, real) || strncmp(real, root, strlen(root)) != 0 || real[strlen(root)] != '/'))
                return;
        r = kubeconfig_node_name(k, &name, &error);
        if (r == -ENOENT) {
                fuzz_assert(!k->client_cert.file && !k->client_cert.data, "-ENOENT with a client certificate");
                return;
        }
        if (r < 0) {
                fuzz_assert(r == -EINVAL || r == -ENOMEM, "node name: unexpected error %d", r);
                fuzz_check_error(r, error, k->path);
                free(error);
                return;
        }
        fuzz_assert(*name && !strchr(name, '\n'), "node name \"%s\"", name);
        free(name);
}

static void check_kubeconfig(const kubeconfig *k) {
        fuzz_assert(strcmp(k->path, conf) == 0, "path \"%s\"", k->path);
        fuzz_assert(k->context && k->namespace, "no context or namespace");
        fuzz_assert(k->server && strncmp(k->server, "https://", 8) == 0 && !strpbrk(k->server, " \t\r\n"),
                    "server \"%s\" accepted", k->server ?: "(null)");
        /* A host, and no trailing slash: request paths are appended ("/api/v1/..."). */
        fuzz_assert(strlen(k->server) > 8 && k->server[8] != '/' && k->server[strlen(k->server) - 1] != '/',
                    "server \"%s\" accepted", k->server);
        check_pem(&k->ca, "ca");
        check_pem(&k->client_cert, "client certificate");
        check_pem(&k->client_key, "client key");
        fuzz_assert(k->ca.file || k->ca.data || k->insecure_skip_tls_verify, "no way to trust the server");
        fuzz_assert(!!(k->client_cert.file || k->client_cert.data) == !!(k->client_key.file || k->client_key.data),
                    "a client certificate without its key, or the reverse");
        fuzz_assert(!k->token_file || is_absolute_path(k->token_file), "relative token file \"%s\"", k->token_file);
        fuzz_assert(!k->token || *k->token, "empty token");
        check_node_name(k);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        kubeconfig *k = NULL;
        char *error = NULL;
        int r;

        if (!root[0]) {
                make_root();
                atexit(remove_root);
        }
        put("etc/kubernetes/kubelet.conf", data, size);
        /* The current context: what the daemon uses (a named one only differs in where the name
         * comes from, and the input can name any current-context). */
        r = kubeconfig_load(conf, NULL, &k, &error);
        if (r < 0) {
                fuzz_assert(r == -EINVAL || r == -E2BIG || r == -ENOMEM || r == -ELOOP, "unexpected error %d: %s", r,
                            error ?: "");
                fuzz_assert(!k, "refused, but a kubeconfig handed out");
                /* Every refusal names the file. */
                fuzz_assert(r == -ENOMEM || (error && strstr(error, conf)), "the error does not name %s: %s", conf,
                            error ?: "(none)");
                free(error);
                return 0;
        }
        fuzz_assert(!error, "accepted with a message: %s", error);
        check_kubeconfig(k);
        kubeconfig_free(k);
        return 0;
}
