/* SPDX-License-Identifier: Apache-2.0 */
#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "macro.h"
#include "op-internal.h"
#include "target.h"

target *target_free(target *t) {
        if (!t)
                return NULL;
        free(t->id);
        free(t->binary_version);
        free(t->emulated_version);
        free(t->min_compat_version);
        strv_free(t->components);
        strv_free(t->drop_removed);
        free(t->image_repository);
        free(t->stable_for);
        free(t->step_timeout);
        free(t);
        return NULL;
}

/* How much of another parser's message a refusal keeps. */
#define MESSAGE_MAX 120

static const char *const known_fields[] = {
        "id",         "generation", "binaryVersion", "emulatedVersion", "minCompatibilityVersion",
        "components", "imageRepository", "onFailure", "stableFor", "stepTimeout", "dropRemoved",
};

/* Text as a message may show it: printable ASCII, the rest as \xNN, cut after `max` bytes. */
static char *printable(const char *s, size_t max) {
        char *out = malloc(4 * max + 4), *o = out;

        if (!out)
                return NULL;
        for (; *s && (size_t) (o - out) < max; s++)
                if ((unsigned char) *s >= 0x20 && (unsigned char) *s < 0x7f)
                        *o++ = *s;
                else
                        o += sprintf(o, "\\x%02x", (unsigned char) *s);
        strcpy(o, *s ? "..." : "");
        return out;
}

/* A value as a message may quote it: JSON, cut short, so a hostile value cannot flood a log
 * or the status annotation (and without DEL, which JSON leaves as it is). */
static char *quote(json_t *v) {
        _cleanup_free_ char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_ENSURE_ASCII);

        return s ? printable(s, 60) : strdup("?");
}

/* A message of another parser (jansson's, the library's version and duration parsers), which may
 * quote the value in full and as it is. */
static int refused(char **ret_error, int r, const char *why) {
        _cleanup_free_ char *p = printable(why, MESSAGE_MAX);

        return set_error(ret_error, r, "target: %s", p ?: "?");
}

static int invalid(char **ret_error, const char *field, json_t *v, const char *why) {
        _cleanup_free_ char *q = v ? quote(v) : NULL, *p = printable(why, MESSAGE_MAX);

        if (q)
                return set_error(ret_error, -EINVAL, "target: %s %s: %s", field, q, p ?: "?");
        return set_error(ret_error, -EINVAL, "target: %s: %s", field, p ?: "?");
}

static int check_fields(json_t *doc, char **ret_error) {
        const char *key;
        json_t *v;

        json_object_foreach(doc, key, v) {
                bool known = false;

                for (size_t i = 0; i < ELEMENTSOF(known_fields); i++)
                        known = known || streq(key, known_fields[i]);
                if (!known) {
                        json_auto_t *name = json_string(key);

                        return invalid(ret_error, "field", name, "unknown (see docs/protocol.md)");
                }
        }
        return 0;
}

/* An optional string field; `required` makes its absence an error. */
static int string_field(json_t *doc, const char *field, bool required, char **ret, char **ret_error) {
        json_t *v = json_object_get(doc, field);

        *ret = NULL;
        if (!v)
                return required ? invalid(ret_error, field, NULL, "missing") : 0;
        if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 256)
                return invalid(ret_error, field, v, "expected a non-empty string");
        if (strlen(json_string_value(v)) != json_string_length(v))
                return invalid(ret_error, field, v, "contains a NUL byte");
        *ret = strdup(json_string_value(v));
        return *ret ? 0 : -ENOMEM;
}

static bool valid_id(const char *s) {
        if (strlen(s) > TARGET_ID_MAX || !isalnum((unsigned char) s[0]))
                return false;
        for (const char *p = s; *p; p++)
                if (!isalnum((unsigned char) *p) && *p != '-' && *p != '.' && *p != '_')
                        return false;
        return true;
}

static int parse_identity(json_t *doc, target *t, char **ret_error) {
        json_t *g = json_object_get(doc, "generation");
        int r;

        r = string_field(doc, "id", true, &t->id, ret_error);
        if (r < 0)
                return r;
        if (!valid_id(t->id))
                return invalid(ret_error, "id", json_object_get(doc, "id"),
                               "expected 1-63 letters, digits, '-', '.' or '_', starting with a letter or digit");
        if (!json_is_integer(g) || json_integer_value(g) < 1)
                return invalid(ret_error, "generation", g, "expected an integer of at least 1");
        t->generation = (uint64_t) json_integer_value(g);
        return 0;
}

static bool listed(const char *const *list, const char *s) {
        for (; list && *list; list++)
                if (streq(*list, s))
                        return true;
        return false;
}

static int parse_components(json_t *doc, const target_limits *limits, target *t, char **ret_error) {
        json_t *list = json_object_get(doc, "components"), *v;
        size_t i;

        if (!list)
                return 0;
        if (!json_is_array(list) || json_array_size(list) == 0 || json_array_size(list) > TARGET_COMPONENTS_MAX)
                return invalid(ret_error, "components", list, "expected a non-empty list of component names");
        t->components = calloc(json_array_size(list) + 1, sizeof(char *));
        if (!t->components)
                return -ENOMEM;
        json_array_foreach(list, i, v) {
                const char *name = json_string_value(v);

                if (!name || !listed(limits->known_components, name))
                        return invalid(ret_error, "components", v, "not a component of this node");
                if (listed((const char *const *) t->components, name))
                        return invalid(ret_error, "components", v, "named twice");
                t->components[i] = strdup(name);
                if (!t->components[i])
                        return -ENOMEM;
        }
        return 0;
}

/* A flag, feature gate or admission plugin name as the preflight names what to drop
 * (`cplet upgrade --drop-removed`): letters, digits, '-', '_', '.', at most 128 bytes. Nothing
 * else can reach preflight_drop(), and it only ever removes what the manifest already has. */
static bool valid_drop_entry(const char *s) {
        size_t n = 0;

        for (; s[n]; n++)
                if (!isalnum((unsigned char) s[n]) && !strchr("-_.", s[n]))
                        return false;
        return n > 0 && n <= TARGET_DROP_NAME_MAX && s[0] != '-';
}

static int parse_drop_removed(json_t *doc, target *t, char **ret_error) {
        json_t *list = json_object_get(doc, "dropRemoved"), *v;
        size_t i;

        if (!list)
                return 0;
        if (!json_is_array(list) || json_array_size(list) == 0 || json_array_size(list) > TARGET_DROP_MAX)
                return invalid(ret_error, "dropRemoved", list,
                               "expected a non-empty list of at most 64 flag, feature gate or admission plugin names");
        t->drop_removed = calloc(json_array_size(list) + 1, sizeof(char *));
        if (!t->drop_removed)
                return -ENOMEM;
        json_array_foreach(list, i, v) {
                const char *name = json_string_value(v);

                if (!name || !valid_drop_entry(name))
                        return invalid(ret_error, "dropRemoved", v,
                                       "expected a flag name without dashes (cloud-provider), a feature gate or an "
                                       "admission plugin name");
                if (listed((const char *const *) t->drop_removed, name))
                        return invalid(ret_error, "dropRemoved", v, "named twice");
                t->drop_removed[i] = strdup(name);
                if (!t->drop_removed[i])
                        return -ENOMEM;
        }
        return 0;
}

static int parse_policy(json_t *doc, target *t, char **ret_error) {
        _cleanup_free_ char *on_failure = NULL;
        uint64_t stable = ROLLOUT_STABLE_DEFAULT_USEC, timeout = ROLLOUT_TIMEOUT_DEFAULT_USEC;
        int r;

        r = string_field(doc, "onFailure", false, &on_failure, ret_error);
        if (r >= 0)
                r = string_field(doc, "stableFor", false, &t->stable_for, ret_error);
        if (r >= 0)
                r = string_field(doc, "stepTimeout", false, &t->step_timeout, ret_error);
        if (r < 0)
                return r;
        /* Each field judged on its own, named as the target spells it (not as the command line's
         * options, which the library's own parser would name). */
        if (on_failure && !streq(on_failure, "rollback") && !streq(on_failure, "stop"))
                return invalid(ret_error, "onFailure", json_object_get(doc, "onFailure"), "expected rollback or stop");
        if (t->stable_for && parse_duration(t->stable_for, &stable) < 0)
                return invalid(ret_error, "stableFor", json_object_get(doc, "stableFor"),
                               "expected a duration such as 0s, 10s, 1m30s");
        if (t->step_timeout && (parse_duration(t->step_timeout, &timeout) < 0 || timeout == 0))
                return invalid(ret_error, "stepTimeout", json_object_get(doc, "stepTimeout"),
                               "expected a duration such as 30s, 5m");
        if (stable >= timeout)
                return invalid(ret_error, "stableFor", json_object_get(doc, "stableFor"),
                               "not shorter than stepTimeout: every step would time out before its health held that long");
        t->on_failure_stop = on_failure && streq(on_failure, "stop");
        return 0;
}

/* docs/protocol.md: ^v?[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]*)?$ (a whole release, not a minor). */
static bool release_version_syntax(const char *s) {
        size_t n;

        if (*s == 'v')
                s++;
        for (int part = 0; part < 3; part++) {
                n = strspn(s, "0123456789");
                if (n == 0)
                        return false;
                s += n;
                if (part < 2 && *s++ != '.')
                        return false;
        }
        if (*s == 0)
                return true;
        if (*s != '-' && *s != '+')
                return false;
        s++;
        return strspn(s, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.+-") == strlen(s);
}

static int parse_versions(json_t *doc, const target_limits *limits, target *t, char **ret_error) {
        _cleanup_free_ char *error = NULL;
        plan_target unused;
        op_target ot;
        kversion v;
        kminor m;
        int r;

        r = string_field(doc, "binaryVersion", true, &t->binary_version, ret_error);
        if (r >= 0)
                r = string_field(doc, "emulatedVersion", false, &t->emulated_version, ret_error);
        if (r >= 0)
                r = string_field(doc, "minCompatibilityVersion", false, &t->min_compat_version, ret_error);
        if (r >= 0)
                r = string_field(doc, "imageRepository", false, &t->image_repository, ret_error);
        if (r < 0)
                return r;
        if (!release_version_syntax(t->binary_version))
                return invalid(ret_error, "binaryVersion", json_object_get(doc, "binaryVersion"),
                               "expected a release such as v1.35.0");
        if (kversion_parse(t->binary_version, &v, &error) < 0)
                return invalid(ret_error, "binaryVersion", json_object_get(doc, "binaryVersion"), error);
        /* Plain major.minor: the flag syntax (kube=1.35,other=...) is not for a target. */
        if (t->emulated_version && kminor_parse(t->emulated_version, &m, &error) < 0)
                return invalid(ret_error, "emulatedVersion", json_object_get(doc, "emulatedVersion"), error);
        if (t->min_compat_version && kminor_parse(t->min_compat_version, &m, &error) < 0)
                return invalid(ret_error, "minCompatibilityVersion", json_object_get(doc, "minCompatibilityVersion"),
                               error);
        if (t->image_repository && !op_valid_registry_prefix(t->image_repository))
                return invalid(ret_error, "imageRepository", json_object_get(doc, "imageRepository"),
                               "expected a registry prefix such as registry.k8s.io, without tag or digest");
        if (t->image_repository && !listed(limits->allowed_repositories, t->image_repository))
                return invalid(ret_error, "imageRepository", json_object_get(doc, "imageRepository"),
                               "not on this node's allow-list (imageRepositories in the configuration)");
        /* The rest of what the command line checks (the same function): nothing here should be
         * left, but a target must never pass what `cplet plan` refuses. */
        ot = (op_target){ .binary_version = t->binary_version, .emulated_version = t->emulated_version,
                          .min_compat_version = t->min_compat_version, .image_repository = t->image_repository };
        r = op_parse_target(&ot, &unused, &error);
        if (r < 0)
                return refused(ret_error, r, error);
        return 0;
}

int target_parse(const char *text, size_t size, const target_limits *limits, target **ret, char **ret_error) {
        _cleanup_(target_freep) target *t = NULL;
        json_auto_t *doc = NULL;
        json_error_t e;
        int r;

        if (size > TARGET_SIZE_MAX)
                return set_error(ret_error, -E2BIG, "target: %zu bytes, more than the %d allowed", size,
                                 TARGET_SIZE_MAX);
        doc = json_loadb(text, size, JSON_REJECT_DUPLICATES, &e);
        if (!doc) {
                _cleanup_free_ char *why = strdup_printf("not JSON (line %d, column %d: %s)", e.line, e.column,
                                                         e.text);

                return refused(ret_error, -EINVAL, why ?: "not JSON");
        }
        if (!json_is_object(doc))
                return invalid(ret_error, "value", doc, "expected a JSON object");
        t = calloc(1, sizeof(target));
        if (!t)
                return -ENOMEM;
        r = check_fields(doc, ret_error);
        if (r >= 0)
                r = parse_identity(doc, t, ret_error);
        if (r >= 0)
                r = parse_versions(doc, limits, t, ret_error);
        if (r >= 0)
                r = parse_components(doc, limits, t, ret_error);
        if (r >= 0)
                r = parse_drop_removed(doc, t, ret_error);
        if (r >= 0)
                r = parse_policy(doc, t, ret_error);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(t);
        return 0;
}
