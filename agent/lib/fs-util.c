/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <string.h>
#include <sys/stat.h>

#include "fs-util.h"
#include "macro.h"

#define TEMP_PREFIX ".cplet-"
#define TEMP_SUFFIX ".tmp"

static int write_all(int fd, const void *data, size_t size) {
        const char *p = data;

        while (size > 0) {
                ssize_t n = write(fd, p, size);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += n;
                size -= (size_t) n;
        }
        return 0;
}

int write_file_atomic(int dirfd, const char *name, const void *data, size_t size, mode_t mode) {
        _cleanup_free_ char *tmp = strdup_printf(TEMP_PREFIX "%s.%d" TEMP_SUFFIX, name, (int) getpid());
        _cleanup_close_ int fd = -EBADF;
        int r;

        if (!tmp)
                return -ENOMEM;
        (void) unlinkat(dirfd, tmp, 0);
        fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, mode);
        if (fd < 0)
                return -errno;
        r = write_all(fd, data, size);
        if (r >= 0 && fchmod(fd, mode) < 0)
                r = -errno;
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (r >= 0 && renameat(dirfd, tmp, dirfd, name) < 0)
                r = -errno;
        if (r < 0) {
                (void) unlinkat(dirfd, tmp, 0);
                return r;
        }
        /* The rename is durable only once the directory is: after a crash the old file may come
         * back. So this failing fails the write, although readers see the new file now; a
         * caller that must know which one is in place reads it back. */
        if (fsync(dirfd) < 0)
                return -errno;
        return 0;
}

int read_file_at(int dirfd, const char *name, size_t max, char **ret, size_t *ret_size) {
        _cleanup_close_ int fd = -EBADF;
        struct stat st;

        fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADFD;
        return read_fd(fd, max, ret, ret_size);
}

int read_fd(int fd, size_t max, char **ret, size_t *ret_size) {
        _cleanup_free_ char *buf = NULL;
        size_t size = 0;

        buf = malloc(max + 1);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                ssize_t n = read(fd, buf + size, max + 1 - size);

                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                size += (size_t) n;
                if (size > max)
                        return -E2BIG;
        }
        buf[size] = 0;
        *ret = TAKE_PTR(buf);
        if (ret_size)
                *ret_size = size;
        return 0;
}

int check_dir_private(int fd, const char *display, char **ret_error) {
        struct stat st;

        if (fstat(fd, &st) < 0)
                return set_error(ret_error, -errno, "%s: %s", display, strerror(errno));
        if (st.st_mode & (S_IWGRP | S_IWOTH))
                return set_error(ret_error, -EPERM,
                                 "%s is group- or world-writable (mode %04o): anyone could plant a manifest there; "
                                 "chmod go-w it first",
                                 display, (unsigned) (st.st_mode & 07777));
        if (st.st_uid != geteuid())
                return set_error(ret_error, -EPERM, "%s is owned by uid %u, not by uid %u that runs cplet", display,
                                 (unsigned) st.st_uid, (unsigned) geteuid());
        return 0;
}

int open_dir_chain(int rootfd, const char *path, mode_t mode, int *ret_fd, char **ret_error, const char *display) {
        _cleanup_free_ char *copy = strdup(path);
        _cleanup_close_ int fd = -EBADF;
        char *save = NULL;

        if (!copy)
                return -ENOMEM;
        fd = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                return -errno;
        for (char *e = strtok_r(copy, "/", &save); e; e = strtok_r(NULL, "/", &save)) {
                int next;

                if (mode) {
                        if (mkdirat(fd, e, mode) >= 0) {
                                /* A new directory exists after a crash only once its parent is
                                 * on disk: files written into it would be lost with it. */
                                if (fsync(fd) < 0)
                                        return set_error(ret_error, -errno, "%s: cannot make %s durable: %s",
                                                         display, e, strerror(errno));
                        } else if (errno != EEXIST)
                                return set_error(ret_error, -errno, "%s: cannot create %s: %s", display, e,
                                                 strerror(errno));
                }
                next = openat(fd, e, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (next < 0)
                        return set_error(ret_error, -errno, "%s: %s", display,
                                         errno == ELOOP || errno == ENOTDIR
                                                 ? "a path element is a symbolic link or not a directory; refusing to follow it"
                                                 : strerror(errno));
                close(fd);
                fd = next;
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}

DIR *opendir_dup(int dirfd) {
        int fd = fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
        DIR *d;

        if (fd < 0)
                return NULL;
        d = fdopendir(fd);
        if (!d) {
                int saved = errno;

                close(fd);
                errno = saved;
                return NULL;
        }
        rewinddir(d);
        return d;
}

int remove_stale_temporaries(int dirfd) {
        struct dirent *de;
        DIR *d;
        int n = 0;

        d = opendir_dup(dirfd);
        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                size_t l = strlen(de->d_name);

                if (startswith(de->d_name, TEMP_PREFIX) && l > strlen(TEMP_SUFFIX) &&
                    streq(de->d_name + l - strlen(TEMP_SUFFIX), TEMP_SUFFIX) && unlinkat(dirfd, de->d_name, 0) >= 0)
                        n++;
        }
        closedir(d);
        return n;
}

void sha256_hex(const void *data, size_t size, char ret[static 65]) {
        unsigned char md[32];
        unsigned int len = 0;

        EVP_Digest(data, size, md, &len, EVP_sha256(), NULL);
        for (unsigned i = 0; i < 32; i++)
                sprintf(ret + 2 * i, "%02x", md[i]);
        ret[64] = 0;
}
