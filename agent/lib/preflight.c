/* SPDX-License-Identifier: Apache-2.0 */
/* The preflight of issue 11: a command line checked against the release data the way the
 * binary of a minor, emulating another, would parse it. The rules and error texts are those of
 * data/releases/feature-gate-semantics.md (component-base featuregate and compatibility
 * registry) and SOURCES.md (flags, admission plugins). */

#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include "macro.h"
#include "preflight.h"
#include "release-data.h"

/* --feature-gates items may name other components' gates ("wardle:Foo=true"); only kube's are
 * in the data. */
#define KUBE_PREFIX "kube:"

/* Whose flags cplet checks against which lists. */
typedef struct check {
        const char *component, *file;
        kminor binary, emulated;
        const release_info *ri;
        const release_component_flags *cf;
        preflight_report *r;
        char **gate_values; /* every --feature-gates value, in order (pflag accumulates them) */
        size_t n_gate_values;
        char *gate_flag; /* the first --feature-gates spelling, for messages */
} check;

static bool same_key(const preflight_finding *f, bool warning, const char *component, const char *flag,
                     const char *item) {
        if (f->warning != warning || !streq(f->component, component))
                return false;
        if (!f->flag != !flag || (flag && !cmdline_flag_name_equal(f->flag, strlen(f->flag), flag)))
                return false;
        return !f->item == !item && (!item || streq(f->item, item));
}

static void finding_done(preflight_finding *f) {
        free(f->component);
        free(f->file);
        free(f->flag);
        free(f->item);
        free(f->drop);
        free(f->message);
}

/* Appends "FILE: MESSAGE" unless an equal finding is there already. */
static int add_finding(preflight_report *r, bool warning, const char *component, const char *file,
                       const char *flag, const char *item, const char *drop, kminor removed_in, const char *fmt,
                       ...) _printf_(9, 10);
static int add_finding(preflight_report *r, bool warning, const char *component, const char *file,
                       const char *flag, const char *item, const char *drop, kminor removed_in, const char *fmt,
                       ...) {
        _cleanup_free_ char *text = NULL;
        preflight_finding f, *grown;
        va_list ap;

        for (size_t i = 0; i < r->n_findings; i++)
                if (same_key(&r->findings[i], warning, component, flag, item))
                        return 0;
        va_start(ap, fmt);
        text = strdup_vprintf(fmt, ap);
        va_end(ap);
        f = (preflight_finding){
                .warning = warning,
                .component = strdup(component),
                .file = strdup(file),
                .flag = flag ? strdup(flag) : NULL,
                .item = item ? strdup(item) : NULL,
                .drop = drop ? strdup(drop) : NULL,
                .message = text ? strdup_printf("%s: %s", file, text) : NULL,
                .removed_in = removed_in,
        };
        grown = reallocarray(r->findings, r->n_findings + 1, sizeof(*grown));
        if (!f.component || !f.file || (flag && !f.flag) || (item && !f.item) || (drop && !f.drop) || !f.message ||
            !grown) {
                if (grown)
                        r->findings = grown;
                finding_done(&f);
                return -ENOMEM;
        }
        r->findings = grown;
        r->findings[r->n_findings++] = f;
        if (!warning)
                r->n_refusals++;
        return 0;
}

void preflight_report_done(preflight_report *r) {
        for (size_t i = 0; i < r->n_findings; i++)
                finding_done(&r->findings[i]);
        free(r->findings);
        *r = (preflight_report){};
}

static kminor kminor_of(release_minor m) {
        return KMINOR(m.major, m.minor);
}

static const char *minor_text(kminor m, char buf[static KMINOR_STRING_MAX]) {
        kminor_format(m, buf);
        return buf;
}

bool preflight_release_known(kminor m) {
        return release_info_find(m.major, m.minor) != NULL;
}

/* removed-flags.yaml's fix texts start with what to drop ("drop the flag; run an external
 * cloud controller manager"); the message says that itself, so only the rest is quoted. */
static const char *fix_advice(const char *fix) {
        const char *rest = startswith(fix, "drop ");
        const char *semi;

        if (!rest)
                return fix;
        semi = strstr(rest, "; ");
        return semi ? semi + 2 : fix;
}

/* pflag's normal form of a flag name: "_" is "-" (WordSepNormalizeFunc). */
static char *normal_name(const char *name, size_t len) {
        char *s = strndup(name, len);

        for (char *p = s; p && *p; p++)
                if (*p == '_')
                        *p = '-';
        return s;
}

static bool removal_in_force(const release_removal *rm, kminor binary) {
        return rm && kminor_cmp(kminor_of(rm->removed_in), binary) <= 0;
}

/* ---- flags */

static int check_flag_name(check *k, const char *written, const char *name) {
        const release_removal *rm = release_removal_find(k->component, name, false);
        const release_deprecated *dep;
        char b[KMINOR_STRING_MAX], w[KMINOR_STRING_MAX];

        /* removed-flags.yaml: the changelog of the release that removed it. */
        if (removal_in_force(rm, k->binary))
                return add_finding(k->r, false, k->component, k->file, written, NULL, name, kminor_of(rm->removed_in),
                                   "drop --%s (removed in %s; %s)", written, minor_text(kminor_of(rm->removed_in), w),
                                   fix_advice(rm->fix));
        /* The lists are marked complete: false (hidden deprecated flags are missing from the
         * reference pages they come from): a warning, never a refusal. */
        if (!release_has_flag(k->cf, name))
                return add_finding(k->r, true, k->component, k->file, written, NULL, NULL, KMINOR(0, 0),
                                   "--%s is not in cplet's list of %s %s flags (the list may be incomplete)", written,
                                   minor_text(k->binary, b), k->component);
        dep = release_deprecated_find(k->cf, name);
        if (dep)
                return add_finding(k->r, true, k->component, k->file, written, NULL, NULL, KMINOR(0, 0),
                                   "--%s is deprecated in %s: %s", written, minor_text(k->binary, b),
                                   startswith(dep->message, "DEPRECATED: ") ?: dep->message);
        return 0;
}

/* ---- admission plugins */

static bool is_plugin_list_flag(const check *k, const char *name) {
        return streq(k->component, "kube-apiserver") &&
               (streq(name, "enable-admission-plugins") || streq(name, "disable-admission-plugins") ||
                streq(name, "admission-control"));
}

/* A StringSlice item: the CSV field with surrounding white space trimmed. */
static char *trimmed(const char *s, size_t len) {
        while (len > 0 && (*s == ' ' || *s == '\t'))
                s++, len--;
        while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
                len--;
        return strndup(s, len);
}

static int check_plugin(check *k, const char *written, const char *plugin) {
        const release_removal *rm = release_removal_find(k->component, plugin, true);
        char b[KMINOR_STRING_MAX], w[KMINOR_STRING_MAX];

        if (removal_in_force(rm, k->binary))
                return add_finding(k->r, false, k->component, k->file, written, plugin, plugin,
                                   kminor_of(rm->removed_in), "drop admission plugin %s from --%s (removed in %s; %s)",
                                   plugin, written, minor_text(kminor_of(rm->removed_in), w), fix_advice(rm->fix));
        if (!release_has_admission_plugin(k->ri, plugin))
                return add_finding(k->r, true, k->component, k->file, written, plugin, NULL, KMINOR(0, 0),
                                   "admission plugin %s (--%s) is not in cplet's list of %s admission plugins (the "
                                   "list may be incomplete)",
                                   plugin, written, minor_text(k->binary, b));
        return 0;
}

static int check_plugins(check *k, const char *written, const char *value) {
        for (const char *p = value ?: ""; *p;) {
                size_t len = strcspn(p, ",");
                _cleanup_free_ char *plugin = trimmed(p, len);
                int r;

                if (!plugin)
                        return -ENOMEM;
                if (*plugin) {
                        r = check_plugin(k, written, plugin);
                        if (r < 0)
                                return r;
                }
                p += len;
                if (*p == ',')
                        p++;
        }
        return 0;
}

static int check_one_flag(const char *name, size_t len, const char *value, void *userdata) {
        check *k = userdata;
        _cleanup_free_ char *written = strndup(name, len), *normal = normal_name(name, len);
        int r;

        if (!written || !normal)
                return -ENOMEM;
        r = check_flag_name(k, written, normal);
        if (r < 0)
                return r;
        if (streq(normal, "feature-gates")) {
                char **grown = reallocarray(k->gate_values, k->n_gate_values + 1, sizeof(char *));

                if (!grown)
                        return -ENOMEM;
                k->gate_values = grown;
                k->gate_values[k->n_gate_values] = strdup(value ?: "");
                if (!k->gate_values[k->n_gate_values])
                        return -ENOMEM;
                k->n_gate_values++;
                if (!k->gate_flag)
                        k->gate_flag = TAKE_PTR(written);
                return 0;
        }
        /* A StringSlice: every occurrence adds to the list (pflag's stringSlice.Set). */
        if (is_plugin_list_flag(k, normal))
                return check_plugins(k, written, value);
        return 0;
}

/* ---- feature gates */

/* strconv.ParseBool, which featuregate's Set uses. */
static int parse_go_bool(const char *s, bool *ret) {
        static const char *const yes[] = { "1", "t", "T", "TRUE", "true", "True" };
        static const char *const no[] = { "0", "f", "F", "FALSE", "false", "False" };

        for (size_t i = 0; i < ELEMENTSOF(yes); i++)
                if (streq(s, yes[i])) {
                        *ret = true;
                        return 0;
                }
        for (size_t i = 0; i < ELEMENTSOF(no); i++)
                if (streq(s, no[i])) {
                        *ret = false;
                        return 0;
                }
        return -EINVAL;
}

static const char *go_bool(bool b) {
        return b ? "true" : "false";
}

/* A gate name the binary does not register: "unrecognized feature gate: X", whatever the
 * emulated version (the lookup in `known` comes before the emulation). */
static int check_gate_unknown_to_binary(check *k, const release_gate *g, const char *name) {
        char b[KMINOR_STRING_MAX], w[KMINOR_STRING_MAX];

        if (g->removed_in.major && kminor_cmp(kminor_of(g->removed_in), k->binary) <= 0)
                return add_finding(k->r, false, k->component, k->file, k->gate_flag, name, name,
                                   kminor_of(g->removed_in), "drop feature gate %s from --%s (removed in %s)", name,
                                   k->gate_flag, minor_text(kminor_of(g->removed_in), w));
        for (uint16_t m = k->binary.minor + 1; k->binary.major == 1 && m <= RELEASE_LAST_MINOR; m++)
                if (release_gate_known_in(g, 1, m))
                        return add_finding(k->r, false, k->component, k->file, k->gate_flag, name, name, KMINOR(0, 0),
                                           "drop feature gate %s from --%s: %s %s does not know it yet (added in 1.%u; "
                                           "the binary says \"unrecognized feature gate: %s\")",
                                           name, k->gate_flag, k->component, minor_text(k->binary, b), (unsigned) m,
                                           name);
        return add_finding(k->r, false, k->component, k->file, k->gate_flag, name, name, KMINOR(0, 0),
                           "drop feature gate %s from --%s: %s %s does not know it (\"unrecognized feature gate: "
                           "%s\")",
                           name, k->gate_flag, k->component, minor_text(k->binary, b), name);
}

static int check_gate(check *k, const char *name, const char *value_text) {
        const release_gate *g = release_gate_find(name);
        const release_gate_spec *spec;
        char e[KMINOR_STRING_MAX];
        bool value;

        if (parse_go_bool(value_text, &value) < 0)
                return add_finding(k->r, false, k->component, k->file, k->gate_flag, name, name, KMINOR(0, 0),
                                   "--%s %s=%s: the binary refuses it (\"invalid value of %s=%s\"): write true or false",
                                   k->gate_flag, name, value_text, name, value_text);
        if (!g)
                return add_finding(k->r, true, k->component, k->file, k->gate_flag, name, NULL, KMINOR(0, 0),
                                   "feature gate %s (--%s) is not in cplet's data for 1.30 to 1.%u (a binary that does "
                                   "not know it refuses to start: \"unrecognized feature gate: %s\")",
                                   name, k->gate_flag, (unsigned) RELEASE_LAST_MINOR, name);
        if (!release_gate_known_in(g, (uint16_t) k->binary.major, (uint16_t) k->binary.minor))
                return check_gate_unknown_to_binary(k, g, name);

        /* featureSpecAtEmulationVersion: the spec in force is the last one not newer than the
         * emulated version; none is PreAlpha (versioned specs from 1.31 on). */
        spec = release_gate_spec_at(g, (uint16_t) k->emulated.major, (uint16_t) k->emulated.minor);
        if (!spec && g->n_specs > 0 && !g->specs_partial &&
            kminor_cmp(k->binary, KMINOR_EMULATED_FLAG_SINCE) >= 0)
                return add_finding(k->r, false, k->component, k->file, k->gate_flag, name, name, KMINOR(0, 0),
                                   "drop feature gate %s from --%s or raise the emulated version: \"cannot set feature "
                                   "gate %s to %s, feature is PreAlpha at emulated version %s\"",
                                   name, k->gate_flag, name, go_bool(value), minor_text(k->emulated, e));
        if (spec && spec->lock_to_default && spec->default_value != value)
                return add_finding(k->r, false, k->component, k->file, k->gate_flag, name, name, KMINOR(0, 0),
                                   "drop feature gate %s from --%s (at emulated version %s: \"cannot set feature gate %s "
                                   "to %s, feature is locked to %s\")",
                                   name, k->gate_flag, minor_text(k->emulated, e), name, go_bool(value),
                                   go_bool(spec->default_value));
        return 0;
}

/* One "[component:]key=value" item of --feature-gates. *ret_prefixed tells kube:Foo from Foo. */
static int check_gate_item(check *k, const char *item, bool *ret_prefixed) {
        _cleanup_free_ char *copy = strdup(item);
        char b[KMINOR_STRING_MAX], *eq, *name, *colon;

        if (!copy)
                return -ENOMEM;
        eq = strchr(copy, '=');
        if (!eq)
                return add_finding(k->r, false, k->component, k->file, k->gate_flag, copy, copy, KMINOR(0, 0),
                                   "--%s %s: the binary refuses it (\"missing bool value for %s\")", k->gate_flag,
                                   copy, copy);
        *eq = 0;
        name = copy;
        colon = strchr(copy, ':');
        /* 1.31+: the compatibility registry's colonSeparatedMultimapStringString, "kube" the
         * default component. 1.30: featuregate's own mapStringBool, where "kube:Foo" is just an
         * unknown name. */
        if (colon && kminor_cmp(k->binary, KMINOR_EMULATED_FLAG_SINCE) < 0)
                return add_finding(k->r, false, k->component, k->file, k->gate_flag, colon + 1, colon + 1,
                                   KMINOR(0, 0),
                                   "--%s %s: %s %s takes no component prefix (\"unrecognized feature gate: %s\"): "
                                   "write %s=%s",
                                   k->gate_flag, item, k->component, minor_text(k->binary, b), copy, colon + 1, eq + 1);
        if (colon) {
                *colon = 0;
                if (!streq(copy, "kube"))
                        return add_finding(k->r, true, k->component, k->file, k->gate_flag, item, NULL, KMINOR(0, 0),
                                           "--%s %s: gates of component %s are not in cplet's data (not checked)",
                                           k->gate_flag, item, copy);
                name = colon + 1;
        }
        *ret_prefixed = colon != NULL;
        return check_gate(k, name, eq + 1);
}

static int check_gates(check *k) {
        bool bare = false, prefixed = false;
        int r;

        for (size_t v = 0; v < k->n_gate_values; v++)
                for (const char *p = k->gate_values[v]; *p;) {
                        size_t len = strcspn(p, ",");
                        _cleanup_free_ char *item = trimmed(p, len);
                        bool pre = false;

                        if (!item)
                                return -ENOMEM;
                        if (*item) {
                                r = check_gate_item(k, item, &pre);
                                if (r < 0)
                                        return r;
                                if (pre)
                                        prefixed = true;
                                else if (strchr(item, '=') && !strchr(item, ':'))
                                        bare = true;
                        }
                        p += len;
                        if (*p == ',')
                                p++;
                }
        /* compatibility registry Set(): both forms for kube is an error. */
        if (bare && prefixed)
                return add_finding(k->r, false, k->component, k->file, k->gate_flag, NULL, NULL, KMINOR(0, 0),
                                   "--%s mixes kube:NAME=VALUE and NAME=VALUE; the binary refuses it (\"set kube feature "
                                   "gates with default empty prefix or kube: prefix consistently, do not mix use\"): "
                                   "write every gate the same way",
                                   k->gate_flag);
        return 0;
}

static void check_done(check *k) {
        for (size_t i = 0; i < k->n_gate_values; i++)
                free(k->gate_values[i]);
        free(k->gate_values);
        free(k->gate_flag);
}

int preflight_check(const char *component, const char *file, kminor binary, kminor emulated, const cmdline *c,
                    preflight_report *r) {
        _cleanup_(check_done) check k = {
                .component = component,
                .file = file,
                .binary = binary,
                .emulated = emulated,
                .ri = release_info_find((uint16_t) binary.major, (uint16_t) binary.minor),
                .r = r,
        };
        char b[KMINOR_STRING_MAX];
        int ret;

        if (binary.major > UINT16_MAX || binary.minor > UINT16_MAX)
                k.ri = NULL;
        if (!k.ri)
                return add_finding(r, true, component, file, NULL, NULL, NULL, KMINOR(0, 0),
                                   "cplet has no release data for %s %s (it knows 1.%u to 1.%u): its flags are not "
                                   "checked",
                                   component, minor_text(binary, b), (unsigned) RELEASE_FIRST_MINOR,
                                   (unsigned) RELEASE_LAST_MINOR);
        k.cf = release_component_find(k.ri, component);
        if (!k.cf)
                return 0; /* not a Kubernetes binary the data knows */
        ret = cmdline_foreach_flag(c, check_one_flag, &k);
        if (ret >= 0)
                ret = check_gates(&k);
        return ret < 0 ? ret : 0;
}

int preflight_removed_in(const char *component, const char *file, kminor next, const cmdline *c,
                         preflight_report *r) {
        _cleanup_(preflight_report_done) preflight_report all = {};
        int ret;

        if (!preflight_release_known(next))
                return 0;
        ret = preflight_check(component, file, next, next, c, &all);
        if (ret < 0)
                return ret;
        for (size_t i = 0; i < all.n_findings; i++) {
                const preflight_finding *f = &all.findings[i];

                if (f->warning || !kminor_eq(f->removed_in, next))
                        continue;
                ret = add_finding(r, false, f->component, f->file, f->flag, f->item, f->drop, f->removed_in, "%s",
                                  f->message + strlen(f->file) + 2);
                if (ret < 0)
                        return ret;
        }
        return 0;
}

/* ---- --drop-removed */

typedef struct list_flag {
        char *name;   /* as written */
        char **items; /* the comma-separated items of every occurrence */
        size_t n_items;
} list_flag;

static int collect_items(const char *name, size_t len, const char *value, void *userdata) {
        list_flag *l = userdata;

        if (!cmdline_flag_name_equal(name, len, l->name))
                return 0;
        for (const char *p = value ?: ""; *p;) {
                size_t n = strcspn(p, ",");
                char **grown;

                grown = reallocarray(l->items, l->n_items + 1, sizeof(char *));
                if (!grown)
                        return -ENOMEM;
                l->items = grown;
                l->items[l->n_items] = strndup(p, n);
                if (!l->items[l->n_items])
                        return -ENOMEM;
                l->n_items++;
                p += n;
                if (*p == ',')
                        p++;
        }
        return 0;
}

/* The item's name: a gate's before "=" (and after "kube:"), a plugin's trimmed. */
static bool item_names(const char *item, const char *entry, bool gate) {
        _cleanup_free_ char *t = trimmed(item, strlen(item));
        char *name = t;

        if (!t)
                return false;
        if (gate) {
                if (startswith(t, KUBE_PREFIX))
                        name += strlen(KUBE_PREFIX);
                name[strcspn(name, "=")] = 0;
        }
        return streq(name, entry);
}

/* Removes the items named entry from a list flag (all its occurrences become one, in the first
 * one's place: the lists accumulate, so the meaning is kept); the flag goes when none is left.
 * Returns 1 when something was removed. -ENOMEM. */
static int drop_from_list(cmdline *c, const char *flag, const char *entry, bool gate) {
        list_flag l = { .name = (char *) flag };
        _cleanup_free_ char *joined = NULL;
        size_t kept = 0, len = 0;
        bool found = false;
        int r;

        r = cmdline_foreach_flag(c, collect_items, &l);
        for (size_t i = 0; r >= 0 && i < l.n_items; i++) {
                if (item_names(l.items[i], entry, gate)) {
                        found = true;
                        free(l.items[i]);
                        l.items[i] = NULL;
                        continue;
                }
                len += strlen(l.items[i]) + 1;
        }
        if (r >= 0 && found) {
                joined = calloc(len + 1, 1);
                if (!joined)
                        r = -ENOMEM;
                for (size_t i = 0; joined && i < l.n_items; i++)
                        if (l.items[i]) {
                                if (kept++ > 0)
                                        strcat(joined, ",");
                                strcat(joined, l.items[i]);
                        }
                if (r >= 0)
                        r = kept > 0 ? cmdline_set_flag(c, flag, joined) : cmdline_unset_flag(c, flag);
        }
        for (size_t i = 0; i < l.n_items; i++)
                free(l.items[i]);
        free(l.items);
        if (r < 0)
                return r;
        return found;
}

int preflight_drop(cmdline *c, const char *entry) {
        static const char *const plugin_flags[] = { "enable-admission-plugins", "disable-admission-plugins",
                                                    "admission-control" };
        int r, removed = 0;

        if (!*entry)
                return 0;
        r = cmdline_unset_flag(c, entry);
        if (r != 0)
                return r < 0 ? r : 1;
        r = drop_from_list(c, "feature-gates", entry, true);
        if (r != 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(plugin_flags); i++) {
                r = drop_from_list(c, plugin_flags[i], entry, false);
                if (r < 0)
                        return r;
                removed |= r;
        }
        return removed;
}
