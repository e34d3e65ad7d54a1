/* SPDX-License-Identifier: Apache-2.0 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>

#include "fs-util.h"
#include "macro.h"
#include "manifest.h"
#include "store.h"
#include "version.h"

#define META_SIZE_MAX (64 * 1024)
#define REVISION_MAX 999999999u

void revision_done(revision *r) {
        free(r->component);
        free(r->manifest);
        free(r->time);
        free(r->binary_version);
        free(r->emulated_version);
        free(r->min_compat_version);
        free(r->reason);
        free(r->plan_id);
        *r = (revision){};
}

void revision_list_done(revision_list *l) {
        for (size_t i = 0; i < l->n; i++)
                revision_done(&l->items[i]);
        free(l->items);
        *l = (revision_list){};
}

const revision *revision_list_find(const revision_list *l, unsigned number) {
        for (size_t i = 0; i < l->n; i++)
                if (l->items[i].number == number)
                        return &l->items[i];
        return NULL;
}

store *store_free(store *s) {
        if (!s)
                return NULL;
        if (s->manifest_fd >= 0)
                close(s->manifest_fd);
        if (s->revisions_fd >= 0)
                close(s->revisions_fd);
        if (s->state_fd >= 0)
                close(s->state_fd);
        free(s->root);
        free(s->manifest_dir);
        free(s->revisions_dir);
        free(s);
        return NULL;
}

static char *under_root(const char *root, const char *path) {
        if (streq(root, "/"))
                return strdup_printf("/%s", path);
        return strdup_printf("%s/%s", root, path);
}

int store_open(const char *root, unsigned keep, bool writable, store **ret, char **ret_error) {
        _cleanup_(store_freep) store *s = NULL;
        _cleanup_close_ int rootfd = -EBADF, statefd = -EBADF;
        _cleanup_free_ char *state_dir = NULL;
        int r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->manifest_fd = s->revisions_fd = s->state_fd = -EBADF;
        s->keep = keep > 0 ? keep : STORE_KEEP_DEFAULT;
        s->writable = writable;
        s->root = strdup(root);
        s->manifest_dir = under_root(root, STORE_MANIFEST_DIR);
        s->revisions_dir = under_root(root, STORE_REVISIONS_DIR);
        state_dir = under_root(root, STORE_STATE_DIR);
        if (!s->root || !s->manifest_dir || !s->revisions_dir || !state_dir)
                return -ENOMEM;

        rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (rootfd < 0)
                return set_error(ret_error, -errno, "%s: %s", root, strerror(errno));

        r = open_dir_chain(rootfd, STORE_MANIFEST_DIR, 0, &s->manifest_fd, ret_error, s->manifest_dir);
        if (r < 0)
                return r;
        r = check_dir_private(s->manifest_fd, s->manifest_dir, ret_error);
        if (r < 0)
                return r;

        if (writable) {
                r = open_dir_chain(rootfd, STORE_STATE_DIR, 0700, &statefd, ret_error, state_dir);
                if (r < 0)
                        return r;
                r = check_dir_private(statefd, state_dir, ret_error);
                if (r < 0)
                        return r;
                r = open_dir_chain(statefd, "revisions", 0700, &s->revisions_fd, ret_error, s->revisions_dir);
                if (r < 0)
                        return r;
                r = check_dir_private(s->revisions_fd, s->revisions_dir, ret_error);
                if (r < 0)
                        return r;
                (void) remove_stale_temporaries(s->manifest_fd);
                (void) remove_stale_temporaries(statefd);
                s->state_fd = TAKE_FD(statefd);
        } else {
                if (open_dir_chain(rootfd, STORE_STATE_DIR, 0, &statefd, NULL, state_dir) >= 0) {
                        r = check_dir_private(statefd, state_dir, ret_error);
                        if (r < 0)
                                return r;
                        s->state_fd = TAKE_FD(statefd);
                }
                r = open_dir_chain(rootfd, STORE_REVISIONS_DIR, 0, &s->revisions_fd, NULL, s->revisions_dir);
                if (r == -ENOENT)
                        s->revisions_fd = -EBADF; /* nothing recorded yet */
                else if (r < 0)
                        return set_error(ret_error, r, "%s: %s", s->revisions_dir, strerror(-r));
                else {
                        r = check_dir_private(s->revisions_fd, s->revisions_dir, ret_error);
                        if (r < 0)
                                return r;
                }
        }

        *ret = TAKE_PTR(s);
        return 0;
}

int store_lock(const char *root, const char *command, int *ret_fd, char **ret_error) {
        _cleanup_free_ char *display = under_root(root, STORE_LOCK_DIR "/" STORE_LOCK_FILE), *line = NULL;
        _cleanup_close_ int rootfd = -EBADF, dirfd = -EBADF, fd = -EBADF;
        int r;

        if (!display)
                return -ENOMEM;
        rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (rootfd < 0)
                return set_error(ret_error, -errno, "%s: %s", root, strerror(errno));
        r = open_dir_chain(rootfd, STORE_LOCK_DIR, 0700, &dirfd, ret_error, display);
        if (r < 0)
                return r;
        fd = openat(dirfd, STORE_LOCK_FILE, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
        if (fd < 0)
                return set_error(ret_error, -errno, "%s: %s", display, strerror(errno));

        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                char holder[256] = "";
                ssize_t n;

                if (errno != EWOULDBLOCK)
                        return set_error(ret_error, -errno, "%s: %s", display, strerror(errno));
                const char *space;

                n = pread(fd, holder, sizeof(holder) - 1, 0);
                holder[n > 0 ? n : 0] = 0;
                holder[strcspn(holder, "\n")] = 0;
                space = strchr(holder, ' ');
                if (!space)
                        return set_error(ret_error, -EBUSY,
                                         "another cplet is changing this node (it holds %s); wait for it to finish",
                                         display);
                return set_error(ret_error, -EBUSY,
                                 "another cplet is changing this node: pid %.*s (%s) holds %s; wait for it to finish",
                                 (int) (space - holder), holder, space + 1, display);
        }

        line = strdup_printf("%d %s\n", (int) getpid(), command);
        if (!line)
                return -ENOMEM;
        if (ftruncate(fd, 0) < 0 || pwrite(fd, line, strlen(line), 0) < 0)
                return set_error(ret_error, -errno, "%s: %s", display, strerror(errno));
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int store_lock_holder(const char *root, char **ret_holder) {
        _cleanup_free_ char *path = under_root(root, STORE_LOCK_DIR "/" STORE_LOCK_FILE);
        _cleanup_close_ int fd = -EBADF;
        char holder[256];
        ssize_t n;

        if (!path)
                return -ENOMEM;
        fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return 0;
        /* A shared lock conflicts only with a writer's exclusive one; released on close. */
        if (flock(fd, LOCK_SH | LOCK_NB) >= 0)
                return 0;
        if (errno != EWOULDBLOCK)
                return -errno;
        n = pread(fd, holder, sizeof(holder) - 1, 0);
        holder[n > 0 ? n : 0] = 0;
        holder[strcspn(holder, "\n")] = 0;
        if (ret_holder)
                *ret_holder = strdup(holder);
        return 1;
}

static int component_dir(store *s, const char *component, bool create, int *ret_fd, char **ret_error) {
        _cleanup_free_ char *display = strdup_printf("%s/%s", s->revisions_dir, component);

        if (!display)
                return -ENOMEM;
        if (s->revisions_fd < 0)
                return -ENOENT;
        return open_dir_chain(s->revisions_fd, component, create ? 0700 : 0, ret_fd, ret_error, display);
}

static char *dup_or_null(json_t *v) {
        const char *s = json_string_value(v);

        return s ? strdup(s) : NULL;
}

int store_parse_revision_meta(const char *data, size_t size, const char *display, revision *ret, char **ret_error) {
        json_auto_t *j = NULL;
        json_error_t e;
        revision r = {};
        json_int_t n, parent;
        const char *sha;

        j = json_loadb(data, size, JSON_REJECT_DUPLICATES, &e);
        if (!j || !json_is_object(j))
                return set_error(ret_error, -EINVAL, "%s: not valid revision metadata (%s)", display,
                                 j ? "not an object" : e.text);
        n = json_integer_value(json_object_get(j, "revision"));
        parent = json_integer_value(json_object_get(j, "parent"));
        sha = json_string_value(json_object_get(j, "sha256"));
        if (n <= 0 || n > REVISION_MAX || parent < 0 || parent > REVISION_MAX || !sha || strlen(sha) != 64 ||
            !json_is_string(json_object_get(j, "component")) || !json_is_string(json_object_get(j, "reason")))
                return set_error(ret_error, -EINVAL, "%s: revision metadata is missing fields", display);

        r.number = (unsigned) n;
        r.parent = (unsigned) parent;
        memcpy(r.sha256, sha, 65);
        r.component = dup_or_null(json_object_get(j, "component"));
        r.manifest = dup_or_null(json_object_get(j, "manifest"));
        r.time = dup_or_null(json_object_get(j, "time"));
        r.binary_version = dup_or_null(json_object_get(j, "binaryVersion"));
        r.emulated_version = dup_or_null(json_object_get(j, "emulatedVersion"));
        r.min_compat_version = dup_or_null(json_object_get(j, "minCompatibilityVersion"));
        r.reason = dup_or_null(json_object_get(j, "reason"));
        r.plan_id = dup_or_null(json_object_get(j, "planId"));
        r.healthy = json_is_true(json_object_get(j, "healthy"));
        *ret = r;
        return 0;
}

static int revision_cmp(const void *a, const void *b) {
        const revision *x = a, *y = b;

        return x->number < y->number ? -1 : x->number > y->number;
}

/* "N.json" → N, else 0. */
static unsigned meta_number(const char *name) {
        char *end;
        unsigned long n;

        if (name[0] < '1' || name[0] > '9')
                return 0;
        n = strtoul(name, &end, 10);
        return streq(end, ".json") && n <= REVISION_MAX ? (unsigned) n : 0;
}

int store_list(store *s, const char *component, revision_list *ret, char **ret_error) {
        _cleanup_(revision_list_done) revision_list l = {};
        _cleanup_close_ int dirfd = -EBADF;
        struct dirent *de;
        DIR *d;
        int r;

        r = component_dir(s, component, false, &dirfd, NULL);
        if (r == -ENOENT) {
                *ret = (revision_list){};
                return 0;
        }
        if (r < 0)
                return set_error(ret_error, r, "%s/%s: %s", s->revisions_dir, component, strerror(-r));
        /* Read as well as written only when nobody else could have planted a revision. */
        {
                _cleanup_free_ char *display = strdup_printf("%s/%s", s->revisions_dir, component);

                r = display ? check_dir_private(dirfd, display, ret_error) : -ENOMEM;
                if (r < 0)
                        return r;
        }

        d = opendir_dup(dirfd);
        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                _cleanup_free_ char *data = NULL, *display = NULL;
                unsigned n = meta_number(de->d_name);
                revision *grown;
                size_t size;

                if (n == 0)
                        continue;
                display = strdup_printf("%s/%s/%s", s->revisions_dir, component, de->d_name);
                if (!display) {
                        r = -ENOMEM;
                        break;
                }
                r = read_file_at(dirfd, de->d_name, META_SIZE_MAX, &data, &size);
                if (r == -E2BIG) {
                        /* strerror() would say "Argument list too long". */
                        set_error(ret_error, r, "%s: larger than the %d-byte limit of revision metadata", display,
                                  META_SIZE_MAX);
                        break;
                }
                if (r < 0) {
                        set_error(ret_error, r, "%s: %s", display, strerror(-r));
                        break;
                }
                grown = realloc(l.items, (l.n + 1) * sizeof(revision));
                if (!grown) {
                        r = -ENOMEM;
                        break;
                }
                l.items = grown;
                r = store_parse_revision_meta(data, size, display, &l.items[l.n], ret_error);
                if (r < 0)
                        break;
                if (l.items[l.n].number != n) {
                        l.n++;
                        r = set_error(ret_error, -EINVAL, "%s: says it is revision %u", display, l.items[l.n - 1].number);
                        break;
                }
                l.n++;
        }
        closedir(d);
        if (r < 0)
                return r;
        if (l.n > 0)
                qsort(l.items, l.n, sizeof(revision), revision_cmp);
        *ret = l;
        l = (revision_list){};
        return 0;
}

int store_read(store *s, const char *component, unsigned number, char **ret, size_t *ret_size, char **ret_error) {
        _cleanup_close_ int dirfd = -EBADF;
        char name[32];
        int r;

        r = component_dir(s, component, false, &dirfd, NULL);
        snprintf(name, sizeof(name), "%u.yaml", number);
        if (r >= 0)
                r = read_file_at(dirfd, name, MANIFEST_SIZE_MAX, ret, ret_size);
        if (r < 0)
                return set_error(ret_error, r == -ENOENT ? -ENOENT : r, "%s/%s/%s: %s", s->revisions_dir, component,
                                 name, r == -ENOENT ? "no such revision" : strerror(-r));
        return 0;
}

int store_read_live(store *s, const char *file, char **ret, size_t *ret_size, char **ret_error) {
        int r = read_file_at(s->manifest_fd, file, MANIFEST_SIZE_MAX, ret, ret_size);

        if (r < 0)
                return set_error(ret_error, r, "%s/%s: %s", s->manifest_dir, file,
                                 r == -ELOOP ? "is a symbolic link; refusing to follow it" : strerror(-r));
        return 0;
}

unsigned store_live_number(const revision_list *l, const char *live, size_t size) {
        char sha[65];

        sha256_hex(live, size, sha);
        for (size_t i = l->n; i-- > 0;)
                if (streq(l->items[i].sha256, sha))
                        return l->items[i].number;
        return 0;
}

/* Removes revision N from a component's directory: metadata first (a revision without
 * metadata does not exist), then the manifest. Best effort: it runs after a failure. */
static void forget(int dirfd, unsigned number) {
        char name[32];

        snprintf(name, sizeof(name), "%u.json", number);
        (void) unlinkat(dirfd, name, 0);
        snprintf(name, sizeof(name), "%u.yaml", number);
        (void) unlinkat(dirfd, name, 0);
        (void) fsync(dirfd);
}

void store_discard(store *s, const char *component, unsigned number) {
        _cleanup_close_ int dirfd = -EBADF;

        if (component_dir(s, component, false, &dirfd, NULL) >= 0)
                forget(dirfd, number);
}

/* Writes N.yaml then N.json (the metadata is what makes a revision exist). */
static int record(store *s, const char *component, const char *file, unsigned number, const char *data, size_t size,
                  const revision_info *info, unsigned parent, char **ret_error) {
        _cleanup_close_ int dirfd = -EBADF;
        _cleanup_free_ char *meta = NULL, *display = NULL;
        json_auto_t *j = NULL;
        char name[32], sha[65], now[32];
        int r;

        r = component_dir(s, component, true, &dirfd, ret_error);
        if (r < 0)
                return r;
        /* Name the component's own directory: the revisions directory above it passed. */
        display = strdup_printf("%s/%s", s->revisions_dir, component);
        if (!display)
                return -ENOMEM;
        r = check_dir_private(dirfd, display, ret_error);
        if (r < 0)
                return r;

        sha256_hex(data, size, sha);
        now_rfc3339(now);
        j = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s?, s:s?, s:s?, s:s, s:s?, s:I, s:b}",
                      "revision", (json_int_t) number, "component", component, "manifest", file, "time", now,
                      "sha256", sha, "binaryVersion", info->binary_version, "emulatedVersion",
                      info->emulated_version, "minCompatibilityVersion", info->min_compat_version, "reason",
                      info->reason, "planId", info->plan_id, "parent", (json_int_t) parent, "healthy", 0);
        if (!j)
                return -ENOMEM;
        meta = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (!meta)
                return -ENOMEM;

        snprintf(name, sizeof(name), "%u.yaml", number);
        r = write_file_atomic(dirfd, name, data, size, 0600);
        if (r >= 0) {
                snprintf(name, sizeof(name), "%u.json", number);
                r = write_file_atomic(dirfd, name, meta, strlen(meta), 0600);
        }
        if (r < 0) {
                /* Half a revision, or one not durable, is none: the store shows nothing new. */
                forget(dirfd, number);
                return set_error(ret_error, r, "%s/%s/%s: %s", s->revisions_dir, component, name, strerror(-r));
        }
        return 0;
}

/* Removes N.yaml files whose N.json was never written (a crash between the two). */
static void remove_orphans(store *s, const char *component, const revision_list *l) {
        _cleanup_close_ int dirfd = -EBADF;
        struct dirent *de;
        DIR *d;

        if (component_dir(s, component, false, &dirfd, NULL) < 0)
                return;
        (void) remove_stale_temporaries(dirfd);
        d = opendir_dup(dirfd);
        if (!d)
                return;
        while ((de = readdir(d))) {
                char *end;
                unsigned long n = strtoul(de->d_name, &end, 10);

                if (n > 0 && streq(end, ".yaml") && !revision_list_find(l, (unsigned) n))
                        (void) unlinkat(dirfd, de->d_name, 0);
        }
        closedir(d);
}

static unsigned next_number(const revision_list *l) {
        return l->n > 0 ? l->items[l->n - 1].number + 1 : 1;
}

int store_sync_live(store *s, const char *component, const char *file, const revision_info *info, unsigned *ret_live,
                    char **ret_error) {
        return store_sync_live_recorded(s, component, file, info, ret_live, NULL, ret_error);
}

/* Every revision written or adopted raises the min-compatibility high-water mark first, before
 * it can run (storage written under it may need it, whoever wrote it); then the component's
 * revisions as they stand. */
static int begin_revision(store *s, const char *component, const revision_info *info, revision_list *ret,
                          char **ret_error) {
        int r;

        if (!s->writable)
                return -EROFS;
        r = store_high_water_raise(s, info->min_compat_version, ret_error);
        return r < 0 ? r : store_list(s, component, ret, ret_error);
}

int store_sync_live_recorded(store *s, const char *component, const char *file, const revision_info *info,
                             unsigned *ret_live, bool *ret_recorded, char **ret_error) {
        _cleanup_(revision_list_done) revision_list l = {};
        _cleanup_free_ char *live = NULL;
        revision_info adopted = *info;
        size_t size;
        unsigned n;
        int r;

        r = begin_revision(s, component, info, &l, ret_error);
        if (r < 0)
                return r;
        remove_orphans(s, component, &l);
        r = store_read_live(s, file, &live, &size, ret_error);
        if (r < 0)
                return r;

        n = store_live_number(&l, live, size);
        if (n > 0) {
                *ret_live = n;
                if (ret_recorded)
                        *ret_recorded = false;
                return 0;
        }
        /* Never silently overwrite a hand edit: it becomes history first. */
        adopted.reason = l.n == 0 ? "adopted" : "external edit";
        adopted.plan_id = NULL;
        n = next_number(&l);
        r = record(s, component, file, n, live, size, &adopted, l.n > 0 ? l.items[l.n - 1].number : 0, ret_error);
        if (r < 0)
                return r;
        *ret_live = n;
        if (ret_recorded)
                *ret_recorded = true;
        return 0;
}

int store_render(json_t *pod, unsigned number, char **ret, size_t *ret_size) {
        json_t *metadata, *annotations;
        char value[16];

        if (!json_is_object(pod))
                return -EINVAL;
        metadata = json_object_get(pod, "metadata");
        if (!metadata) {
                metadata = json_object();
                if (!metadata || json_object_set_new(pod, "metadata", metadata) < 0)
                        return -ENOMEM;
        }
        if (!json_is_object(metadata))
                return -EINVAL;
        annotations = json_object_get(metadata, "annotations");
        if (!annotations || json_is_null(annotations)) {
                annotations = json_object();
                if (!annotations || json_object_set_new(metadata, "annotations", annotations) < 0)
                        return -ENOMEM;
        }
        if (!json_is_object(annotations))
                return -EINVAL;
        /* The kubelet copies it into the mirror pod: anyone can see which revision runs. */
        snprintf(value, sizeof(value), "%u", number);
        if (json_object_set_new(annotations, STORE_REVISION_ANNOTATION, json_string(value)) < 0)
                return -ENOMEM;
        return manifest_render(pod, ret, ret_size);
}

/* Keeps the newest `keep` revisions, never the live one nor the newest known healthy one. */
void store_prune(store *s, const char *component, unsigned live) {
        _cleanup_(revision_list_done) revision_list l = {};
        _cleanup_close_ int dirfd = -EBADF;
        unsigned newest_healthy = 0;

        if (store_list(s, component, &l, NULL) < 0 || l.n <= s->keep)
                return;
        if (component_dir(s, component, false, &dirfd, NULL) < 0)
                return;
        for (size_t i = 0; i < l.n; i++)
                if (l.items[i].healthy)
                        newest_healthy = l.items[i].number;
        for (size_t i = 0; i + s->keep < l.n; i++) {
                unsigned n = l.items[i].number;
                char name[32];

                if (n == live || n == newest_healthy)
                        continue;
                /* Metadata first: a revision without metadata does not exist. */
                snprintf(name, sizeof(name), "%u.json", n);
                (void) unlinkat(dirfd, name, 0);
                snprintf(name, sizeof(name), "%u.yaml", n);
                (void) unlinkat(dirfd, name, 0);
        }
        (void) fsync(dirfd);
}

int store_prepare(store *s, const char *component, const char *file, json_t *pod, const revision_info *info,
                  unsigned parent, unsigned *ret_number, char **ret_error) {
        _cleanup_(revision_list_done) revision_list l = {};
        _cleanup_free_ char *data = NULL;
        size_t size;
        unsigned n;
        int r;

        r = begin_revision(s, component, info, &l, ret_error);
        if (r < 0)
                return r;
        n = next_number(&l);
        r = store_render(pod, n, &data, &size);
        if (r < 0)
                return set_error(ret_error, r, "%s: cannot render the new manifest: %s", component, strerror(-r));
        r = record(s, component, file, n, data, size, info, parent, ret_error);
        if (r < 0)
                return r;
        *ret_number = n;
        return 0;
}

/* -ESTALE unless the live manifest is byte-equal to revision `expected` of the list. */
static int check_live_is(store *s, const revision_list *l, const char *component, const char *file,
                         unsigned expected, char **ret_error) {
        _cleanup_free_ char *live = NULL;
        const revision *want = revision_list_find(l, expected);
        char sha[65];
        size_t size;
        int r;

        r = read_file_at(s->manifest_fd, file, MANIFEST_SIZE_MAX, &live, &size);
        if (r == -ENOENT)
                return set_error(ret_error, -ESTALE, "%s/%s was removed since cplet read it (it was %s revision %u)",
                                 s->manifest_dir, file, component, expected);
        if (r < 0)
                return set_error(ret_error, r, "%s/%s: %s", s->manifest_dir, file, strerror(-r));
        sha256_hex(live, size, sha);
        if (!want || !streq(want->sha256, sha))
                return set_error(ret_error, -ESTALE,
                                 "%s/%s was changed outside cplet since cplet read it (it is no longer %s revision %u)",
                                 s->manifest_dir, file, component, expected);
        return 0;
}

int store_check_live(store *s, const char *component, const char *file, unsigned expected, char **ret_error) {
        _cleanup_(revision_list_done) revision_list l = {};
        int r;

        r = store_list(s, component, &l, ret_error);
        if (r < 0)
                return r;
        return check_live_is(s, &l, component, file, expected, ret_error);
}

int store_swap(store *s, const char *component, const char *file, unsigned number, char **ret_error) {
        _cleanup_(revision_list_done) revision_list l = {};
        _cleanup_free_ char *data = NULL;
        const revision *rev;
        size_t size;
        int r;

        if (!s->writable)
                return -EROFS;
        r = store_list(s, component, &l, ret_error);
        if (r < 0)
                return r;
        rev = revision_list_find(&l, number);
        if (!rev)
                return set_error(ret_error, -ENOENT, "%s/%s/%u.json: no such revision", s->revisions_dir, component,
                                 number);
        /* Compare and swap: the file must still be the revision this one replaces, or a hand
         * edit (or a kubeadm run) made meanwhile would vanish without a trace. The rename
         * itself cannot be conditional; this leaves a window of one read. */
        if (rev->parent > 0) {
                r = check_live_is(s, &l, component, file, rev->parent, ret_error);
                if (r < 0)
                        return r;
        }
        r = store_read(s, component, number, &data, &size, ret_error);
        if (r < 0)
                return r;
        r = write_file_atomic(s->manifest_fd, file, data, size, 0600);
        if (r < 0) {
                _cleanup_free_ char *live = NULL;
                size_t live_size;

                /* Only a failed directory fsync leaves the new file in place: then it is live and
                 * stays a revision. Otherwise it never went live and must not show in history.
                 * When the live file cannot be read back, which one is in place is unknown:
                 * the revision stays, the invariant (live is a stored revision) first. */
                if (read_file_at(s->manifest_fd, file, MANIFEST_SIZE_MAX, &live, &live_size) >= 0 &&
                    (live_size != size || memcmp(live, data, size) != 0))
                        store_discard(s, component, number);
                return set_error(ret_error, r, "%s/%s: %s", s->manifest_dir, file, strerror(-r));
        }
        if (!s->defer_prune)
                store_prune(s, component, number);
        return 0;
}

int store_commit(store *s, const char *component, const char *file, json_t *pod, const revision_info *info,
                 unsigned parent, unsigned *ret_number, char **ret_error) {
        unsigned n;
        int r;

        r = store_prepare(s, component, file, pod, info, parent, &n, ret_error);
        if (r < 0)
                return r;
        r = store_swap(s, component, file, n, ret_error);
        if (r < 0)
                return r;
        *ret_number = n;
        return 0;
}

int store_mark_healthy(store *s, const char *component, unsigned number, char **ret_error) {
        _cleanup_close_ int dirfd = -EBADF;
        _cleanup_free_ char *data = NULL, *text = NULL;
        json_auto_t *j = NULL;
        char name[32];
        size_t size;
        int r;

        if (!s->writable)
                return -EROFS;
        snprintf(name, sizeof(name), "%u.json", number);
        r = component_dir(s, component, false, &dirfd, ret_error);
        if (r >= 0)
                r = read_file_at(dirfd, name, META_SIZE_MAX, &data, &size);
        if (r < 0)
                return set_error(ret_error, r, "%s/%s/%s: %s", s->revisions_dir, component, name, strerror(-r));
        j = json_loadb(data, size, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(j))
                return set_error(ret_error, -EINVAL, "%s/%s/%s: not revision metadata", s->revisions_dir, component,
                                 name);
        if (json_object_set_new(j, "healthy", json_true()) < 0)
                return -ENOMEM;
        text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (!text)
                return -ENOMEM;
        r = write_file_atomic(dirfd, name, text, strlen(text), 0600);
        if (r < 0)
                return set_error(ret_error, r, "%s/%s/%s: %s", s->revisions_dir, component, name, strerror(-r));
        return 0;
}

#define HIGH_WATER_PATH STORE_STATE_DIR "/" STORE_HIGH_WATER_FILE

static int high_water_save(store *s, kminor v, char **ret_error) {
        _cleanup_free_ char *text = NULL;
        char m[KMINOR_STRING_MAX];
        int r;

        if (s->state_fd < 0)
                return -EROFS;
        kminor_format(v, m);
        text = strdup_printf("{\"minCompatibilityVersion\": \"%s\"}\n", m);
        if (!text)
                return -ENOMEM;
        r = write_file_atomic(s->state_fd, STORE_HIGH_WATER_FILE, text, strlen(text), 0600);
        if (r < 0)
                return set_error(ret_error, r, "%s/%s: %s", s->root, HIGH_WATER_PATH, strerror(-r));
        return 0;
}

/* The highest min-compatibility version any stored revision records. Every revision's
 * metadata names the versions it was written to run with, and the mark is raised before a
 * revision goes live, so this is what the mark said — short of revisions retention removed. */
static int high_water_rebuild(store *s, kminor *ret, char **ret_error) {
        kminor max = KMINOR(0, 0);
        struct dirent *de;
        DIR *d;
        int r = 0;

        if (s->revisions_fd < 0) {
                *ret = max;
                return 0;
        }
        d = opendir_dup(s->revisions_fd);
        if (!d)
                return set_error(ret_error, -errno, "%s: %s", s->revisions_dir, strerror(errno));
        while ((de = readdir(d))) {
                _cleanup_(revision_list_done) revision_list l = {};

                if (de->d_name[0] == '.')
                        continue;
                r = store_list(s, de->d_name, &l, ret_error);
                if (r < 0)
                        break;
                for (size_t i = 0; i < l.n; i++) {
                        kminor v;

                        if (!l.items[i].min_compat_version)
                                continue; /* versions unknown when it was recorded */
                        if (kminor_parse(l.items[i].min_compat_version, &v, NULL) < 0) {
                                r = set_error(ret_error, -EINVAL,
                                              "%s/%s/%u.json: minCompatibilityVersion \"%s\" is not a major.minor "
                                              "version",
                                              s->revisions_dir, de->d_name, l.items[i].number,
                                              l.items[i].min_compat_version);
                                break;
                        }
                        if (kminor_cmp(v, max) > 0)
                                max = v;
                }
                if (r < 0)
                        break;
        }
        closedir(d);
        if (r < 0)
                return r;
        *ret = max;
        return 0;
}

int store_high_water_get(store *s, kminor *ret, char **ret_error) {
        _cleanup_free_ char *data = NULL;
        json_auto_t *j = NULL;
        json_error_t e;
        const char *v;
        size_t size;
        kminor m;
        int r;

        if (s->state_fd < 0) {
                /* Read-only and no state directory: nothing was ever recorded. */
                *ret = KMINOR(0, 0);
                return 0;
        }
        r = read_file_at(s->state_fd, STORE_HIGH_WATER_FILE, 4096, &data, &size);
        if (r == -ENOENT) {
                /* Deleted (or never written by an older cplet): the revisions still tell. */
                r = high_water_rebuild(s, &m, ret_error);
                if (r < 0)
                        return r;
                if (m.major == 0) {
                        *ret = m;
                        return 0;
                }
                if (s->writable) {
                        r = high_water_save(s, m, ret_error);
                        if (r < 0)
                                return r;
                }
                *ret = m;
                return 1;
        }
        if (r < 0)
                return set_error(ret_error, r, "%s/%s: %s", s->root, HIGH_WATER_PATH,
                                 r == -ELOOP ? "is a symbolic link; refusing to follow it" : strerror(-r));
        j = json_loadb(data, size, JSON_REJECT_DUPLICATES, &e);
        v = json_string_value(json_object_get(j, "minCompatibilityVersion"));
        if (!v || !json_is_object(j) || json_object_size(j) != 1 || kminor_parse(v, &m, NULL) < 0)
                return set_error(ret_error, -EINVAL,
                                 "%s/%s: not a min-compatibility high-water mark (%s); put it back, or remove it "
                                 "to have it rebuilt from the revisions' metadata",
                                 s->root, HIGH_WATER_PATH,
                                 !j ? e.text : !v ? "no minCompatibilityVersion string" : "unexpected content");
        *ret = m;
        return 0;
}

int store_high_water_raise(store *s, const char *version, char **ret_error) {
        kminor current, v;
        int r;

        if (!version)
                return 0; /* versions unknown: nothing to record */
        if (kminor_parse(version, &v, NULL) < 0)
                return set_error(ret_error, -EINVAL, "\"%s\" is not a major.minor version", version);
        r = store_high_water_get(s, &current, ret_error);
        if (r < 0)
                return r;
        if (kminor_cmp(current, v) >= 0)
                return 0;
        return high_water_save(s, v, ret_error);
}
