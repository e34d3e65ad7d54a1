/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <string.h>

#include "cmdline.h"
#include "macro.h"

static const char *path_basename(const char *s) {
        const char *slash = strrchr(s, '/');

        return slash ? slash + 1 : s;
}

/* An item runs `binary` when its basename is the binary's name; a flag never does, whatever
 * its value ends with (--log-file=/var/log/kube-apiserver). */
static bool is_binary(const char *item, const char *binary) {
        return item[0] != '-' && streq(path_basename(item), binary);
}

static size_t array_size(json_t *a) {
        return a ? json_array_size(a) : 0;
}

size_t cmdline_size(const cmdline *c) {
        return array_size(c->command) + array_size(c->args);
}

static json_t *item_ref(const cmdline *c, size_t i, json_t **ret_array, size_t *ret_index) {
        size_t nc = array_size(c->command);
        json_t *array = i < nc ? c->command : c->args;
        size_t index = i < nc ? i : i - nc;

        if (ret_array)
                *ret_array = array;
        if (ret_index)
                *ret_index = index;
        return array ? json_array_get(array, index) : NULL;
}

const char *cmdline_item(const cmdline *c, size_t i) {
        return json_string_value(item_ref(c, i, NULL, NULL));
}

static bool is_shell(const char *s) {
        static const char *const shells[] = { "sh", "bash", "dash", "ash", "zsh", "ksh", "busybox" };
        const char *b = path_basename(s);

        for (size_t i = 0; i < ELEMENTSOF(shells); i++)
                if (streq(b, shells[i]))
                        return true;
        return false;
}

static json_t *argv_array(json_t *container, const char *key, char **ret_error, int *r) {
        json_t *a = json_object_get(container, key);
        size_t i;
        json_t *v;

        *r = 0;
        if (!a || json_is_null(a))
                return NULL;
        if (!json_is_array(a)) {
                *r = set_error(ret_error, -EINVAL, "container \"%s\": %s is not a list",
                               json_string_value(json_object_get(container, "name")) ?: "?", key);
                return NULL;
        }
        json_array_foreach(a, i, v)
                if (!json_is_string(v)) {
                        *r = set_error(ret_error, -EINVAL, "container \"%s\": %s[%zu] is not a string",
                                       json_string_value(json_object_get(container, "name")) ?: "?", key, i);
                        return NULL;
                }
        return a;
}

bool cmdline_mentions_binary(json_t *container, const char *binary) {
        static const char *const keys[] = { "command", "args" };

        for (size_t k = 0; k < ELEMENTSOF(keys); k++) {
                json_t *a = json_object_get(container, keys[k]), *v;
                size_t i;

                json_array_foreach(a, i, v)
                        if (json_is_string(v) && is_binary(json_string_value(v), binary))
                                return true;
        }
        return false;
}

int cmdline_open(json_t *container, const char *binary, cmdline *ret, char **ret_error) {
        cmdline c = { .container = container };
        const char *first;
        int r;

        c.command = argv_array(container, "command", ret_error, &r);
        if (r < 0)
                return r;
        c.args = argv_array(container, "args", ret_error, &r);
        if (r < 0)
                return r;

        first = cmdline_item(&c, 0);
        if (first && is_shell(first))
                return set_error(ret_error, -EOPNOTSUPP,
                                 "the %s container runs a shell script (%s); cplet does not edit scripts: "
                                 "run the binary directly with its flags as items of command/args",
                                 binary, first);

        for (size_t i = 0; i < cmdline_size(&c); i++)
                if (is_binary(cmdline_item(&c, i), binary)) {
                        c.flags_start = i + 1;
                        *ret = c;
                        return 0;
                }

        if (!c.command) {
                /* args only: the image's entrypoint is the component. */
                c.entrypoint = true;
                c.flags_start = 0;
                *ret = c;
                return 0;
        }
        return set_error(ret_error, -EOPNOTSUPP,
                         "the %s container's command (%s…) does not run %s; cplet cannot tell its flags",
                         binary, first ?: "empty", binary);
}

/* Splits item i into a flag name and value. Returns how many items it spans (1 or 2), or 0
 * when item i is not a flag, -1 at "--" (end of flags). */
static int parse_flag_at(const cmdline *c, size_t i, const char **ret_name, size_t *ret_name_len,
                         const char **ret_value, bool *ret_separate) {
        const char *s = cmdline_item(c, i), *name, *eq, *next;

        if (!s || s[0] != '-' || !s[1])
                return 0;
        if (streq(s, "--"))
                return -1;
        name = s + (s[1] == '-' ? 2 : 1);
        eq = strchr(name, '=');
        *ret_name = name;
        *ret_separate = false;
        if (eq) {
                *ret_name_len = eq - name;
                *ret_value = eq + 1;
                return 1;
        }
        *ret_name_len = strlen(name);
        /* Components take no positional arguments, so an item that does not start with '-'
         * after a flag is that flag's value (pflag's "--name value" form). */
        next = cmdline_item(c, i + 1);
        if (next && next[0] != '-') {
                *ret_value = next;
                *ret_separate = true;
                return 2;
        }
        *ret_value = NULL;
        return 1;
}

/* Moves *i to the next flag at or after it and returns how many items it spans (1 or 2), or 0
 * at the end of the flags. */
static int next_flag(const cmdline *c, size_t *i, const char **ret_name, size_t *ret_len, const char **ret_value,
                     bool *ret_separate) {
        for (; *i < cmdline_size(c); (*i)++) {
                int k = parse_flag_at(c, *i, ret_name, ret_len, ret_value, ret_separate);

                if (k < 0)
                        return 0; /* "--" */
                if (k > 0)
                        return k;
        }
        return 0;
}

int cmdline_foreach_flag(const cmdline *c, cmdline_flag_fn fn, void *userdata) {
        const char *name, *value;
        size_t len, i = c->flags_start;
        bool separate;
        int k, r;

        for (; (k = next_flag(c, &i, &name, &len, &value, &separate)) > 0; i += k) {
                r = fn(name, len, value, userdata);
                if (r != 0)
                        return r;
        }
        return 0;
}

/* The components normalise flag names with pflag's WordSepNormalizeFunc: "_" is "-".
 * --emulated_version is --emulated-version to the binary, so it must be to cplet too. */
bool cmdline_flag_name_equal(const char *name, size_t len, const char *wanted) {
        if (strlen(wanted) != len)
                return false;
        for (size_t i = 0; i < len; i++) {
                char a = name[i] == '_' ? '-' : name[i], b = wanted[i] == '_' ? '-' : wanted[i];

                if (a != b)
                        return false;
        }
        return true;
}

int cmdline_get_flag(const cmdline *c, const char *name, const char **ret_value) {
        const char *n, *v, *value = NULL;
        size_t len, i = c->flags_start;
        bool separate;
        int k, count = 0;

        for (; (k = next_flag(c, &i, &n, &len, &v, &separate)) > 0; i += k)
                if (cmdline_flag_name_equal(n, len, name)) {
                        value = v;
                        count++;
                }
        if (count > 0 && ret_value)
                *ret_value = value;
        return count;
}

static int remove_item(cmdline *c, size_t i) {
        json_t *array;
        size_t index;

        if (!item_ref(c, i, &array, &index))
                return -ENOENT;
        return json_array_remove(array, index) < 0 ? -ENOMEM : 0;
}

static int replace_item(cmdline *c, size_t i, const char *s) {
        json_t *array;
        size_t index;

        if (!item_ref(c, i, &array, &index))
                return -ENOENT;
        return json_array_set_new(array, index, json_string(s)) < 0 ? -ENOMEM : 0;
}

/* Removes occurrences of `name` at or after index `from`. */
static int remove_occurrences(cmdline *c, const char *name, size_t from) {
        const char *n, *v;
        size_t len, i = c->flags_start;
        bool separate;
        int k, r, removed = 0;

        while ((k = next_flag(c, &i, &n, &len, &v, &separate)) > 0) {
                if (i < from || !cmdline_flag_name_equal(n, len, name)) {
                        i += k;
                        continue;
                }
                for (int j = 0; j < k; j++) {
                        r = remove_item(c, i);
                        if (r < 0)
                                return r;
                }
                removed++;
        }
        return removed;
}

int cmdline_set_flag(cmdline *c, const char *name, const char *value) {
        _cleanup_free_ char *joined = NULL;
        const char *n, *v;
        size_t len, i = c->flags_start;
        bool separate;
        json_t *target;
        int k, r;

        for (; (k = next_flag(c, &i, &n, &len, &v, &separate)) > 0; i += k) {
                if (!cmdline_flag_name_equal(n, len, name))
                        continue;

                /* First occurrence: keep its form, change its value. */
                if (separate && value)
                        r = replace_item(c, i + 1, value);
                else {
                        const char *dashes = cmdline_item(c, i)[1] == '-' ? "--" : "-";

                        joined = value ? strdup_printf("%s%s=%s", dashes, name, value)
                                       : strdup_printf("%s%s", dashes, name);
                        if (!joined)
                                return -ENOMEM;
                        r = replace_item(c, i, joined);
                        if (r >= 0 && separate)
                                r = remove_item(c, i + 1);
                }
                if (r < 0)
                        return r;
                r = remove_occurrences(c, name, i + 1);
                return r < 0 ? r : 0;
        }

        joined = value ? strdup_printf("--%s=%s", name, value) : strdup_printf("--%s", name);
        if (!joined)
                return -ENOMEM;

        /* Append after the last flag: into args when the argv continues there (or when args
         * exists and holds the binary or nothing yet), else into command. */
        if (c->args)
                target = c->args;
        else if (c->command)
                target = c->command;
        else {
                target = json_array();
                if (!target || json_object_set_new(c->container, "args", target) < 0)
                        return -ENOMEM;
                c->args = target;
        }
        return json_array_append_new(target, json_string(joined)) < 0 ? -ENOMEM : 0;
}

int cmdline_unset_flag(cmdline *c, const char *name) {
        return remove_occurrences(c, name, 0);
}
