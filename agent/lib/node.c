/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "fs-util.h"
#include "macro.h"
#include "manifest.h"
#include "node.h"

node *node_free(node *n) {
        if (!n)
                return NULL;
        for (size_t i = 0; i < n->n_components; i++)
                component_done(&n->components[i]);
        free(n->components);
        strv_free(n->unmanaged);
        for (size_t i = 0; i < n->n_broken; i++) {
                free(n->broken[i].file);
                free(n->broken[i].error);
        }
        free(n->broken);
        free(n->manifest_dir);
        free(n);
        return NULL;
}

const component *node_find(const node *n, const char *name) {
        for (size_t i = 0; i < n->n_components; i++)
                if (streq(n->components[i].plugin->name, name))
                        return &n->components[i];
        return NULL;
}

/* How strongly a container looks like the plugin's component: 3 by container name, 2 by the
 * binary in its command, 1 by image name (mirrors rename images: "registry-k8s-io-kube-apiserver",
 * "kube-apiserver-amd64"), 0 not at all. */
static int match_strength(json_t *container, const plugin *p) {
        const char *image = json_string_value(json_object_get(container, "image"));
        size_t l = strlen(p->name);

        if (streq(container_name(container), p->name))
                return 3;
        if (cmdline_mentions_binary(container, p->name))
                return 2;
        if (image) {
                image_ref ref;
                int strength = 0;

                if (image_ref_parse(image, &ref, NULL) >= 0) {
                        const char *name = image_ref_name(&ref);
                        size_t nl = strlen(name);

                        if (streq(name, p->name) || (strneq(name, p->name, l) && name[l] == '-') ||
                            (nl > l && name[nl - l - 1] == '-' && streq(name + nl - l, p->name)))
                                strength = 1;
                        image_ref_done(&ref);
                }
                return strength;
        }
        return 0;
}

/* Finds the component container of a pod. Returns 0 with *ret_plugin NULL for a pod that is
 * not a component. */
static int identify(json_t *pod, const char *file, const plugin_set *plugins, const plugin **ret_plugin,
                    json_t **ret_container, char **ret_error) {
        json_t *containers = json_object_get(json_object_get(pod, "spec"), "containers");
        const plugin *found = NULL;
        json_t *best = NULL, *container;
        int best_strength = 0;
        bool tie = false;
        size_t i;

        if (!json_is_array(containers)) {
                *ret_plugin = NULL;
                return 0;
        }
        json_array_foreach(containers, i, container) {
                if (!json_is_object(container))
                        continue;
                for (size_t k = 0; k < plugins->n; k++) {
                        const plugin *p = &plugins->items[k];
                        int strength = match_strength(container, p);

                        if (strength == 0)
                                continue;
                        if (found && found != p)
                                return set_error(ret_error, -EINVAL,
                                                 "%s: one pod holds both %s and %s; cplet manages one component per manifest",
                                                 file, found->name, p->name);
                        found = p;
                        if (strength > best_strength) {
                                best = container;
                                best_strength = strength;
                                tie = false;
                        } else if (strength == best_strength)
                                tie = true;
                }
        }
        if (found && tie)
                return set_error(ret_error, -EINVAL, "%s: several containers look like %s; cannot tell which one runs it",
                                 file, found->name);
        *ret_plugin = found;
        *ret_container = best;
        return 0;
}

/* UTF-8 as RFC 3629 defines it: no overlong forms, no surrogates, nothing above U+10FFFF. */
static bool utf8_valid(const char *s) {
        const unsigned char *p = (const unsigned char *) s;

        while (*p) {
                unsigned c = *p, n, cp;

                if (c < 0x80) {
                        p++;
                        continue;
                }
                if (c >= 0xc2 && c <= 0xdf)
                        n = 1, cp = c & 0x1f;
                else if (c >= 0xe0 && c <= 0xef)
                        n = 2, cp = c & 0x0f;
                else if (c >= 0xf0 && c <= 0xf4)
                        n = 3, cp = c & 0x07;
                else
                        return false;
                for (unsigned k = 1; k <= n; k++) {
                        if ((p[k] & 0xc0) != 0x80)
                                return false;
                        cp = (cp << 6) | (p[k] & 0x3f);
                }
                if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
                    (cp >= 0xd800 && cp <= 0xdfff))
                        return false;
                p += n + 1;
        }
        return true;
}

/* A file name as a person can read it in a message: bytes that are not printable ASCII as \xNN. */
static char *escape_name(const char *s) {
        char *e = malloc(strlen(s) * 4 + 1), *q = e;

        if (!e)
                return NULL;
        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                if (*p >= 0x20 && *p < 0x7f && *p != '\\')
                        *q++ = (char) *p;
                else
                        q += sprintf(q, "\\x%02x", *p);
        *q = 0;
        return e;
}

static const char *special_file_kind(mode_t mode) {
        return S_ISFIFO(mode) ? "FIFO"
               : S_ISSOCK(mode) ? "socket"
               : S_ISCHR(mode) || S_ISBLK(mode) ? "device"
                                                : NULL;
}

/* Refuses up front what cplet could neither read safely nor name in its output and
 * revisions. Checked by name and lstat only: a FIFO is never opened (that would block). */
static int check_entry(int dirfd, const char *dir, const char *name, bool *ret_skip, char **ret_error) {
        const char *kind;
        struct stat st;

        if (!utf8_valid(name)) {
                _cleanup_free_ char *escaped = escape_name(name);

                if (!escaped)
                        return -ENOMEM;
                return set_error(ret_error, -EINVAL,
                                 "%s/%s: the file name is not valid UTF-8; cplet cannot name it in its output and "
                                 "revisions, and the kubelet would load it: rename it or move it out of %s",
                                 dir, escaped, dir);
        }
        *ret_skip = false;
        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                *ret_skip = errno == ENOENT; /* removed while listing */
                return *ret_skip ? 0 : set_error(ret_error, -errno, "%s/%s: %s", dir, name, strerror(errno));
        }
        if (S_ISDIR(st.st_mode))
                *ret_skip = true; /* the kubelet does not descend either */
        kind = special_file_kind(st.st_mode);
        if (kind)
                return set_error(ret_error, -EINVAL,
                                 "%s/%s: a %s, not a manifest: the manifest directory must hold only manifests; "
                                 "move it out of %s",
                                 dir, name, kind, dir);
        return 0;
}

static int str_cmp(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static int component_cmp(const void *a, const void *b) {
        const component *x = a, *y = b;

        if (x->plugin->rank != y->plugin->rank)
                return x->plugin->rank < y->plugin->rank ? -1 : 1;
        return strcmp(x->plugin->name, y->plugin->name);
}

static int list_files(int dirfd, const char *dir, char ***ret, size_t *ret_n, char **ret_error) {
        _cleanup_strv_free_ char **files = NULL;
        size_t n = 0;
        struct dirent *de;
        DIR *d;

        d = opendir_dup(dirfd);
        if (!d)
                return set_error(ret_error, -errno, "%s: %s", dir, strerror(errno));
        files = calloc(1, sizeof(char *));
        if (!files) {
                closedir(d);
                return -ENOMEM;
        }
        while ((de = readdir(d))) {
                bool skip;
                char **grown;
                int r;

                /* The kubelet skips dot-files; so does cplet (its own temporary files are dot-files). */
                if (de->d_name[0] == '.')
                        continue;
                r = check_entry(dirfd, dir, de->d_name, &skip, ret_error);
                if (r < 0) {
                        closedir(d);
                        return r;
                }
                if (skip)
                        continue;
                if (n >= NODE_MANIFEST_FILES_MAX) {
                        closedir(d);
                        return set_error(ret_error, -E2BIG, "%s: more than %d files", dir, NODE_MANIFEST_FILES_MAX);
                }
                grown = realloc(files, (n + 2) * sizeof(char *));
                if (!grown) {
                        closedir(d);
                        return -ENOMEM;
                }
                files = grown;
                files[n] = strdup(de->d_name);
                files[++n] = NULL;
                if (!files[n - 1]) {
                        closedir(d);
                        return -ENOMEM;
                }
        }
        closedir(d);
        qsort(files, n, sizeof(char *), str_cmp);
        *ret = TAKE_PTR(files);
        *ret_n = n;
        return 0;
}

/* What the kubelet's static-pod decoder requires before it runs a file (kubelet
 * pkg/kubelet/config/common.go tryDecodeSinglePod: a v1 Pod, a name, and a pod that passes
 * ValidatePodCreate, whose containers must be a non-empty list, each with a name). */
static int validate_pod(json_t *pod, const char *path, char **ret_error) {
        json_t *containers = json_object_get(json_object_get(pod, "spec"), "containers");
        const char *api = json_string_value(json_object_get(pod, "apiVersion"));
        const char *kind = json_string_value(json_object_get(pod, "kind"));
        const char *name = json_string_value(json_object_get(json_object_get(pod, "metadata"), "name"));
        json_t *c;
        size_t i;

        if (!json_is_object(pod))
                return set_error(ret_error, -EINVAL, "%s: not a pod (the document is not a mapping)", path);
        if (!kind || !streq(kind, "Pod"))
                return set_error(ret_error, -EINVAL,
                                 "%s: kind is %s%s%s, not Pod: the kubelet runs only pods from this directory", path,
                                 kind ? "\"" : "", kind ?: "missing", kind ? "\"" : "");
        if (!api || !streq(api, "v1"))
                return set_error(ret_error, -EINVAL, "%s: apiVersion is %s%s%s, not v1: the kubelet would not run it",
                                 path, api ? "\"" : "", api ?: "missing", api ? "\"" : "");
        if (!name || !*name)
                return set_error(ret_error, -EINVAL, "%s: metadata.name is missing: the kubelet refuses a static pod "
                                 "without a name", path);
        if (!json_is_array(containers) || json_array_size(containers) == 0)
                return set_error(ret_error, -EINVAL,
                                 "%s: spec.containers must be a non-empty list of containers: the kubelet refuses "
                                 "this pod",
                                 path);
        json_array_foreach(containers, i, c) {
                const char *cname = json_string_value(json_object_get(c, "name"));

                if (!json_is_object(c))
                        return set_error(ret_error, -EINVAL, "%s: spec.containers[%zu] is not a mapping: the kubelet "
                                         "refuses this pod", path, i);
                if (!cname || !*cname)
                        return set_error(ret_error, -EINVAL, "%s: spec.containers[%zu].name is missing: the kubelet "
                                         "refuses this pod", path, i);
        }
        return 0;
}

static const plugin *plugin_by_file(const plugin_set *plugins, const char *file) {
        for (size_t k = 0; k < plugins->n; k++)
                if (streq(plugins->items[k].manifest_file, file))
                        return &plugins->items[k];
        return NULL;
}

static int add_broken(node *n, const char *file, const plugin *expected, char **error) {
        node_broken *b = &n->broken[n->n_broken];

        b->file = strdup(file);
        if (!b->file)
                return -ENOMEM;
        b->expected = expected;
        b->error = TAKE_PTR(*error);
        n->n_broken++;
        return 0;
}

/* Every unusable file, for a refusal: the kubelet would load each one, and a plan made
 * without it could bypass the skew rules (an API server cplet did not see). */
static int refuse_broken(const node *n, char **ret_error) {
        _cleanup_free_ char *all = NULL;

        for (size_t i = 0; i < n->n_broken; i++) {
                char *joined = strdup_printf("%s%s%s", all ?: "", all ? "; " : "", n->broken[i].error ?: n->broken[i].file);

                if (!joined)
                        return -ENOMEM;
                free(all);
                all = joined;
        }
        return set_error(ret_error, -EINVAL, "%s. Nothing can be planned or written until %s fixed or moved out of %s",
                         all, n->n_broken == 1 ? "it is" : "they are", n->manifest_dir);
}

/* Reads one file the kubelet would load: a component, an unmanaged pod, or a broken entry. */
static int load_file(node *n, const plugin_set *plugins, const char *file, char **ret_error) {
        _cleanup_free_ char *path = strdup_printf("%s/%s", n->manifest_dir, file), *why = NULL;
        const plugin *p = NULL, *expected = plugin_by_file(plugins, file);
        _cleanup_(json_decrefp) json_t *pod = NULL;
        json_t *container = NULL;
        const component *other;
        int r;

        if (!path)
                return -ENOMEM;
        r = manifest_load(AT_FDCWD, path, &pod, &why);
        if (r >= 0)
                r = validate_pod(pod, path, &why);
        if (r == -EINVAL || r == -E2BIG)
                return add_broken(n, file, expected, &why);
        if (r < 0)
                return set_error(ret_error, r, "%s", why ?: strerror(-r));
        r = identify(pod, path, plugins, &p, &container, ret_error);
        if (r < 0)
                return r;
        if (!p && expected) {
                why = strdup_printf("%s: no container runs %s, although this is its manifest file", path,
                                    expected->name);
                return why ? add_broken(n, file, expected, &why) : -ENOMEM;
        }
        if (!p) {
                char **u = n->unmanaged;

                while (*u)
                        u++;
                *u = strdup(file);
                return *u ? 0 : -ENOMEM;
        }
        other = node_find(n, p->name);
        if (other)
                return set_error(ret_error, -EEXIST,
                                 "%s is defined twice, in %s/%s and %s: the kubelet runs every file in "
                                 "that directory; remove one (keep backups outside it)",
                                 p->name, n->manifest_dir, other->file, path);
        r = component_read(pod, container, p, file, &n->components[n->n_components]);
        if (r < 0)
                return r;
        n->n_components++;
        return 0;
}

int node_load(const char *root, const plugin_set *plugins, node **ret, char **ret_error) {
        return node_load_full(root, plugins, 0, ret, ret_error);
}

int node_load_full(const char *root, const plugin_set *plugins, node_load_flags flags, node **ret, char **ret_error) {
        _cleanup_(node_freep) node *n = NULL;
        _cleanup_strv_free_ char **files = NULL;
        _cleanup_close_ int dirfd = -EBADF;
        size_t n_files = 0;
        int r;

        n = calloc(1, sizeof(*n));
        if (!n)
                return -ENOMEM;
        n->manifest_dir = strdup_printf("%s%s", streq(root, "/") ? "" : root, NODE_MANIFEST_DIR);
        if (!n->manifest_dir)
                return -ENOMEM;

        dirfd = open(n->manifest_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (dirfd < 0)
                return set_error(ret_error, -errno, "manifest directory %s: %s", n->manifest_dir,
                                 errno == ELOOP || errno == ENOTDIR ? "not a directory (or a symbolic link)"
                                                                    : strerror(errno));

        r = list_files(dirfd, n->manifest_dir, &files, &n_files, ret_error);
        if (r < 0)
                return r;

        n->components = calloc(n_files + 1, sizeof(component));
        n->unmanaged = calloc(n_files + 1, sizeof(char *));
        n->broken = calloc(n_files + 1, sizeof(node_broken));
        if (!n->components || !n->unmanaged || !n->broken)
                return -ENOMEM;

        for (size_t i = 0; i < n_files; i++) {
                r = load_file(n, plugins, files[i], ret_error);
                if (r < 0)
                        return r;
        }
        qsort(n->components, n->n_components, sizeof(component), component_cmp);
        if (n->n_broken > 0 && !(flags & NODE_LOAD_KEEP_BROKEN))
                return refuse_broken(n, ret_error);

        *ret = TAKE_PTR(n);
        return 0;
}
