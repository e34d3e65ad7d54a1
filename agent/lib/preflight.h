/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Preflight (issue 11): before the first write, is every flag a step leaves in a manifest one
 * that the step's binary accepts? The answers come from the release data compiled in from
 * data/releases/ (the flags each component registers per minor, the flags and admission plugins
 * each release removed with the fix, the feature gates with their versioned stages).
 *
 * Refusals are what the real binaries refuse and the data proves: a flag or admission plugin
 * the target release removed, a feature gate the binary no longer contains (whatever the
 * emulated version), a gate locked to the other value at the emulated version, a gate not yet
 * available at the emulated version. Warnings are reported and never refuse: a flag deprecated
 * in the target, a flag, gate or plugin missing from cplet's lists (they are marked incomplete
 * where the sources were: a false refusal at 3 a.m. is worse than a warning). */

#include <stdbool.h>
#include <stddef.h>

#include "cmdline.h"
#include "version.h"

typedef struct preflight_finding {
        bool warning;     /* reported, never a refusal */
        char *component;  /* "kube-apiserver" */
        char *file;       /* the manifest as the caller named it */
        char *flag;       /* the flag's name as written, without dashes */
        char *item;       /* the feature gate or admission plugin; NULL for a whole flag */
        char *drop;       /* what --drop-removed takes to remove it (a flag name, or the gate or
                           * plugin name); NULL for warnings */
        char *message;    /* one sentence: file, flag, release, fix; e.g. "kube-apiserver.yaml:
                           * drop --cloud-provider (removed in 1.33; use an external cloud
                           * controller manager)" */
        kminor removed_in; /* the release that removed the flag, gate or plugin ({0,0}: the
                            * finding is not a removal) */
} preflight_finding;

typedef struct preflight_report {
        preflight_finding *findings;
        size_t n_findings;
        size_t n_refusals; /* findings that are not warnings */
} preflight_report;

/* Checks the flags of one command line as the binary of minor `binary` emulating `emulated`
 * would parse them (pflag: "_" is "-", --flag value and --flag=value; --feature-gates with or
 * without the "kube:" prefix; --enable-admission-plugins/--disable-admission-plugins lists).
 * Appends to r; a finding equal to one already there (component, flag, item, and whether it
 * is a warning) is not added twice. -ENOMEM only. */
int preflight_check(const char *component, const char *file, kminor binary, kminor emulated, const cmdline *c,
                    preflight_report *r);

/* True when the data covers this minor (a binary outside it gets one warning, no checks). */
bool preflight_release_known(kminor m);

/* The flags, gates and plugins of c that release `next` removes, as findings (for cplet
 * status: "removed in the next minor"). */
int preflight_removed_in(const char *component, const char *file, kminor next, const cmdline *c,
                         preflight_report *r);

/* Removes what a --drop-removed entry names from c: every occurrence of a flag, or one gate
 * (from --feature-gates) or plugin (from the admission plugin lists; a list left empty loses
 * its flag). Returns 1 when something was removed, 0 when c has nothing of that name. */
int preflight_drop(cmdline *c, const char *entry);

void preflight_report_done(preflight_report *r);
