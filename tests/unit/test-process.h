/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Child processes for the unit tests that wait on real processes (test-probe, test-gate). */

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The start of the request handler class of the Python test servers: HTTP/1.1 keep-alive, no
 * Nagle delay, no log lines on stderr. */
#define SERVER_PY_HANDLER                                                                          \
        "class H(http.server.BaseHTTPRequestHandler):\n"                                          \
        "    protocol_version = 'HTTP/1.1'\n"                                                     \
        "    disable_nagle_algorithm = True\n"                                                    \
        "    def log_message(self, *a):\n"                                                        \
        "        pass\n"

static inline uint64_t now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}

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

/* Starts a test server that prints the port it listens on, on a line of its own, and waits up
 * to 30 s for that line. Returns the port, 0 if none came (the caller reaps *ret_pid). */
static inline uint16_t spawn_server(char *const argv[], pid_t *ret_pid) {
        char line[16] = {};
        int pipefd[2];
        struct pollfd pfd;
        uint64_t deadline = now_ms() + 30000;
        size_t got = 0;

        assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
        *ret_pid = spawn(argv, pipefd[1]);
        close(pipefd[1]);
        pfd = (struct pollfd){ .fd = pipefd[0], .events = POLLIN };
        while (!memchr(line, '\n', got) && now_ms() < deadline && got < sizeof(line) - 1) {
                ssize_t k;

                if (poll(&pfd, 1, 1000) <= 0)
                        continue;
                k = read(pipefd[0], line + got, sizeof(line) - 1 - got);
                if (k <= 0)
                        break;
                got += (size_t) k;
        }
        close(pipefd[0]);
        return (uint16_t) strtoul(line, NULL, 10);
}
