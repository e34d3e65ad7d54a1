/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include "config.h"
#include "macro.h"
#include "manifest.h"

void config_done(config *c) {
        free(c->plugin_dir);
        strv_free(c->image_repositories);
        free(c->kubeconfig);
        free(c->node_name);
        *c = (config){};
}

/* imageRepositories: registry prefixes as kubeadm's imageRepository writes them
 * ("registry.k8s.io", "registry.example.com:5000/k8s"): no scheme, tag, digest or spaces. */
static int repositories_from_tree(json_t *value, const char *path, char ***ret, char **ret_error) {
        _cleanup_strv_free_ char **l = NULL;
        size_t i;
        json_t *v;

        if (!json_is_array(value) || json_array_size(value) > 64)
                return set_error(ret_error, -EINVAL, "%s: imageRepositories must be a list of at most 64 registry prefixes",
                                 path);
        l = calloc(json_array_size(value) + 1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        json_array_foreach(value, i, v) {
                const char *s = json_string_value(v);

                if (!s || s[0] == 0 || strlen(s) > 255 || strpbrk(s, " \t\n@\"'") || strstr(s, "://") ||
                    s[strlen(s) - 1] == '/')
                        return set_error(ret_error, -EINVAL,
                                         "%s: imageRepositories[%zu] is not a registry prefix such as \"registry.k8s.io\"",
                                         path, i);
                l[i] = strdup(s);
                if (!l[i])
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

static int string_field(json_t *value, const char *path, const char *key, bool absolute, char **ret,
                        char **ret_error) {
        const char *s = json_string_value(value);

        if (!s || s[0] == 0 || strlen(s) > 4096 || (absolute && s[0] != '/'))
                return set_error(ret_error, -EINVAL, "%s: %s must be %s", path, key,
                                 absolute ? "an absolute path" : "a non-empty string");
        free(*ret);
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

/* Reads the fields of a parsed document; `path` names the file in errors. */
static int config_from_tree(json_t *doc, const char *path, config *ret, char **ret_error) {
        _cleanup_(config_done) config c = {};
        const char *key;
        json_t *value;
        int r;

        json_object_foreach(doc, key, value) {
                if (streq(key, "apiVersion")) {
                        if (!json_is_string(value) || !streq(json_string_value(value), CONFIG_API_VERSION))
                                return set_error(ret_error, -EINVAL, "%s: apiVersion must be \"%s\"", path,
                                                 CONFIG_API_VERSION);
                } else if (streq(key, "kind")) {
                        if (!json_is_string(value) || !streq(json_string_value(value), CONFIG_KIND))
                                return set_error(ret_error, -EINVAL, "%s: kind must be \"%s\"", path, CONFIG_KIND);
                } else if (streq(key, "pluginDir")) {
                        const char *s = json_string_value(value);

                        if (!s || s[0] != '/')
                                return set_error(ret_error, -EINVAL, "%s: pluginDir must be an absolute path", path);
                        free(c.plugin_dir);
                        c.plugin_dir = strdup(s);
                        if (!c.plugin_dir)
                                return -ENOMEM;
                } else if (streq(key, "revisionsToKeep")) {
                        json_int_t n = json_integer_value(value);

                        if (!json_is_integer(value) || n < 2 || n > 10000)
                                return set_error(ret_error, -EINVAL,
                                                 "%s: revisionsToKeep must be an integer between 2 and 10000", path);
                        c.keep_revisions = (unsigned) n;
                } else if (streq(key, "imageRepositories")) {
                        strv_free(c.image_repositories);
                        c.image_repositories = NULL;
                        r = repositories_from_tree(value, path, &c.image_repositories, ret_error);
                        if (r < 0)
                                return r;
                } else if (streq(key, "kubeconfig")) {
                        r = string_field(value, path, key, true, &c.kubeconfig, ret_error);
                        if (r < 0)
                                return r;
                } else if (streq(key, "nodeName")) {
                        r = string_field(value, path, key, false, &c.node_name, ret_error);
                        if (r < 0)
                                return r;
                } else {
                        return set_error(ret_error, -EINVAL, "%s: unknown field \"%s\"", path, key);
                }
        }
        if (!json_object_get(doc, "kind")) {
                return set_error(ret_error, -EINVAL, "%s: kind: %s is missing", path, CONFIG_KIND);
        }
        *ret = c;
        c = (config){};
        return 0;
}

int config_parse(const char *data, size_t size, const char *path, config *ret, char **ret_error) {
        _cleanup_(json_decrefp) json_t *doc = NULL;
        int r;

        r = manifest_parse(data, size, path, &doc, ret_error);
        if (r < 0)
                return r;
        return config_from_tree(doc, path, ret, ret_error);
}

int config_load(const char *root, const char *explicit_path, config *ret, char **ret_error) {
        _cleanup_free_ char *path = NULL;
        _cleanup_(json_decrefp) json_t *doc = NULL;
        int r;

        path = explicit_path ? strdup(explicit_path)
                             : strdup_printf("%s%s", streq(root, "/") ? "" : root, CONFIG_DEFAULT_PATH);
        if (!path)
                return -ENOMEM;

        if (!explicit_path && access(path, F_OK) < 0 && errno == ENOENT) {
                *ret = (config){};
                return 0;
        }
        r = manifest_load(AT_FDCWD, path, &doc, ret_error);
        if (r < 0)
                return r;
        return config_from_tree(doc, path, ret, ret_error);
}
