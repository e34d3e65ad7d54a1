/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Small helpers the unit tests share: scratch directories and table-driven TAP groups.
 * Include after <cmocka.h>. */

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "macro.h"

static inline int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

/* Removes a scratch tree; NULL: nothing to do. */
static inline void rm_rf(const char *dir) {
        if (dir)
                (void) nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A node root in /tmp: `tmpl` (a mkdtemp template, rewritten in place) with an empty
 * etc/kubernetes/manifests. Returns an O_DIRECTORY fd on the root, or -1. */
static inline int scratch_root(char *tmpl) {
        int fd;

        if (!mkdtemp(tmpl))
                return -1;
        fd = open(tmpl, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -1;
        if (mkdirat(fd, "etc", 0755) < 0 || mkdirat(fd, "etc/kubernetes", 0755) < 0 ||
            mkdirat(fd, "etc/kubernetes/manifests", 0700) < 0) {
                close(fd);
                return -1;
        }
        return fd;
}

/* Leaves a unix socket file at `path` (bound, then closed: the file stays). */
static inline void make_socket_file(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        assert_true(fd >= 0);
        assert_true(strlen(path) < sizeof(sa.sun_path));
        strcpy(sa.sun_path, path);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        close(fd);
}

/* Fills `tests` from index `first` with one TAP case per row of the array `table`, named after
 * the row's `field` and given the row as its state. */
#define ADD_TABLE_CASES(tests, first, table, field, func)                                          \
        for (size_t _i = 0; _i < ELEMENTSOF(table); _i++)                                          \
                (tests)[(first) + _i] = (struct CMUnitTest){                                       \
                        .name = (table)[_i].field,                                                 \
                        .test_func = (func),                                                       \
                        .initial_state = (void *) &(table)[_i],                                    \
                }

/* Runs a group with TAP output (what meson's `protocol: 'tap'` reads). */
#define RUN_TAP_GROUP(name, tests, setup, teardown)                                                \
        (cmocka_set_message_output(CM_OUTPUT_TAP),                                                 \
         _cmocka_run_group_tests((name), (tests), ELEMENTSOF(tests), (setup), (teardown)))
