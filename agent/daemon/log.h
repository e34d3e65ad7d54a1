/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The daemon's log. Under systemd (JOURNAL_STREAM names our stderr) each line goes to the
 * journal with structured fields, so that `journalctl CPLET_PLAN_ID=…` finds one rollout;
 * otherwise plain lines on stderr ("cplet: MESSAGE"). Only the daemon logs: the library never
 * prints. */

#include <syslog.h>

typedef struct log_fields {
        const char *plan_id;   /* CPLET_PLAN_ID */
        const char *component; /* CPLET_COMPONENT */
        size_t step;           /* CPLET_STEP (0: none) */
        const char *phase;     /* CPLET_PHASE */
} log_fields;

/* Decides once where lines go (JOURNAL_STREAM against stderr's device and inode). */
void log_open(void);

/* priority: LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG. fields may be NULL. */
void log_full(int priority, const log_fields *fields, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define log_error(...) log_full(LOG_ERR, NULL, __VA_ARGS__)
#define log_warning(...) log_full(LOG_WARNING, NULL, __VA_ARGS__)
#define log_notice(...) log_full(LOG_NOTICE, NULL, __VA_ARGS__)
#define log_info(...) log_full(LOG_INFO, NULL, __VA_ARGS__)
