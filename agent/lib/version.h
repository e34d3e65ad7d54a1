/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Kubernetes versions and the compatibility-version rules of FACTS.md (KEP-4330).
 * Nothing here touches files or the network. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A binary version, as in an image tag or --binary-version: v1.35.1, 1.35, v1.34.0-rc.1,
 * v1.34.2-eks-1-34, v1.34.1+k3s1. */
typedef struct kversion {
        uint32_t major;
        uint32_t minor;
        uint32_t patch;
        bool has_patch;
        char suffix[64]; /* "-rc.1", "+k3s1", "-eks-1-34"; empty when none */
} kversion;

/* A major.minor pair: what --emulated-version and --min-compatibility-version carry. */
typedef struct kminor {
        uint32_t major;
        uint32_t minor;
} kminor;

#define KMINOR(ma, mi) ((kminor){ .major = (ma), .minor = (mi) })
#define KVERSION_STRING_MAX 96
#define KMINOR_STRING_MAX 24

/* Parses a binary version. Accepts an optional leading 'v', MAJOR.MINOR[.PATCH], then an
 * optional suffix starting with '-' or '+' made of [0-9A-Za-z.+-]. Refuses leading zeros
 * (01.34), overflow, white space, anything else. */
int kversion_parse(const char *s, kversion *ret, char **ret_error);
/* "v1.35.1" + suffix; with no patch "v1.35". */
void kversion_format(const kversion *v, char buf[static KVERSION_STRING_MAX]);
static inline kminor kversion_minor(const kversion *v) {
        return KMINOR(v->major, v->minor);
}

/* Parses a plain major.minor ("1.34", "v1.34"); a patch number is refused. */
int kminor_parse(const char *s, kminor *ret, char **ret_error);

/* Parses the value of --emulated-version / --min-compatibility-version as the binaries do:
 * comma-separated component=major.minor, bare major.minor meaning kube, optional 'v', a patch
 * number is an error ("patch version not allowed, got: kube=1.34.1"). Returns the kube
 * entry. *ret_has_kube is false when the list names only other components. Entries for other
 * components are checked for form and otherwise ignored. `flag` names the flag in errors. */
int kminor_parse_flag(const char *flag, const char *value, kminor *ret, bool *ret_has_kube, char **ret_error);

void kminor_format(kminor v, char buf[static KMINOR_STRING_MAX]);
int kminor_cmp(kminor a, kminor b);
static inline bool kminor_eq(kminor a, kminor b) {
        return a.major == b.major && a.minor == b.minor;
}
/* a.minor + delta, with the same major (Kubernetes 1.x only ever moves the minor). */
kminor kminor_add(kminor a, int delta);
int kversion_cmp(const kversion *a, const kversion *b);

/* First binary minor that accepts --emulated-version / --min-compatibility-version /
 * --emulation-forward-compatible. */
#define KMINOR_EMULATED_FLAG_SINCE KMINOR(1, 31)
#define KMINOR_MIN_COMPAT_FLAG_SINCE KMINOR(1, 35)
#define KMINOR_FORWARD_COMPAT_FLAG_SINCE KMINOR(1, 33)

/* The lowest emulated / min-compatibility version a binary accepts: 1.31 for 1.31 and 1.32,
 * max(1.31, binary - 3) from 1.33 on. Only meaningful for binaries >= 1.31. */
kminor compat_floor(kminor binary);
/* The min-compatibility version a binary uses when the flag is not given. */
kminor compat_default_min_compat(kminor binary, kminor emulated);

/* The compatibility settings of one process, as its command line would give them. */
typedef struct compat_settings {
        kminor binary;
        bool emulated_set;        /* --emulated-version given */
        kminor emulated;          /* meaningful when emulated_set */
        bool min_compat_set;      /* --min-compatibility-version given */
        kminor min_compat;        /* meaningful when min_compat_set */
        bool forward_compat_set;  /* --emulation-forward-compatible or
                                   * --runtime-config-emulation-forward-compatible given */
} compat_settings;

/* Says whether a binary of that version starts with those flags, as the binary's own
 * validation does (FACTS.md "Allowed values"). On success fills the effective emulated and
 * min-compatibility versions (defaults applied). On refusal returns -EINVAL with a reason
 * that uses the binary's own error text where it has one. */
int compat_validate(const compat_settings *s, kminor *ret_emulated, kminor *ret_min_compat, char **ret_error);
