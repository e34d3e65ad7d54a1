/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "buffer.h"
#include "macro.h"
#include "probe.h"

/* A control-plane command line is a few KiB; anything far larger is not one we are after. */
#define PROC_CMDLINE_MAX (128 * 1024)
/* 52 numeric fields and a comm of at most 64 bytes fit easily. */
#define PROC_STAT_MAX 4096
#define PROBE_HOST_MAX 253
#define PROBE_PATH_MAX 4096
/* A Pod lists a handful of ports; the kubelet itself bounds nothing, we do. */
#define CONTAINER_PORTS_MAX 1024
/* /proc/PID/status is about 1.5 KiB. */
#define PROC_STATUS_MAX 16384
/* Kubernetes' validation bounds for runAsUser. */
#define RUN_AS_USER_MAX INT32_MAX
/* Bounds on what a container's env and command line may expand to. */
#define CONTAINER_ENV_MAX 4096
#define EXPANDED_MAX (128 * 1024)

/* ------------------------------------------------------------------------------------------ */
/* Probes from a container */

void http_probe_done(http_probe *p) {
        if (!p)
                return;
        free(p->scheme);
        free(p->host);
        free(p->path);
        *p = (http_probe){};
}

void http_probes_free(http_probe *probes, size_t n) {
        for (size_t i = 0; i < n; i++)
                http_probe_done(&probes[i]);
        free(probes);
}

char *http_probe_url(const http_probe *p) {
        /* An IPv6 literal needs brackets to be told apart from the port. */
        bool v6 = strchr(p->host, ':') && p->host[0] != '[';

        return strdup_printf("%s://%s%s%s:%u%s", streq(p->scheme, "HTTPS") ? "https" : "http", v6 ? "[" : "",
                             p->host, v6 ? "]" : "", (unsigned) p->port, p->path);
}

static bool valid_host(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > PROBE_HOST_MAX)
                return false;
        /* Host names and IP literals only: anything else ('@', '/', '#', spaces) would change what
         * the URL means. */
        for (const char *c = s; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                      strchr(".-_:", *c)))
                        return false;
        return true;
}

static bool valid_path(const char *s) {
        if (strlen(s) > PROBE_PATH_MAX)
                return false;
        /* curl refuses spaces and control characters; a fragment is never sent. */
        for (const unsigned char *c = (const unsigned char *) s; *c; c++)
                if (*c <= ' ' || *c == 0x7f || *c == '#')
                        return false;
        return true;
}

/* The kubelet builds the URL with Go's url.URL, which puts a '/' in front of a relative path
 * ("livez?exclude=etcd", as OpenShift's manifests spell it); an empty path was defaulted to
 * "/" when the pod was decoded. */
static char *normalize_path(const char *path) {
        if (!path || !*path)
                return strdup("/");
        if (path[0] == '/')
                return strdup(path);
        return strdup_printf("/%s", path);
}

static int normalize_scheme(const char *s, char **ret) {
        const char *v;

        if (!s || !*s || strcasecmp(s, "HTTP") == 0)
                v = "HTTP";
        else if (strcasecmp(s, "HTTPS") == 0)
                v = "HTTPS";
        else
                return -EINVAL;
        *ret = strdup(v);
        return *ret ? 0 : -ENOMEM;
}

static int resolve_port(json_t *container, const char *kind, json_t *port, uint16_t *ret, char **ret_error) {
        json_int_t v;

        if (!port || json_is_null(port))
                return set_error(ret_error, -EINVAL, "%s: httpGet has no port", kind);
        if (json_is_integer(port))
                v = json_integer_value(port);
        else if (json_is_string(port)) {
                /* An IANA name: the kubelet looks it up among the container's ports. */
                const char *name = json_string_value(port);
                json_t *ports = json_object_get(container, "ports"), *item;
                size_t i;
                bool found = false;

                if (json_is_array(ports) && json_array_size(ports) <= CONTAINER_PORTS_MAX)
                        json_array_foreach(ports, i, item) {
                                const char *n = json_string_value(json_object_get(item, "name"));
                                json_t *cp = json_object_get(item, "containerPort");

                                if (!n || !streq(n, name))
                                        continue;
                                if (!json_is_integer(cp))
                                        return set_error(ret_error, -EINVAL,
                                                         "%s: port \"%s\" has no numeric containerPort", kind,
                                                         name);
                                v = json_integer_value(cp);
                                found = true;
                                break;
                        }
                if (!found)
                        return set_error(ret_error, -EINVAL, "%s: port \"%s\" is not a port of the container",
                                         kind, name);
        } else
                return set_error(ret_error, -EINVAL, "%s: port is neither a number nor a port name", kind);

        if (v < 1 || v > 65535)
                return set_error(ret_error, -ERANGE, "%s: port %lld is out of range 1..65535", kind,
                                 (long long) v);
        *ret = (uint16_t) v;
        return 0;
}

/* Returns 1 and fills *ret for an httpGet probe, 0 when the probe is absent or of another kind. */
static int probe_from_json(json_t *container, const char *kind, http_probe *ret, char **ret_error) {
        json_t *probe = json_object_get(container, kind), *get, *v;
        _cleanup_(http_probe_done) http_probe p = {};
        const char *s;
        int r;

        if (!probe || json_is_null(probe))
                return 0;
        if (!json_is_object(probe))
                return set_error(ret_error, -EINVAL, "%s: not a mapping", kind);
        get = json_object_get(probe, "httpGet");
        if (!get || json_is_null(get))
                return 0; /* exec, tcpSocket or grpc: not something cplet runs */
        if (!json_is_object(get))
                return set_error(ret_error, -EINVAL, "%s: httpGet is not a mapping", kind);

        v = json_object_get(get, "scheme");
        if (v && !json_is_null(v) && !json_is_string(v))
                return set_error(ret_error, -EINVAL, "%s: scheme is not a string", kind);
        r = normalize_scheme(json_string_value(v), &p.scheme);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return set_error(ret_error, r, "%s: scheme \"%s\" is neither HTTP nor HTTPS", kind,
                                 json_string_value(v));

        /* The kubelet's default is the pod IP, which for a hostNetwork static pod is the node's;
         * the loopback address reaches the same listener without knowing it. */
        v = json_object_get(get, "host");
        if (v && !json_is_null(v) && !json_is_string(v))
                return set_error(ret_error, -EINVAL, "%s: host is not a string", kind);
        s = json_string_value(v);
        if (s && *s && !valid_host(s))
                return set_error(ret_error, -EINVAL, "%s: host \"%s\" is not a host name or IP address", kind, s);
        p.host = strdup(s && *s ? s : "127.0.0.1");
        if (!p.host)
                return -ENOMEM;

        r = resolve_port(container, kind, json_object_get(get, "port"), &p.port, ret_error);
        if (r < 0)
                return r;

        v = json_object_get(get, "path");
        if (v && !json_is_null(v) && !json_is_string(v))
                return set_error(ret_error, -EINVAL, "%s: path is not a string", kind);
        s = json_string_value(v);
        if (s && !valid_path(s))
                return set_error(ret_error, -EINVAL, "%s: path \"%.64s\" contains characters a URL cannot carry",
                                 kind, s);
        p.path = normalize_path(s);
        if (!p.path)
                return -ENOMEM;

        *ret = p;
        p = (http_probe){};
        return 1;
}

static bool http_probe_equal(const http_probe *a, const http_probe *b) {
        return streq(a->scheme, b->scheme) && streq(a->host, b->host) && a->port == b->port &&
               streq(a->path, b->path);
}

static int probes_from_plugin(const plugin *p, http_probe **ret, size_t *ret_n, char **ret_error) {
        http_probe *probes;
        size_t n = 0;
        int r;

        if (!p || p->n_health_endpoints == 0 || !p->health_endpoints)
                return set_error(ret_error, -ENOENT,
                                 "the container has no httpGet probe and plugin %s names no health endpoint",
                                 p && p->name ? p->name : "(none)");

        probes = calloc(p->n_health_endpoints, sizeof(http_probe));
        if (!probes)
                return -ENOMEM;
        for (; n < p->n_health_endpoints; n++) {
                const struct cplet_health_endpoint *e = &p->health_endpoints[n];

                r = normalize_scheme(e->scheme, &probes[n].scheme);
                if (r == -EINVAL)
                        r = set_error(ret_error, r, "plugin %s: health endpoint %zu: scheme \"%s\" is neither "
                                      "HTTP nor HTTPS", p->name, n, e->scheme);
                else if (r >= 0 && (e->port == 0 || (e->path && !valid_path(e->path))))
                        r = set_error(ret_error, -EINVAL, "plugin %s: health endpoint %zu is invalid", p->name,
                                      n);
                if (r >= 0) {
                        probes[n].host = strdup("127.0.0.1");
                        probes[n].port = e->port;
                        probes[n].path = normalize_path(e->path);
                        if (!probes[n].host || !probes[n].path)
                                r = -ENOMEM;
                }
                if (r < 0) {
                        http_probes_free(probes, n + 1);
                        return r;
                }
        }
        *ret = probes;
        *ret_n = n;
        return 0;
}

int probes_from_container(json_t *container, const plugin *p, http_probe **ret, size_t *ret_n, char **ret_error) {
        static const char *const kinds[] = { "startupProbe", "readinessProbe", "livenessProbe" };
        http_probe found[ELEMENTSOF(kinds)] = {};
        bool have[ELEMENTSOF(kinds)] = {};
        http_probe *out = NULL;
        size_t n = 0;
        int r = 0;

        if (!json_is_object(container))
                return set_error(ret_error, -EINVAL, "the container is not a mapping");

        /* Every httpGet probe is checked, also the one not gated on: the kubelet runs them all, and
         * a broken liveness probe gets the container killed. */
        for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
                r = probe_from_json(container, kinds[i], &found[i], ret_error);
                if (r < 0)
                        goto finish;
                have[i] = r > 0;
        }

        if (!have[0] && !have[1] && !have[2]) {
                r = probes_from_plugin(p, ret, ret_n, ret_error);
                goto finish;
        }

        out = calloc(2, sizeof(http_probe));
        if (!out) {
                r = -ENOMEM;
                goto finish;
        }
        if (have[0]) {
                out[n++] = found[0];
                found[0] = (http_probe){};
        }
        /* Readiness is what "healthy" means to a kubelet; liveness only when there is none. */
        for (size_t i = 1; i < ELEMENTSOF(kinds); i++) {
                if (!have[i])
                        continue;
                if (n == 0 || !http_probe_equal(&out[0], &found[i])) {
                        out[n++] = found[i];
                        found[i] = (http_probe){};
                }
                break;
        }
        *ret = TAKE_PTR(out);
        *ret_n = n;
        r = 0;

finish:
        for (size_t i = 0; i < ELEMENTSOF(kinds); i++)
                http_probe_done(&found[i]);
        return r;
}

/* ------------------------------------------------------------------------------------------ */
/* Processes */

uint64_t boot_ticks_now(void) {
        struct timespec ts;
        long hz = sysconf(_SC_CLK_TCK);

        if (hz <= 0)
                hz = 100;
        if (clock_gettime(CLOCK_BOOTTIME, &ts) < 0)
                return 0;
        /* Truncated like the kernel's nsec_to_clock_t(), so a process started in the same tick
         * compares equal. */
        return (uint64_t) ts.tv_sec * (uint64_t) hz + (uint64_t) ts.tv_nsec * (uint64_t) hz / 1000000000ULL;
}

static bool errno_is_gone(int r) {
        /* The process exited while we looked; EACCES for /proc mounted with hidepid. */
        return r == -ENOENT || r == -ESRCH || r == -EACCES;
}

/* Reads a whole /proc file into buf (size max + 1, NUL-terminated). -E2BIG when it is larger. */
static int read_proc_file(int dirfd, const char *path, char *buf, size_t max, size_t *ret_size) {
        _cleanup_close_ int fd = -EBADF;
        size_t n = 0;

        fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return -errno;
        for (;;) {
                ssize_t k = read(fd, buf + n, max + 1 - n);

                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        break;
                n += (size_t) k;
                if (n > max)
                        return -E2BIG;
        }
        buf[n] = 0;
        *ret_size = n;
        return 0;
}

/* Parses /proc/PID/stat: the state (field 3), the parent (field 4) and starttime (field 22).
 * comm (field 2) may hold spaces and parentheses, so fields are counted from the last ')'. */
static int parse_stat(const char *buf, char *ret_state, pid_t *ret_ppid, uint64_t *ret_start) {
        const char *p = strrchr(buf, ')');
        char state;
        long ppid;

        if (!p || p[1] != ' ' || !p[2])
                return -EIO;
        p += 2;
        state = *p;
        if (sscanf(p + 1, " %ld", &ppid) != 1)
                return -EIO;
        for (int field = 3; field < 22; field++) {
                p = strchr(p, ' ');
                if (!p)
                        return -EIO;
                p++;
        }
        if (*p < '0' || *p > '9')
                return -EIO;
        errno = 0;
        unsigned long long v = strtoull(p, NULL, 10);
        if (errno != 0)
                return -EIO;
        *ret_state = state;
        if (ret_ppid)
                *ret_ppid = (pid_t) ppid;
        *ret_start = v;
        return 0;
}

/* Relative to a /proc descriptor, or to "/proc" with AT_FDCWD. */
static int read_stat(int proc_fd, pid_t pid, char *ret_state, pid_t *ret_ppid, uint64_t *ret_start) {
        char path[32], buf[PROC_STAT_MAX + 1];
        size_t n;
        int r;

        snprintf(path, sizeof(path), "%s%d/stat", proc_fd == AT_FDCWD ? "/proc/" : "", (int) pid);
        r = read_proc_file(proc_fd, path, buf, PROC_STAT_MAX, &n);
        if (r < 0)
                return r;
        return parse_stat(buf, ret_state, ret_ppid, ret_start);
}

static bool state_is_dead(char state) {
        /* Zombie, dead (X, and x on older kernels). */
        return state == 'Z' || state == 'X' || state == 'x';
}

/* Compares the NUL-separated items in [p, end) with argv, byte for byte: the container runtime
 * executes command[0] as the manifest gives it and the kernel shows argv as passed. */
static bool cmdline_equal(const char *p, const char *end, char *const *argv, size_t n) {
        for (size_t i = 0; i < n; i++) {
                if (p >= end || !streq(p, argv[i]))
                        return false;
                p += strlen(p) + 1;
        }
        return p >= end;
}

/* The real and effective uid from /proc/PID/status ("Uid:\treal\teffective\tsaved\tfs"). */
static int read_uids(int proc_fd, pid_t pid, uid_t *ret_real, uid_t *ret_effective) {
        char path[32], buf[PROC_STATUS_MAX + 1];
        unsigned long real, effective;
        const char *l;
        size_t n;
        int r;

        snprintf(path, sizeof(path), "%d/status", (int) pid);
        r = read_proc_file(proc_fd, path, buf, PROC_STATUS_MAX, &n);
        if (r < 0)
                return r;
        l = strstr(buf, "\nUid:");
        if (!l || sscanf(l + 5, "%lu %lu", &real, &effective) != 2)
                return -EIO;
        *ret_real = (uid_t) real;
        *ret_effective = (uid_t) effective;
        return 0;
}

/* What proc_find looks for. */
typedef struct proc_query {
        char *const *argv;
        size_t n;
        uid_t uid;
        uint64_t not_before_ticks;
        char *cmdline; /* scratch, PROC_CMDLINE_MAX + 1 bytes */
} proc_query;

/* Whether the command line of `pid` is exactly the query's argv. */
static int cmdline_is(int proc_fd, pid_t pid, const proc_query *q) {
        char path[32];
        size_t size;
        int r;

        snprintf(path, sizeof(path), "%d/cmdline", (int) pid);
        r = read_proc_file(proc_fd, path, q->cmdline, PROC_CMDLINE_MAX, &size);
        if (r == -E2BIG)
                return 0;
        if (r < 0)
                return r;
        if (size == 0)
                return 0; /* kernel thread, or exited meanwhile */
        /* A process that rewrote its title may leave no final NUL; the buffer has room. */
        if (q->cmdline[size - 1] != 0)
                q->cmdline[size++] = 0;
        return cmdline_equal(q->cmdline, q->cmdline + size, q->argv, q->n);
}

/* Anyone may start a process with this command line; only the kubelet starts it as the
 * container's user. */
static int runs_as(int proc_fd, pid_t pid, uid_t uid) {
        uid_t real, effective;
        int r = read_uids(proc_fd, pid, &real, &effective);

        return r < 0 ? r : real == uid && effective == uid;
}

/* 1 with *ret_start when `pid` is the process the query looks for and started at or after
 * min_start; 0 when not (or gone meanwhile); a negative errno when /proc cannot be read. */
static int candidate(int proc_fd, pid_t pid, const proc_query *q, uint64_t min_start, uint64_t *ret_start) {
        uint64_t start, start2;
        pid_t ppid;
        char state;
        int r;

        /* stat first: it is small, and the start time rules out almost every process. */
        r = read_stat(proc_fd, pid, &state, &ppid, &start);
        if (r >= 0 && (state_is_dead(state) || start < q->not_before_ticks || start < min_start))
                return 0;
        if (r >= 0)
                r = cmdline_is(proc_fd, pid, q);
        if (r > 0)
                r = runs_as(proc_fd, pid, q->uid);
        /* The runtime starts the component; a process with its command line whose parent has it
         * too is a fork of it (before its exec, or a helper), not the component. */
        if (r > 0 && ppid > 1)
                r = cmdline_is(proc_fd, ppid, q) > 0 ? 0 : 1;
        if (r <= 0)
                return r < 0 && !errno_is_gone(r) ? r : 0;
        /* The pid may have been reused between the reads: the start time tells. */
        r = read_stat(proc_fd, pid, &state, NULL, &start2);
        if (r < 0)
                return errno_is_gone(r) ? 0 : r;
        if (start2 != start || state_is_dead(state))
                return 0;
        *ret_start = start;
        return 1;
}

static pid_t pid_of(const char *name) {
        char *end;
        long pid;

        if (name[0] < '1' || name[0] > '9')
                return 0;
        errno = 0;
        pid = strtol(name, &end, 10);
        return errno != 0 || *end || pid <= 0 || pid > INT_MAX ? 0 : (pid_t) pid;
}

int proc_find(char *const *argv, size_t n, uid_t uid, uint64_t not_before_ticks, proc_info *ret) {
        _cleanup_free_ char *cmdline = NULL;
        proc_query q = { .argv = argv, .n = n, .uid = uid, .not_before_ticks = not_before_ticks };
        proc_info best = {};
        bool found = false;
        struct dirent *de;
        int proc_fd, r = 0;
        DIR *d;

        if (!argv || n == 0 || !argv[0])
                return -EINVAL;
        q.cmdline = cmdline = malloc(PROC_CMDLINE_MAX + 1);
        if (!cmdline)
                return -ENOMEM;
        proc_fd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (proc_fd < 0)
                return -errno;
        d = fdopendir(proc_fd);
        if (!d) {
                r = -errno;
                close(proc_fd);
                return r;
        }
        for (errno = 0; r >= 0 && (de = readdir(d)); errno = 0) {
                pid_t pid = pid_of(de->d_name);
                uint64_t start;

                if (pid == 0)
                        continue;
                r = candidate(proc_fd, pid, &q, found ? best.start_ticks : 0, &start);
                if (r <= 0)
                        continue;
                /* The newest such process. */
                if (!found || start > best.start_ticks || pid > best.pid)
                        best = (proc_info){ .pid = pid, .start_ticks = start };
                found = true;
        }
        if (r >= 0 && errno > 0)
                r = -errno;
        closedir(d);
        if (r < 0)
                return r;
        if (!found)
                return 0;
        *ret = best;
        return 1;
}

bool proc_alive(const proc_info *p) {
        char state;
        uint64_t start;

        if (!p || p->pid <= 0)
                return false;
        if (read_stat(AT_FDCWD, p->pid, &state, NULL, &start) < 0)
                return false;
        return start == p->start_ticks && !state_is_dead(state);
}

/* ------------------------------------------------------------------------------------------ */
/* What the kubelet runs for a container */

/* Bounded: an expansion longer than EXPANDED_MAX is refused (E2BIG). */
static int expanded_append(buffer *b, const char *s, size_t n) {
        if (n > EXPANDED_MAX - b->size)
                return -E2BIG;
        return buffer_append(b, s, n);
}

int kube_expand(const char *input, json_t *vars, char **ret, char **ret_unknown) {
        _cleanup_free_ char *data = NULL;
        buffer b = {};
        size_t len = strlen(input), checkpoint = 0;
        int r = 0;

        /* The kubelet's expansion.Expand(): "$$" is "$", "$(NAME)" the variable's value or, when
         * there is no such variable, "$(NAME)" itself; a "$" before anything else, an unclosed
         * "$(", and a "$" at the very end stay as they are. */
        for (size_t cursor = 0; cursor < len && r >= 0; cursor++) {
                const char *close;

                if (input[cursor] != '$' || cursor + 1 >= len)
                        continue;
                r = expanded_append(&b, input + checkpoint, cursor - checkpoint);
                if (r < 0)
                        break;
                if (input[cursor + 1] == '$')
                        r = expanded_append(&b, "$", 1);
                else if (input[cursor + 1] == '(' && (close = strchr(input + cursor + 2, ')'))) {
                        size_t n = (size_t) (close - (input + cursor + 2));
                        _cleanup_free_ char *name = strndup(input + cursor + 2, n);
                        json_t *v;

                        if (!name) {
                                r = -ENOMEM;
                                break;
                        }
                        v = json_object_get(vars, name);
                        if (v && !json_is_string(v)) {
                                /* Defined, but from a source only the node knows (valueFrom). */
                                if (ret_unknown)
                                        *ret_unknown = TAKE_PTR(name);
                                r = -EOPNOTSUPP;
                                break;
                        }
                        if (v)
                                r = expanded_append(&b, json_string_value(v), strlen(json_string_value(v)));
                        else
                                r = expanded_append(&b, input + cursor, n + 3);
                        cursor += n + 2;
                        checkpoint = cursor + 1;
                        continue;
                } else
                        r = expanded_append(&b, input + cursor, 2);
                cursor++;
                checkpoint = cursor + 1;
        }
        if (r >= 0)
                r = expanded_append(&b, input + checkpoint, len - checkpoint);
        data = b.data;
        if (r < 0)
                return r;
        *ret = TAKE_PTR(data);
        return 0;
}

/* The variables command and args may use: the container's env, in order, each value expanded
 * with the ones before it (kubelet makeEnvironmentVariables()). A variable whose value comes
 * from valueFrom is known only to the node (json null). Service links are left out: a static
 * pod cannot count on them, the API server may be down. */
static int container_vars(json_t *container, json_t **ret, char **ret_error) {
        _cleanup_(json_decrefp) json_t *vars = json_object();
        json_t *env = json_object_get(container, "env"), *e;
        size_t i;
        int r;

        if (!vars)
                return -ENOMEM;
        if (env && !json_is_null(env) && !json_is_array(env))
                return set_error(ret_error, -EINVAL, "env is not a list");
        if (json_array_size(env) > CONTAINER_ENV_MAX)
                return set_error(ret_error, -E2BIG, "env has more than %d entries", CONTAINER_ENV_MAX);
        json_array_foreach(env, i, e) {
                const char *name = json_string_value(json_object_get(e, "name"));
                json_t *value = json_object_get(e, "value");
                _cleanup_free_ char *expanded = NULL, *unknown = NULL;
                json_t *v;

                if (!name)
                        return set_error(ret_error, -EINVAL, "env[%zu] has no name", i);
                if (value && !json_is_null(value) && !json_is_string(value))
                        return set_error(ret_error, -EINVAL, "env[%zu] (%s): value is not a string", i, name);
                if (json_string_length(value) > 0) {
                        r = kube_expand(json_string_value(value), vars, &expanded, &unknown);
                        if (r == -EOPNOTSUPP)
                                v = json_null(); /* built from a value only the node knows */
                        else if (r < 0)
                                return set_error(ret_error, r, "env[%zu] (%s): cannot expand its value", i, name);
                        else
                                v = json_string(expanded);
                } else if (json_object_get(e, "valueFrom"))
                        v = json_null();
                else
                        v = json_string("");
                if (!v || json_object_set_new(vars, name, v) < 0)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(vars);
        return 0;
}

/* runAsUser of the container, else of the pod; -ENOENT when neither sets it. */
static int run_as_user(json_t *pod, json_t *container, uid_t *ret, char **ret_error) {
        json_t *spec = json_object_get(pod, "spec");
        json_t *where[] = { json_object_get(container, "securityContext"), json_object_get(spec, "securityContext") };
        static const char *const names[] = { "securityContext.runAsUser", "spec.securityContext.runAsUser" };

        for (size_t i = 0; i < ELEMENTSOF(where); i++) {
                json_t *v = json_object_get(where[i], "runAsUser");

                if (!v || json_is_null(v))
                        continue;
                if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > RUN_AS_USER_MAX)
                        return set_error(ret_error, -EINVAL, "%s is not a user id between 0 and %d", names[i],
                                         RUN_AS_USER_MAX);
                *ret = (uid_t) json_integer_value(v);
                return 0;
        }
        return -ENOENT;
}

int container_process(json_t *pod, json_t *container, char ***ret_argv, size_t *ret_n, uid_t *ret_uid,
                      char **ret_error) {
        static const char *const keys[] = { "command", "args" };
        _cleanup_(json_decrefp) json_t *vars = NULL;
        _cleanup_strv_free_ char **argv = NULL;
        json_t *command = json_object_get(container, "command");
        size_t n = 0;
        uid_t uid = 0;
        int r;

        if (!json_is_object(container))
                return set_error(ret_error, -EINVAL, "the container is not a mapping");
        /* Without a command the image's entrypoint runs, which the manifest does not say. */
        if (!json_is_array(command) || json_array_size(command) == 0)
                return set_error(ret_error, -EINVAL, "the container has no command: the image's entrypoint "
                                 "runs, which cplet cannot recognise");
        r = container_vars(container, &vars, ret_error);
        if (r < 0)
                return r;

        for (size_t k = 0; k < ELEMENTSOF(keys); k++)
                n += json_array_size(json_object_get(container, keys[k]));
        argv = calloc(n + 1, sizeof(char *));
        if (!argv)
                return -ENOMEM;
        n = 0;
        for (size_t k = 0; k < ELEMENTSOF(keys); k++) {
                json_t *a = json_object_get(container, keys[k]), *v;
                size_t i;

                json_array_foreach(a, i, v) {
                        _cleanup_free_ char *unknown = NULL;

                        if (!json_is_string(v))
                                return set_error(ret_error, -EINVAL, "%s[%zu] is not a string", keys[k], i);
                        r = kube_expand(json_string_value(v), vars, &argv[n], &unknown);
                        if (r == -EOPNOTSUPP)
                                return set_error(ret_error, r, "%s[%zu] uses $(%s), whose value comes from "
                                                 "valueFrom: cplet cannot know the command line", keys[k], i,
                                                 unknown);
                        if (r < 0)
                                return set_error(ret_error, r, "%s[%zu] cannot be expanded", keys[k], i);
                        n++;
                }
        }

        r = run_as_user(pod, container, &uid, ret_error);
        if (r == -ENOENT) {
                /* The image's user: root for the Kubernetes images. An unprivileged cplet (a test
                 * node under --root) stands in for root, as it does for the ownership checks: its
                 * kubelet cannot start anything as root either. */
                uid = geteuid();
                r = 0;
        }
        if (r < 0)
                return r;

        *ret_argv = TAKE_PTR(argv);
        *ret_n = n;
        *ret_uid = uid;
        return 0;
}
