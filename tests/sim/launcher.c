/* SPDX-License-Identifier: Apache-2.0 */
/* The process a simulated container runs as.
 *
 * A real kubelet's runtime executes the manifest's command + args with nothing in front, so
 * /proc/PID/cmdline shows exactly them. The fake components are Python scripts, which would put
 * an interpreter in front. The fake kubelet therefore executes this launcher with argv set to
 * exactly the container's (argv[0] included) and $CPLET_SIM_CHILD naming the fake to run; the
 * launcher keeps its own argv and runs the fake as its child with the same arguments:
 *
 *   - signals sent to the launcher (SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2) are
 *     forwarded to the child;
 *   - when the launcher dies (SIGKILL included) the child gets SIGKILL (PR_SET_PDEATHSIG);
 *   - the launcher exits like the child: with its exit status, or killed by the same signal;
 *   - its comm is the basename of argv[0], as the real binary's would be;
 *   - with CPLET_SIM_EXIT_WITH_PARENT=1 it ends the child and exits when its parent (the fake
 *     kubelet) goes away, so that a killed simulated node leaves nothing behind.
 */

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const int forwarded[] = { SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 };
static volatile sig_atomic_t child_pid = 0;

static void forward(int sig) {
        int saved = errno;

        if (child_pid > 0)
                (void) kill(child_pid, sig);
        errno = saved;
}

static void run_child(const char *path, char **argv, pid_t parent) {
        sigset_t none;

        /* Die with the launcher; if it died before this line, there is nobody to wait for us. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
                _exit(127);
        for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++)
                (void) signal(forwarded[i], SIG_DFL);
        sigemptyset(&none);
        (void) sigprocmask(SIG_SETMASK, &none, NULL);
        argv[0] = (char *) path;
        execv(path, argv);
        fprintf(stderr, "cplet-sim-launcher: cannot execute %s: %s\n", path, strerror(errno));
        _exit(errno == ENOENT ? 127 : 126);
}

int main(int argc, char **argv) {
        const char *child = getenv("CPLET_SIM_CHILD"), *base;
        struct sigaction sa = { .sa_handler = forward };
        sigset_t block, old;
        pid_t parent = getpid(), grandparent = getppid(), pid;
        bool exit_with_parent = getenv("CPLET_SIM_EXIT_WITH_PARENT") &&
                                strcmp(getenv("CPLET_SIM_EXIT_WITH_PARENT"), "1") == 0;
        char *path;
        int status;

        if (argc < 1 || !child || !*child) {
                fprintf(stderr, "cplet-sim-launcher: CPLET_SIM_CHILD is not set\n");
                return 127;
        }
        path = strdup(child);
        if (!path)
                return 126;
        /* The child and what it starts should not see it again. */
        (void) unsetenv("CPLET_SIM_CHILD");

        base = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
        (void) prctl(PR_SET_NAME, base);

        /* Handlers are in place before the child exists, and signals wait until its pid is known. */
        sigemptyset(&block);
        sigfillset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART;
        for (size_t i = 0; i < sizeof(forwarded) / sizeof(forwarded[0]); i++) {
                sigaddset(&block, forwarded[i]);
                (void) sigaction(forwarded[i], &sa, NULL);
        }
        /* SIGCHLD stays blocked: sigtimedwait() below takes it, with no window to miss it in. */
        sigaddset(&block, SIGCHLD);
        (void) sigprocmask(SIG_BLOCK, &block, &old);
        pid = fork();
        if (pid < 0) {
                fprintf(stderr, "cplet-sim-launcher: fork: %s\n", strerror(errno));
                return 126;
        }
        if (pid == 0)
                run_child(path, argv, parent);
        free(path); /* the child's copy is the one that counts */
        child_pid = pid;
        sigaddset(&old, SIGCHLD);
        (void) sigprocmask(SIG_SETMASK, &old, NULL);

        for (;;) {
                /* Looking at the parent means waking up now and then (5 times a second); the
                 * child's exit (SIGCHLD) ends the wait at once. */
                pid_t r = waitpid(pid, &status, exit_with_parent ? WNOHANG : 0);

                if (r == pid)
                        break;
                if (r < 0 && errno != EINTR) {
                        fprintf(stderr, "cplet-sim-launcher: waitpid: %s\n", strerror(errno));
                        return 126;
                }
                if (exit_with_parent) {
                        if (getppid() != grandparent) {
                                (void) kill(pid, SIGKILL);
                                (void) waitpid(pid, &status, 0);
                                return 0;
                        }
                        sigset_t chld;

                        sigemptyset(&chld);
                        sigaddset(&chld, SIGCHLD);
                        (void) sigtimedwait(&chld, NULL, &(struct timespec){ .tv_nsec = 200 * 1000 * 1000 });
                }
        }
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        if (WIFSIGNALED(status)) {
                int sig = WTERMSIG(status);
                sigset_t s;

                /* Die of the same signal, so that the kubelet sees what the component died of. */
                (void) signal(sig, SIG_DFL);
                sigemptyset(&s);
                sigaddset(&s, sig);
                (void) sigprocmask(SIG_UNBLOCK, &s, NULL);
                (void) prctl(PR_SET_DUMPABLE, 0); /* no core file of the launcher */
                (void) kill(getpid(), sig);
                return 128 + sig;
        }
        return 126;
}
