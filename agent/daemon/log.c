/* SPDX-License-Identifier: Apache-2.0 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"

static bool to_journal;

void log_open(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        /* systemd sets JOURNAL_STREAM to "DEVICE:INODE" of the stream it connected; a child
         * whose stderr was redirected elsewhere inherits the variable but not the stream. */
        to_journal = e && sscanf(e, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) >= 0 &&
                     (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino;
}

static void send_to_journal(int priority, const log_fields *f, const char *message) {
        _cleanup_free_ char *m = NULL, *p = NULL, *plan = NULL, *component = NULL, *step = NULL, *phase = NULL;
        struct iovec iov[7];
        size_t n = 0;

        /* Fields that are absent are not sent at all (an empty field would still match a query). */
        m = strdup_printf("MESSAGE=%s", message);
        p = strdup_printf("PRIORITY=%i", priority);
        if (!m || !p)
                return;
        iov[n++] = (struct iovec){ m, strlen(m) };
        iov[n++] = (struct iovec){ p, strlen(p) };
        iov[n++] = (struct iovec){ (char *) "SYSLOG_IDENTIFIER=cplet", strlen("SYSLOG_IDENTIFIER=cplet") };
        if (f && f->plan_id && (plan = strdup_printf("CPLET_PLAN_ID=%s", f->plan_id)))
                iov[n++] = (struct iovec){ plan, strlen(plan) };
        if (f && f->component && (component = strdup_printf("CPLET_COMPONENT=%s", f->component)))
                iov[n++] = (struct iovec){ component, strlen(component) };
        if (f && f->step > 0 && (step = strdup_printf("CPLET_STEP=%zu", f->step)))
                iov[n++] = (struct iovec){ step, strlen(step) };
        if (f && f->phase && (phase = strdup_printf("CPLET_PHASE=%s", f->phase)))
                iov[n++] = (struct iovec){ phase, strlen(phase) };
        (void) sd_journal_sendv(iov, (int) n);
}

void log_full(int priority, const log_fields *f, const char *fmt, ...) {
        _cleanup_free_ char *message = NULL;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&message, fmt, ap) < 0)
                message = NULL;
        va_end(ap);
        if (!message)
                return;

        if (!to_journal) {
                fprintf(stderr, "cplet: %s\n", message);
                return;
        }
        send_to_journal(priority, f, message);
}
