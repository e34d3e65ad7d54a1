/* SPDX-License-Identifier: Apache-2.0 */
/* An LD_PRELOAD library for crash and durability tests (never installed, never linked into
 * cplet): it counts the durable operations a process performs on files under one directory
 * tree (the node root) and, per environment variable, records them, kills the process at the
 * Nth, or makes the Nth fail with an errno. Production code carries no test hook; the shim
 * sits between cplet and libc.
 *
 * Durable operations (the name in the log, then the libc functions counted as it):
 *   write     write, pwrite, pwrite64, writev   of a file under the root
 *   fsync     fsync, fdatasync                  of a file or directory under the root
 *   rename    rename, renameat, renameat2       either path under the root
 *   mkdir     mkdir, mkdirat
 *   unlink    unlink, unlinkat
 *   truncate  ftruncate, ftruncate64            of a file under the root
 * Calls on anything else (pipes, sockets, /proc, files outside the root: libc, curl and the
 * log itself) are not counted, so they never move the count.
 *
 * Environment:
 *   CPLET_SHIM_ROOT     absolute, canonical path of the tree to watch; without it the shim
 *                       does nothing
 *   CPLET_SHIM_LOG      append one line per counted operation:
 *                       "N<TAB>op<TAB>path<TAB>path2<TAB>result", paths relative to the root
 *                       ("." for the root itself, "-" for no second path), result "0",
 *                       "-ENOENT", "kill" or "inject:-EIO"
 *   CPLET_SHIM_KILL_AT  N: SIGKILL the process at the Nth counted operation, before it runs
 *   CPLET_SHIM_FAIL_AT  N: the Nth counted operation does not run and fails with
 *   CPLET_SHIM_ERRNO    EIO (default), ENOSPC, EROFS, or a number;
 *   CPLET_SHIM_FAIL_COUNT  how many counted operations fail from the Nth on (default 1,
 *                       0: every one from then on, like a full disk)
 *   CPLET_SHIM_OPS      comma-separated operation names to count (default: all)
 *   CPLET_SHIM_PATH     count only operations whose path (or second path) contains this
 */
/* Both pwrite and pwrite64 are defined below: no redirection of one to the other. */
#undef _FILE_OFFSET_BITS
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

static const char *root;
static size_t root_len;
static int log_fd = -1;
static unsigned long kill_at, fail_at, fail_count = 1, counter;
static int fail_errno = EIO;
static const char *ops_filter, *path_filter;
static bool ready;

static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_rename)(const char *, const char *);
static int (*real_renameat)(int, const char *, int, const char *);
static int (*real_renameat2)(int, const char *, int, const char *, unsigned);
static int (*real_mkdir)(const char *, mode_t);
static int (*real_mkdirat)(int, const char *, mode_t);
static int (*real_unlink)(const char *);
static int (*real_unlinkat)(int, const char *, int);
static int (*real_ftruncate)(int, off_t);
static int (*real_ftruncate64)(int, off_t);

static const struct {
        const char *name;
        int value;
} errno_names[] = {
        { "EIO", EIO }, { "ENOSPC", ENOSPC }, { "EROFS", EROFS }, { "EDQUOT", EDQUOT },
        { "EACCES", EACCES }, { "EPERM", EPERM }, { "ENOENT", ENOENT }, { "EEXIST", EEXIST },
        { "EINTR", EINTR }, { "EBADF", EBADF }, { "ENOTDIR", ENOTDIR }, { "ELOOP", ELOOP },
        { "EINVAL", EINVAL }, { "EXDEV", EXDEV }, { "ENOTEMPTY", ENOTEMPTY },
};

static const char *errno_name(int e) {
        static char buf[16];

        for (size_t i = 0; i < sizeof(errno_names) / sizeof(errno_names[0]); i++)
                if (errno_names[i].value == e)
                        return errno_names[i].name;
        snprintf(buf, sizeof(buf), "%d", e);
        return buf;
}

static void *next(const char *name) {
        return dlsym(RTLD_NEXT, name);
}

__attribute__((constructor)) static void shim_init(void) {
        const char *v;

        real_write = next("write");
        real_pwrite = next("pwrite");
        real_pwrite64 = next("pwrite64");
        real_writev = next("writev");
        real_fsync = next("fsync");
        real_fdatasync = next("fdatasync");
        real_rename = next("rename");
        real_renameat = next("renameat");
        real_renameat2 = next("renameat2");
        real_mkdir = next("mkdir");
        real_mkdirat = next("mkdirat");
        real_unlink = next("unlink");
        real_unlinkat = next("unlinkat");
        real_ftruncate = next("ftruncate");
        real_ftruncate64 = next("ftruncate64");

        root = getenv("CPLET_SHIM_ROOT");
        if (!root || root[0] != '/')
                return;
        root_len = strlen(root);
        while (root_len > 1 && root[root_len - 1] == '/')
                root_len--;
        v = getenv("CPLET_SHIM_LOG");
        if (v && *v)
                log_fd = open(v, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        v = getenv("CPLET_SHIM_KILL_AT");
        if (v)
                kill_at = strtoul(v, NULL, 10);
        v = getenv("CPLET_SHIM_FAIL_AT");
        if (v)
                fail_at = strtoul(v, NULL, 10);
        v = getenv("CPLET_SHIM_FAIL_COUNT");
        if (v)
                fail_count = strtoul(v, NULL, 10);
        v = getenv("CPLET_SHIM_ERRNO");
        if (v && *v) {
                fail_errno = 0;
                for (size_t i = 0; i < sizeof(errno_names) / sizeof(errno_names[0]); i++)
                        if (strcmp(errno_names[i].name, v) == 0)
                                fail_errno = errno_names[i].value;
                if (!fail_errno)
                        fail_errno = atoi(v) > 0 ? atoi(v) : EIO;
        }
        ops_filter = getenv("CPLET_SHIM_OPS");
        path_filter = getenv("CPLET_SHIM_PATH");
        ready = true;
}

/* The path relative to the root ("." for the root), or NULL when it is not under it. */
static const char *under_root(const char *path) {
        if (strncmp(path, root, root_len) != 0)
                return NULL;
        if (path[root_len] == 0)
                return ".";
        if (path[root_len] != '/' && root_len > 1)
                return NULL;
        return path + root_len + (root_len > 1);
}

static bool fd_path(int fd, char *buf, size_t size) {
        char link[64];
        ssize_t n;

        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        n = readlink(link, buf, size - 1);
        if (n < 0)
                return false;
        buf[n] = 0;
        return true;
}

static bool at_path(int dirfd, const char *name, char *buf, size_t size) {
        char dir[PATH_MAX];

        if (!name)
                return false;
        if (name[0] == '/') {
                snprintf(buf, size, "%s", name);
                return true;
        }
        if (dirfd == AT_FDCWD) {
                if (!getcwd(dir, sizeof(dir)))
                        return false;
        } else if (!fd_path(dirfd, dir, sizeof(dir)))
                return false;
        if (name[0] == 0)
                name = ".";
        /* Longer paths than PATH_MAX are not cplet's: cut, they cannot match the root. */
        if (snprintf(buf, size, "%s/%s", strcmp(dir, "/") == 0 ? "" : dir, name) >= (int) size)
                return false;
        return true;
}

static bool op_selected(const char *op) {
        size_t l = strlen(op);

        if (!ops_filter || !*ops_filter)
                return true;
        for (const char *p = ops_filter; p && *p;) {
                const char *comma = strchr(p, ',');
                size_t n = comma ? (size_t) (comma - p) : strlen(p);

                if (n == l && strncmp(p, op, l) == 0)
                        return true;
                p = comma ? comma + 1 : NULL;
        }
        return false;
}

static void log_line(unsigned long n, const char *op, const char *p1, const char *p2, const char *result) {
        char line[2 * PATH_MAX + 128];
        int len;

        if (log_fd < 0)
                return;
        len = snprintf(line, sizeof(line), "%lu\t%s\t%s\t%s\t%s\n", n, op, p1, p2 ?: "-", result);
        if (len > 0)
                (void) real_write(log_fd, line, (size_t) len < sizeof(line) ? (size_t) len : sizeof(line) - 1);
}

/* One counted operation in flight. */
typedef struct op {
        unsigned long n; /* 0: not counted */
        const char *name;
        char p1[PATH_MAX], p2[PATH_MAX];
        const char *rel1, *rel2;
} op;

/* Decides about an operation on rel1 (and rel2): counts it when it is watched; returns true
 * when it must fail instead of running (errno set). Kills the process when asked to. */
static bool before(op *o, const char *name) {
        o->n = 0;
        o->name = name;
        if (!ready || (!o->rel1 && !o->rel2))
                return false;
        if (!op_selected(name))
                return false;
        if (path_filter && *path_filter && !(o->rel1 && strstr(o->rel1, path_filter)) &&
            !(o->rel2 && strstr(o->rel2, path_filter)))
                return false;
        o->n = __atomic_add_fetch(&counter, 1, __ATOMIC_SEQ_CST);
        if (kill_at && o->n == kill_at) {
                log_line(o->n, name, o->rel1 ?: "-", o->rel2, "kill");
                kill(getpid(), SIGKILL);
                for (;;)
                        pause();
        }
        if (fail_at && o->n >= fail_at && (fail_count == 0 || o->n < fail_at + fail_count)) {
                char result[48];

                snprintf(result, sizeof(result), "inject:-%s", errno_name(fail_errno));
                log_line(o->n, name, o->rel1 ?: "-", o->rel2, result);
                errno = fail_errno;
                return true;
        }
        return false;
}

static void after(op *o, long r) {
        char result[32];

        if (!o->n)
                return;
        if (r < 0)
                snprintf(result, sizeof(result), "-%s", errno_name(errno));
        else
                snprintf(result, sizeof(result), "%ld", r < 0 ? r : 0L);
        log_line(o->n, o->name, o->rel1 ?: "-", o->rel2, result);
}

static void on_fd(op *o, int fd) {
        o->rel1 = o->rel2 = NULL;
        if (ready && fd_path(fd, o->p1, sizeof(o->p1)))
                o->rel1 = under_root(o->p1);
}

static void on_at(op *o, int dirfd, const char *name) {
        o->rel1 = o->rel2 = NULL;
        if (ready && at_path(dirfd, name, o->p1, sizeof(o->p1)))
                o->rel1 = under_root(o->p1);
}

static void on_at2(op *o, int d1, const char *n1, int d2, const char *n2) {
        on_at(o, d1, n1);
        if (ready && at_path(d2, n2, o->p2, sizeof(o->p2)))
                o->rel2 = under_root(o->p2);
}

#define RUN(o, name, call)                              \
        ({                                              \
                long _r;                                \
                int _e;                                 \
                if (before(&(o), name))                 \
                        return -1;                      \
                _r = (long) (call);                     \
                _e = errno;                             \
                after(&(o), _r);                        \
                errno = _e;                             \
                _r;                                     \
        })

EXPORT ssize_t write(int fd, const void *buf, size_t count) {
        op o;

        if (!real_write)
                real_write = next("write");
        if (fd <= 2 || !ready)
                return real_write(fd, buf, count);
        on_fd(&o, fd);
        return RUN(o, "write", real_write(fd, buf, count));
}

EXPORT ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
        op o;

        on_fd(&o, fd);
        return RUN(o, "write", real_pwrite(fd, buf, count, offset));
}

EXPORT ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset) {
        op o;

        on_fd(&o, fd);
        return RUN(o, "write", real_pwrite64(fd, buf, count, offset));
}

EXPORT ssize_t writev(int fd, const struct iovec *iov, int iovcnt) {
        op o;

        if (fd <= 2 || !ready)
                return real_writev(fd, iov, iovcnt);
        on_fd(&o, fd);
        return RUN(o, "write", real_writev(fd, iov, iovcnt));
}

EXPORT int fsync(int fd) {
        op o;

        on_fd(&o, fd);
        return (int) RUN(o, "fsync", real_fsync(fd));
}

EXPORT int fdatasync(int fd) {
        op o;

        on_fd(&o, fd);
        return (int) RUN(o, "fsync", real_fdatasync(fd));
}

EXPORT int rename(const char *oldpath, const char *newpath) {
        op o;

        on_at2(&o, AT_FDCWD, oldpath, AT_FDCWD, newpath);
        return (int) RUN(o, "rename", real_rename(oldpath, newpath));
}

EXPORT int renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath) {
        op o;

        on_at2(&o, olddirfd, oldpath, newdirfd, newpath);
        return (int) RUN(o, "rename", real_renameat(olddirfd, oldpath, newdirfd, newpath));
}

EXPORT int renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned flags) {
        op o;

        on_at2(&o, olddirfd, oldpath, newdirfd, newpath);
        return (int) RUN(o, "rename", real_renameat2(olddirfd, oldpath, newdirfd, newpath, flags));
}

EXPORT int mkdir(const char *path, mode_t mode) {
        op o;

        on_at(&o, AT_FDCWD, path);
        return (int) RUN(o, "mkdir", real_mkdir(path, mode));
}

EXPORT int mkdirat(int dirfd, const char *path, mode_t mode) {
        op o;

        on_at(&o, dirfd, path);
        return (int) RUN(o, "mkdir", real_mkdirat(dirfd, path, mode));
}

EXPORT int unlink(const char *path) {
        op o;

        on_at(&o, AT_FDCWD, path);
        return (int) RUN(o, "unlink", real_unlink(path));
}

EXPORT int unlinkat(int dirfd, const char *path, int flags) {
        op o;

        on_at(&o, dirfd, path);
        return (int) RUN(o, "unlink", real_unlinkat(dirfd, path, flags));
}

EXPORT int ftruncate(int fd, off_t length) {
        op o;

        on_fd(&o, fd);
        return (int) RUN(o, "truncate", real_ftruncate(fd, length));
}

EXPORT int ftruncate64(int fd, off_t length) {
        op o;

        on_fd(&o, fd);
        return (int) RUN(o, "truncate", real_ftruncate64(fd, length));
}
