/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Child processes for the unit tests that wait on real processes (test-probe, test-gate). */

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* fork + exec; the child dies with us, so a failed test leaves nothing running. */
static inline pid_t spawn(char *const argv[], int stdout_fd) {
        pid_t pid = fork();

        assert_true(pid >= 0);
        if (pid == 0) {
                int null = open("/dev/null", O_RDWR | O_CLOEXEC);

                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                dup2(null, STDIN_FILENO);
                dup2(stdout_fd >= 0 ? stdout_fd : null, STDOUT_FILENO);
                dup2(null, STDERR_FILENO);
                execvp(argv[0], argv);
                _exit(127);
        }
        return pid;
}

static inline void kill_and_reap(pid_t pid) {
        if (pid <= 0)
                return;
        (void) kill(pid, SIGKILL);
        (void) waitpid(pid, NULL, 0);
}
