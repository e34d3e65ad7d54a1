/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "fs-util.h"
#include "macro.h"
#include "podlog.h"

#define TAIL_BYTES 4096

/* The entry of `dirfd` whose name passes `match` with the newest mtime. */
static char *newest_entry(int dirfd, bool (*match)(const char *name, const void *data), const void *data,
                          bool want_dir) {
        _cleanup_free_ char *best = NULL;
        struct timespec best_time = {};
        struct dirent *de;
        DIR *d = opendir_dup(dirfd);

        if (!d)
                return NULL;
        while ((de = readdir(d))) {
                struct stat st;

                if (de->d_name[0] == '.' || !match(de->d_name, data) ||
                    fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
                    (want_dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)))
                        continue;
                if (!best || st.st_mtim.tv_sec > best_time.tv_sec ||
                    (st.st_mtim.tv_sec == best_time.tv_sec && st.st_mtim.tv_nsec > best_time.tv_nsec)) {
                        free(best);
                        best = strdup(de->d_name);
                        best_time = st.st_mtim;
                }
        }
        closedir(d);
        return TAKE_PTR(best);
}

static bool match_pod_dir(const char *name, const void *data) {
        const char *prefix = data; /* "<namespace>_<pod>" */
        const char *rest = startswith(name, prefix);

        /* "<ns>_<pod>_<uid>" or, for a static pod, "<ns>_<pod>-<node>_<uid>". */
        return rest && (rest[0] == '_' || rest[0] == '-');
}

static bool match_log(const char *name, const void *data) {
        size_t l = strlen(name);

        return l > 4 && streq(name + l - 4, ".log");
}

int pod_last_log_line(const char *root, const char *namespace, const char *pod_name, const char *container,
                      char **ret) {
        _cleanup_free_ char *base = strdup_printf("%s/%s", streq(root, "/") ? "" : root, PODLOG_DIR);
        _cleanup_free_ char *prefix = strdup_printf("%s_%s", namespace, pod_name), *pod = NULL, *log = NULL;
        _cleanup_close_ int fd = -EBADF, podfd = -EBADF, cfd = -EBADF, lfd = -EBADF;
        char buf[TAIL_BYTES + 1];
        struct stat st;
        ssize_t n;
        char *end, *line, *msg;

        if (!base || !prefix)
                return -ENOMEM;
        fd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        pod = newest_entry(fd, match_pod_dir, prefix, true);
        if (!pod)
                return -ENOENT;
        podfd = openat(fd, pod, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (podfd < 0)
                return -errno;
        cfd = openat(podfd, container, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (cfd < 0)
                return -errno;
        log = newest_entry(cfd, match_log, NULL, false);
        if (!log)
                return -ENOENT;
        lfd = openat(cfd, log, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (lfd < 0 || fstat(lfd, &st) < 0)
                return -errno;
        n = pread(lfd, buf, TAIL_BYTES, st.st_size > TAIL_BYTES ? st.st_size - TAIL_BYTES : 0);
        if (n <= 0)
                return -ENOENT;
        buf[n] = 0;

        /* The last non-empty line. */
        end = buf + n;
        while (end > buf && (end[-1] == '\n' || end[-1] == '\r'))
                *--end = 0;
        if (end == buf)
                return -ENOENT;
        line = memrchr(buf, '\n', (size_t) (end - buf));
        line = line ? line + 1 : buf;

        /* CRI: "2024-05-01T10:00:00.123456789Z stderr F message"; anything else as it is. */
        msg = line;
        for (int field = 0; field < 3 && msg; field++) {
                msg = strchr(msg, ' ');
                if (msg)
                        msg++;
        }
        if (!msg || !(strstr(line, " stderr ") || strstr(line, " stdout ")))
                msg = line;
        if (strlen(msg) > 512)
                msg[512] = 0;
        *ret = strdup(msg);
        return *ret ? 0 : -ENOMEM;
}
