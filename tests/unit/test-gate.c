/* SPDX-License-Identifier: Apache-2.0 */
/* The gate of a rollout step, decision by decision, against real things: child processes with a
 * known command line (fork + exec of sleep) and a local HTTPS server (python3, throw-away
 * certificate) whose answers each case scripts. The real kube-apiserver and
 * kube-controller-manager plugins read the answers. Every case has short timeouts: a case that
 * fails by timing out costs well under a second. */

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "test-process.h"
#include "test-util.h"
#include "gate.h"
#include "macro.h"
#include "plugin-loader.h"
#include "probe.h"

/* ------------------------------------------------------------------------------------------ */
/* helpers */

static bool endswith(const char *s, const char *suffix) {
        size_t n = strlen(s), k = strlen(suffix);

        return n >= k && streq(s + n - k, suffix);
}


/* ------------------------------------------------------------------------------------------ */
/* The component's HTTPS endpoints: routes.json says what each path answers (path → list of
 * [status, body, times]; an entry without times answers from then on) and carries the case's
 * serial. Each request appends "SERIAL PATH STATUS" to requests.log. A connection keeps the
 * routes and counters of the case it was opened in, so a request of an earlier case that the
 * server handles late neither shows in this case's log nor uses up its answers. */

static const char server_py[] =
        "import http.server, json, ssl, sys, threading\n"
        "d = sys.argv[1]\n"
        "lock = threading.Lock()\n"
        "cases = {}\n"
        SERVER_PY_HANDLER
        "    def do_GET(self):\n"
        "        with lock:\n"
        "            if not hasattr(self, 'case'):\n"
        "                routes = json.load(open(d + '/routes.json'))\n"
        "                self.case = cases.setdefault(routes['serial'], {'routes': routes, 'count': {}})\n"
        "            seq = self.case['routes'].get(self.path) or [[404, 'no route']]\n"
        "            n = self.case['count'].get(self.path, 0)\n"
        "            self.case['count'][self.path] = n + 1\n"
        "            for e in seq:\n"
        "                if len(e) < 3 or n < e[2]:\n"
        "                    break\n"
        "                n -= e[2]\n"
        "            with open(d + '/requests.log', 'a') as f:\n"
        "                f.write('%d %s %d\\n' % (self.case['routes']['serial'], self.path, e[0]))\n"
        "        body = e[1].encode()\n"
        "        self.send_response(e[0])\n"
        "        self.send_header('Content-Type', 'application/json')\n"
        "        self.send_header('Content-Length', str(len(body)))\n"
        "        self.end_headers()\n"
        "        self.wfile.write(body)\n"
        "class S(http.server.ThreadingHTTPServer):\n"
        "    daemon_threads = True\n"
        "s = S(('127.0.0.1', 0), H)\n"
        "c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
        "c.load_cert_chain(d + '/cert.pem', d + '/key.pem')\n"
        "s.socket = c.wrap_socket(s.socket, server_side=True)\n"
        "print(s.server_address[1], flush=True)\n"
        "s.serve_forever()\n";

static char *dir;
static pid_t server_pid;
static uint16_t server_port;
static plugin_set *plugins;
static unsigned serial; /* makes each case's command line and routes its own */

static void server_start(void) {
        char *argv[] = { "python3", "-c", (char *) server_py, dir, NULL };

        server_port = spawn_server(argv, &server_pid);
}

static int group_setup(void **state) {
        const char *plugin_dir = getenv("CPLET_PLUGIN_BUILD_DIR");
        char tmpl[] = "/tmp/cplet-test-gate-XXXXXX";
        int status;
        pid_t pid;

        if (!plugin_dir || plugin_set_load(plugin_dir, &plugins, NULL) < 0)
                return -1;
        if (!mkdtemp(tmpl))
                return -1;
        dir = strdup(tmpl);
        {
                _cleanup_free_ char *key = strdup_printf("%s/key.pem", dir);
                _cleanup_free_ char *cert = strdup_printf("%s/cert.pem", dir);
                char *argv[] = { "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days",
                                 "1",       "-subj", "/CN=localhost", "-keyout", key, "-out",   cert, NULL };

                pid = spawn(argv, -1);
                if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
                        return -1;
        }
        server_start();
        return server_port > 0 ? 0 : -1;
}

static int group_teardown(void **state) {
        kill_and_reap(server_pid);
        rm_rf(dir);
        free(dir);
        plugins = plugin_set_free(plugins);
        return 0;
}

/* Replaces the server's answers for the connections opened from now on (atomically: the
 * server may be reading). */
static void set_routes(const char *routes_json) {
        _cleanup_free_ char *tmp = strdup_printf("%s/routes.json.tmp", dir);
        _cleanup_free_ char *path = strdup_printf("%s/routes.json", dir);
        FILE *f = fopen(tmp, "we");

        assert_non_null(f);
        fprintf(f, "{\"serial\": %u, %s}", ++serial, routes_json);
        assert_int_equal(fclose(f), 0);
        assert_int_equal(rename(tmp, path), 0);
}

/* How many requests for `path` of this case the server answered with `status` (0: any). */
static unsigned requests(const char *path, int status) {
        _cleanup_free_ char *log = strdup_printf("%s/requests.log", dir);
        _cleanup_fclose_ FILE *f = fopen(log, "re");
        char p[256];
        unsigned sn, n = 0;
        int s;

        if (!f)
                return 0;
        while (fscanf(f, "%u %255s %d", &sn, p, &s) == 3)
                if (sn == serial && streq(p, path) && (status == 0 || s == status))
                        n++;
        return n;
}

/* /version bodies as apimachinery's version.Info marshals them. */
#define VERSION_1_35 \
        "{\\\"major\\\": \\\"1\\\", \\\"minor\\\": \\\"35\\\", \\\"gitVersion\\\": \\\"v1.35.1\\\"," \
        " \\\"emulationMajor\\\": \\\"1\\\", \\\"emulationMinor\\\": \\\"34\\\"," \
        " \\\"minCompatibilityMajor\\\": \\\"1\\\", \\\"minCompatibilityMinor\\\": \\\"34\\\"}"
/* The patch before it, emulating 1.34, without min-compatibility fields. */
#define VERSION_1_35_0 \
        "{\\\"major\\\": \\\"1\\\", \\\"minor\\\": \\\"35\\\", \\\"gitVersion\\\": \\\"v1.35.0\\\"," \
        " \\\"emulationMajor\\\": \\\"1\\\", \\\"emulationMinor\\\": \\\"34\\\"}"
#define OK_ROUTES "\"/livez\": [[200, \"ok\"]], \"/readyz\": [[200, \"ok\"]]"

/* ------------------------------------------------------------------------------------------ */
/* the component's process */

typedef struct child {
        pid_t pid;
        char arg[32];
} child;

/* A sleep whose argument is this case's own (pid and serial), so parallel runs never match
 * each other's. `seconds` is the whole part of how long it lives. */
static void child_command(child *c, unsigned seconds) {
        static unsigned children;

        snprintf(c->arg, sizeof(c->arg), "%u.%d%03u", seconds, (int) getpid(), ++children % 1000);
}

static void child_start(child *c) {
        char *argv[] = { "/bin/sleep", c->arg, NULL };

        c->pid = spawn(argv, -1);
}

/* Waits until /proc shows the exec'd command line (a fork shows ours for a moment). */
static void child_wait_visible(const child *c) {
        char *argv[] = { "/bin/sleep", (char *) c->arg };
        uint64_t deadline = now_ms() + 10000;
        proc_info p;

        for (;;) {
                int r = proc_find(argv, 2, getuid(), 0, &p);

                assert_true(r >= 0);
                if (r == 1 && p.pid == c->pid)
                        return;
                if (now_ms() > deadline)
                        fail_msg("sleep %s (pid %d) never showed up in /proc", c->arg, (int) c->pid);
                usleep(5000);
        }
}

/* ------------------------------------------------------------------------------------------ */
/* running the gate */

/* The deadline of a case that fails by timing out after some answers came: long enough for a
 * loaded machine to answer a few HTTPS requests, short enough to keep the suite quick. */
#define FAIL_TIMEOUT_MS 1500

typedef struct run {
        /* inputs */
        const char *plugin;
        const char *binary; /* expected versions */
        kminor emulated, min_compat;
        uint64_t stable_ms, timeout_ms;
        uint64_t not_before_ticks;
        const child *process;
        uint16_t port; /* of the probes (0: the test server's) */

        /* what happened */
        int r;
        gate_result result;
        uint64_t elapsed_ms;
        gate_phase phases[64]; /* progress calls other than ticks, in order */
        uint64_t phase_ms[64]; /* since the start */
        char details[64][256];
        size_t n_phases;
        uint64_t started;
} run;

static void on_progress(gate_phase phase, const char *detail, void *userdata) {
        run *t = userdata;

        if (detail && streq(detail, "tick"))
                return;
        if (t->n_phases >= ELEMENTSOF(t->phases))
                return;
        t->phases[t->n_phases] = phase;
        t->phase_ms[t->n_phases] = now_ms() - t->started;
        snprintf(t->details[t->n_phases], sizeof(t->details[0]), "%s", detail ?: "");
        t->n_phases++;
}

static void run_gate(run *t) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        _cleanup_(http_client_freep) http_client *http = NULL;
        _cleanup_(json_decrefp) json_t *container = NULL;
        gate_spec spec;
        kversion binary;

        assert_int_equal(kversion_parse(t->binary ?: "v1.35.1", &binary, NULL), 0);
        /* As kubeadm writes them: a startupProbe and a readinessProbe on the secure port. */
        container = json_pack("{s:[s,s], s:{s:{s:s, s:i, s:s, s:s}}, s:{s:{s:s, s:i, s:s, s:s}}}", "command",
                              "/bin/sleep", t->process->arg, "startupProbe", "httpGet", "host", "127.0.0.1", "port",
                              (int) (t->port ?: server_port), "path", "/livez", "scheme", "HTTPS", "readinessProbe",
                              "httpGet", "host", "127.0.0.1", "port", (int) (t->port ?: server_port), "path", "/readyz",
                              "scheme", "HTTPS");
        assert_non_null(container);
        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(http_client_new(e, &http), 0);
        spec = (gate_spec){
                .container = container,
                .plugin = plugin_set_find(plugins, t->plugin ?: "kube-apiserver"),
                .binary = binary,
                .emulated = t->emulated.major ? t->emulated : KMINOR(1, 34),
                .min_compat = t->min_compat.major ? t->min_compat : KMINOR(1, 34),
                .not_before_ticks = t->not_before_ticks,
                .stable_usec = t->stable_ms * 1000,
                .timeout_usec = (t->timeout_ms ?: 10000) * 1000,
                .progress = on_progress,
                .userdata = t,
        };
        assert_non_null(spec.plugin);
        t->started = now_ms();
        t->r = gate_wait(e, http, &spec, &t->result);
        t->elapsed_ms = now_ms() - t->started;
        print_message("# gate: r=%d ok=%d phase=%s after %llu ms: %s%s%s\n", t->r, t->result.ok,
                      gate_phase_to_string(t->result.phase), (unsigned long long) t->elapsed_ms,
                      t->result.message ?: "(no message)", t->result.warning ? "; warning: " : "",
                      t->result.warning ?: "");
}

/* The usual case: the process started after the swap and keeps running. */
static void run_with_child(run *t) {
        child c;

        child_command(&c, 30);
        t->not_before_ticks = boot_ticks_now();
        child_start(&c);
        t->process = &c;
        run_gate(t);
        kill_and_reap(c.pid);
        t->process = NULL;
}

static void run_done(run *t) {
        gate_result_done(&t->result);
}

static void assert_failed(const run *t, gate_phase phase, const char *message) {
        assert_int_equal(t->r, 0);
        assert_false(t->result.ok);
        assert_string_equal(gate_phase_to_string(t->result.phase), gate_phase_to_string(phase));
        assert_non_null(t->result.message);
        if (!strstr(t->result.message, "timed out after") && strstr(message, "waiting for ") == message)
                fail_msg("message \"%s\" does not say it timed out", t->result.message);
        if (!strstr(t->result.message, message))
                fail_msg("message \"%s\" does not say \"%s\"", t->result.message, message);
}

static void assert_passed(const run *t) {
        assert_int_equal(t->r, 0);
        if (!t->result.ok)
                fail_msg("the gate failed in %s: %s", gate_phase_to_string(t->result.phase),
                         t->result.message ?: "(no message)");
        assert_int_equal(t->result.phase, GATE_DONE);
}

static size_t count_phase(const run *t, gate_phase p) {
        size_t n = 0;

        for (size_t i = 0; i < t->n_phases; i++)
                n += t->phases[i] == p;
        return n;
}

/* ------------------------------------------------------------------------------------------ */
/* the process */

static void test_passes_through_every_phase(void **state) {
        _cleanup_(run_done) run t = { .stable_ms = 300 };

        set_routes(OK_ROUTES ", \"/version\": [[200, \"" VERSION_1_35 "\"]]");
        run_with_child(&t);
        assert_passed(&t);
        assert_null(t.result.warning);
        /* process → versions → health → stable, each once. */
        assert_int_equal(t.n_phases, 4);
        assert_int_equal(t.phases[0], GATE_PROCESS);
        assert_int_equal(t.phases[1], GATE_VERSIONS);
        assert_int_equal(t.phases[2], GATE_HEALTH);
        assert_int_equal(t.phases[3], GATE_STABLE);
        /* The stability window is held, with the probes asked again during it. */
        assert_true(t.elapsed_ms - t.phase_ms[3] >= 300);
        assert_true(requests("/readyz", 200) >= 2);
        assert_true(t.result.process.pid > 0);
        assert_int_equal(requests("/version", 200), 1);
}

static void test_process_not_found_times_out(void **state) {
        _cleanup_(run_done) run t = { .stable_ms = 0, .timeout_ms = 400 };
        child c; /* never started */

        child_command(&c, 30);
        set_routes(OK_ROUTES ", \"/version\": [[200, \"" VERSION_1_35 "\"]]");
        t.process = &c;
        t.not_before_ticks = boot_ticks_now();
        run_gate(&t);
        assert_failed(&t, GATE_PROCESS, "waiting for process of kube-apiserver");
        assert_true(t.elapsed_ms >= 400);
        /* Nothing is probed for a process that does not run. */
        assert_int_equal(requests("/version", 0), 0);
        assert_int_equal(requests("/readyz", 0), 0);
}

/* A step whose command line does not change (patch upgrade, flags on the same argv): the old
 * process must not pass for the new one. */
static void test_process_started_before_swap_is_not_taken(void **state) {
        _cleanup_(run_done) run t = { .stable_ms = 0, .timeout_ms = 400 };
        child c;

        child_command(&c, 30);
        child_start(&c);
        child_wait_visible(&c);
        /* Two clock ticks later: the start time is in ticks, and equal counts as after. */
        usleep(2 * 1000000 / (useconds_t) sysconf(_SC_CLK_TCK) + 10000);
        set_routes(OK_ROUTES ", \"/version\": [[200, \"" VERSION_1_35 "\"]]");
        t.process = &c;
        t.not_before_ticks = boot_ticks_now();
        run_gate(&t);
        assert_failed(&t, GATE_PROCESS, "waiting for process");
        assert_int_equal(requests("/readyz", 0), 0);

        /* The same process, the swap before its start: taken. */
        gate_result_done(&t.result);
        t = (run){ .stable_ms = 0, .process = &c };
        run_gate(&t);
        assert_passed(&t);
        assert_int_equal(t.result.process.pid, c.pid);
        kill_and_reap(c.pid);
}

static void test_process_exits_while_waiting_for_health(void **state) {
        _cleanup_(run_done) run t = { .stable_ms = 0, .timeout_ms = 10000 };
        child c;

        /* Lives about a second, never healthy. */
        child_command(&c, 1);
        set_routes("\"/livez\": [[500, \"etcd failed\"]], \"/readyz\": [[200, \"ok\"]],"
                   " \"/version\": [[200, \"" VERSION_1_35 "\"]]");
        t.process = &c;
        t.not_before_ticks = boot_ticks_now();
        child_start(&c);
        run_gate(&t);
        assert_failed(&t, GATE_HEALTH, "kube-apiserver exited (pid");
        assert_true(t.result.exited);
        assert_int_equal(t.result.process.pid, c.pid);
        /* The message carries what the probe said last. */
        assert_non_null(strstr(t.result.message, "/livez: 500"));
        /* Failed as it exited, not at the deadline. */
        assert_true(t.elapsed_ms < 5000);
        kill_and_reap(c.pid);
}

/* ------------------------------------------------------------------------------------------ */
/* the versions it reports */

static void test_binary_mismatch_fails_at_once(void **state) {
        _cleanup_(run_done) run t = { .stable_ms = 0, .timeout_ms = 10000 };

        set_routes(OK_ROUTES ", \"/version\": [[200, \"{\\\"major\\\": \\\"1\\\", \\\"minor\\\": \\\"34\\\","
                   " \\\"gitVersion\\\": \\\"v1.34.2\\\", \\\"emulationMajor\\\": \\\"1\\\","
                   " \\\"emulationMinor\\\": \\\"34\\\"}\"]]");
        run_with_child(&t);
        assert_failed(&t, GATE_VERSIONS, "kube-apiserver reports binary 1.34 (v1.34.2), expected 1.35");
        assert_true(t.elapsed_ms < 5000);
        assert_int_equal(requests("/readyz", 0), 0);
}

static void test_emulated_mismatch_fails(void **state) {
        _cleanup_(run_done) run t = { .stable_ms = 0, .timeout_ms = 10000, .emulated = KMINOR(1, 34) };

        set_routes(OK_ROUTES ", \"/version\": [[200, \"{\\\"major\\\": \\\"1\\\", \\\"minor\\\": \\\"35\\\","
                   " \\\"gitVersion\\\": \\\"v1.35.1\\\", \\\"emulationMajor\\\": \\\"1\\\","
                   " \\\"emulationMinor\\\": \\\"35\\\", \\\"minCompatibilityMajor\\\": \\\"1\\\","
                   " \\\"minCompatibilityMinor\\\": \\\"34\\\"}\"]]");
        run_with_child(&t);
        assert_failed(&t, GATE_VERSIONS, "kube-apiserver reports emulated version 1.35, expected 1.34");
        assert_true(t.elapsed_ms < 5000);
}

/* From 1.33 the fields exist: a 1.35 binary that reports none is not the expected one. */
static void test_emulation_fields_missing_from_1_33_fails(void **state) {
        _cleanup_(run_done) run t = { .stable_ms = 0, .timeout_ms = 10000 };

        set_routes(OK_ROUTES ", \"/version\": [[200, \"{\\\"major\\\": \\\"1\\\", \\\"minor\\\": \\\"35\\\","
                   " \\\"gitVersion\\\": \\\"v1.35.1\\\"}\"]]");
        run_with_child(&t);
        assert_failed(&t, GATE_VERSIONS, "reports emulated version none, expected 1.34");
}

static void test_min_compat_mismatch_fails(void **state) {
        _cleanup_(run_done) run t = { .stable_ms = 0, .timeout_ms = 10000, .min_compat = KMINOR(1, 34) };

        set_routes(OK_ROUTES ", \"/version\": [[200, \"{\\\"major\\\": \\\"1\\\", \\\"minor\\\": \\\"35\\\","
                   " \\\"gitVersion\\\": \\\"v1.35.1\\\", \\\"emulationMajor\\\": \\\"1\\\","
                   " \\\"emulationMinor\\\": \\\"34\\\", \\\"minCompatibilityMajor\\\": \\\"1\\\","
                   " \\\"minCompatibilityMinor\\\": \\\"33\\\"}\"]]");
        run_with_child(&t);
        assert_failed(&t, GATE_VERSIONS, "reports min-compatibility version 1.33, expected 1.34");
}

/* 1.31 and 1.32 report no emulation fields (FACTS.md): only the binary can be checked. */
static void test_old_releases_without_emulation_fields_pass(void **state) {
        static const char *const releases[][2] = {
                { "v1.31.4", "31" },
                { "v1.32.7", "32" },
        };

        for (size_t i = 0; i < ELEMENTSOF(releases); i++) {
                _cleanup_free_ char *routes = NULL;
                run t = { .binary = releases[i][0], .stable_ms = 0, .emulated = KMINOR(1, 31),
                          .min_compat = KMINOR(1, 31) };

                routes = strdup_printf(OK_ROUTES ", \"/version\": [[200, \"{\\\"major\\\": \\\"1\\\", \\\"minor\\\":"
                                                 " \\\"%s\\\", \\\"gitVersion\\\": \\\"%s\\\"}\"]]",
                                       releases[i][1], releases[i][0]);
                set_routes(routes);
                run_with_child(&t);
                assert_passed(&t);
                assert_null(t.result.warning);
                assert_int_equal(requests("/version", 200), 1);
                gate_result_done(&t.result);
        }
}

/* The old process may still answer while it terminates: a wrong patch is asked again. */
static void test_patch_mismatch_is_asked_again(void **state) {
        _cleanup_(run_done) run t = { .stable_ms = 0, .timeout_ms = 10000 };
        _cleanup_(run_done) run stuck = { .stable_ms = 0, .timeout_ms = FAIL_TIMEOUT_MS };

        set_routes(OK_ROUTES ", \"/version\": [[200, \"" VERSION_1_35_0 "\", 3], [200, \"" VERSION_1_35 "\"]]");
        run_with_child(&t);
        assert_passed(&t);
        assert_int_equal(requests("/version", 200), 4);

        set_routes(OK_ROUTES ", \"/version\": [[200, \"" VERSION_1_35_0 "\"]]");
        run_with_child(&stuck);
        assert_failed(&stuck, GATE_VERSIONS, "reports v1.35.0, expected v1.35.1");
}

/* A plugin that reads no versions: straight from the process to health. */
static void test_no_version_reading_goes_to_health(void **state) {
        _cleanup_(run_done) run t = { .plugin = "kube-controller-manager", .stable_ms = 0 };

        set_routes(OK_ROUTES ", \"/version\": [[500, \"must not be asked\"]]");
        run_with_child(&t);
        assert_passed(&t);
        assert_int_equal(count_phase(&t, GATE_VERSIONS), 0);
        assert_int_equal(requests("/version", 0), 0);
}

/* ------------------------------------------------------------------------------------------ */
/* /version answering an error */

/* Anonymous auth disabled: /version says 401 (or 403 when anonymous requests are not
 * authorized) for as long as cplet has no credentials. The component is serving; its versions
 * are unknown: the gate holds on health alone and says so. */
static void test_version_unauthorized_gates_on_health(void **state) {
        static const int statuses[] = { 401, 403 };

        for (size_t i = 0; i < ELEMENTSOF(statuses); i++) {
                _cleanup_free_ char *routes = NULL, *status = NULL;
                run t = { .stable_ms = 300, .timeout_ms = 10000 };
                size_t warned = SIZE_MAX;

                routes = strdup_printf(OK_ROUTES ", \"/version\": [[%d, \"{\\\"kind\\\": \\\"Status\\\"}\"]]",
                                       statuses[i]);
                status = strdup_printf("%d", statuses[i]);
                set_routes(routes);
                run_with_child(&t);
                assert_passed(&t);
                assert_non_null(t.result.warning);
                if (!strstr(t.result.warning, status) || !strstr(t.result.warning, "not verified"))
                        fail_msg("warning \"%s\" does not name %s and say the versions are not verified",
                                 t.result.warning, status);
                /* The caller hears it as it happens, through the progress callback. */
                for (size_t k = 0; k < t.n_phases; k++)
                        if (streq(t.details[k], t.result.warning))
                                warned = k;
                assert_true(warned != SIZE_MAX);
                /* Health still gates: the window was held. */
                assert_int_equal(count_phase(&t, GATE_STABLE), 1);
                assert_true(requests("/readyz", 200) >= 2);
                gate_result_done(&t.result);
        }
}

/* The gate on health alone still fails an unhealthy component. */
static void test_version_unauthorized_unhealthy_fails(void **state) {
        _cleanup_(run_done) run t = { .stable_ms = 0, .timeout_ms = FAIL_TIMEOUT_MS };

        set_routes("\"/livez\": [[503, \"etcd failed\"]], \"/readyz\": [[200, \"ok\"]],"
                   " \"/version\": [[401, \"Unauthorized\"]]");
        run_with_child(&t);
        assert_failed(&t, GATE_HEALTH, "/livez: 503");
}

/* A 403 can also be a moment of startup (authorization not yet loaded): when /version answers
 * once the component is healthy, its versions are checked after all. */
static void test_version_forbidden_then_answering_is_checked(void **state) {
        _cleanup_(run_done) run t = { .stable_ms = 200 };
        _cleanup_(run_done) run wrong = { .stable_ms = 200 };

        set_routes(OK_ROUTES ", \"/version\": [[403, \"Forbidden\", 1], [200, \"" VERSION_1_35 "\"]]");
        run_with_child(&t);
        assert_passed(&t);
        assert_null(t.result.warning);
        assert_int_equal(requests("/version", 403), 1);
        assert_int_equal(requests("/version", 200), 1);

        set_routes(OK_ROUTES ", \"/version\": [[403, \"Forbidden\", 1], [200, \"{\\\"major\\\": \\\"1\\\","
                   " \\\"minor\\\": \\\"34\\\", \\\"gitVersion\\\": \\\"v1.34.2\\\"}\"]]");
        run_with_child(&wrong);
        assert_failed(&wrong, GATE_STABLE, "kube-apiserver reports binary 1.34 (v1.34.2), expected 1.35");
}

/* 5xx: not serving yet. Asked again until it answers, or the step times out saying so. */
static void test_version_server_error_is_retried(void **state) {
        _cleanup_(run_done) run t = { .stable_ms = 0 };
        _cleanup_(run_done) run down = { .stable_ms = 0, .timeout_ms = FAIL_TIMEOUT_MS };

        set_routes(OK_ROUTES ", \"/version\": [[503, \"starting\", 3], [200, \"" VERSION_1_35 "\"]]");
        run_with_child(&t);
        assert_passed(&t);
        assert_null(t.result.warning);
        assert_int_equal(requests("/version", 503), 3);

        set_routes(OK_ROUTES ", \"/version\": [[500, \"internal error\"]]");
        run_with_child(&down);
        assert_failed(&down, GATE_VERSIONS, "waiting for versions of kube-apiserver");
        assert_non_null(strstr(down.result.message, "/version: 500"));
        assert_int_equal(requests("/readyz", 0), 0);
}

/* Nothing listening yet: asked again, and the timeout names curl's reason as it is. */
static void test_version_unreachable_times_out(void **state) {
        _cleanup_(run_done) run t = { .stable_ms = 0, .timeout_ms = 1000 };
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        /* A port that was free a moment ago and that nobody listens on. */
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &a, sizeof(a)), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *) &a, &len), 0);
        close(fd);
        t.port = ntohs(a.sin_port);
        set_routes(OK_ROUTES);
        run_with_child(&t);
        assert_failed(&t, GATE_VERSIONS, "waiting for versions of kube-apiserver");
        if (!strstr(t.result.message, "/version: Failed to connect") ||
            !endswith(t.result.message, "Couldn't connect to server"))
                fail_msg("message \"%s\" does not end with curl's reason", t.result.message);
}

/* ------------------------------------------------------------------------------------------ */
/* health and the stability window */

/* A probe failing inside the window sends the gate back to health: the window starts over
 * from the next all-healthy round, it is not a failure by itself. */
static void test_flap_during_window_restarts_it(void **state) {
        _cleanup_(run_done) run t = { .stable_ms = 700, .timeout_ms = 10000 };
        size_t second = 0;

        /* The 1st /readyz opens the window; the 2nd, inside it (a 2xx answer closes the window,
         * never a failing one), fails once. */
        set_routes("\"/livez\": [[200, \"ok\"]], \"/readyz\": [[200, \"ok\", 1], [500, \"flap\", 1], [200, \"ok\"]],"
                   " \"/version\": [[200, \"" VERSION_1_35 "\"]]");
        run_with_child(&t);
        assert_passed(&t);
        assert_int_equal(requests("/readyz", 500), 1);
        /* stable → health (with the failed probe as the reason) → stable again. */
        assert_int_equal(count_phase(&t, GATE_STABLE), 2);
        for (size_t i = 0; i < t.n_phases; i++)
                if (t.phases[i] == GATE_STABLE)
                        second = i;
        assert_true(second >= 2);
        assert_int_equal(t.phases[second - 1], GATE_HEALTH);
        assert_non_null(strstr(t.details[second - 1], "/readyz: 500"));
        /* The whole window after the flap. */
        assert_true(t.elapsed_ms - t.phase_ms[second] >= 700);
}

/* Healthy, but the window cannot be completed before the deadline. */
static void test_window_longer_than_deadline_times_out(void **state) {
        _cleanup_(run_done) run t = { .stable_ms = 10000, .timeout_ms = FAIL_TIMEOUT_MS };

        set_routes(OK_ROUTES ", \"/version\": [[200, \"" VERSION_1_35 "\"]]");
        run_with_child(&t);
        assert_failed(&t, GATE_STABLE, "waiting for stable of kube-apiserver");
        assert_true(t.elapsed_ms < 3000);
}

/* Never healthy: times out in health naming the probe's last answer. */
static void test_never_healthy_times_out(void **state) {
        _cleanup_(run_done) run t = { .stable_ms = 0, .timeout_ms = FAIL_TIMEOUT_MS };

        set_routes("\"/livez\": [[500, \"poststarthook failed\"]], \"/readyz\": [[200, \"ok\"]],"
                   " \"/version\": [[200, \"" VERSION_1_35 "\"]]");
        run_with_child(&t);
        assert_failed(&t, GATE_HEALTH, "waiting for health of kube-apiserver; last probe: GET https://127.0.0.1:");
        assert_non_null(strstr(t.result.message, "/livez: 500"));
        /* In order: /readyz is asked only once /livez passed. */
        assert_int_equal(requests("/readyz", 0), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_passes_through_every_phase),
                cmocka_unit_test(test_process_not_found_times_out),
                cmocka_unit_test(test_process_started_before_swap_is_not_taken),
                cmocka_unit_test(test_process_exits_while_waiting_for_health),
                cmocka_unit_test(test_binary_mismatch_fails_at_once),
                cmocka_unit_test(test_emulated_mismatch_fails),
                cmocka_unit_test(test_emulation_fields_missing_from_1_33_fails),
                cmocka_unit_test(test_min_compat_mismatch_fails),
                cmocka_unit_test(test_old_releases_without_emulation_fields_pass),
                cmocka_unit_test(test_patch_mismatch_is_asked_again),
                cmocka_unit_test(test_no_version_reading_goes_to_health),
                cmocka_unit_test(test_version_unauthorized_gates_on_health),
                cmocka_unit_test(test_version_unauthorized_unhealthy_fails),
                cmocka_unit_test(test_version_forbidden_then_answering_is_checked),
                cmocka_unit_test(test_version_server_error_is_retried),
                cmocka_unit_test(test_version_unreachable_times_out),
                cmocka_unit_test(test_flap_during_window_restarts_it),
                cmocka_unit_test(test_window_longer_than_deadline_times_out),
                cmocka_unit_test(test_never_healthy_times_out),
        };

        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
