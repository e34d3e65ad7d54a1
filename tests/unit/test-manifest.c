/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "macro.h"
#include "manifest.h"

static const char *fixtures_dir(void) {
        const char *d = getenv("CPLET_FIXTURES_DIR");

        if (!d || !*d)
                fail_msg("CPLET_FIXTURES_DIR is not set");
        return d;
}

static char *fixture_path(const char *name) {
        char *p = strdup_printf("%s/%s", fixtures_dir(), name);

        assert_non_null(p);
        return p;
}

/* Loads a fixture that must parse. */
static json_t *load_fixture(const char *name) {
        _cleanup_free_ char *path = fixture_path(name), *err = NULL;
        json_t *j = NULL;
        int r;

        r = manifest_load(AT_FDCWD, path, &j, &err);
        if (r < 0)
                fail_msg("%s: %d %s", name, r, err ?: "(no message)");
        assert_non_null(j);
        return j;
}

static int parse_text(const char *text, json_t **ret, char **ret_error) {
        return manifest_parse(text, strlen(text), "test.yaml", ret, ret_error);
}

/* Parses text that must be refused with `want` and a message containing `needle`. */
static void assert_refused(const char *text, size_t size, int want, const char *needle) {
        _cleanup_(json_decrefp) json_t *j = NULL;
        _cleanup_free_ char *err = NULL;
        int r;

        r = manifest_parse(text, size, "test.yaml", &j, &err);
        if (r != want || !err || !strstr(err, needle) || !strstr(err, "test.yaml"))
                fail_msg("input <<%s>>: got %d \"%s\", expected %d and \"%s\"", size < 200 ? text : "(long)",
                         r, err ?: "(null)", want, needle);
        assert_null(j);
}

static bool ends_with(const char *s, const char *suffix) {
        size_t a = strlen(s), b = strlen(suffix);

        return a >= b && streq(s + a - b, suffix);
}

static char *render(const json_t *j, size_t *ret_size) {
        char *out = NULL;
        size_t size = 0;

        assert_int_equal(manifest_render(j, &out, &size), 0);
        assert_non_null(out);
        assert_int_equal(strlen(out), size);
        if (ret_size)
                *ret_size = size;
        return out;
}

/* Renders, parses back, checks equality, and returns the rendered text. */
static char *round_trip(const json_t *j) {
        _cleanup_(json_decrefp) json_t *back = NULL;
        _cleanup_free_ char *err = NULL;
        char *out = render(j, NULL);
        int r;

        /* No document markers ("|+" would make libyaml end the stream with "..."). */
        assert_false(strneq(out, "---", 3) || strneq(out, "...", 3));
        assert_null(strstr(out, "\n..."));
        assert_true(ends_with(out, "\n"));
        r = parse_text(out, &back, &err);
        if (r < 0)
                fail_msg("rendered text does not parse: %s\n%s", err, out);
        if (!json_equal(j, back)) {
                _cleanup_free_ char *a = json_dumps(j, JSON_ENCODE_ANY),
                                    *b = json_dumps(back, JSON_ENCODE_ANY);

                fail_msg("round trip changed the tree:\n%s\n%s\nrendered:\n%s", a, b, out);
        }
        return out;
}

/* 1. Every valid fixture parses, round-trips to an equal tree, renders idempotently, and its JSON
 * form parses to the same tree. */
static void test_fixtures_round_trip(void **state) {
        DIR *d;
        struct dirent *de;
        unsigned n = 0;

        d = opendir(fixtures_dir());
        if (!d)
                fail_msg("%s: %s", fixtures_dir(), strerror(errno));

        while ((de = readdir(d))) {
                _cleanup_(json_decrefp) json_t *j = NULL, *back = NULL, *from_json = NULL;
                _cleanup_free_ char *out1 = NULL, *out2 = NULL, *err = NULL, *dumped = NULL;
                size_t size1, size2;

                if (!ends_with(de->d_name, ".yaml"))
                        continue;
                if ((strstr(de->d_name, "BROKEN") || strstr(de->d_name, "TEMPLATE")) &&
                    !streq(de->d_name, "typhoon-TEMPLATE-kube-apiserver.yaml"))
                        continue;

                j = load_fixture(de->d_name);
                assert_true(json_is_object(j));

                out1 = render(j, &size1);
                assert_true(size1 > 0 && out1[size1 - 1] == '\n');
                /* No document markers: the kubelet does not mind them, but kubeadm writes none. */
                assert_false(strneq(out1, "---", 3));
                assert_null(strstr(out1, "\n..."));

                if (parse_text(out1, &back, &err) < 0)
                        fail_msg("%s: rendered text does not parse: %s", de->d_name, err);
                if (!json_equal(j, back))
                        fail_msg("%s: round trip changed the tree", de->d_name);

                out2 = render(back, &size2);
                assert_int_equal(size1, size2);
                if (memcmp(out1, out2, size1) != 0)
                        fail_msg("%s: rendering is not idempotent", de->d_name);

                dumped = json_dumps(j, JSON_INDENT(2));
                assert_non_null(dumped);
                if (parse_text(dumped, &from_json, &err) < 0)
                        fail_msg("%s: JSON form does not parse: %s", de->d_name, err);
                if (!json_equal(j, from_json))
                        fail_msg("%s: JSON form differs", de->d_name);
                n++;
        }
        closedir(d);

        print_message("# %u fixtures round-tripped\n", n);
        /* A missing or empty fixture directory must not pass. */
        assert_true(n >= 30);
}

/* kubeadm's own output (go-yaml) comes out byte for byte the same, so a rewrite that changes one
 * flag shows up in a diff as one line. */
static void test_fixtures_byte_identical(void **state) {
        static const char *const files[] = {
                "kubeadm-v1.30.14-kube-apiserver.yaml",
                "kubeadm-v1.30.14-kube-controller-manager.yaml",
                "kubeadm-v1.30.14-kube-scheduler.yaml",
                "kubeadm-v1.30.14-etcd.yaml",
                "kubeadm-v1.8.1-kube-apiserver.yaml", /* critical-pod: "" */
                "dockerdesktop-v1.25.9-kube-apiserver-mirrorpod.yaml",
                "handwritten-v1.30.0-kube-apiserver-image-first.yaml",
        };

        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                _cleanup_(json_decrefp) json_t *j = load_fixture(files[i]);
                _cleanup_free_ char *path = fixture_path(files[i]), *out = NULL, *orig = NULL;
                _cleanup_close_ int fd = -EBADF;
                struct stat st;
                size_t size;

                out = render(j, &size);
                fd = open(path, O_RDONLY | O_CLOEXEC);
                assert_true(fd >= 0);
                assert_int_equal(fstat(fd, &st), 0);
                orig = malloc((size_t)st.st_size + 1);
                assert_non_null(orig);
                assert_int_equal(read(fd, orig, (size_t)st.st_size), st.st_size);
                if ((size_t)st.st_size != size || memcmp(orig, out, size) != 0)
                        fail_msg("%s: rendering differs from the original:\n%s", files[i], out);
        }
}

/* 2. Broken and templated files are refused with the position of the problem. */
static void test_fixtures_refused(void **state) {
        static const struct {
                const char *file;
                const char *position;
        } cases[] = {
                /* libyaml reports where it found the stray key/item (as PyYAML does in its second
                 * mark), and the enclosing mapping (line 2) as context. */
                {"kubeadm-v1.29.2-kube-apiserver-BROKEN-indent.yaml", ":75:2:"},
                {"kubeadm-v1.29.2-kube-controller-manager-BROKEN-indent-trailing-ws.yaml", ":75:1:"},
                /* The first {{ .Image }}: a flow mapping used as a mapping key. */
                {"openshift-TEMPLATE-bootstrap-kube-apiserver-pod-folded.yaml", ":21:13:"},
                {"openshift-TEMPLATE-kube-apiserver-pod.yaml", ":17:15:"},
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *path = fixture_path(cases[i].file), *err = NULL;
                _cleanup_(json_decrefp) json_t *j = NULL;
                int r;

                r = manifest_load(AT_FDCWD, path, &j, &err);
                if (r != -EINVAL || !err || !strstr(err, cases[i].file) || !strstr(err, cases[i].position))
                        fail_msg("%s: got %d \"%s\", expected -EINVAL at %s", cases[i].file, r,
                                 err ?: "(null)", cases[i].position);
                assert_null(j);
        }
}

/* 3. Scalars resolve as go-yaml v2 resolves them for the kubelet. */
static void test_scalar_resolution(void **state) {
        static const struct {
                const char *yaml; /* the text after "v: " */
                const char *json; /* what it must mean */
        } cases[] = {
                {"0644", "420"},
                {"\"0644\"", "\"0644\""},
                {"'0644'", "\"0644\""},
                {"yes", "true"},
                {"Yes", "true"},
                {"YES", "true"},
                {"y", "true"},
                {"on", "true"},
                {"True", "true"},
                {"no", "false"},
                {"N", "false"},
                {"OFF", "false"},
                {"FALSE", "false"},
                {"tRUE", "\"tRUE\""},
                {"'yes'", "\"yes\""},
                {"~", "null"},
                {"", "null"},
                {"null", "null"},
                {"Null", "null"},
                {"NULL", "null"},
                {"nULL", "\"nULL\""},
                {"1.5", "1.5"},
                {"\"*\"", "\"*\""},
                {"0x1F", "31"},
                {"0X1f", "31"},
                {"-0x1F", "-31"},
                {"0o17", "15"},
                {"0b101", "5"},
                {"0b-101", "-5"}, /* go-yaml's binary fallback takes a sign after the prefix */
                {"-12", "-12"},
                {"+12", "12"},
                {"0", "0"},
                {"-0", "0"},
                {"1_000", "1000"},
                {"1_000.5", "1000.5"},
                {"_1", "\"_1\""},
                {"9223372036854775807", "9223372036854775807"},
                {"-9223372036854775808", "-9223372036854775808"},
                /* Only fits uint64 in go-yaml: a float here (jansson has no unsigned). */
                {"9223372036854775808", "9223372036854775808.0"},
                {"99999999999999999999", "1e20"},
                {"0xFFFFFFFFFFFFFFFFFF", "\"0xFFFFFFFFFFFFFFFFFF\""},
                {"08", "8.0"}, /* not octal, but a float by go-yaml's regexp */
                {"0x", "\"0x\""},
                {"1e3", "1000.0"},
                {"1E-2", "0.01"},
                {"1.", "1.0"},
                {".5", "0.5"},
                {"-.5", "-0.5"},
                {".5_0", "0.5"},
                {"._5", "\"._5\""},
                {"1e999", "\"1e999\""}, /* overflow: ParseFloat fails, so a string */
                {"1e-999", "0.0"},      /* underflow is not an error in Go */
                {".Nan", "\".Nan\""},
                {"\"1.34\"", "\"1.34\""},
                {"1.34", "1.34"},
                {"v1.34.2", "\"v1.34.2\""},
                {"3.5.15-0", "\"3.5.15-0\""},
                {"--flag=value", "\"--flag=value\""},
                {"--v=2", "\"--v=2\""},
                {"\"a: b\"", "\"a: b\""},
                {"a:b", "\"a:b\""},
                {"2001-12-14", "\"2001-12-14\""}, /* timestamps stay strings for interface{} */
                {"12:30", "\"12:30\""},           /* no base 60 in go-yaml */
                {"250m", "\"250m\""},
                {"+", "\"+\""},
                {"!!str 0644", "\"0644\""},
                {"!!str yes", "\"yes\""},
                {"!!int \"0644\"", "420"},
                {"!!float 1", "1.0"},
                {"!!bool yes", "true"},
                {"!!null ''", "null"},
                {"! 12", "\"12\""},
                {"|\n  multi\n  line\n", "\"multi\\nline\\n\""},
                {"|-\n  0644\n", "\"0644\""},
                {">\n  folded\n  text\n", "\"folded text\\n\""},
                {"plain   # comment", "\"plain\""},
                {"trailing   ", "\"trailing\""},
                {"\"\\u0436\"", "\"\\u0436\""},
                {"[1, '1', yes]", "[1, \"1\", true]"},
                {"{}", "{}"},
                {"[]", "[]"},
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(json_decrefp) json_t *j = NULL, *want = NULL;
                _cleanup_free_ char *text = strdup_printf("v: %s\n", cases[i].yaml), *err = NULL;
                json_error_t jerr;
                json_t *v;
                int r;

                assert_non_null(text);
                want = json_loads(cases[i].json, JSON_DECODE_ANY, &jerr);
                if (!want)
                        fail_msg("bad expectation %s: %s", cases[i].json, jerr.text);

                r = parse_text(text, &j, &err);
                if (r < 0)
                        fail_msg("v: %s: %d %s", cases[i].yaml, r, err);
                v = json_object_get(j, "v");
                assert_non_null(v);
                /* json_equal() compares types too: 8 and 8.0 differ. */
                if (!json_equal(v, want)) {
                        _cleanup_free_ char *got = json_dumps(v, JSON_ENCODE_ANY);

                        fail_msg("v: %s: got %s, expected %s", cases[i].yaml, got, cases[i].json);
                }

                /* And whatever it resolved to means the same after a rewrite. */
                free(round_trip(j));
        }
}

/* Strings that need quoting keep their value when rendered, as values and as keys. */
static void test_string_round_trip(void **state) {
        static const char *const strings[] = {
                "*",
                "yes",
                "Yes",
                "no",
                "on",
                "off",
                "y",
                "n",
                "0644",
                "a: b",
                "",
                "#x",
                "a #b",
                " lead",
                "trail ",
                "null",
                "Null",
                "~",
                "true",
                "false",
                "1e3",
                "1.5",
                ".5",
                "1_000",
                "0x1F",
                "0o17",
                "0b1",
                "-12",
                "+12",
                "08",
                ".inf",
                "-.inf",
                ".nan",
                "- x",
                "-",
                "--flag=value",
                "--flag=a: b",
                "multi\nline",
                "multi\nline\n",
                "multi\n\nline\n\n",
                "\nleading newline",
                "\n",
                "\n\n",
                "x\n\n",
                " \n",
                "\nx\n",
                "x\xe2\x80\xa8\n",
                "x\r\n\n",
                " lead\nnext",
                "trail \nnext",
                "tab\there",
                "\ttab",
                "crlf\r\n",
                "ж, кириллица",
                "日本語",
                "{x}",
                "[x]",
                "&a",
                "*a",
                "!x",
                "%x",
                "@x",
                "`x",
                "|x",
                ">x",
                "'x",
                "\"x",
                "?x",
                "? x",
                ",x",
                "x,",
                "<<",
                "=",
                "12:30",
                "2001-12-14",
                "---",
                "...",
                "--- x",
                "a\\b",
                "\x01control",
                "\x7f",
                "\xc2\x85nel",
                "\xe2\x80\xa8ls",
                "\xef\xbb\xbf"
                "bom",
                "v1.34.2",
                "3.5.15-0",
                "registry.k8s.io/kube-apiserver:v1.30.0",
                "https://127.0.0.1:2379",
                "Node,RBAC",
                "${service_cidr}",
                "$(POD_IP)",
                "{{.Image}}",
                "a very long flag value "
                "0123456789012345678901234567890123456789012345678901234567890123"
                "45678901234567890123456789012345678901234567890123456789",
        };

        for (size_t i = 0; i < ELEMENTSOF(strings); i++) {
                _cleanup_(json_decrefp)
                        json_t *as_value = json_pack("{ss}", "v", strings[i]),
                               *as_key = json_pack("{si}", strings[i], 1),
                               *nested = json_pack("{s[s{ss}]}", "l", strings[i], strings[i], strings[i]);
                _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL;

                assert_non_null(as_value);
                assert_non_null(as_key);
                assert_non_null(nested);
                a = round_trip(as_value);
                b = round_trip(as_key);
                c = round_trip(nested);
        }

        /* The string with a NUL inside (jansson allows it) too. */
        {
                _cleanup_(json_decrefp) json_t *j = json_object();
                _cleanup_free_ char *out = NULL;

                assert_int_equal(json_object_set_new(j, "v", json_stringn("a\0b", 3)), 0);
                out = round_trip(j);
        }
}

/* What the rendered text looks like: kubectl's choices. */
static void test_render_style(void **state) {
        static const struct {
                const char *json;
                const char *yaml;
        } cases[] = {
                {"{\"v\": \"--flag=value\"}", "v: --flag=value\n"},
                {"{\"v\": \"0644\"}", "v: \"0644\"\n"},
                {"{\"v\": \"yes\"}", "v: \"yes\"\n"},
                {"{\"v\": \"\"}", "v: \"\"\n"},
                {"{\"v\": \"null\"}", "v: \"null\"\n"},
                {"{\"v\": \"1.34\"}", "v: \"1.34\"\n"},
                {"{\"v\": \"*\"}", "v: '*'\n"},
                {"{\"v\": \"a: b\"}", "v: 'a: b'\n"},
                {"{\"v\": \"multi\\nline\"}", "v: |-\n  multi\n  line\n"},
                {"{\"v\": \"\\u0436\"}", "v: \xd0\xb6\n"},
                /* Never folded, however long. */
                {"{\"v\": \"sh -c 'etcdctl --endpoints=https://[127.0.0.1]:2379 "
                 "--cacert=/etc/kubernetes/pki/etcd/ca.crt get foo' and more words to go past 80 columns\"}",
                 "v: sh -c 'etcdctl --endpoints=https://[127.0.0.1]:2379 "
                 "--cacert=/etc/kubernetes/pki/etcd/ca.crt get foo' and more words to go past 80 columns\n"},
                {"{\"v\": \"a: long quoted value, a: long quoted value, a: long quoted value, a: long "
                 "quoted "
                 "value, a: long quoted value\"}",
                 "v: 'a: long quoted value, a: long quoted value, a: long quoted value, a: long quoted "
                 "value, a: long quoted value'\n"},
                {"{\"v\": 420}", "v: 420\n"},
                {"{\"v\": -12}", "v: -12\n"},
                {"{\"v\": 1.0}", "v: 1.0\n"},
                {"{\"v\": 0.1}", "v: 0.1\n"},
                {"{\"v\": 1e20}", "v: 1e+20\n"},
                {"{\"v\": -0.0}", "v: -0.0\n"},
                {"{\"v\": true, \"w\": false, \"x\": null}", "v: true\nw: false\nx: null\n"},
                {"{\"v\": {}, \"w\": []}", "v: {}\nw: []\n"},
                {"{}", "{}\n"},
                {"{\"1\": \"a\", \"true\": \"b\"}", "\"1\": a\n\"true\": b\n"},
                {"{\"s\": {\"c\": [{\"command\": [\"kube-apiserver\", \"--v=2\"], \"name\": \"x\"}]}}",
                 "s:\n  c:\n  - command:\n    - kube-apiserver\n    - --v=2\n    name: x\n"},
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(json_decrefp) json_t *j = json_loads(cases[i].json, 0, NULL);
                _cleanup_free_ char *out = NULL;

                assert_non_null(j);
                out = round_trip(j);
                if (!streq(out, cases[i].yaml))
                        fail_msg("%s: got <<%s>>, expected <<%s>>", cases[i].json, out, cases[i].yaml);
        }

        /* Reals keep every bit. */
        {
                static const double reals[] = {
                        0.1,     1.0 / 3.0,           1e-300, 5e-324, 1.7976931348623157e308,
                        -2.5e-8, 123456789012345678.0};

                for (size_t i = 0; i < ELEMENTSOF(reals); i++) {
                        _cleanup_(json_decrefp) json_t *j = json_pack("{sf}", "v", reals[i]);
                        _cleanup_free_ char *out = NULL;

                        assert_non_null(j);
                        out = round_trip(j);
                }
        }

        /* Only mappings render; manifest_parse() would refuse the rest. */
        {
                _cleanup_(json_decrefp) json_t *a = json_array();
                char *out = NULL;

                assert_int_equal(manifest_render(a, &out, NULL), -EINVAL);
                assert_null(out);
        }
}

/* 4. Key order is the file's order, not sorted. */
static void test_key_order(void **state) {
        _cleanup_(json_decrefp)
                json_t *j = load_fixture("handwritten-v1.30.0-kube-apiserver-image-first.yaml"),
                       *k = NULL;
        _cleanup_free_ char *out = NULL, *out2 = NULL, *err = NULL;
        const char *name, *image, *command;

        out = round_trip(j);
        name = strstr(out, "\n  - name: kube-apiserver\n");
        image = strstr(out, "\n    image: registry.k8s.io/kube-apiserver:v1.30.0\n");
        command = strstr(out, "\n    command:\n    - kube-apiserver\n");
        assert_non_null(name);
        assert_non_null(image);
        assert_non_null(command);
        assert_true(name < image && image < command);
        /* spec: hostNetwork comes before containers in this file. */
        assert_true(strstr(out, "\n  hostNetwork: true\n") < strstr(out, "\n  containers:\n"));

        assert_int_equal(parse_text("zeta: 1\nalpha: 2\nmid:\n  z: 1\n  a: 2\n", &k, &err), 0);
        out2 = round_trip(k);
        assert_string_equal(out2, "zeta: 1\nalpha: 2\nmid:\n  z: 1\n  a: 2\n");
}

/* Keys become JSON keys as sigs.k8s.io/yaml makes them. */
static void test_keys(void **state) {
        _cleanup_(json_decrefp) json_t *j = NULL;
        _cleanup_free_ char *err = NULL, *out = NULL;

        assert_int_equal(parse_text("1: a\nyes: b\n0x10: c\n'0x10': d\n\"x y\": e\n", &j, &err), 0);
        assert_string_equal(json_string_value(json_object_get(j, "1")), "a");
        assert_string_equal(json_string_value(json_object_get(j, "true")), "b");
        assert_string_equal(json_string_value(json_object_get(j, "16")), "c");
        assert_string_equal(json_string_value(json_object_get(j, "0x10")), "d");
        assert_string_equal(json_string_value(json_object_get(j, "x y")), "e");
        out = round_trip(j);
        assert_non_null(strstr(out, "\"1\": a\n\"true\": b\n\"16\": c\n\"0x10\": d\nx y: e\n"));

        /* 16 and 0x10 are one key to the kubelet. */
        assert_refused("16: a\n0x10: b\n", 13, -EINVAL, ":2:1: duplicate key");
}

/* 5. Refusals, each with the position of the problem. */
static void test_refusals(void **state) {
        static const struct {
                const char *yaml;
                const char *needle;
        } cases[] = {
                {"a: 1\na: 2\n", ":2:1: duplicate key \"a\""},
                {"a:\n  b: 1\n  c: 2\n  b: 3\n", ":4:3: duplicate key \"b\""},
                {"a: &x 1\nb: 2\n", ":1:4: YAML anchors and aliases are not supported"},
                {"a: 1\nb: *x\n", ":2:4: YAML anchors and aliases are not supported"},
                {"a: &x [1]\nb: *x\n", ":1:4: YAML anchors"},
                {"a: {}\n*x : 1\n", ":2:1: YAML anchors"},
                {"a: 1\n---\nb: 2\n", ":2:1: more than one YAML document"},
                {"---\na: 1\n...\n---\nb: 2\n", ":4:1: more than one YAML document"},
                {"- a\n- b\n", ":1:1: the top level must be a mapping"},
                {"just a string\n", ":1:1: the top level must be a mapping"},
                {"---\n", ":2:1: the top level must be a mapping"},
                {"", ":1:1: empty document"},
                {"\n\n# only a comment\n", ":4:1: empty document"},
                {"a: !!binary aGVsbG8=\n", ":1:4: unsupported tag \"!!binary\""},
                {"a: !foo bar\n", ":1:4: unsupported tag \"!foo\""},
                {"a: !!timestamp 2001-12-14\n", ":1:4: unsupported tag"},
                {"a: !!map {}\nb: !!seq {}\n", ":2:4: unsupported tag \"!!seq\""},
                {"a: !!int abc\n", ":1:4: \"abc\" is not a valid !!int"},
                {"a: !!bool 1\n", ":1:4: \"1\" is not a valid !!bool"},
                {"a: !!null x\n", ":1:4:"},
                {"a:\n  {x: 1}: 2\n", ":2:3: mapping keys must be scalars"},
                {"a:\n  image: {{.Image}}\n", ":2:11: mapping keys must be scalars"},
                {"? [a, b]\n: 1\n", ":1:3: mapping keys must be scalars"},
                {"<<: {a: 1}\n", ":1:1: YAML merge keys"},
                {"1.5: x\n", ":1:1: mapping key \"1.5\" is not read as a string"},
                {"~: x\n", ":1:1:"},
                {"a: .inf\n", ":1:4: \".inf\" cannot be represented in JSON"},
                {"a: [-.Inf]\n", ":1:5:"},
                {"a: .NaN\n", ":1:4:"},
                {"a: !!float .nan\n", ":1:4:"},
                {"a: b\n c: d\n", ":2:3: mapping values are not allowed"},
                {"a:\n\tb: 1\n", ":2:1:"},
                {"a: \"unterminated\n", ":2:1:"},
                {"a: \xff\n", ":1:4:"},
                {"a: b\x01\n", ":1:5:"},
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                assert_refused(cases[i].yaml, strlen(cases[i].yaml), -EINVAL, cases[i].needle);
}

static void test_size_and_depth_limits(void **state) {
        _cleanup_free_ char *big = NULL, *deep = NULL, *ok = NULL, *deep_json = NULL;
        _cleanup_(json_decrefp) json_t *j = NULL;
        _cleanup_free_ char *err = NULL, *out = NULL;
        size_t n;

        /* A valid document one byte over the limit: refused for its size alone. */
        big = malloc(MANIFEST_SIZE_MAX + 2);
        assert_non_null(big);
        memset(big, ' ', MANIFEST_SIZE_MAX + 1);
        memcpy(big, "a: b", 4);
        big[MANIFEST_SIZE_MAX] = '\n';
        big[MANIFEST_SIZE_MAX + 1] = 0;
        assert_refused(big, MANIFEST_SIZE_MAX + 1, -E2BIG, "1048576");
        /* Exactly at the limit is fine. */
        assert_int_equal(manifest_parse(big, MANIFEST_SIZE_MAX, "test.yaml", &j, &err), 0);
        json_decref(j);
        j = NULL;

        /* The top-level mapping is level 1: 63 nested lists reach the limit, 64 go over it. */
        n = MANIFEST_DEPTH_MAX;
        ok = malloc(2 * n + 8);
        deep = malloc(2 * n + 8);
        assert_non_null(ok);
        assert_non_null(deep);
        strcpy(ok, "a: ");
        strcpy(deep, "a: ");
        for (size_t i = 0; i < n - 1; i++)
                strcat(ok, "[");
        for (size_t i = 0; i < n - 1; i++)
                strcat(ok, "]");
        for (size_t i = 0; i < n; i++)
                strcat(deep, "[");
        for (size_t i = 0; i < n; i++)
                strcat(deep, "]");
        assert_int_equal(parse_text(ok, &j, &err), 0);
        out = round_trip(j);
        /* The 64th '[' is column 3 + 64. */
        assert_refused(deep, strlen(deep), -EINVAL, ":1:67: nesting deeper than 64 levels");

        /* Block style: one mapping per line. */
        {
                _cleanup_free_ char *block = malloc((n + 1) * (2 * n + 8));
                char *p = block;

                assert_non_null(block);
                for (size_t i = 0; i < n + 1; i++) {
                        memset(p, ' ', 2 * i);
                        p += 2 * i;
                        p = stpcpy(p, "k:\n");
                }
                /* The mapping that goes over the limit is the value of the 64th "k", on line 65. */
                assert_refused(block, strlen(block), -EINVAL, ":65:");
        }

        /* JSON: the same limit, with a position. */
        deep_json = malloc(2 * n + 16);
        assert_non_null(deep_json);
        strcpy(deep_json, "{\"a\": ");
        for (size_t i = 0; i < n; i++)
                strcat(deep_json, "[");
        for (size_t i = 0; i < n; i++)
                strcat(deep_json, "]");
        strcat(deep_json, "}");
        assert_refused(deep_json, strlen(deep_json), -EINVAL, ":1:70: nesting deeper than 64 levels");

        /* Rendering refuses what parsing would refuse. */
        {
                _cleanup_(json_decrefp) json_t *root = json_object();
                json_t *cur = root;
                char *o = NULL;

                for (size_t i = 0; i < n; i++) {
                        json_t *next = json_object();

                        assert_int_equal(json_object_set_new(cur, "k", next), 0);
                        cur = next;
                }
                assert_int_equal(manifest_render(root, &o, NULL), -EINVAL);
                assert_null(o);
        }
}

/* 6. JSON input. */
static void test_json(void **state) {
        static const char json_text[] =
                "\n  {\n"
                "  \"apiVersion\": \"v1\",\n"
                "  \"kind\": \"Pod\",\n"
                "  \"metadata\": {\"name\": \"kube-apiserver\", \"annotations\": {\"mode\": \"0644\", "
                "\"x\": \"\"}},\n"
                "  \"spec\": {\n"
                "    \"containers\": [{\"name\": \"kube-apiserver\", \"command\": [\"kube-apiserver\", "
                "\"--v=2\"],\n"
                "                    \"resources\": {}, \"ports\": [{\"containerPort\": 6443}]}],\n"
                "    \"hostNetwork\": true, \"priority\": 2000001000, \"ratio\": 1.5, \"nothing\": null,\n"
                "    \"tolerations\": []\n"
                "  }\n"
                "}\n";
        static const char yaml_text[] = "apiVersion: v1\n"
                                        "kind: Pod\n"
                                        "metadata:\n"
                                        "  name: kube-apiserver\n"
                                        "  annotations:\n"
                                        "    mode: \"0644\"\n"
                                        "    x: \"\"\n"
                                        "spec:\n"
                                        "  containers:\n"
                                        "  - name: kube-apiserver\n"
                                        "    command: [kube-apiserver, --v=2]\n"
                                        "    resources: {}\n"
                                        "    ports:\n"
                                        "    - containerPort: 6443\n"
                                        "  hostNetwork: yes\n"
                                        "  priority: 2_000_001_000\n"
                                        "  ratio: 1.5\n"
                                        "  nothing:\n"
                                        "  tolerations: []\n";
        _cleanup_(json_decrefp) json_t *from_json = NULL, *from_yaml = NULL;
        _cleanup_free_ char *err = NULL, *out = NULL;

        assert_int_equal(parse_text(json_text, &from_json, &err), 0);
        assert_int_equal(parse_text(yaml_text, &from_yaml, &err), 0);
        assert_true(json_equal(from_json, from_yaml));
        out = round_trip(from_json);

        assert_refused("{\n  \"a\": 1,\n  \"b\": \n}\n", 22, -EINVAL, ":4:1:");
        assert_refused("{\"a\": 1,\n \"a\": 2}\n", 18, -EINVAL, ":2:");
        assert_refused("{\"a\": 1} {}", 11, -EINVAL, ":1:");
        assert_refused("{\"a\": 1e999}", 12, -EINVAL, ":1:");
        assert_refused("{\"a\": 99999999999999999999}", 27, -EINVAL, ":1:");
}

/* 7. Files. */
static void test_load(void **state) {
        char dir[] = "/tmp/test-manifest-XXXXXX";
        _cleanup_free_ char *file = NULL, *link = NULL, *sub = NULL, *big = NULL, *fifo = NULL,
                            *missing = NULL;
        _cleanup_close_ int dfd = -EBADF;
        static const char pod[] = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n";

        assert_non_null(mkdtemp(dir));
        file = strdup_printf("%s/pod.yaml", dir);
        link = strdup_printf("%s/link.yaml", dir);
        sub = strdup_printf("%s/dir.yaml", dir);
        big = strdup_printf("%s/big.yaml", dir);
        fifo = strdup_printf("%s/fifo.yaml", dir);
        missing = strdup_printf("%s/missing.yaml", dir);
        assert_true(file && link && sub && big && fifo && missing);

        {
                _cleanup_close_ int fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

                assert_true(fd >= 0);
                assert_int_equal(write(fd, pod, sizeof(pod) - 1), sizeof(pod) - 1);
        }
        {
                _cleanup_close_ int fd = open(big, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
                _cleanup_free_ char *buf = malloc(MANIFEST_SIZE_MAX + 1);

                assert_true(fd >= 0);
                assert_non_null(buf);
                memset(buf, '\n', MANIFEST_SIZE_MAX + 1);
                memcpy(buf, "a: b", 4);
                assert_int_equal(write(fd, buf, MANIFEST_SIZE_MAX + 1), MANIFEST_SIZE_MAX + 1);
        }
        assert_int_equal(symlink("pod.yaml", link), 0);
        assert_int_equal(mkdir(sub, 0700), 0);
        assert_int_equal(mkfifo(fifo, 0600), 0);

        /* A regular file, by path and relative to a directory fd. */
        {
                _cleanup_(json_decrefp) json_t *j = NULL, *k = NULL;
                _cleanup_free_ char *err = NULL;

                assert_int_equal(manifest_load(AT_FDCWD, file, &j, &err), 0);
                assert_string_equal(
                        json_string_value(json_object_get(json_object_get(j, "metadata"), "name")), "x");
                dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                assert_true(dfd >= 0);
                assert_int_equal(manifest_load(dfd, "pod.yaml", &k, &err), 0);
                assert_true(json_equal(j, k));
        }

        const struct {
                const char *path;
                int want;
                const char *needle;
        } cases[] = {
                {link, -ELOOP, "is a symbolic link; refusing to follow it"},
                /* Invalid input (exit 2), not a failed operation. */
                {sub, -EINVAL, "not a regular file (a directory)"},
                {fifo, -EINVAL, "not a regular file (a FIFO)"}, /* and without hanging in open() */
                {big, -E2BIG, "1048576"},
                {missing, -ENOENT, "No such file"},
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(json_decrefp) json_t *j = NULL;
                _cleanup_free_ char *err = NULL;
                int r;

                r = manifest_load(AT_FDCWD, cases[i].path, &j, &err);
                if (r != cases[i].want || !err || !strstr(err, cases[i].path) ||
                    !strstr(err, cases[i].needle))
                        fail_msg("%s: got %d \"%s\", expected %d and \"%s\"", cases[i].path, r,
                                 err ?: "(null)", cases[i].want, cases[i].needle);
                assert_null(j);
        }

        /* Errors in a file's contents name the file. */
        {
                _cleanup_close_ int fd = open(file, O_WRONLY | O_TRUNC | O_CLOEXEC);
                _cleanup_(json_decrefp) json_t *j = NULL;
                _cleanup_free_ char *err = NULL, *want = strdup_printf("%s:2:1: duplicate key", file);

                assert_true(fd >= 0);
                assert_int_equal(write(fd, "a: 1\na: 2\n", 10), 10);
                assert_int_equal(manifest_load(AT_FDCWD, file, &j, &err), -EINVAL);
                assert_non_null(strstr(err, want));
        }

        assert_int_equal(unlink(file), 0);
        assert_int_equal(unlink(link), 0);
        assert_int_equal(unlink(big), 0);
        assert_int_equal(unlink(fifo), 0);
        assert_int_equal(rmdir(sub), 0);
        assert_int_equal(rmdir(dir), 0);
}

static json_t *container_command(json_t *pod, size_t container) {
        json_t *c = json_array_get(json_object_get(json_object_get(pod, "spec"), "containers"), container);
        json_t *cmd = json_object_get(c, "command");

        assert_true(json_is_array(cmd));
        return cmd;
}

static bool array_has_string(json_t *a, const char *s) {
        size_t i;
        json_t *v;

        json_array_foreach (a, i, v)
                if (json_is_string(v) && streq(json_string_value(v), s))
                        return true;
        return false;
}

/* 8. Multi-line scalars and comments. */
static void test_scalars_in_fixtures(void **state) {
        /* A plain scalar over three lines folds into one line. */
        {
                _cleanup_(json_decrefp) json_t *j = load_fixture("kubeadm-v1.14.0-etcd-exec-probe.yaml");
                _cleanup_free_ char *out = NULL;
                json_t *c = json_array_get(json_object_get(json_object_get(j, "spec"), "containers"), 0);
                json_t *cmd = json_object_get(json_object_get(json_object_get(c, "livenessProbe"), "exec"),
                                              "command");

                assert_int_equal(json_array_size(cmd), 3);
                assert_string_equal(json_string_value(json_array_get(cmd, 1)), "-ec");
                assert_string_equal(json_string_value(json_array_get(cmd, 2)),
                                    "ETCDCTL_API=3 etcdctl --endpoints=https://[127.0.0.1]:2379 "
                                    "--cacert=/etc/kubernetes/pki/etcd/ca.crt "
                                    "--cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt "
                                    "--key=/etc/kubernetes/pki/etcd/healthcheck-client.key get foo");
                assert_true(array_has_string(container_command(j, 0), "--snapshot-count=10000"));
                /* and is written back on one line */
                out = round_trip(j);
                assert_non_null(
                        strstr(out, "\n        - ETCDCTL_API=3 etcdctl --endpoints=https://[127.0.0.1]:2379 "
                                    "--cacert=/etc/kubernetes/pki/etcd/ca.crt "
                                    "--cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt "
                                    "--key=/etc/kubernetes/pki/etcd/healthcheck-client.key get foo\n"));
        }

        /* End-of-line comments are not part of the value before them. */
        {
                _cleanup_(json_decrefp) json_t *j =
                        load_fixture("kubeadm-v1.28.1-kube-apiserver-inline-comments.yaml");
                _cleanup_free_ char *dump = NULL;
                json_t *cmd = container_command(j, 0);

                assert_true(array_has_string(cmd, "--audit-log-maxsize=5"));
                assert_true(array_has_string(cmd, "--audit-policy-file=/etc/kubernetes/audit/policy.yaml"));
                dump = json_dumps(j, JSON_COMPACT);
                assert_non_null(dump);
                assert_null(strstr(dump, "#"));
                assert_null(strstr(dump, "audit logging"));
                assert_null(strstr(dump, " \"")); /* no value ends in a blank */
        }
        {
                _cleanup_(json_decrefp) json_t *j =
                        load_fixture("minikube-v1.34.0-kube-apiserver-mirrorpod-comments.yaml");
                _cleanup_free_ char *dump = NULL;

                assert_true(array_has_string(container_command(j, 0),
                                             "--audit-policy-file=/etc/kubernetes/audit-policy.yaml"));
                dump = json_dumps(j, JSON_COMPACT);
                assert_non_null(dump);
                assert_null(strstr(dump, " \""));
                assert_null(strstr(dump, "\u0430\u0443\u0434\u0438\u0442")); /* "аудит" */
                assert_null(strstr(dump, "#"));
                assert_non_null(strstr(dump, "\"type\":\"File\""));
        }

        /* Plain scalars end at the last non-space: the trailing blanks of this flag are not in it. */
        {
                _cleanup_(json_decrefp) json_t *j =
                        load_fixture("kubeadm-v1.30.14-kube-apiserver-audit-encryption.yaml");
                json_t *cmd = container_command(j, 0);

                assert_true(array_has_string(
                        cmd, "--encryption-provider-config=/etc/kubernetes/encryption-config.yaml"));
                assert_false(array_has_string(
                        cmd, "--encryption-provider-config=/etc/kubernetes/encryption-config.yaml  "));
        }

        /* Folded and literal block scalars as the openshift templates use them (without the Go
         * template placeholders that make those files unparsable). */
        {
                static const char text[] = "spec:\n"
                                           "  containers:\n"
                                           "  - command: [ \"/bin/bash\", \"-ec\" ]\n"
                                           "    args:\n"
                                           "    - >\n"
                                           "      hyperkube kube-apiserver\n"
                                           "      --openshift-config=/etc/kubernetes/config.yaml\n"
                                           "      --v=2\n"
                                           "    - |\n"
                                           "      echo one\n"
                                           "        indented\n"
                                           "      echo two # not a comment\n";
                _cleanup_(json_decrefp) json_t *j = NULL;
                _cleanup_free_ char *err = NULL, *out = NULL;
                json_t *c;

                assert_int_equal(parse_text(text, &j, &err), 0);
                c = json_array_get(json_object_get(json_object_get(j, "spec"), "containers"), 0);
                assert_string_equal(json_string_value(json_array_get(json_object_get(c, "command"), 0)),
                                    "/bin/bash");
                assert_string_equal(
                        json_string_value(json_array_get(json_object_get(c, "args"), 0)),
                        "hyperkube kube-apiserver --openshift-config=/etc/kubernetes/config.yaml --v=2\n");
                assert_string_equal(json_string_value(json_array_get(json_object_get(c, "args"), 1)),
                                    "echo one\n  indented\necho two # not a comment\n");
                out = round_trip(j);
                /* The script stays readable. */
                assert_non_null(strstr(out, "    - |\n      echo one\n        indented\n"));
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_fixtures_round_trip),
                cmocka_unit_test(test_fixtures_byte_identical),
                cmocka_unit_test(test_fixtures_refused),
                cmocka_unit_test(test_scalar_resolution),
                cmocka_unit_test(test_string_round_trip),
                cmocka_unit_test(test_render_style),
                cmocka_unit_test(test_key_order),
                cmocka_unit_test(test_keys),
                cmocka_unit_test(test_refusals),
                cmocka_unit_test(test_size_and_depth_limits),
                cmocka_unit_test(test_json),
                cmocka_unit_test(test_load),
                cmocka_unit_test(test_scalars_in_fixtures),
        };

        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
