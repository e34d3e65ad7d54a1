/* SPDX-License-Identifier: Apache-2.0 */
#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "macro.h"
#include "version.h"

/* Reads a decimal number without sign or leading zeros; advances *p. */
static int parse_number(const char **p, uint32_t *ret) {
        const char *s = *p;
        uint64_t v = 0;

        if (!isdigit((unsigned char) *s))
                return -EINVAL;
        if (s[0] == '0' && isdigit((unsigned char) s[1]))
                return -EINVAL; /* "01" */
        for (; isdigit((unsigned char) *s); s++) {
                v = v * 10 + (uint64_t) (*s - '0');
                if (v > UINT32_MAX / 2)
                        return -ERANGE;
        }
        *p = s;
        *ret = (uint32_t) v;
        return 0;
}

static int parse_mm(const char **p, uint32_t *ret_major, uint32_t *ret_minor) {
        uint32_t major, minor;
        int r;

        if (**p == 'v')
                (*p)++;
        r = parse_number(p, &major);
        if (r < 0)
                return r;
        if (**p != '.')
                return -EINVAL;
        (*p)++;
        r = parse_number(p, &minor);
        if (r < 0)
                return r;
        *ret_major = major;
        *ret_minor = minor;
        return 0;
}

int kversion_parse(const char *s, kversion *ret, char **ret_error) {
        kversion v = {};
        const char *p = s;
        int r;

        if (!s || !*s)
                return set_error(ret_error, -EINVAL, "empty version");

        r = parse_mm(&p, &v.major, &v.minor);
        if (r == 0 && *p == '.') {
                p++;
                r = parse_number(&p, &v.patch);
                v.has_patch = r == 0;
        }
        if (r == -ERANGE)
                return set_error(ret_error, -EINVAL, "version \"%s\" has a number that is too large", s);
        if (r < 0)
                return set_error(ret_error, -EINVAL,
                                 "\"%s\" is not a Kubernetes version (expected v1.35.1, 1.35 or v1.34.0-rc.1)", s);
        if (*p) {
                if (*p != '-' && *p != '+')
                        return set_error(ret_error, -EINVAL,
                                         "\"%s\" is not a Kubernetes version: unexpected \"%s\"", s, p);
                for (const char *q = p + 1; *q; q++)
                        if (!isalnum((unsigned char) *q) && !strchr(".+-", *q))
                                return set_error(ret_error, -EINVAL,
                                                 "\"%s\" is not a Kubernetes version: invalid character in suffix \"%s\"",
                                                 s, p);
                if (!p[1] || strlen(p) >= sizeof(v.suffix))
                        return set_error(ret_error, -EINVAL,
                                         "\"%s\" is not a Kubernetes version: invalid suffix \"%s\"", s, p);
                strcpy(v.suffix, p);
        }
        *ret = v;
        return 0;
}

void kversion_format(const kversion *v, char buf[static KVERSION_STRING_MAX]) {
        if (v->has_patch)
                snprintf(buf, KVERSION_STRING_MAX, "v%u.%u.%u%s", v->major, v->minor, v->patch, v->suffix);
        else
                snprintf(buf, KVERSION_STRING_MAX, "v%u.%u%s", v->major, v->minor, v->suffix);
}

int kversion_cmp(const kversion *a, const kversion *b) {
        if (a->major != b->major)
                return a->major < b->major ? -1 : 1;
        if (a->minor != b->minor)
                return a->minor < b->minor ? -1 : 1;
        if (a->patch != b->patch)
                return a->patch < b->patch ? -1 : 1;
        return strcmp(a->suffix, b->suffix);
}

int kminor_parse(const char *s, kminor *ret, char **ret_error) {
        const char *p = s;
        kminor v;
        int r;

        if (!s || !*s)
                return set_error(ret_error, -EINVAL, "empty version");
        r = parse_mm(&p, &v.major, &v.minor);
        if (r == -ERANGE)
                return set_error(ret_error, -EINVAL, "version \"%s\" has a number that is too large", s);
        if (r == 0 && *p == '.' && isdigit((unsigned char) p[1]))
                return set_error(ret_error, -EINVAL, "patch version not allowed, got: %s", s);
        if (r < 0 || *p)
                return set_error(ret_error, -EINVAL, "\"%s\" is not a major.minor version (expected e.g. 1.34)", s);
        *ret = v;
        return 0;
}

int kminor_parse_flag(const char *flag, const char *value, kminor *ret, bool *ret_has_kube, char **ret_error) {
        kminor kube = {};
        bool has_kube = false;
        const char *p = value;

        if (!value || !*value)
                return set_error(ret_error, -EINVAL, "%s: empty value", flag);

        /* Same shape as component-base's parser: "kube=1.34,other=2.1" or a bare "1.34". */
        while (*p) {
                const char *end = strchrnul(p, ',');
                _cleanup_free_ char *entry = strndup(p, end - p), *component = NULL;
                const char *eq, *ver;
                kminor v;
                int r;

                if (!entry)
                        return -ENOMEM;
                eq = strchr(entry, '=');
                if (eq) {
                        component = strndup(entry, eq - entry);
                        if (!component)
                                return -ENOMEM;
                        ver = eq + 1;
                } else
                        ver = entry;
                if (component && !*component)
                        return set_error(ret_error, -EINVAL, "%s=%s: empty component name", flag, value);

                r = kminor_parse(ver, &v, NULL);
                if (r < 0) {
                        const char *q = ver;
                        uint32_t ma, mi;

                        if (parse_mm(&q, &ma, &mi) == 0 && *q == '.')
                                return set_error(ret_error, -EINVAL, "%s: patch version not allowed, got: %s=%s",
                                                 flag, component ?: "kube", ver);
                        return set_error(ret_error, -EINVAL,
                                         "%s=%s: \"%s\" is not a major.minor version (expected e.g. 1.34 or kube=1.34)",
                                         flag, value, ver);
                }
                if (!component || streq(component, "kube")) {
                        if (has_kube)
                                return set_error(ret_error, -EINVAL, "%s=%s: kube is given twice", flag, value);
                        kube = v;
                        has_kube = true;
                }
                if (!*end)
                        break;
                p = end + 1;
                if (!*p)
                        return set_error(ret_error, -EINVAL, "%s=%s: trailing comma", flag, value);
        }

        *ret = kube;
        if (ret_has_kube)
                *ret_has_kube = has_kube;
        return 0;
}

void kminor_format(kminor v, char buf[static KMINOR_STRING_MAX]) {
        snprintf(buf, KMINOR_STRING_MAX, "%u.%u", v.major, v.minor);
}

int kminor_cmp(kminor a, kminor b) {
        if (a.major != b.major)
                return a.major < b.major ? -1 : 1;
        if (a.minor != b.minor)
                return a.minor < b.minor ? -1 : 1;
        return 0;
}

kminor kminor_add(kminor a, int delta) {
        int64_t m = (int64_t) a.minor + delta;

        return KMINOR(a.major, m < 0 ? 0 : (uint32_t) m);
}

static kminor kminor_max(kminor a, kminor b) {
        return kminor_cmp(a, b) >= 0 ? a : b;
}

kminor compat_floor(kminor binary) {
        /* 1.31 and 1.32 accept nothing below 1.31; from 1.33 on the window is three minors. */
        return kminor_max(KMINOR(1, 31), kminor_add(binary, -3));
}

kminor compat_default_min_compat(kminor binary, kminor emulated) {
        if (kminor_cmp(binary, KMINOR(1, 31)) < 0)
                return kminor_add(binary, -1);
        if (kminor_eq(binary, KMINOR(1, 31)))
                return KMINOR(1, 30);
        if (kminor_eq(binary, KMINOR(1, 32)))
                return KMINOR(1, 31); /* fixed in 1.32 */
        return kminor_max(compat_floor(binary), kminor_add(emulated, -1));
}

int compat_validate(const compat_settings *s, kminor *ret_emulated, kminor *ret_min_compat, char **ret_error) {
        char b[KMINOR_STRING_MAX], e[KMINOR_STRING_MAX], lo[KMINOR_STRING_MAX], hi[KMINOR_STRING_MAX];
        kminor emulated, min_compat, floor;

        kminor_format(s->binary, b);
        if (s->binary.major != 1)
                return set_error(ret_error, -EINVAL, "binary version %s: only Kubernetes 1.x is known", b);

        if (s->emulated_set && kminor_cmp(s->binary, KMINOR_EMULATED_FLAG_SINCE) < 0)
                return set_error(ret_error, -EINVAL,
                                 "unknown flag: --emulated-version (binary %s has no compatibility versions; they exist from 1.31)",
                                 b);
        if (s->min_compat_set && kminor_cmp(s->binary, KMINOR_MIN_COMPAT_FLAG_SINCE) < 0)
                return set_error(ret_error, -EINVAL,
                                 "unknown flag: --min-compatibility-version (binary %s does not have it; it exists from 1.35)",
                                 b);
        if (s->forward_compat_set && kminor_cmp(s->binary, KMINOR_FORWARD_COMPAT_FLAG_SINCE) < 0)
                return set_error(ret_error, -EINVAL,
                                 "unknown flag: --emulation-forward-compatible (binary %s does not have it; it exists from 1.33)",
                                 b);

        emulated = s->emulated_set ? s->emulated : s->binary;
        kminor_format(emulated, e);

        if (kminor_cmp(s->binary, KMINOR_EMULATED_FLAG_SINCE) >= 0) {
                floor = compat_floor(s->binary);
                if (kminor_cmp(emulated, floor) < 0 || kminor_cmp(emulated, s->binary) > 0) {
                        kminor_format(floor, lo);
                        return set_error(ret_error, -EINVAL, "emulation version %s is not between [%s, %s]", e, lo, b);
                }
        }

        min_compat = s->min_compat_set ? s->min_compat : compat_default_min_compat(s->binary, emulated);
        if (s->min_compat_set) {
                char m[KMINOR_STRING_MAX];

                floor = compat_floor(s->binary);
                kminor_format(min_compat, m);
                if (kminor_cmp(min_compat, floor) < 0 || kminor_cmp(min_compat, emulated) > 0) {
                        kminor_format(floor, lo);
                        kminor_format(emulated, hi);
                        return set_error(ret_error, -EINVAL, "minCompatibilityVersion version %s is not between [%s, %s]",
                                         m, lo, hi);
                }
        }

        if (s->forward_compat_set && kminor_eq(emulated, s->binary))
                return set_error(ret_error, -EINVAL,
                                 "--emulation-forward-compatible cannot be set when the emulation version %s equals the binary version",
                                 e);

        if (ret_emulated)
                *ret_emulated = emulated;
        if (ret_min_compat)
                *ret_min_compat = min_compat;
        return 0;
}
