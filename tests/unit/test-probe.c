/* SPDX-License-Identifier: Apache-2.0 */
/* Probes as a kubelet reads them from a manifest, processes found in /proc, and the HTTP client on
 * sd-event against local servers (python3; HTTPS with a throw-away certificate). */

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "test-process.h"
#include "test-util.h"
#include "macro.h"
#include "manifest.h"
#include "probe.h"

/* ------------------------------------------------------------------------------------------ */
/* helpers */

static json_t *load_container(const char *fixture) {
        const char *dir = getenv("CPLET_FIXTURES_DIR");
        _cleanup_free_ char *path = NULL, *err = NULL;
        _cleanup_(json_decrefp) json_t *pod = NULL;
        json_t *c;

        if (!dir)
                fail_msg("CPLET_FIXTURES_DIR is not set (run under meson test)");
        path = strdup_printf("%s/%s", dir, fixture);
        if (manifest_load(AT_FDCWD, path, &pod, &err) < 0)
                fail_msg("%s: %s", fixture, err ?: "?");
        c = json_array_get(json_object_get(json_object_get(pod, "spec"), "containers"), 0);
        assert_non_null(c);
        return json_incref(c);
}

static json_t *parse_container(const char *text) {
        json_error_t e;
        json_t *j = json_loads(text, 0, &e);

        if (!j)
                fail_msg("bad test JSON: %s: %s", e.text, text);
        return j;
}

static void assert_probe(const http_probe *p, const char *url) {
        _cleanup_free_ char *u = http_probe_url(p);

        assert_non_null(u);
        assert_string_equal(u, url);
}

static char *make_temp_dir(void) {
        char tmpl[] = "/tmp/cplet-test-probe-XXXXXX";

        assert_non_null(mkdtemp(tmpl));
        return strdup(tmpl);
}


/* ------------------------------------------------------------------------------------------ */
/* probes_from_container */

static const struct cplet_health_endpoint test_endpoints[] = {
        { .scheme = "HTTPS", .port = 2381, .path = "/health" },
        { .scheme = "HTTP", .port = 2382, .path = "readyz" },
};

static const plugin test_plugin = {
        .name = "etcd-test",
        .health_endpoints = test_endpoints,
        .n_health_endpoints = ELEMENTSOF(test_endpoints),
};

static void test_probes_kubeadm(void **state) {
        _cleanup_(json_decrefp) json_t *c = load_container("kubeadm-v1.30.14-kube-apiserver.yaml");
        http_probe *p = NULL;
        size_t n = 0;

        assert_int_equal(probes_from_container(c, &test_plugin, &p, &n, NULL), 0);
        assert_int_equal(n, 2);
        assert_string_equal(p[0].scheme, "HTTPS");
        assert_string_equal(p[0].host, "10.0.1.171");
        assert_int_equal(p[0].port, 6443);
        assert_string_equal(p[0].path, "/livez");
        assert_probe(&p[0], "https://10.0.1.171:6443/livez");
        assert_probe(&p[1], "https://10.0.1.171:6443/readyz");
        http_probes_free(p, n);
}

static void test_probes_named_port(void **state) {
        _cleanup_(json_decrefp) json_t *c = load_container("minikube-v1.34.0-kube-apiserver-mirrorpod-comments.yaml");
        http_probe *p = NULL;
        size_t n = 0;

        assert_int_equal(probes_from_container(c, &test_plugin, &p, &n, NULL), 0);
        assert_int_equal(n, 2);
        assert_probe(&p[0], "https://192.168.49.2:8443/livez");
        assert_probe(&p[1], "https://192.168.49.2:8443/readyz");
        http_probes_free(p, n);
}

static void test_probes_exec_falls_back_to_plugin(void **state) {
        _cleanup_(json_decrefp) json_t *c = load_container("kubeadm-v1.14.0-etcd-exec-probe.yaml");
        _cleanup_free_ char *err = NULL;
        http_probe *p = NULL;
        size_t n = 0;

        assert_non_null(json_object_get(json_object_get(c, "livenessProbe"), "exec"));
        assert_int_equal(probes_from_container(c, &test_plugin, &p, &n, NULL), 0);
        assert_int_equal(n, 2);
        assert_probe(&p[0], "https://127.0.0.1:2381/health");
        assert_probe(&p[1], "http://127.0.0.1:2382/readyz");
        http_probes_free(p, n);

        /* Nothing to gate on at all is an error, not an empty list that passes. */
        p = NULL;
        n = 77;
        assert_int_equal(probes_from_container(c, NULL, &p, &n, &err), -ENOENT);
        assert_null(p);
        assert_int_equal(n, 77);
        assert_non_null(strstr(err, "no httpGet probe"));
}

static void test_probes_defaults(void **state) {
        /* No host (the kubelet's pod IP: the node for a hostNetwork static pod), no scheme, no path;
         * a relative path with a query as OpenShift writes it; liveness when readiness is exec. */
        _cleanup_(json_decrefp) json_t *c = parse_container(
                "{\"ports\": [{\"name\": \"web\", \"containerPort\": 8080}],"
                " \"startupProbe\": {\"httpGet\": {\"port\": 6443, \"path\": \"livez?exclude=etcd\","
                "                                  \"scheme\": \"https\"}},"
                " \"readinessProbe\": {\"exec\": {\"command\": [\"true\"]}},"
                " \"livenessProbe\": {\"httpGet\": {\"port\": \"web\"}}}");
        _cleanup_(json_decrefp) json_t *only_liveness = parse_container(
                "{\"livenessProbe\": {\"httpGet\": {\"host\": \"\", \"port\": 10257, \"path\": \"/healthz\","
                "                                   \"scheme\": \"HTTPS\"}},"
                " \"startupProbe\": {\"httpGet\": {\"port\": 10257, \"path\": \"/healthz\","
                "                                  \"scheme\": \"HTTPS\"}}}");
        _cleanup_(json_decrefp) json_t *v6 = parse_container(
                "{\"readinessProbe\": {\"httpGet\": {\"host\": \"fd00::10\", \"port\": 6443, \"path\": \"/readyz\","
                "                                    \"scheme\": \"HTTPS\"}},"
                " \"livenessProbe\": {\"httpGet\": {\"port\": 6443, \"path\": \"/livez\"}}}");
        http_probe *p = NULL;
        size_t n = 0;

        assert_int_equal(probes_from_container(c, &test_plugin, &p, &n, NULL), 0);
        assert_int_equal(n, 2);
        assert_string_equal(p[0].scheme, "HTTPS");
        assert_string_equal(p[0].path, "/livez?exclude=etcd");
        assert_probe(&p[0], "https://127.0.0.1:6443/livez?exclude=etcd");
        assert_string_equal(p[1].scheme, "HTTP");
        assert_string_equal(p[1].host, "127.0.0.1");
        assert_probe(&p[1], "http://127.0.0.1:8080/");
        http_probes_free(p, n);

        /* The same endpoint twice is probed once. */
        assert_int_equal(probes_from_container(only_liveness, &test_plugin, &p, &n, NULL), 0);
        assert_int_equal(n, 1);
        assert_probe(&p[0], "https://127.0.0.1:10257/healthz");
        http_probes_free(p, n);

        /* Readiness wins over liveness; IPv6 literals are bracketed. */
        assert_int_equal(probes_from_container(v6, &test_plugin, &p, &n, NULL), 0);
        assert_int_equal(n, 1);
        assert_probe(&p[0], "https://[fd00::10]:6443/readyz");
        http_probes_free(p, n);
}

static void assert_probe_error(const char *json, int want, const char *message) {
        _cleanup_(json_decrefp) json_t *c = parse_container(json);
        _cleanup_free_ char *err = NULL;
        http_probe *p = (http_probe *) 0x1;
        size_t n = 77;
        int r;

        r = probes_from_container(c, &test_plugin, &p, &n, &err);
        if (r != want || !err || !streq(err, message))
                fail_msg("%s: got %d \"%s\", expected %d \"%s\"", json, r, err ?: "(null)", want, message);
        /* Outputs untouched on failure. */
        assert_ptr_equal(p, (http_probe *) 0x1);
        assert_int_equal(n, 77);
}

static void test_probes_errors(void **state) {
        assert_probe_error("{\"ports\": [{\"name\": \"other\", \"containerPort\": 1}],"
                           " \"readinessProbe\": {\"httpGet\": {\"port\": \"probe-port\", \"path\": \"/readyz\"}}}",
                           -EINVAL, "readinessProbe: port \"probe-port\" is not a port of the container");
        assert_probe_error("{\"readinessProbe\": {\"httpGet\": {\"port\": 6443, \"path\": \"/readyz\"}},"
                           " \"livenessProbe\": {\"httpGet\": {\"port\": 70000}}}",
                           -ERANGE, "livenessProbe: port 70000 is out of range 1..65535");
        assert_probe_error("{\"startupProbe\": {\"httpGet\": {\"port\": 0}}}", -ERANGE,
                           "startupProbe: port 0 is out of range 1..65535");
        assert_probe_error("{\"startupProbe\": {\"httpGet\": {\"path\": \"/livez\"}}}", -EINVAL,
                           "startupProbe: httpGet has no port");
        assert_probe_error("{\"readinessProbe\": {\"httpGet\": {\"port\": 1, \"scheme\": \"FTP\"}}}", -EINVAL,
                           "readinessProbe: scheme \"FTP\" is neither HTTP nor HTTPS");
        assert_probe_error("{\"readinessProbe\": {\"httpGet\": {\"port\": 1, \"host\": \"a@b\"}}}", -EINVAL,
                           "readinessProbe: host \"a@b\" is not a host name or IP address");
        assert_probe_error("{\"readinessProbe\": {\"httpGet\": {\"port\": 1, \"path\": \"/a b\"}}}", -EINVAL,
                           "readinessProbe: path \"/a b\" contains characters a URL cannot carry");
        assert_probe_error("{\"ports\": [{\"name\": \"p\"}],"
                           " \"livenessProbe\": {\"httpGet\": {\"port\": \"p\"}}}",
                           -EINVAL, "livenessProbe: port \"p\" has no numeric containerPort");
        assert_probe_error("{\"livenessProbe\": {\"httpGet\": {\"port\": true}}}", -EINVAL,
                           "livenessProbe: port is neither a number nor a port name");
        assert_probe_error("{\"livenessProbe\": [1]}", -EINVAL, "livenessProbe: not a mapping");
}

/* ------------------------------------------------------------------------------------------ */
/* /proc */

static void test_boot_ticks(void **state) {
        char buf[4096];
        unsigned long long start = 0;
        _cleanup_fclose_ FILE *f = fopen("/proc/self/stat", "re");
        const char *p;
        uint64_t a, b;

        assert_non_null(f);
        assert_non_null(fgets(buf, sizeof(buf), f));
        p = strrchr(buf, ')');
        assert_non_null(p);
        /* Fields 3..22 after ')': skip 19 to reach starttime. */
        p += 2;
        for (int i = 0; i < 19; i++) {
                p = strchr(p, ' ');
                assert_non_null(p);
                p++;
        }
        start = strtoull(p, NULL, 10);
        a = boot_ticks_now();
        b = boot_ticks_now();
        assert_true(a >= start);
        assert_true(b >= a);
        /* Our process started within the last minute. */
        assert_true(a - start < 60 * (uint64_t) sysconf(_SC_CLK_TCK));
}

/* Polls /proc until the child shows up with that command line (exec takes a moment). */
static proc_info wait_for_process(char *const *argv, size_t n, uint64_t not_before, pid_t pid) {
        uint64_t deadline = now_ms() + 10000;
        proc_info p = {};
        int r;

        for (;;) {
                r = proc_find(argv, n, geteuid(), not_before, &p);
                assert_true(r >= 0);
                if (r == 1 && p.pid == pid)
                        return p;
                if (now_ms() > deadline)
                        fail_msg("process %d (%s ...) not found in /proc (r=%d pid=%d)", (int) pid, argv[0], r,
                                 (int) p.pid);
                usleep(5000);
        }
}

static void test_proc_find_sleep(void **state) {
        char arg[32], weird[] = "a) b (c";
        _cleanup_free_ char *dir = make_temp_dir(), *link = NULL;
        uint64_t before;
        proc_info p, q, other;
        siginfo_t si = {};
        pid_t pid;

        /* The pid makes the command line ours even when other test runs go on in parallel. */
        snprintf(arg, sizeof(arg), "7.%d", (int) getpid());
        {
                char *child[] = { "/bin/sleep", arg, NULL };
                char *want[] = { "/bin/sleep", arg };
                char *longer[] = { "/bin/sleep", arg, "x" };
                char *renamed[] = { "/bin/sleep2", arg };
                char *base[] = { "sleep", arg };

                before = boot_ticks_now();
                pid = spawn(child, -1);
                p = wait_for_process(want, 2, before, pid);
                assert_true(p.start_ticks >= before);
                assert_true(p.start_ticks <= boot_ticks_now());
                assert_true(proc_alive(&p));

                /* A process that started before the swap does not count. */
                q = (proc_info){ .pid = -1 };
                assert_int_equal(proc_find(want, 2, geteuid(), boot_ticks_now() + 1000, &q), 0);
                assert_int_equal(q.pid, -1);
                assert_int_equal(proc_find(longer, 3, geteuid(), before, &q), 0);
                assert_int_equal(proc_find(renamed, 2, geteuid(), before, &q), 0);
                /* argv[0] is compared as the runtime passes it: "sleep" is not "/bin/sleep". */
                assert_int_equal(proc_find(base, 2, geteuid(), before, &q), 0);
                /* Another user's process is not the one the kubelet started as this uid. */
                assert_int_equal(proc_find(want, 2, geteuid() + 1, before, &q), 0);
                assert_int_equal(q.pid, -1);
                assert_int_equal(proc_find(want, 0, geteuid(), before, &q), -EINVAL);

                /* Same pid, other start time: another process. */
                other = p;
                other.start_ticks++;
                assert_false(proc_alive(&other));

                /* Killed but not yet reaped: a zombie is not alive and not found. */
                assert_int_equal(kill(pid, SIGKILL), 0);
                assert_int_equal(waitid(P_PID, pid, &si, WEXITED | WNOWAIT), 0);
                assert_false(proc_alive(&p));
                assert_int_equal(proc_find(want, 2, geteuid(), before, &q), 0);
                assert_int_equal(waitpid(pid, NULL, 0), pid);
                assert_false(proc_alive(&p));
        }

        /* comm with spaces and parentheses: /proc/PID/stat is parsed from the last ')'. */
        link = strdup_printf("%s/%s", dir, weird);
        assert_int_equal(symlink("/bin/sleep", link), 0);
        snprintf(arg, sizeof(arg), "6.%d", (int) getpid());
        {
                char *child[] = { link, arg, NULL };
                char *want[] = { link, arg };

                before = boot_ticks_now();
                pid = spawn(child, -1);
                p = wait_for_process(want, 2, before, pid);
                assert_true(proc_alive(&p));
                kill_and_reap(pid);
                assert_false(proc_alive(&p));
        }
        rm_rf(dir);
}

static bool cmdline_of(pid_t pid, char *buf, size_t size, size_t *ret_n) {
        _cleanup_free_ char *path = strdup_printf("/proc/%d/cmdline", (int) pid);
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n;

        if (fd < 0)
                return false;
        n = read(fd, buf, size - 1);
        if (n <= 0)
                return false;
        buf[n] = 0;
        *ret_n = (size_t) n;
        return true;
}

static void test_proc_find_script(void **state) {
        _cleanup_free_ char *dir = make_temp_dir(), *script = NULL;
        char id[32], id2[40], buf[4096];
        uint64_t before, deadline;
        proc_info q;
        size_t n;
        pid_t pid;

        script = strdup_printf("%s/kube-fake", dir);
        {
                _cleanup_fclose_ FILE *f = fopen(script, "we");

                assert_non_null(f);
                fputs("#!/usr/bin/env python3\nimport time\ntime.sleep(5)\n", f);
        }
        assert_int_equal(chmod(script, 0755), 0);
        snprintf(id, sizeof(id), "--x=%d", (int) getpid());
        snprintf(id2, sizeof(id2), "--x=%d-2", (int) getpid());

        char *child[] = { script, id, NULL };
        char *want[] = { "kube-fake", id };
        char *want_full[] = { "/usr/local/bin/kube-fake", id };
        char *want_exact[] = { script, id };
        char *wrong[] = { "kube-fake", id2 };

        before = boot_ticks_now();
        pid = spawn(child, -1);

        /* Once the interpreter runs, the command line is "python3 SCRIPT --x=ID". */
        deadline = now_ms() + 10000;
        for (;;) {
                const char *second;

                if (cmdline_of(pid, buf, sizeof(buf), &n) && n > strlen(buf) + 1) {
                        const char *b = strrchr(buf, '/') ? strrchr(buf, '/') + 1 : buf;

                        second = buf + strlen(buf) + 1;
                        if (startswith(b, "python") && streq(second, script))
                                break;
                }
                if (now_ms() > deadline)
                        fail_msg("the script never ran under python3");
                usleep(5000);
        }
        /* A real kubelet runs command + args with nothing in front: an interpreter in front of
         * the component's argv is some local process posing as it, not the component. */
        q = (proc_info){ .pid = -1 };
        assert_int_equal(proc_find(want, 2, geteuid(), before, &q), 0);
        assert_int_equal(proc_find(want_full, 2, geteuid(), before, &q), 0);
        assert_int_equal(proc_find(want_exact, 2, geteuid(), before, &q), 0);
        assert_int_equal(proc_find(wrong, 2, geteuid(), before, &q), 0);
        assert_int_equal(q.pid, -1);

        kill_and_reap(pid);
        rm_rf(dir);
}

/* A process of another user with the component's exact command line is not the component: the
 * kubelet runs it as the manifest's runAsUser, else as the image's user (root). */
static void test_proc_find_other_uid(void **state) {
        char arg[32];
        uint64_t before, deadline;
        proc_info q;
        pid_t pid;

        if (geteuid() != 0) {
                /* Only root can start a process as another user; the uid is still checked by
                 * test_proc_find_sleep (our own processes are found as our own uid). */
                return;
        }
        snprintf(arg, sizeof(arg), "5.%d", (int) getpid());
        char *want[] = { "/bin/sleep", arg, NULL };

        before = boot_ticks_now();
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                if (setgid(65534) < 0 || setuid(65534) < 0)
                        _exit(126);
                execv(want[0], want);
                _exit(127);
        }
        /* Wait until it runs sleep (its cmdline shows the argv), as nobody. */
        deadline = now_ms() + 10000;
        for (;;) {
                char buf[256];
                size_t n;

                if (cmdline_of(pid, buf, sizeof(buf), &n) && streq(buf, "/bin/sleep"))
                        break;
                if (now_ms() > deadline)
                        fail_msg("sleep never ran as nobody");
                usleep(5000);
        }
        q = (proc_info){ .pid = -1 };
        assert_int_equal(proc_find(want, 2, 0, before, &q), 0);
        assert_int_equal(q.pid, -1);
        /* As the uid the manifest says (runAsUser: 65534), it is the one. */
        assert_int_equal(proc_find(want, 2, 65534, before, &q), 1);
        assert_int_equal(q.pid, pid);
        kill_and_reap(pid);
}

/* A fork of a process with the command line (before its exec, or a helper it forks) carries the
 * same argv: it is not the process the runtime started. Here the forks of this test binary are
 * such children (the test itself started before `before`). */
static void test_proc_find_skips_forks(void **state) {
        char buf[8192];
        char *argv[64];
        size_t n = 0, size;
        uint64_t before;
        proc_info q;
        pid_t pid;
        int fds[2];

        assert_true(cmdline_of(getpid(), buf, sizeof(buf), &size));
        for (const char *p = buf; p < buf + size && n < ELEMENTSOF(argv); p += strlen(p) + 1)
                argv[n++] = (char *) p;
        before = boot_ticks_now();
        while (boot_ticks_now() == before)
                usleep(1000); /* the child must start in a later tick than we did */
        assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                char c;

                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                close(fds[1]);
                (void) read(fds[0], &c, 1); /* until the parent closes its end */
                _exit(0);
        }
        q = (proc_info){ .pid = -1 };
        assert_int_equal(proc_find(argv, n, geteuid(), boot_ticks_now(), &q), 0);
        assert_int_equal(proc_find(argv, n, geteuid(), before, &q), 0);
        assert_int_equal(q.pid, -1);
        close(fds[1]);
        close(fds[0]);
        assert_int_equal(waitpid(pid, NULL, 0), pid);
}

/* ------------------------------------------------------------------------------------------ */
/* $(VAR) expansion and the process of a container */

static void test_kube_expand(void **state) {
        /* The cases of kubernetes' third_party/forked/golang/expansion tests that apply. */
        static const struct {
                const char *in, *out;
        } cases[] = {
                { "$(VAR_A)", "A" },
                { "___$(VAR_B)___", "___B___" },
                { "$(VAR_A)-$(VAR_A)", "A-A" },
                { "$(VAR_A)$(VAR_B)", "AB" },
                { "f000-$$VAR_A", "f000-$VAR_A" },
                { "foo\\$(VAR_C)bar", "foo\\Cbar" },
                { "foo\\\\$(VAR_C)bar", "foo\\\\Cbar" },
                { "$$$(VAR_B)$$", "$B$" },
                { "$$(VAR_A)", "$(VAR_A)" },
                { "$$$$(VAR_A)", "$$(VAR_A)" },
                { "$$$$$(VAR_A)", "$$A" },
                { "$(VAR_EMPTY)", "" },
                { "$(UNKNOWN)", "$(UNKNOWN)" },
                { "--x=$(UNKNOWN)-$(VAR_A)", "--x=$(UNKNOWN)-A" },
                { "$(VAR_A", "$(VAR_A" },
                { "$VAR_A", "$VAR_A" },
                { "$", "$" },
                { "a$", "a$" },
                { "$$", "$" },
                { "$()", "$()" },
                { "$(VAR_A))", "A)" },
                { "$((VAR_A))", "$((VAR_A))" },
                { "$(VAR_REF)", "$(VAR_A)" }, /* a value is not expanded again */
                { "no dollar", "no dollar" },
                { "", "" },
        };
        _cleanup_(json_decrefp) json_t *vars = parse_container(
                "{\"VAR_A\": \"A\", \"VAR_B\": \"B\", \"VAR_C\": \"C\", \"VAR_EMPTY\": \"\","
                " \"VAR_REF\": \"$(VAR_A)\", \"FROM_NODE\": null}");

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *out = NULL;

                assert_int_equal(kube_expand(cases[i].in, vars, &out, NULL), 0);
                if (!streq(out, cases[i].out))
                        fail_msg("expand(\"%s\") = \"%s\", want \"%s\"", cases[i].in, out, cases[i].out);
        }
        {
                _cleanup_free_ char *out = NULL, *unknown = NULL;

                assert_int_equal(kube_expand("--ip=$(FROM_NODE)", vars, &out, &unknown), -EOPNOTSUPP);
                assert_null(out);
                assert_string_equal(unknown, "FROM_NODE");
        }
}

static void test_container_process(void **state) {
        _cleanup_(json_decrefp) json_t *pod = parse_container(
                "{\"spec\": {\"securityContext\": {\"runAsUser\": 2000}, \"containers\": []}}");
        _cleanup_(json_decrefp) json_t *c = parse_container(
                "{\"name\": \"kube-apiserver\", \"command\": [\"kube-apiserver\", \"--a=$(A)\"],"
                " \"args\": [\"--b=$(B)\", \"--c=$$(A)\", \"--d=$(LATER)\", \"--e=$(E)\"],"
                " \"env\": [{\"name\": \"A\", \"value\": \"1\"},"
                "           {\"name\": \"B\", \"value\": \"$(A)-$(LATER)\"},"
                "           {\"name\": \"LATER\", \"value\": \"3\"},"
                "           {\"name\": \"E\"},"
                "           {\"name\": \"A\", \"value\": \"override\"}]}");
        _cleanup_strv_free_ char **argv = NULL;
        _cleanup_free_ char *error = NULL;
        size_t n = 0;
        uid_t uid = 0;

        assert_int_equal(container_process(pod, c, &argv, &n, &uid, &error), 0);
        assert_int_equal(n, 6);
        assert_string_equal(argv[0], "kube-apiserver");
        /* The last A wins; B was expanded when it was declared, before LATER existed. */
        assert_string_equal(argv[1], "--a=override");
        assert_string_equal(argv[2], "--b=1-$(LATER)");
        assert_string_equal(argv[3], "--c=$(A)");
        assert_string_equal(argv[4], "--d=3");
        assert_string_equal(argv[5], "--e=");
        assert_null(argv[6]);
        assert_int_equal(uid, 2000); /* the pod's runAsUser */
        strv_free(TAKE_PTR(argv));

        /* The container's runAsUser wins over the pod's; without either, the image's user (root,
         * or our own uid when unprivileged). */
        assert_int_equal(json_object_set_new(c, "securityContext", parse_container("{\"runAsUser\": 0}")), 0);
        assert_int_equal(container_process(pod, c, &argv, &n, &uid, &error), 0);
        assert_int_equal(uid, 0);
        strv_free(TAKE_PTR(argv));
        assert_int_equal(json_object_del(c, "securityContext"), 0);
        assert_int_equal(container_process(NULL, c, &argv, &n, &uid, &error), 0);
        assert_int_equal(uid, geteuid());
        strv_free(TAKE_PTR(argv));

        assert_int_equal(json_object_set_new(c, "securityContext", parse_container("{\"runAsUser\": -1}")), 0);
        assert_int_equal(container_process(pod, c, &argv, &n, &uid, &error), -EINVAL);
        assert_non_null(strstr(error, "securityContext.runAsUser"));
        free(TAKE_PTR(error));
        assert_int_equal(json_object_del(c, "securityContext"), 0);

        /* A variable only the node knows (valueFrom), used directly or through another. */
        {
                _cleanup_(json_decrefp) json_t *c2 = parse_container(
                        "{\"command\": [\"kube-apiserver\"], \"args\": [\"--advertise-address=$(IP)\"],"
                        " \"env\": [{\"name\": \"POD_IP\", \"valueFrom\": {\"fieldRef\": {\"fieldPath\": \"status.podIP\"}}},"
                        "           {\"name\": \"IP\", \"value\": \"$(POD_IP)\"}]}");

                assert_int_equal(container_process(NULL, c2, &argv, &n, &uid, &error), -EOPNOTSUPP);
                assert_non_null(strstr(error, "args[0] uses $(IP)"));
                free(TAKE_PTR(error));
        }
        /* No command: the image's entrypoint runs. */
        {
                _cleanup_(json_decrefp) json_t *c3 = parse_container("{\"args\": [\"--v=2\"]}");

                assert_int_equal(container_process(NULL, c3, &argv, &n, &uid, &error), -EINVAL);
                assert_non_null(strstr(error, "no command"));
                free(TAKE_PTR(error));
        }
}

/* ------------------------------------------------------------------------------------------ */
/* HTTP client */

static const char server_py[] =
        "import http.server, ssl, sys, time\n"
        SERVER_PY_HANDLER
        "    def do_GET(self):\n"
        "        p = self.path\n"
        "        if p == '/hang':\n"
        "            time.sleep(60)\n"
        "            return\n"
        "        body = {'/big': b'x' * 70000, '/exact': b'y' * 65536, '/bigclose': b'z' * 70000}.get(p, b'ok')\n"
        "        self.send_response(500 if p == '/fail' else 200)\n"
        "        if p == '/bigclose':\n"
        "            self.send_header('Connection', 'close')\n"
        "            self.close_connection = True\n"
        "        else:\n"
        "            self.send_header('Content-Length', str(len(body)))\n"
        "        self.end_headers()\n"
        "        self.wfile.write(body)\n"
        "class S(http.server.ThreadingHTTPServer):\n"
        "    daemon_threads = True\n"
        "s = S(('127.0.0.1', int(sys.argv[2])), H)\n"
        "if sys.argv[3] == 'https':\n"
        "    c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
        "    c.load_cert_chain(sys.argv[1] + '/cert.pem', sys.argv[1] + '/key.pem')\n"
        "    s.socket = c.wrap_socket(s.socket, server_side=True)\n"
        "print(s.server_address[1], flush=True)\n"
        "s.serve_forever()\n";

typedef struct server {
        pid_t pid;
        uint16_t port;
} server;

static char *cert_dir;
static server https_server, http_server;

/* Starts the server on `port` (0: any) and waits for it to listen. */
static server server_start(const char *mode, uint16_t port) {
        char port_s[8];
        server s;

        snprintf(port_s, sizeof(port_s), "%u", (unsigned) port);
        char *argv[] = { "python3", "-c", (char *) server_py, cert_dir, port_s, (char *) mode, NULL };

        s.port = spawn_server(argv, &s.pid);
        if (s.port == 0) {
                kill_and_reap(s.pid);
                fail_msg("the %s test server did not start", mode);
        }
        return s;
}

static int group_setup(void **state) {
        int status;
        pid_t pid;

        cert_dir = make_temp_dir();
        {
                _cleanup_free_ char *key = strdup_printf("%s/key.pem", cert_dir);
                _cleanup_free_ char *cert = strdup_printf("%s/cert.pem", cert_dir);
                char *argv[] = { "openssl", "req",  "-x509",  "-newkey",      "rsa:2048", "-nodes", "-days",
                                 "1",       "-subj", "/CN=localhost", "-keyout", key, "-out",   cert, NULL };

                pid = spawn(argv, -1);
                if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                        return -1;
        }
        https_server = server_start("https", 0);
        http_server = server_start("http", 0);
        return 0;
}

static int group_teardown(void **state) {
        kill_and_reap(https_server.pid);
        kill_and_reap(http_server.pid);
        rm_rf(cert_dir);
        free(cert_dir);
        return 0;
}

static char *url(const server *s, const char *scheme, const char *path) {
        char *u = strdup_printf("%s://127.0.0.1:%u%s", scheme, (unsigned) s->port, path);

        assert_non_null(u);
        return u;
}

typedef struct result {
        unsigned calls;
        long status;
        bool has_error;
        char error[512];
        char body[64];
        size_t size, body_len;
        uint64_t done_ms;
} result;

static bool in_get;
static unsigned done_inside_get;

static void on_done(long status, const char *body, size_t size, const char *error, void *userdata) {
        result *r = userdata;

        if (in_get)
                done_inside_get++;
        r->calls++;
        r->status = status;
        r->has_error = error != NULL;
        snprintf(r->error, sizeof(r->error), "%s", error ?: "");
        snprintf(r->body, sizeof(r->body), "%s", body);
        r->size = size;
        r->body_len = strlen(body);
        r->done_ms = now_ms();
}

static void get(http_client *c, const char *u, uint64_t timeout_ms, http_done_fn done, void *userdata) {
        int r;

        in_get = true;
        r = http_client_get(c, u, timeout_ms, done, userdata);
        in_get = false;
        assert_int_equal(r, 0);
}

/* Runs the loop until *count reaches want; a bug fails the test instead of hanging it. */
static void run_until(sd_event *e, const unsigned *count, unsigned want, uint64_t max_ms) {
        uint64_t deadline = now_ms() + max_ms;

        while (*count < want) {
                if (now_ms() > deadline)
                        fail_msg("only %u of %u requests finished within %llu ms", *count, want,
                                 (unsigned long long) max_ms);
                assert_true(sd_event_run(e, 100 * 1000) >= 0);
        }
}

static void run_for(sd_event *e, uint64_t ms) {
        uint64_t deadline = now_ms() + ms;

        while (now_ms() < deadline)
                assert_true(sd_event_run(e, 10 * 1000) >= 0);
}

static void new_client(sd_event **ret_e, http_client **ret_c) {
        assert_int_equal(sd_event_new(ret_e), 0);
        assert_int_equal(http_client_new(*ret_e, ret_c), 0);
}

static void test_http_status(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(http_client_freep) http_client *c = NULL;
        _cleanup_free_ char *ok = url(&https_server, "https", "/ok"), *fail = url(&https_server, "https", "/fail"),
                            *plain = url(&http_server, "http", "/ok");
        result a = {}, b = {}, d = {};

        new_client(&e, &c);
        done_inside_get = 0;
        get(c, ok, 10000, on_done, &a);
        assert_int_equal(http_client_pending(c), 1);
        assert_int_equal(a.calls, 0);
        run_until(e, &a.calls, 1, 15000);
        assert_int_equal(http_client_pending(c), 0);
        assert_int_equal(a.status, 200);
        assert_false(a.has_error);
        assert_string_equal(a.body, "ok");
        assert_int_equal(a.size, 2);

        get(c, fail, 10000, on_done, &b);
        get(c, plain, 10000, on_done, &d);
        assert_int_equal(http_client_pending(c), 2);
        run_until(e, &b.calls, 1, 15000);
        run_until(e, &d.calls, 1, 15000);
        assert_int_equal(b.status, 500);
        assert_false(b.has_error);
        assert_int_equal(d.status, 200);
        assert_int_equal(a.calls + b.calls + d.calls, 3);
        assert_int_equal(done_inside_get, 0);

        assert_int_equal(http_client_get(c, ok, 0, on_done, &a), -EINVAL);
}

static void test_http_refused(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(http_client_freep) http_client *c = NULL;
        _cleanup_free_ char *u = NULL;
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(sa);
        int fd;
        result a = {}, b = {};

        /* A port that was free a moment ago. */
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *) &sa, &len), 0);
        close(fd);

        new_client(&e, &c);
        u = strdup_printf("https://127.0.0.1:%u/livez", (unsigned) ntohs(sa.sin_port));
        done_inside_get = 0;
        get(c, u, 5000, on_done, &a);
        get(c, "ftp://127.0.0.1/x", 5000, on_done, &b);
        run_until(e, &a.calls, 1, 10000);
        run_until(e, &b.calls, 1, 10000);
        assert_int_equal(a.status, 0);
        assert_true(a.has_error);
        assert_non_null(strstr(a.error, "onnect"));
        /* Only http and https are spoken. */
        assert_int_equal(b.status, 0);
        assert_true(b.has_error);
        assert_int_equal(done_inside_get, 0);
}

static void test_http_body_limit(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(http_client_freep) http_client *c = NULL;
        _cleanup_free_ char *big = url(&https_server, "https", "/big"),
                            *bigclose = url(&https_server, "https", "/bigclose"),
                            *exact = url(&https_server, "https", "/exact");
        result a = {}, b = {}, d = {};

        new_client(&e, &c);
        get(c, big, 10000, on_done, &a);
        get(c, bigclose, 10000, on_done, &b);
        get(c, exact, 10000, on_done, &d);
        run_until(e, &a.calls, 1, 15000);
        run_until(e, &b.calls, 1, 15000);
        run_until(e, &d.calls, 1, 15000);
        /* Announced by Content-Length, and streamed without one: both refused. */
        assert_int_equal(a.status, 0);
        assert_string_equal(a.error, "response larger than 65536 bytes");
        assert_int_equal(b.status, 0);
        assert_string_equal(b.error, "response larger than 65536 bytes");
        /* Exactly the limit is fine, and NUL-terminated. */
        assert_int_equal(d.status, 200);
        assert_int_equal(d.size, HTTP_BODY_MAX);
        assert_int_equal(d.body_len, HTTP_BODY_MAX);
}

static void test_http_timeout(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(http_client_freep) http_client *c = NULL;
        _cleanup_free_ char *plain = NULL, *tls = NULL;
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(sa);
        result a = {}, b = {};
        uint64_t start;

        /* Listens (the kernel completes the handshake) but never accepts nor answers. */
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        assert_int_equal(listen(fd, 16), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *) &sa, &len), 0);
        plain = strdup_printf("http://127.0.0.1:%u/readyz", (unsigned) ntohs(sa.sin_port));
        tls = strdup_printf("https://127.0.0.1:%u/readyz", (unsigned) ntohs(sa.sin_port));

        new_client(&e, &c);
        start = now_ms();
        get(c, plain, 300, on_done, &a);
        get(c, tls, 500, on_done, &b);
        run_until(e, &a.calls, 1, 5000);
        run_until(e, &b.calls, 1, 5000);
        assert_int_equal(a.status, 0);
        assert_non_null(strstr(a.error, "timed out"));
        assert_int_equal(b.status, 0);
        assert_non_null(strstr(b.error, "timed out"));
        if (a.done_ms - start < 290 || a.done_ms - start > 1300 || b.done_ms - start < 490 ||
            b.done_ms - start > 1500)
                fail_msg("timeouts of 300 and 500 ms took %llu and %llu ms",
                         (unsigned long long) (a.done_ms - start), (unsigned long long) (b.done_ms - start));
}

static void test_http_many_in_flight(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(http_client_freep) http_client *c = NULL;
        _cleanup_free_ char *ok = url(&https_server, "https", "/ok"), *fail = url(&https_server, "https", "/fail"),
                            *plain = url(&http_server, "http", "/ok");
        result r[12] = {};
        unsigned total = 0;

        new_client(&e, &c);
        done_inside_get = 0;
        for (size_t i = 0; i < ELEMENTSOF(r); i++)
                get(c, i % 3 == 0 ? ok : i % 3 == 1 ? fail : plain, 10000, on_done, &r[i]);
        assert_int_equal(http_client_pending(c), ELEMENTSOF(r));

        for (uint64_t deadline = now_ms() + 20000; http_client_pending(c) > 0;) {
                if (now_ms() > deadline)
                        fail_msg("%zu requests still pending", http_client_pending(c));
                assert_true(sd_event_run(e, 100 * 1000) >= 0);
        }
        for (size_t i = 0; i < ELEMENTSOF(r); i++) {
                assert_int_equal(r[i].calls, 1);
                assert_int_equal(r[i].status, i % 3 == 1 ? 500 : 200);
                total += r[i].calls;
        }
        assert_int_equal(total, ELEMENTSOF(r));
        assert_int_equal(done_inside_get, 0);
}

static void test_http_server_restart(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(http_client_freep) http_client *c = NULL;
        _cleanup_free_ char *u = NULL;
        server s = server_start("https", 0);
        result r[3] = {};

        /* A cached connection to the old process must not turn into a false failure. */
        u = url(&s, "https", "/ok");
        new_client(&e, &c);
        get(c, u, 10000, on_done, &r[0]);
        run_until(e, &r[0].calls, 1, 15000);
        assert_int_equal(r[0].status, 200);

        kill_and_reap(s.pid);
        s = server_start("https", s.port);
        get(c, u, 10000, on_done, &r[1]);
        run_until(e, &r[1].calls, 1, 15000);
        if (r[1].status != 200)
                fail_msg("after a restart: %ld %s", r[1].status, r[1].error);
        get(c, u, 10000, on_done, &r[2]);
        run_until(e, &r[2].calls, 1, 15000);
        assert_int_equal(r[2].status, 200);
        kill_and_reap(s.pid);
}

static void test_http_free_in_flight(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        http_client *c = NULL;
        _cleanup_free_ char *hang = url(&https_server, "https", "/hang"), *ok = url(&https_server, "https", "/ok");
        result a = {}, b = {};

        new_client(&e, &c);
        get(c, hang, 10000, on_done, &a);
        get(c, ok, 10000, on_done, &b);
        run_for(e, 200);
        c = http_client_free(c);
        assert_null(c);
        run_for(e, 100);
        assert_int_equal(a.calls, 0);
}

typedef struct chain {
        http_client **client;
        const char *url;
        unsigned calls, left;
        long status;
        bool free_in_done;
} chain;

static void on_chain(long status, const char *body, size_t size, const char *error, void *userdata) {
        chain *ch = userdata;

        if (in_get)
                done_inside_get++;
        ch->calls++;
        ch->status = status;
        if (ch->free_in_done) {
                *ch->client = http_client_free(*ch->client);
                return;
        }
        if (ch->left > 0) {
                ch->left--;
                get(*ch->client, ch->url, 10000, on_chain, ch);
        }
}

static void test_http_reentrant_done(void **state) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(http_client_freep) http_client *c = NULL;
        _cleanup_free_ char *ok = url(&https_server, "https", "/ok");
        chain next = { .client = &c, .url = ok, .left = 3 }, drop = { .client = &c, .url = ok, .free_in_done = true };

        new_client(&e, &c);
        done_inside_get = 0;

        /* A done callback may start the next request... */
        get(c, ok, 10000, on_chain, &next);
        run_until(e, &next.calls, 4, 20000);
        assert_int_equal(next.status, 200);
        assert_int_equal(http_client_pending(c), 0);

        /* ...or free the client, even with others in flight: they never call back. */
        get(c, ok, 10000, on_chain, &drop);
        get(c, ok, 10000, on_chain, &drop);
        run_until(e, &drop.calls, 1, 15000);
        assert_null(c);
        run_for(e, 200);
        assert_int_equal(drop.calls, 1);
        assert_int_equal(done_inside_get, 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_probes_kubeadm),
                cmocka_unit_test(test_probes_named_port),
                cmocka_unit_test(test_probes_exec_falls_back_to_plugin),
                cmocka_unit_test(test_probes_defaults),
                cmocka_unit_test(test_probes_errors),
                cmocka_unit_test(test_boot_ticks),
                cmocka_unit_test(test_proc_find_sleep),
                cmocka_unit_test(test_proc_find_script),
                cmocka_unit_test(test_proc_find_other_uid),
                cmocka_unit_test(test_proc_find_skips_forks),
                cmocka_unit_test(test_kube_expand),
                cmocka_unit_test(test_container_process),
                cmocka_unit_test(test_http_status),
                cmocka_unit_test(test_http_refused),
                cmocka_unit_test(test_http_body_limit),
                cmocka_unit_test(test_http_timeout),
                cmocka_unit_test(test_http_many_in_flight),
                cmocka_unit_test(test_http_server_restart),
                cmocka_unit_test(test_http_free_in_flight),
                cmocka_unit_test(test_http_reentrant_done),
        };

        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
