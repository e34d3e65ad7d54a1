/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs-util.h"
#include "macro.h"
#include "plugin-loader.h"

/* True when the field [offset, offset+size) lies inside the plugin's declared struct. */
#define HAS_FIELD(p, field) (offsetof(struct cplet_plugin, field) + sizeof((p)->field) <= (p)->size)

bool plugin_name_valid(const char *s) {
        size_t n = 0;

        if (!s || !*s || *s == '-')
                return false;
        for (; s[n]; n++)
                if (!((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') || s[n] == '-'))
                        return false;
        return n <= 63;
}

bool plugin_file_name_valid(const char *s) {
        return s && *s && *s != '.' && !strchr(s, '/') && strlen(s) <= 255;
}

static kminor to_kminor(struct cplet_minor m) {
        return KMINOR(m.major, m.minor);
}

int plugin_from_struct(const struct cplet_plugin *p, const char *origin, plugin *ret, char **ret_error) {
        plugin v = { .fd = -EBADF };

        if (!p)
                return set_error(ret_error, -EINVAL, "%s: entry point returned no plugin", origin);
        /* abi_major and size are the first fields of every ABI version; read them first. */
        if (p->abi_major != CPLET_PLUGIN_ABI_MAJOR)
                return set_error(ret_error, -EPROTO, "%s: plugin ABI %u.%u, this cplet speaks %u.x", origin,
                                 p->abi_major, p->abi_minor, CPLET_PLUGIN_ABI_MAJOR);
        if (p->size < CPLET_PLUGIN_SIZE_1_0)
                return set_error(ret_error, -EPROTO, "%s: plugin struct is %u bytes, ABI 1.0 needs at least %zu",
                                 origin, p->size, (size_t) CPLET_PLUGIN_SIZE_1_0);
        if (p->size > 64 * 1024)
                return set_error(ret_error, -EPROTO, "%s: plugin struct size %u is implausible", origin, p->size);

        if (!plugin_name_valid(p->name))
                return set_error(ret_error, -EINVAL, "%s: invalid component name (want [a-z0-9-], at most 63)",
                                 origin);
        if (!plugin_file_name_valid(p->manifest_file))
                return set_error(ret_error, -EINVAL, "%s: invalid manifest file name", origin);
        if (p->rank < 0 || p->rank > 1000)
                return set_error(ret_error, -EINVAL, "%s: rank %d out of range 0..1000", origin, p->rank);
        if (p->n_health_endpoints > 16 || (p->n_health_endpoints > 0 && !p->health_endpoints))
                return set_error(ret_error, -EINVAL, "%s: invalid health endpoint list", origin);
        for (size_t i = 0; i < p->n_health_endpoints; i++) {
                const struct cplet_health_endpoint *e = &p->health_endpoints[i];

                if (!e->scheme || (!streq(e->scheme, "HTTPS") && !streq(e->scheme, "HTTP")) || !e->path ||
                    e->path[0] != '/' || e->port == 0)
                        return set_error(ret_error, -EINVAL, "%s: invalid health endpoint %zu", origin, i);
        }
        if (!!p->version_path != !!p->read_versions)
                return set_error(ret_error, -EINVAL, "%s: version_path and read_versions go together", origin);
        if (p->version_path && p->version_path[0] != '/')
                return set_error(ret_error, -EINVAL, "%s: version_path must start with '/'", origin);

        v.name = p->name;
        v.manifest_file = p->manifest_file;
        v.rank = p->rank;
        v.emulated_version_since = to_kminor(p->emulated_version_since);
        v.min_compatibility_version_since = to_kminor(p->min_compatibility_version_since);
        v.emulation_forward_compatible_since = to_kminor(p->emulation_forward_compatible_since);
        v.forward_compatible_flags = p->forward_compatible_flags;
        v.health_endpoints = p->health_endpoints;
        v.n_health_endpoints = p->n_health_endpoints;
        if (HAS_FIELD(p, read_versions)) {
                v.version_path = p->version_path;
                v.read_versions = p->read_versions;
        }
        *ret = v;
        return 0;
}

bool plugin_has_flag(kminor since, kminor binary) {
        return since.major != 0 && kminor_cmp(binary, since) >= 0;
}

static void plugin_done(plugin *p) {
        free(p->path);
        if (p->handle)
                dlclose(p->handle);
        if (p->fd >= 0)
                close(p->fd);
}

plugin_set *plugin_set_free(plugin_set *s) {
        if (!s)
                return NULL;
        for (size_t i = 0; i < s->n; i++)
                plugin_done(&s->items[i]);
        free(s->items);
        free(s);
        return NULL;
}

const plugin *plugin_set_find(const plugin_set *s, const char *name) {
        for (size_t i = 0; i < s->n; i++)
                if (streq(s->items[i].name, name))
                        return &s->items[i];
        return NULL;
}

static int plugin_cmp(const void *a, const void *b) {
        const plugin *x = a, *y = b;

        if (x->rank != y->rank)
                return x->rank < y->rank ? -1 : 1;
        return strcmp(x->name, y->name);
}

/* Who may own what cplet loads into a root process: root, or the user running cplet (a
 * developer's build tree). Nobody else may be able to change it. */
static int check_owner_and_mode(const struct stat *st, const char *what, const char *path, char **ret_error) {
        if (st->st_uid != 0 && st->st_uid != geteuid())
                return set_error(ret_error, -EPERM, "%s %s is owned by uid %u, neither root nor uid %u that runs cplet; "
                                 "refusing to load code from it",
                                 what, path, (unsigned) st->st_uid, (unsigned) geteuid());
        if (st->st_mode & (S_IWGRP | S_IWOTH))
                return set_error(ret_error, -EPERM,
                                 "%s %s is group- or world-writable (mode %04o); refusing to load code from it: "
                                 "chmod go-w it first",
                                 what, path, (unsigned) (st->st_mode & 07777));
        return 0;
}

static int load_one(int dirfd, const char *dir, const char *file, plugin *ret, char **ret_error) {
        _cleanup_free_ char *path = strdup_printf("%s/%s", dir, file);
        _cleanup_close_ int fd = -EBADF;
        char fd_path[sizeof("/proc/self/fd/") + 12];
        cplet_plugin_entry_fn entry;
        struct stat st;
        plugin p = { .fd = -EBADF };
        void *handle;
        int r;

        if (!path)
                return -ENOMEM;
        /* O_NONBLOCK: a FIFO named like a module must not hang the load; fstat refuses it next. */
        fd = openat(dirfd, file, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return set_error(ret_error, errno == ELOOP ? -EPERM : -errno, "%s: %s", path,
                                 errno == ELOOP ? "not a regular file (a symbolic link)"
                                 : errno == ENXIO ? "not a regular file"
                                                  : strerror(errno));
        if (fstat(fd, &st) < 0)
                return set_error(ret_error, -errno, "%s: %s", path, strerror(errno));
        if (!S_ISREG(st.st_mode))
                return set_error(ret_error, -EPERM, "%s: not a regular file", path);
        r = check_owner_and_mode(&st, "module", path, ret_error);
        if (r < 0)
                return r;

        /* Load the very file just checked: going by the path again would let anyone who can
         * swap it in between choose what runs. The dynamic loader knows objects by name, so the
         * fd stays open while the module is loaded (no other module can then be known as
         * /proc/self/fd/N), and a name already taken is refused rather than reused. */
        snprintf(fd_path, sizeof(fd_path), "/proc/self/fd/%d", fd);
        handle = dlopen(fd_path, RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
        if (handle) {
                dlclose(handle);
                return set_error(ret_error, -EBUSY, "%s: another module is still loaded as %s", path, fd_path);
        }
        handle = dlopen(fd_path, RTLD_NOW | RTLD_LOCAL);
        if (!handle)
                return set_error(ret_error, -ENOEXEC, "%s: cannot load: %s", path, dlerror());

        *(void **) &entry = dlsym(handle, CPLET_PLUGIN_ENTRY_SYMBOL);
        if (!entry) {
                dlclose(handle);
                return set_error(ret_error, -ENOENT, "%s: missing symbol %s", path, CPLET_PLUGIN_ENTRY_SYMBOL);
        }
        r = plugin_from_struct(entry(), path, &p, ret_error);
        if (r < 0) {
                dlclose(handle);
                return r;
        }
        p.handle = handle;
        p.fd = TAKE_FD(fd);
        p.path = TAKE_PTR(path);
        *ret = p;
        return 0;
}

static int name_cmp(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

int plugin_set_load(const char *dir, plugin_set **ret, char **ret_error) {
        _cleanup_(plugin_set_freep) plugin_set *s = NULL;
        _cleanup_strv_free_ char **files = NULL;
        _cleanup_free_ char *errors = NULL;
        _cleanup_close_ int dirfd = -EBADF;
        size_t n_files = 0;
        struct dirent *de;
        struct stat st;
        DIR *d;
        int r;

        if (!dir || dir[0] != '/')
                return set_error(ret_error, -EINVAL, "plugin directory \"%s\" must be an absolute path", dir ?: "");

        dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0)
                return set_error(ret_error, -errno, "plugin directory %s: %s", dir, strerror(errno));
        /* Whoever can write the directory can replace a module. */
        if (fstat(dirfd, &st) < 0)
                return set_error(ret_error, -errno, "plugin directory %s: %s", dir, strerror(errno));
        r = check_owner_and_mode(&st, "plugin directory", dir, ret_error);
        if (r < 0)
                return r;

        d = opendir_dup(dirfd);
        if (!d)
                return set_error(ret_error, -errno, "plugin directory %s: %s", dir, strerror(errno));
        while ((de = readdir(d))) {
                size_t l = strlen(de->d_name);
                char **n;

                if (de->d_name[0] == '.' || l < 4 || !streq(de->d_name + l - 3, ".so"))
                        continue;
                n = realloc(files, (n_files + 2) * sizeof(char *));
                if (!n) {
                        closedir(d);
                        return -ENOMEM;
                }
                files = n;
                files[n_files] = strdup(de->d_name);
                files[++n_files] = NULL;
                if (!files[n_files - 1]) {
                        closedir(d);
                        return -ENOMEM;
                }
        }
        closedir(d);
        if (n_files > 0)
                qsort(files, n_files, sizeof(char *), name_cmp);

        s = calloc(1, sizeof(*s));
        if (!s || (n_files > 0 && !(s->items = calloc(n_files, sizeof(plugin)))))
                return -ENOMEM;

        for (size_t i = 0; i < n_files; i++) {
                _cleanup_free_ char *why = NULL;
                const plugin *dup_of;
                plugin p;

                r = load_one(dirfd, dir, files[i], &p, &why);
                if (r >= 0 && (dup_of = plugin_set_find(s, p.name))) {
                        why = strdup_printf("%s: component \"%s\" is already provided by %s", p.path, p.name,
                                            dup_of->path);
                        plugin_done(&p);
                        r = -EEXIST;
                }
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        char *joined = strdup_printf("%s%s%s", errors ?: "", errors ? "; " : "", why ?: "refused");

                        if (!joined)
                                return -ENOMEM;
                        free(errors);
                        errors = joined;
                        continue;
                }
                s->items[s->n++] = p;
        }
        if (errors)
                return set_error(ret_error, -EINVAL, "refused plugin(s): %s", errors);
        if (s->n == 0)
                return set_error(ret_error, -ENOENT, "no plugins in %s (looked for *.so)", dir);

        qsort(s->items, s->n, sizeof(plugin), plugin_cmp);
        *ret = TAKE_PTR(s);
        return 0;
}
