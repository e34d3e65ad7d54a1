/* SPDX-License-Identifier: Apache-2.0 */
/* kubeconfig files as clientcmd reads them: contexts, relative paths, -data, tokens, and the
 * node name from a kubelet client certificate. */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <string.h>
#include <sys/stat.h>

#include "kubeconfig.h"
#include "macro.h"

static char dir[] = "/tmp/cplet-kubeconfig-XXXXXX";

static void put(const char *name, const char *text) {
        _cleanup_free_ char *path = strdup_printf("%s/%s", dir, name);
        FILE *f = fopen(path, "we");

        assert_non_null(f);
        fputs(text, f);
        fclose(f);
}

static char *path_of(const char *name) {
        return strdup_printf("%s/%s", dir, name);
}

/* A self-signed certificate with subject CN `cn`, PEM. */
static char *certificate_pem(const char *cn) {
        EVP_PKEY *key = EVP_EC_gen("P-256");
        X509 *x = X509_new();
        BIO *bio = BIO_new(BIO_s_mem());
        char *data, *out;
        long n;

        assert_non_null(key);
        X509_set_version(x, 2);
        ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
        X509_gmtime_adj(X509_getm_notBefore(x), 0);
        X509_gmtime_adj(X509_getm_notAfter(x), 3600);
        X509_set_pubkey(x, key);
        X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "O", MBSTRING_ASC, (const unsigned char *) "system:nodes",
                                   -1, -1, 0);
        X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC, (const unsigned char *) cn, -1, -1,
                                   0);
        X509_set_issuer_name(x, X509_get_subject_name(x));
        assert_true(X509_sign(x, key, EVP_sha256()) > 0);
        PEM_write_bio_X509(bio, x);
        n = BIO_get_mem_data(bio, &data);
        out = strndup(data, (size_t) n);
        BIO_free(bio);
        X509_free(x);
        EVP_PKEY_free(key);
        return out;
}

static char *base64(const char *s) {
        size_t len = strlen(s);
        char *out = malloc(4 * ((len + 2) / 3) + 1);

        EVP_EncodeBlock((unsigned char *) out, (const unsigned char *) s, (int) len);
        return out;
}

#define KUBECONFIG_FILES                                                                                       \
        "apiVersion: v1\n"                                                                                     \
        "kind: Config\n"                                                                                       \
        "clusters:\n"                                                                                          \
        "- name: local\n"                                                                                      \
        "  cluster:\n"                                                                                         \
        "    server: https://127.0.0.1:6443/\n"                                                                \
        "    certificate-authority: pki/ca.crt\n"                                                              \
        "users:\n"                                                                                             \
        "- name: node\n"                                                                                       \
        "  user:\n"                                                                                            \
        "    client-certificate: pki/node.pem\n"                                                               \
        "    client-key: /var/lib/kubelet/pki/kubelet-client-current.pem\n"                                    \
        "contexts:\n"                                                                                          \
        "- name: other\n"                                                                                      \
        "  context: {cluster: local, user: nobody}\n"                                                          \
        "- name: default\n"                                                                                    \
        "  context:\n"                                                                                         \
        "    cluster: local\n"                                                                                 \
        "    user: node\n"                                                                                     \
        "current-context: default\n"

static void test_files_relative_to_the_kubeconfig(void **state) {
        _cleanup_(kubeconfig_freep) kubeconfig *k = NULL;
        _cleanup_free_ char *path = path_of("kubelet.conf"), *ca = path_of("pki/ca.crt"),
                            *cert = path_of("pki/node.pem");
        _cleanup_free_ char *error = NULL;

        put("kubelet.conf", KUBECONFIG_FILES);
        assert_int_equal(kubeconfig_load(path, NULL, &k, &error), 0);
        assert_string_equal(k->context, "default");
        assert_string_equal(k->server, "https://127.0.0.1:6443");
        assert_string_equal(k->ca.file, ca);
        assert_null(k->ca.data);
        assert_string_equal(k->client_cert.file, cert);
        assert_string_equal(k->client_key.file, "/var/lib/kubelet/pki/kubelet-client-current.pem");
        assert_string_equal(k->namespace, "default");
        assert_false(k->insecure_skip_tls_verify);
}

static void test_named_context_and_missing_user(void **state) {
        _cleanup_(kubeconfig_freep) kubeconfig *k = NULL;
        _cleanup_free_ char *path = path_of("kubelet.conf"), *error = NULL;

        put("kubelet.conf", KUBECONFIG_FILES);
        assert_int_equal(kubeconfig_load(path, "other", &k, &error), -EINVAL);
        assert_non_null(strstr(error, "user \"nobody\" does not exist"));
        free(error), error = NULL;
        assert_int_equal(kubeconfig_load(path, "missing", &k, &error), -EINVAL);
        assert_non_null(strstr(error, "context \"missing\" does not exist"));
        assert_non_null(strstr(error, path));
}

static void test_inline_data_and_token(void **state) {
        _cleanup_(kubeconfig_freep) kubeconfig *k = NULL;
        _cleanup_free_ char *pem = certificate_pem("system:node:cp-1"), *b64 = base64(pem), *text = NULL,
                            *path = path_of("admin.conf"), *error = NULL, *name = NULL, *tf = path_of("token");

        text = strdup_printf("kind: Config\n"
                             "clusters: [{name: c, cluster: {server: 'https://[::1]:6443', "
                             "certificate-authority-data: %s}}]\n"
                             "users: [{name: u, user: {client-certificate-data: %s, client-key-data: %s, "
                             "tokenFile: token}}]\n"
                             "contexts: [{name: x, context: {cluster: c, user: u, namespace: kube-system}}]\n"
                             "current-context: x\n",
                             b64, b64, b64);
        put("admin.conf", text);
        assert_int_equal(kubeconfig_load(path, NULL, &k, &error), 0);
        assert_int_equal(k->ca.size, strlen(pem));
        assert_memory_equal(k->ca.data, pem, strlen(pem));
        assert_int_equal(k->client_cert.size, strlen(pem));
        assert_string_equal(k->token_file, tf);
        assert_string_equal(k->namespace, "kube-system");
        assert_int_equal(kubeconfig_node_name(k, &name, &error), 0);
        assert_string_equal(name, "cp-1");
}

/* -data as clientcmd decodes it (Go's base64.StdEncoding): line breaks are ignored, so a value
 * wrapped by base64(1) at 76 columns in a YAML literal block loads; padding only at the end. */
static void test_wrapped_base64_and_bad_padding(void **state) {
        _cleanup_free_ char *pem = certificate_pem("system:node:cp-1"), *b64 = base64(pem), *wrapped = NULL,
                            *path = path_of("admin.conf");
        static const char *const bad[] = { "====", "AA=A", "=AAA", "A===", "AAAA====", "AA==AAAA", "AA AA===" };
        size_t n = strlen(b64), w = 0;

        wrapped = malloc(n + 8 * (n / 76) + 16);
        for (size_t i = 0; i < n; i++) {
                if (i > 0 && i % 76 == 0)
                        w += (size_t) sprintf(wrapped + w, i % 152 == 0 ? "\r\n      " : "\n      ");
                wrapped[w++] = b64[i];
        }
        wrapped[w] = 0;

        {
                _cleanup_(kubeconfig_freep) kubeconfig *k = NULL;
                _cleanup_free_ char *text = NULL, *error = NULL;

                text = strdup_printf("kind: Config\n"
                                     "clusters:\n"
                                     "- name: c\n"
                                     "  cluster:\n"
                                     "    server: https://127.0.0.1:6443\n"
                                     "    certificate-authority-data: |\n"
                                     "      %s\n"
                                     "contexts: [{name: x, context: {cluster: c}}]\n"
                                     "current-context: x\n",
                                     wrapped);
                put("admin.conf", text);
                if (kubeconfig_load(path, NULL, &k, &error) < 0)
                        fail_msg("wrapped base64 refused: %s", error);
                assert_int_equal(k->ca.size, strlen(pem));
                assert_memory_equal(k->ca.data, pem, strlen(pem));
        }

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_(kubeconfig_freep) kubeconfig *k = NULL;
                _cleanup_free_ char *text = NULL, *error = NULL;

                text = strdup_printf("kind: Config\n"
                                     "clusters: [{name: c, cluster: {server: 'https://h:6443', "
                                     "certificate-authority-data: '%s'}}]\n"
                                     "contexts: [{name: x, context: {cluster: c}}]\ncurrent-context: x\n",
                                     bad[i]);
                put("admin.conf", text);
                if (kubeconfig_load(path, NULL, &k, &error) != -EINVAL)
                        fail_msg("\"%s\" accepted as base64", bad[i]);
                assert_non_null(strstr(error, "certificate-authority-data: not base64"));
        }
}

/* Request paths are appended to the server ("/api/v1/..."): every trailing slash goes. */
static void test_server_trailing_slashes(void **state) {
        _cleanup_(kubeconfig_freep) kubeconfig *k = NULL;
        _cleanup_free_ char *path = path_of("admin.conf"), *error = NULL;

        put("admin.conf", "kind: Config\n"
                          "clusters: [{name: c, cluster: {server: 'https://h:6443/k8s/clusters/c-1//', "
                          "insecure-skip-tls-verify: true}}]\n"
                          "contexts: [{name: x, context: {cluster: c}}]\ncurrent-context: x\n");
        assert_int_equal(kubeconfig_load(path, NULL, &k, &error), 0);
        assert_string_equal(k->server, "https://h:6443/k8s/clusters/c-1");
}

static void test_node_name_needs_a_node_certificate(void **state) {
        _cleanup_(kubeconfig_freep) kubeconfig *k = NULL;
        _cleanup_free_ char *pem = certificate_pem("kubernetes-admin"), *text = NULL, *path = path_of("admin.conf"),
                            *error = NULL, *name = NULL;

        put("admin.pem", pem);
        text = strdup_printf("kind: Config\n"
                             "clusters: [{name: c, cluster: {server: 'https://127.0.0.1:6443', "
                             "certificate-authority: admin.pem}}]\n"
                             "users: [{name: u, user: {client-certificate: admin.pem, client-key: admin.pem}}]\n"
                             "contexts: [{name: x, context: {cluster: c, user: u}}]\n"
                             "current-context: x\n");
        put("admin.conf", text);
        assert_int_equal(kubeconfig_load(path, NULL, &k, &error), 0);
        assert_int_equal(kubeconfig_node_name(k, &name, &error), -EINVAL);
        assert_non_null(strstr(error, "\"kubernetes-admin\""));
}

static void test_refusals(void **state) {
        static const struct {
                const char *text, *says;
        } cases[] = {
                { "kind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:8080', "
                  "certificate-authority: ca}}]\ncontexts: [{name: x, context: {cluster: c}}]\ncurrent-context: x\n",
                  "expected an https:// URL" },
                /* No host: "https://" became "https:/" (one trailing slash cut). */
                { "kind: Config\nclusters: [{name: c, cluster: {server: 'https://', certificate-authority: ca}}]\n"
                  "contexts: [{name: x, context: {cluster: c}}]\ncurrent-context: x\n",
                  "expected an https:// URL" },
                { "kind: Config\nclusters: [{name: c, cluster: {server: 'https:///api', certificate-authority: ca}}]\n"
                  "contexts: [{name: x, context: {cluster: c}}]\ncurrent-context: x\n",
                  "expected an https:// URL" },
                { "kind: Config\nclusters: [{name: c, cluster: {server: 'https://h:6443'}}]\n"
                  "contexts: [{name: x, context: {cluster: c}}]\ncurrent-context: x\n",
                  "cannot be verified" },
                { "kind: Config\nclusters: [{name: c, cluster: {server: 'https://h:6443', "
                  "certificate-authority-data: 'not base64!'}}]\ncontexts: [{name: x, context: {cluster: c}}]\n"
                  "current-context: x\n",
                  "certificate-authority-data: not base64" },
                { "kind: Config\nclusters: [{name: c, cluster: {server: 'https://h:6443', certificate-authority: "
                  "ca}}]\nusers: [{name: u, user: {client-certificate: c.pem}}]\n"
                  "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
                  "needs its key" },
                { "kind: Config\nclusters: []\ncontexts: []\n", "no current-context" },
                { "kind: Pod\nmetadata: {name: x}\n", "not a kubeconfig" },
                { "kind: Config\nclusters: [{name: c\n", "admin.conf:" },
                { "kind: Config\nclusters: [{name: c, cluster: {server: 'https://h:6443', certificate-authority: "
                  "ca, insecure-skip-tls-verify: 'yes please'}}]\ncontexts: [{name: x, context: {cluster: c}}]\n"
                  "current-context: x\n",
                  "insecure-skip-tls-verify" },
        };
        _cleanup_free_ char *path = path_of("admin.conf");

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(kubeconfig_freep) kubeconfig *k = NULL;
                _cleanup_free_ char *error = NULL;

                put("admin.conf", cases[i].text);
                assert_int_equal(kubeconfig_load(path, NULL, &k, &error), -EINVAL);
                assert_null(k);
                if (!strstr(error, cases[i].says))
                        fail_msg("case %zu: \"%s\" does not say \"%s\"", i, error, cases[i].says);
        }
}

static void test_missing_file(void **state) {
        _cleanup_(kubeconfig_freep) kubeconfig *k = NULL;
        _cleanup_free_ char *error = NULL;

        assert_int_equal(kubeconfig_load("/nonexistent/kubelet.conf", NULL, &k, &error), -ENOENT);
        assert_non_null(strstr(error, "/nonexistent/kubelet.conf"));
}

static int setup(void **state) {
        _cleanup_free_ char *pki = NULL;

        if (!mkdtemp(dir))
                return -1;
        pki = path_of("pki");
        return mkdir(pki, 0700);
}

static int teardown(void **state) {
        _cleanup_free_ char *cmd = strdup_printf("rm -rf '%s'", dir);

        return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_files_relative_to_the_kubeconfig),
                cmocka_unit_test(test_named_context_and_missing_user),
                cmocka_unit_test(test_inline_data_and_token),
                cmocka_unit_test(test_wrapped_base64_and_bad_padding),
                cmocka_unit_test(test_server_trailing_slashes),
                cmocka_unit_test(test_node_name_needs_a_node_certificate),
                cmocka_unit_test(test_refusals),
                cmocka_unit_test(test_missing_file),
        };

        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, setup, teardown);
}
