/* SPDX-License-Identifier: Apache-2.0 */
/* The image pre-pull's own logic: which images a plan needs, where crictl and the runtime
 * endpoint are found, and running a client to completion, failure, timeout or interruption
 * (with shell scripts standing in for crictl: the end-to-end tests run the fake crictl). */

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "macro.h"
#include "prepull.h"
#include "test-util.h"

static char *scratch(void) {
        char tmpl[] = "/tmp/cplet-prepull-XXXXXX";

        assert_non_null(mkdtemp(tmpl));
        return strdup(tmpl);
}

static void write_file(const char *path, const char *text, mode_t mode) {
        FILE *f = fopen(path, "we");

        assert_non_null(f);
        fputs(text, f);
        assert_int_equal(fclose(f), 0);
        assert_int_equal(chmod(path, mode), 0);
}

/* Creates the directories of `rel` up to its last slash. */
static void mkdir_p(const char *root, const char *rel) {
        char path[4096];

        snprintf(path, sizeof(path), "%s/%s", root, rel);
        for (char *p = path + strlen(root) + 1; (p = strchr(p, '/')); p++) {
                *p = 0;
                (void) mkdir(path, 0755);
                *p = '/';
        }
}

/* A formatted string that lives until the fourth call after. */
static const char *f(const char *fmt, ...) _printf_(1, 2);
static const char *f(const char *fmt, ...) {
        static char bufs[4][4096];
        static size_t next;
        char *b = bufs[next++ % ELEMENTSOF(bufs)];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(b, sizeof(bufs[0]), fmt, ap);
        va_end(ap);
        return b;
}

static size_t strv_len(char **l) {
        size_t n = 0;

        while (l && l[n])
                n++;
        return n;
}

/* ---- the plan's images */

static void test_plan_images(void **state) {
        plan_step steps[] = {
                { .component = 0, .kind = STEP_BINARY, .image = (char *) "r/kube-apiserver:v1.35.0" },
                { .component = 1, .kind = STEP_BINARY, .image = (char *) "r/kube-controller-manager:v1.35.0" },
                /* The same image twice (a node running two components off one image). */
                { .component = 2, .kind = STEP_BINARY, .image = (char *) "r/kube-apiserver:v1.35.0" },
                /* Emulation steps keep the image they ran: nothing new to pull. */
                { .component = 0, .kind = STEP_EMULATION, .image = (char *) "r/kube-apiserver:v1.34.2" },
                { .component = 1, .kind = STEP_MIN_COMPAT, .image = NULL },
        };
        plan p = { .steps = steps, .n_steps = ELEMENTSOF(steps) };
        _cleanup_strv_free_ char **l = NULL;

        assert_int_equal(prepull_plan_images(&p, &l), 0);
        assert_int_equal(strv_len(l), 2);
        assert_string_equal(l[0], "r/kube-apiserver:v1.35.0");
        assert_string_equal(l[1], "r/kube-controller-manager:v1.35.0");
}

static void test_plan_images_none(void **state) {
        plan_step steps[] = {
                { .component = 0, .kind = STEP_EMULATION, .image = (char *) "r/kube-apiserver:v1.35.0" },
        };
        plan p = { .steps = steps, .n_steps = ELEMENTSOF(steps) };
        _cleanup_strv_free_ char **l = NULL;

        assert_int_equal(prepull_plan_images(&p, &l), 0);
        assert_non_null(l);
        assert_null(l[0]);
}

/* ---- finding crictl and the endpoint */

static void test_find_client(void **state) {
        _cleanup_free_ char *d = scratch(), *search = NULL, *found = NULL, *expected = NULL;

        mkdir_p(d, "a/x");
        mkdir_p(d, "b/crictl/x"); /* a directory of that name */
        mkdir_p(d, "c/x");
        mkdir_p(d, "d/x");
        write_file(f("%s/c/crictl", d), "#!/bin/sh\n", 0644); /* not executable */
        write_file(f("%s/d/crictl", d), "#!/bin/sh\n", 0755);
        /* An empty entry and a relative one are the working directory: skipped, even where the
         * working directory has a crictl. */
        mkdir_p(d, "w/b/x");
        write_file(f("%s/w/crictl", d), "#!/bin/sh\n", 0755);
        write_file(f("%s/w/b/crictl", d), "#!/bin/sh\n", 0755);
        search = strdup_printf("%s/a::b:%s/b:%s/c:%s/d", d, d, d, d);
        expected = strdup_printf("%s/d/crictl", d);
        {
                char cwd[4096];

                assert_non_null(getcwd(cwd, sizeof(cwd)));
                assert_int_equal(chdir(f("%s/w", d)), 0);
                assert_int_equal(prepull_find_client(search, &found), 1);
                assert_int_equal(chdir(cwd), 0);
        }
        assert_string_equal(found, expected);

        free(found);
        free(search);
        search = strdup_printf("%s/a:%s/c", d, d);
        assert_int_equal(prepull_find_client(search, &found), 0);
        assert_null(found);
        rm_rf(d);
}

static void expect_args(char **args, const char *a, const char *b) {
        if (!a) {
                assert_non_null(args);
                assert_null(args[0]);
                return;
        }
        assert_int_equal(strv_len(args), 2);
        assert_string_equal(args[0], a);
        assert_string_equal(args[1], b);
}

static void test_endpoint_args(void **state) {
        _cleanup_free_ char *root = scratch(), *bin = scratch();
        _cleanup_free_ char *client = strdup_printf("%s/crictl", bin);
        _cleanup_free_ char *containerd = strdup_printf("%s/run/containerd/containerd.sock", root);
        _cleanup_free_ char *crio = strdup_printf("%s/run/crio/crio.sock", root);
        _cleanup_free_ char *dockerd = strdup_printf("%s/var/run/cri-dockerd.sock", root);
        _cleanup_free_ char *config = strdup_printf("%s/etc/crictl.yaml", root);
        char *none[] = { (char *) "PATH=/usr/bin", NULL };
        char *empty[] = { (char *) "CONTAINER_RUNTIME_ENDPOINT=", NULL };
        char *set[] = { (char *) "PATH=/usr/bin", (char *) "CONTAINER_RUNTIME_ENDPOINT=unix:///x.sock", NULL };
        char *config_env[] = { (char *) "CRI_CONFIG_FILE=/x.yaml", NULL };
        char **args = NULL;

        mkdir_p(root, "run/containerd/x");
        mkdir_p(root, "run/crio/x");
        mkdir_p(root, "var/run/x");
        mkdir_p(root, "etc/x");

        /* Nothing: no runtime to pull through. A file that is not a socket does not count. */
        write_file(dockerd, "", 0644);
        assert_int_equal(prepull_endpoint_args(root, client, none, &args), 0);
        assert_null(args);
        assert_int_equal(prepull_endpoint_args(root, client, empty, &args), 0);

        /* The first socket in crictl's order. */
        make_socket_file(crio);
        assert_int_equal(prepull_endpoint_args(root, client, none, &args), 1);
        expect_args(args, "--runtime-endpoint", f("unix://%s", crio));
        strv_free(args);
        make_socket_file(containerd);
        assert_int_equal(prepull_endpoint_args(root, client, none, &args), 1);
        expect_args(args, "--runtime-endpoint", f("unix://%s", containerd));
        strv_free(args);

        /* The environment names one: crictl reads it. */
        assert_int_equal(prepull_endpoint_args(root, client, set, &args), 1);
        expect_args(args, NULL, NULL);
        strv_free(args);
        assert_int_equal(prepull_endpoint_args(root, client, config_env, &args), 1);
        expect_args(args, NULL, NULL);
        strv_free(args);

        /* A crictl.yaml beside the program: crictl falls back to it. */
        write_file(f("%s/crictl.yaml", bin), "runtime-endpoint: unix:///y.sock\n", 0644);
        assert_int_equal(prepull_endpoint_args(root, client, none, &args), 1);
        expect_args(args, NULL, NULL);
        strv_free(args);

        /* The node's own configuration comes first. */
        write_file(config, "runtime-endpoint: unix:///run/containerd/containerd.sock\n", 0644);
        assert_int_equal(prepull_endpoint_args(root, client, none, &args), 1);
        expect_args(args, "--config", config);
        strv_free(args);
        rm_rf(root);
        rm_rf(bin);
}

/* ---- running the client */

typedef struct recorder {
        char lines[8][256];
        size_t n;
} recorder;

static void on_progress(const prepull_event *ev, void *userdata) {
        recorder *r = userdata;

        assert_true(r->n < ELEMENTSOF(r->lines));
        snprintf(r->lines[r->n++], sizeof(r->lines[0]), "%s %s %zu/%zu %s", ev->event, ev->image, ev->index, ev->n,
                 ev->image_ref ?: "-");
}

typedef struct run {
        char *dir, *client, *log;
        sd_event *event;
        recorder rec;
        char *error;
        bool interrupted;
} run;

/* A stand-in for crictl: `body` after a line that records its arguments. */
static void run_init(run *t, const char *body) {
        _cleanup_free_ char *script = NULL;

        *t = (run){ .dir = scratch() };
        t->client = strdup_printf("%s/crictl", t->dir);
        t->log = strdup_printf("%s/calls", t->dir);
        script = strdup_printf("#!/bin/sh\necho \"$*\" >> '%s'\n%s\n", t->log, body);
        write_file(t->client, script, 0755);
        assert_int_equal(sd_event_new(&t->event), 0);
}

static void run_done(run *t) {
        rm_rf(t->dir);
        free(t->dir);
        free(t->client);
        free(t->log);
        free(t->error);
        sd_event_unref(t->event);
}

static int run_pull(run *t, char **images, uint64_t timeout_usec) {
        char *endpoint[] = { (char *) "--runtime-endpoint", (char *) "unix:///run/containerd/containerd.sock", NULL };
        prepull_options o = { .timeout_usec = timeout_usec, .event = t->event, .interrupted = &t->interrupted,
                              .progress = on_progress, .userdata = &t->rec };

        return prepull_images(t->client, endpoint, images, &o, &t->error);
}

static char *read_all(const char *path) {
        static char buf[4096];
        FILE *f = fopen(path, "re");
        size_t k;

        if (!f)
                return strcpy(buf, "");
        k = fread(buf, 1, sizeof(buf) - 1, f);
        buf[k] = 0;
        fclose(f);
        return buf;
}

static void test_pull_each(void **state) {
        char *images[] = { (char *) "r/a:v1", (char *) "r/b:v1", NULL };
        run t;

        run_init(&t, "echo \"Image is up to date for sha256:abc$#\"");
        assert_int_equal(run_pull(&t, images, 0), 0);
        assert_null(t.error);
        assert_string_equal(read_all(t.log), "--runtime-endpoint unix:///run/containerd/containerd.sock pull r/a:v1\n"
                                             "--runtime-endpoint unix:///run/containerd/containerd.sock pull r/b:v1\n");
        assert_int_equal(t.rec.n, 4);
        assert_string_equal(t.rec.lines[0], "pull r/a:v1 1/2 -");
        assert_string_equal(t.rec.lines[1], "pulled r/a:v1 1/2 sha256:abc4");
        assert_string_equal(t.rec.lines[2], "pull r/b:v1 2/2 -");
        assert_string_equal(t.rec.lines[3], "pulled r/b:v1 2/2 sha256:abc4");
        run_done(&t);
}

/* crictl's stderr when the registry has no such image: the cri-client's klog line, then
 * logrus' fatal line (logfmt: stderr is a pipe). The error names the image and says crictl's
 * message unquoted; the next image is not tried. */
static void test_pull_fails(void **state) {
        char *images[] = { (char *) "r/a:v9", (char *) "r/b:v9", NULL };
        run t;

        run_init(&t, "echo 'E1019 08:42:32.241019  112327 remote_image.go:242] \"PullImage from image service "
                     "failed\" err=\"rpc error\"' >&2\n"
                     "echo 'time=\"2026-01-01T00:00:00Z\" level=fatal msg=\"pulling image: rpc error: code = "
                     "NotFound desc = failed to pull and unpack image \\\"r/a:v9\\\": not found\"' >&2\n"
                     "exit 1");
        assert_int_equal(run_pull(&t, images, 0), -EIO);
        assert_non_null(t.error);
        if (!strstr(t.error, "cannot pull image r/a:v9: pulling image: rpc error: code = NotFound desc = failed to "
                             "pull and unpack image \"r/a:v9\": not found (crictl exit status 1)"))
                fail_msg("error: %s", t.error);
        assert_string_equal(read_all(t.log), "--runtime-endpoint unix:///run/containerd/containerd.sock pull r/a:v9\n");
        assert_int_equal(t.rec.n, 1);
        run_done(&t);
}

/* Only the end of a long stderr is kept: the reason is the last line. */
static void test_pull_fails_long_stderr(void **state) {
        char *images[] = { (char *) "r/a:v9", NULL };
        run t;

        run_init(&t, "i=0; while [ $i -lt 400 ]; do echo 'noise noise noise noise noise noise noise' >&2; "
                     "i=$((i+1)); done\necho 'the real reason' >&2\necho >&2\nexit 3");
        assert_int_equal(run_pull(&t, images, 0), -EIO);
        if (!strstr(t.error, "cannot pull image r/a:v9: the real reason (crictl exit status 3)"))
                fail_msg("error: %s", t.error);
        run_done(&t);
}

static void test_pull_killed(void **state) {
        char *images[] = { (char *) "r/a:v1", NULL };
        run t;

        run_init(&t, "kill -9 $$");
        assert_int_equal(run_pull(&t, images, 0), -EIO);
        if (!strstr(t.error, "r/a:v1") || !strstr(t.error, "killed by signal 9"))
                fail_msg("error: %s", t.error);
        run_done(&t);
}

/* A pull beyond the timeout: crictl is killed (and reaped), the error names the image. */
static void test_pull_timeout(void **state) {
        char *images[] = { (char *) "r/slow:v1", (char *) "r/b:v1", NULL };
        _cleanup_free_ char *body = NULL;
        uint64_t started;
        pid_t pid;
        run t;

        run_init(&t, "");
        body = strdup_printf("#!/bin/sh\necho \"$*\" >> '%s'\necho $$ > '%s/pid'\necho 'still pulling' >&2\n"
                             "exec sleep 30\n",
                             t.log, t.dir);
        write_file(t.client, body, 0755);
        started = now_usec();
        assert_int_equal(run_pull(&t, images, 300 * 1000), -ETIMEDOUT);
        assert_true(now_usec() - started < 5 * 1000 * 1000);
        if (!strstr(t.error, "pulling image r/slow:v1 did not finish within 0.3s (--pull-timeout): crictl said: "
                             "still pulling"))
                fail_msg("error: %s", t.error);
        pid = atoi(read_all(f("%s/pid", t.dir)));
        assert_true(pid > 0);
        assert_int_equal(kill(pid, 0), -1);
        assert_int_equal(errno, ESRCH);
        assert_string_equal(read_all(t.log), "--runtime-endpoint unix:///run/containerd/containerd.sock pull r/slow:v1\n");
        run_done(&t);
}

static void test_pull_interrupted(void **state) {
        char *images[] = { (char *) "r/a:v1", NULL };
        run t;

        run_init(&t, "exec sleep 30");
        t.interrupted = true;
        assert_int_equal(run_pull(&t, images, 0), -EINTR);
        if (!strstr(t.error, "interrupted while pulling image r/a:v1"))
                fail_msg("error: %s", t.error);
        run_done(&t);
}

/* The client's signal mask is a fresh process's, whatever the caller blocks (the CLI blocks
 * SIGINT and SIGTERM for its signalfd). Python, not sh: dash clears its mask at start. */
static void test_pull_signal_mask(void **state) {
        char *images[] = { (char *) "r/a:v1", NULL };
        sigset_t mask, old;
        run t;

        run_init(&t, "");
        write_file(t.client,
                   "#!/usr/bin/env python3\n"
                   "import sys\n"
                   "blk = [l.split()[1] for l in open('/proc/self/status') if l.startswith('SigBlk:')][0]\n"
                   "ign = [l.split()[1] for l in open('/proc/self/status') if l.startswith('SigIgn:')][0]\n"
                   "sys.stderr.write('blocked %s ignored %s\\n' % (blk, ign))\n"
                   "sys.exit(int(blk, 16) != 0 or int(ign, 16) & (1 << 9) != 0)\n",
                   0755);
        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        assert_int_equal(sigprocmask(SIG_BLOCK, &mask, &old), 0);
        /* SIGUSR1 (10, bit 9) ignored here must not stay ignored there. */
        signal(SIGUSR1, SIG_IGN);
        if (run_pull(&t, images, 0) < 0)
                fail_msg("error: %s", t.error);
        signal(SIGUSR1, SIG_DFL);
        assert_int_equal(sigprocmask(SIG_SETMASK, &old, NULL), 0);
        run_done(&t);
}

static void test_client_cannot_run(void **state) {
        char *images[] = { (char *) "r/a:v1", NULL };
        run t;

        run_init(&t, "");
        free(t.client);
        t.client = strdup_printf("%s/missing", t.dir);
        assert_true(run_pull(&t, images, 0) < 0);
        if (!strstr(t.error, "cannot run crictl to pull image r/a:v1"))
                fail_msg("error: %s", t.error);
        run_done(&t);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_plan_images),
                cmocka_unit_test(test_plan_images_none),
                cmocka_unit_test(test_find_client),
                cmocka_unit_test(test_endpoint_args),
                cmocka_unit_test(test_pull_each),
                cmocka_unit_test(test_pull_fails),
                cmocka_unit_test(test_pull_fails_long_stderr),
                cmocka_unit_test(test_pull_killed),
                cmocka_unit_test(test_pull_timeout),
                cmocka_unit_test(test_pull_interrupted),
                cmocka_unit_test(test_pull_signal_mask),
                cmocka_unit_test(test_client_cannot_run),
        };

        return RUN_TAP_GROUP("test-prepull", tests, NULL, NULL);
}
