/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "macro.h"
#include "prepull.h"

#define CLIENT_NAME "crictl"
#define SERVICE_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
/* Where pidfds are missing (kernels before 5.3, a seccomp filter that refuses them): how often
 * to ask whether crictl has exited. */
#define REAP_POLL_USEC (20 * 1000)
#define OUT_MAX 1024
#define ERR_MAX 8192
#define READ_MAX 4096
_Static_assert(READ_MAX < ERR_MAX, "one read fits the stderr buffer");

const char *const prepull_default_sockets[] = {
        "/run/containerd/containerd.sock",
        "/run/crio/crio.sock",
        "/var/run/cri-dockerd.sock",
        NULL,
};

static bool strv_contains(char *const *l, const char *s) {
        for (; l && *l; l++)
                if (streq(*l, s))
                        return true;
        return false;
}

static int strv_push(char ***l, size_t *n, const char *s) {
        char **m = realloc(*l, (*n + 2) * sizeof(char *));

        if (!m)
                return -ENOMEM;
        *l = m;
        if (!(m[*n] = strdup(s)))
                return -ENOMEM;
        m[++*n] = NULL;
        return 0;
}

int prepull_plan_images(const plan *p, char ***ret) {
        _cleanup_strv_free_ char **l = calloc(1, sizeof(char *));
        size_t n = 0;
        int r;

        if (!l)
                return -ENOMEM;
        for (size_t i = 0; i < p->n_steps; i++) {
                const plan_step *st = &p->steps[i];

                if (st->kind != STEP_BINARY || !st->image || strv_contains(l, st->image))
                        continue;
                r = strv_push(&l, &n, st->image);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

static bool is_executable_file(const char *path) {
        struct stat st;

        return stat(path, &st) >= 0 && S_ISREG(st.st_mode) && access(path, X_OK) >= 0;
}

int prepull_find_client(const char *search_path, char **ret) {
        const char *p = search_path ?: SERVICE_PATH;

        while (*p) {
                size_t len = strcspn(p, ":");

                /* An empty entry would mean the working directory: never run a program from there. */
                if (len > 0 && p[0] == '/') {
                        _cleanup_free_ char *path = strdup_printf("%.*s/%s", (int) len, p, CLIENT_NAME);

                        if (!path)
                                return -ENOMEM;
                        if (is_executable_file(path)) {
                                *ret = TAKE_PTR(path);
                                return 1;
                        }
                }
                p += len;
                if (*p == ':')
                        p++;
        }
        *ret = NULL;
        return 0;
}

static bool environ_has(char *const *environ_, const char *name) {
        size_t len = strlen(name);

        for (; environ_ && *environ_; environ_++)
                if (strneq(*environ_, name, len) && (*environ_)[len] == '=' && (*environ_)[len + 1])
                        return true;
        return false;
}

static bool exists(const char *path, mode_t type) {
        struct stat st;

        return stat(path, &st) >= 0 && (st.st_mode & S_IFMT) == type;
}

/* crictl's own order (cmd/crictl/main.go): flags, then the environment, then its
 * configuration file (--config, else /etc/crictl.yaml, else crictl.yaml in the program's
 * directory), then the default endpoints, the first that answers. cplet passes an endpoint only
 * where crictl would have guessed one, and only one that exists: crictl's guessing logs
 * deprecation warnings and waits on each endpoint that is not there. */
int prepull_endpoint_args(const char *root, const char *client, char *const *environ_, char ***ret_args) {
        static const char *const names[] = { "CONTAINER_RUNTIME_ENDPOINT", "IMAGE_SERVICE_ENDPOINT",
                                             "CRI_CONFIG_FILE" };
        const char *prefix = streq(root, "/") ? "" : root;
        _cleanup_strv_free_ char **args = calloc(1, sizeof(char *));
        _cleanup_free_ char *config = NULL, *beside = NULL;
        const char *slash = strrchr(client, '/');
        size_t n = 0;
        int r;

        if (!args)
                return -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (environ_has(environ_, names[i])) {
                        *ret_args = TAKE_PTR(args);
                        return 1;
                }
        config = strdup_printf("%s/etc/crictl.yaml", prefix);
        beside = slash ? strdup_printf("%.*s/crictl.yaml", (int) (slash - client), client) : NULL;
        if (!config || (slash && !beside))
                return -ENOMEM;
        if (exists(config, S_IFREG)) {
                r = strv_push(&args, &n, "--config");
                if (r >= 0)
                        r = strv_push(&args, &n, config);
                if (r < 0)
                        return r;
                *ret_args = TAKE_PTR(args);
                return 1;
        }
        if (beside && exists(beside, S_IFREG)) {
                *ret_args = TAKE_PTR(args);
                return 1;
        }
        for (size_t i = 0; prepull_default_sockets[i]; i++) {
                _cleanup_free_ char *path = strdup_printf("%s%s", prefix, prepull_default_sockets[i]);
                _cleanup_free_ char *endpoint = path ? strdup_printf("unix://%s", path) : NULL;

                if (!endpoint)
                        return -ENOMEM;
                if (!exists(path, S_IFSOCK))
                        continue;
                r = strv_push(&args, &n, "--runtime-endpoint");
                if (r >= 0)
                        r = strv_push(&args, &n, endpoint);
                if (r < 0)
                        return r;
                *ret_args = TAKE_PTR(args);
                return 1;
        }
        *ret_args = NULL;
        return 0;
}

/* One crictl pull while it runs. */
typedef struct pull {
        sd_event *event;
        pid_t pid;
        int status;
        bool exited, timed_out;
        sd_event_source *child, *out, *err, *deadline;
        char out_buf[OUT_MAX + 1]; /* the first bytes of stdout */
        size_t out_len;
        char err_buf[ERR_MAX + 1]; /* the last bytes of stderr */
        size_t err_len;
} pull;

static void pull_reaped(pull *p) {
        if (p->exited || waitpid(p->pid, &p->status, WNOHANG) <= 0)
                return;
        p->exited = true;
        p->child = sd_event_source_disable_unref(p->child);
}

static int on_child_fd(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        pull_reaped(userdata);
        return 0;
}

static int on_child_poll(sd_event_source *s, uint64_t usec, void *userdata) {
        pull *p = userdata;

        int r;

        pull_reaped(p);
        if (p->exited)
                return 0;
        r = sd_event_source_set_time_relative(s, REAP_POLL_USEC);
        return r < 0 ? r : sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

static int on_output(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        pull *p = userdata;
        bool is_err = s == p->err;
        char buf[READ_MAX];
        ssize_t k = read(fd, buf, sizeof(buf));

        if (k < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (k <= 0) {
                if (is_err)
                        p->err = sd_event_source_disable_unref(p->err);
                else
                        p->out = sd_event_source_disable_unref(p->out);
                return 0;
        }
        if (!is_err) {
                size_t take = MIN((size_t) k, OUT_MAX - p->out_len);

                memcpy(p->out_buf + p->out_len, buf, take);
                p->out_len += take;
                return 0;
        }
        /* Keep the end: the reason comes last (one read is less than the buffer). */
        size_t drop = p->err_len + (size_t) k > ERR_MAX ? p->err_len + (size_t) k - ERR_MAX : 0;

        memmove(p->err_buf, p->err_buf + drop, p->err_len - drop);
        memcpy(p->err_buf + p->err_len - drop, buf, (size_t) k);
        p->err_len = p->err_len - drop + (size_t) k;
        return 0;
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *userdata) {
        pull *p = userdata;

        p->timed_out = true;
        return 0;
}

/* Owns fd: the source closes it. */
static int watch_output(pull *p, int fd, sd_event_source **ret) {
        int r = sd_event_add_io(p->event, ret, fd, EPOLLIN, on_output, p);

        if (r < 0) {
                close(fd);
                return r;
        }
        return sd_event_source_set_io_fd_own(*ret, true);
}

static int watch_child(pull *p) {
        int fd = (int) syscall(SYS_pidfd_open, p->pid, 0);
        int r;

        if (fd < 0)
                return sd_event_add_time_relative(p->event, &p->child, CLOCK_MONOTONIC, REAP_POLL_USEC, 1000,
                                                  on_child_poll, p);
        r = sd_event_add_io(p->event, &p->child, fd, EPOLLIN, on_child_fd, p);
        if (r < 0) {
                close(fd);
                return r;
        }
        return sd_event_source_set_io_fd_own(p->child, true);
}

/* stdin from /dev/null, stdout and stderr into the pipes; signals as a fresh process has them
 * (the CLI blocks SIGINT and SIGTERM for its signalfd). */
static int spawn(pull *p, char *const *argv, int out_fd, int err_fd) {
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t none, all;
        int r;

        sigemptyset(&none);
        sigfillset(&all);
        r = posix_spawn_file_actions_init(&fa);
        if (r != 0)
                return -r;
        r = posix_spawnattr_init(&attr);
        if (r != 0) {
                posix_spawn_file_actions_destroy(&fa);
                return -r;
        }
        r = posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(&fa, out_fd, STDOUT_FILENO);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(&fa, err_fd, STDERR_FILENO);
        if (r == 0)
                r = posix_spawnattr_setsigmask(&attr, &none);
        if (r == 0)
                r = posix_spawnattr_setsigdefault(&attr, &all);
        if (r == 0)
                r = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        if (r == 0)
                r = posix_spawn(&p->pid, argv[0], &fa, &attr, argv, environ);
        posix_spawnattr_destroy(&attr);
        posix_spawn_file_actions_destroy(&fa);
        return -r;
}

static int pull_start(pull *p, char *const *argv, uint64_t timeout_usec) {
        int out[2] = { -EBADF, -EBADF }, err[2] = { -EBADF, -EBADF };
        int r;

        if (pipe2(out, O_CLOEXEC | O_NONBLOCK) < 0 || pipe2(err, O_CLOEXEC | O_NONBLOCK) < 0) {
                r = -errno;
                for (size_t i = 0; i < 2; i++)
                        if (out[i] >= 0)
                                close(out[i]);
                return r;
        }
        r = spawn(p, argv, out[1], err[1]);
        close(out[1]);
        close(err[1]);
        if (r < 0) {
                close(out[0]);
                close(err[0]);
                return r;
        }
        r = watch_output(p, out[0], &p->out);
        if (r >= 0)
                r = watch_output(p, err[0], &p->err);
        else
                close(err[0]);
        if (r >= 0)
                r = watch_child(p);
        if (r >= 0)
                r = sd_event_add_time_relative(p->event, &p->deadline, CLOCK_MONOTONIC, timeout_usec, 1000 * 1000,
                                               on_deadline, p);
        return r;
}

/* Kills crictl if it still runs and reaps it; releases the sources. */
static void pull_release(pull *p) {
        if (p->pid > 0 && !p->exited) {
                (void) kill(p->pid, SIGKILL);
                while (waitpid(p->pid, &p->status, 0) < 0 && errno == EINTR)
                        ;
        }
        p->child = sd_event_source_disable_unref(p->child);
        p->out = sd_event_source_disable_unref(p->out);
        p->err = sd_event_source_disable_unref(p->err);
        p->deadline = sd_event_source_disable_unref(p->deadline);
}

/* Until crictl has exited and closed its output, the deadline, or an interruption. */
static int pull_wait(pull *p, const volatile bool *interrupted) {
        int r;

        while (!p->exited || p->out || p->err) {
                if (p->timed_out)
                        return -ETIMEDOUT;
                if (interrupted && *interrupted)
                        return -EINTR;
                r = sd_event_run(p->event, UINT64_MAX);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* crictl logs through logrus: `time="..." level=fatal msg="pulling image: rpc error: ..."` when
 * stderr is not a terminal. The message is what a person needs; anything else is kept whole. */
static char *unwrap_logfmt(const char *line) {
        const char *m = strstr(line, " msg=\"");
        char *s, *o;

        if (!m || !strstr(line, "level="))
                return strdup(line);
        s = o = strdup(m + 6);
        if (!s)
                return NULL;
        for (const char *i = s; *i; i++) {
                if (*i == '"')
                        break;
                if (*i == '\\' && i[1])
                        i++;
                *o++ = *i;
        }
        *o = 0;
        return s;
}

/* The last line crictl wrote on stderr that says something (NULL: none). */
static char *last_line(const pull *p) {
        _cleanup_free_ char *text = strndup(p->err_buf, p->err_len);
        char *end, *start;

        if (!text)
                return NULL;
        end = text + strlen(text);
        while (end > text && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
                *--end = 0;
        if (end == text)
                return NULL;
        start = strrchr(text, '\n');
        return unwrap_logfmt(start ? start + 1 : text);
}

static int pull_failed(const pull *p, const char *image, int r, uint64_t timeout_usec, char **ret_error) {
        _cleanup_free_ char *why = last_line(p);

        if (r == -ETIMEDOUT)
                return set_error(ret_error, r,
                                 "pulling image %s did not finish within %gs (--pull-timeout)%s%s; nothing was "
                                 "written",
                                 image, timeout_usec / 1e6, why ? ": crictl said: " : "", why ?: "");
        if (r == -EINTR)
                return set_error(ret_error, r, "interrupted while pulling image %s; nothing was written", image);
        if (r < 0)
                return set_error(ret_error, r, "cannot run crictl to pull image %s: %s", image, strerror(-r));
        if (WIFEXITED(p->status))
                return set_error(ret_error, -EIO, "cannot pull image %s: %s%s%d%s; nothing was written", image,
                                 why ?: "", why ? " (crictl exit status " : "crictl exited with status ",
                                 WEXITSTATUS(p->status), why ? ")" : "");
        return set_error(ret_error, -EIO,
                         "cannot pull image %s: crictl was killed by signal %d%s%s; nothing was written", image,
                         WTERMSIG(p->status), why ? ": " : "", why ?: "");
}

/* "Image is up to date for sha256:..." (cmd/crictl/image.go). */
static const char *image_ref(pull *p) {
        const char *ref;

        p->out_buf[p->out_len] = 0;
        ref = strstr(p->out_buf, "Image is up to date for ");
        if (!ref)
                return NULL;
        ref += strlen("Image is up to date for ");
        p->out_buf[ref - p->out_buf + strcspn(ref, "\r\n")] = 0;
        return *ref ? ref : NULL;
}

static void emit(const prepull_options *o, const char *event, const char *image, size_t index, size_t n,
                 uint64_t elapsed, const char *ref) {
        prepull_event ev = { .event = event, .image = image, .index = index, .n = n, .elapsed_usec = elapsed,
                             .image_ref = ref };

        if (o->progress)
                o->progress(&ev, o->userdata);
}

static int pull_one(const char *client, char *const *endpoint_args, const char *image, size_t index, size_t n,
                    const prepull_options *o, char **ret_error) {
        uint64_t timeout = o->timeout_usec ?: PREPULL_TIMEOUT_DEFAULT_USEC, started = now_usec();
        _cleanup_free_ char **argv = NULL;
        size_t n_args = 0, k = 0;
        pull p = { .event = o->event };
        int r;

        while (endpoint_args && endpoint_args[n_args])
                n_args++;
        argv = calloc(n_args + 4, sizeof(char *));
        if (!argv)
                return -ENOMEM;
        argv[k++] = (char *) client;
        for (size_t i = 0; i < n_args; i++)
                argv[k++] = endpoint_args[i];
        argv[k++] = (char *) "pull";
        argv[k++] = (char *) image;

        emit(o, "pull", image, index, n, 0, NULL);
        r = pull_start(&p, argv, timeout);
        if (r >= 0)
                r = pull_wait(&p, o->interrupted);
        pull_release(&p);
        if (r < 0 || !WIFEXITED(p.status) || WEXITSTATUS(p.status) != 0)
                return pull_failed(&p, image, r, timeout, ret_error);
        emit(o, "pulled", image, index, n, now_usec() - started, image_ref(&p));
        return 0;
}

int prepull_images(const char *client, char *const *endpoint_args, char *const *images, const prepull_options *o,
                   char **ret_error) {
        size_t n = 0;
        int r;

        while (images && images[n])
                n++;
        for (size_t i = 0; i < n; i++) {
                r = pull_one(client, endpoint_args, images[i], i + 1, n, o, ret_error);
                if (r < 0)
                        return r;
        }
        return 0;
}
