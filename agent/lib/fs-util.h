/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Careful file operations for the directories the kubelet and cplet share. */

#include <dirent.h>
#include <stddef.h>
#include <sys/types.h>

/* Writes data as `name` inside dirfd so that a crash at any instant leaves either the old file
 * or the new one whole: a dot-file in the same directory (the kubelet ignores dot-files),
 * fsync, rename over the target, fsync of the directory. Any of them failing fails the write;
 * when only the directory fsync failed, the new file is in place (not yet durable), so a
 * caller that must know which file readers see reads it back. */
int write_file_atomic(int dirfd, const char *name, const void *data, size_t size, mode_t mode);

/* Reads a whole regular file (O_NOFOLLOW) of at most max bytes; NUL-terminates. */
int read_file_at(int dirfd, const char *name, size_t max, char **ret, size_t *ret_size);
/* Reads what is left of an open file, at most max bytes (-E2BIG beyond); NUL-terminates. */
int read_fd(int fd, size_t max, char **ret, size_t *ret_size);

/* Opens (creating with `mode` when missing) each element of `path` below `rootfd` as a
 * directory without following symbolic links; returns the last one's fd. A directory it
 * creates is made durable (fsync of its parent) before it is used. */
int open_dir_chain(int rootfd, const char *path, mode_t mode, int *ret_fd, char **ret_error, const char *display);

/* Refuses a directory that is group- or world-writable (anyone else could plant a manifest). */
int check_dir_private(int fd, const char *display, char **ret_error);

/* Removes temporary files this module left behind after a crash (".cplet-*.tmp"). */
int remove_stale_temporaries(int dirfd);

/* Reads a directory through a duplicate of dirfd. A duplicate shares the read position with
 * every other duplicate, so it is rewound first: an earlier listing must not leave the next
 * one empty. NULL with errno set on failure. */
DIR *opendir_dup(int dirfd);

/* Lower-case hex SHA-256 of data. */
void sha256_hex(const void *data, size_t size, char ret[static 65]);
