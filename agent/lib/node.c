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
                struct stat st;
                char **grown;

                /* The kubelet skips dot-files; so does cplet (its own temporary files are dot-files). */
                if (de->d_name[0] == '.')
                        continue;
                if (fstatat(dirfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                if (S_ISDIR(st.st_mode))
                        continue; /* the kubelet does not descend either */
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

int node_load(const char *root, const plugin_set *plugins, node **ret, char **ret_error) {
        _cleanup_(node_freep) node *n = NULL;
        _cleanup_strv_free_ char **files = NULL;
        _cleanup_close_ int dirfd = -EBADF;
        size_t n_files = 0, n_unmanaged = 0;
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
        if (!n->components || !n->unmanaged)
                return -ENOMEM;

        for (size_t i = 0; i < n_files; i++) {
                _cleanup_(json_decrefp) json_t *pod = NULL;
                _cleanup_free_ char *path = strdup_printf("%s/%s", n->manifest_dir, files[i]);
                json_t *container = NULL;
                const plugin *p = NULL;
                const component *other;

                if (!path)
                        return -ENOMEM;
                r = manifest_load(AT_FDCWD, path, &pod, ret_error);
                if (r < 0)
                        return r;
                r = identify(pod, path, plugins, &p, &container, ret_error);
                if (r < 0)
                        return r;
                if (!p) {
                        n->unmanaged[n_unmanaged] = strdup(files[i]);
                        if (!n->unmanaged[n_unmanaged++])
                                return -ENOMEM;
                        continue;
                }
                other = node_find(n, p->name);
                if (other)
                        return set_error(ret_error, -EEXIST,
                                         "%s is defined twice, in %s/%s and %s: the kubelet runs every file in "
                                         "that directory; remove one (keep backups outside it)",
                                         p->name, n->manifest_dir, other->file, path);
                r = component_read(pod, container, p, files[i], &n->components[n->n_components]);
                if (r < 0)
                        return r;
                n->n_components++;
        }
        qsort(n->components, n->n_components, sizeof(component), component_cmp);

        *ret = TAKE_PTR(n);
        return 0;
}
