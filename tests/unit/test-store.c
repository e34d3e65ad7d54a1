/* SPDX-License-Identifier: Apache-2.0 */
/* The revision store on a scratch root: adoption, commits, external edits, retention, the
 * refusals that keep others out, the lock, leftovers of interrupted writes, and a crash at
 * arbitrary instants (SIGKILL) that must never break the invariants of DESIGN.md. */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "fs-util.h"
#include "macro.h"
#include "manifest.h"
#include "store.h"
#include "test-util.h"

#define COMPONENT "kube-apiserver"
#define LIVE "kube-apiserver.yaml"
#define LIVE_PATH STORE_MANIFEST_DIR "/" LIVE
#define COMPONENT_DIR STORE_REVISIONS_DIR "/" COMPONENT

/* Hand-written on purpose (comment, odd spacing): adoption must keep these bytes as they are. */
static const char original_yaml[] = "# written by hand\n"
                                    "apiVersion: v1\n"
                                    "kind: Pod\n"
                                    "metadata:\n"
                                    "  name: kube-apiserver\n"
                                    "  namespace: kube-system\n"
                                    "spec:\n"
                                    "  hostNetwork: true\n"
                                    "  containers:\n"
                                    "  - name: kube-apiserver\n"
                                    "    image:   registry.k8s.io/kube-apiserver:v1.30.14\n"
                                    "    command:\n"
                                    "    - kube-apiserver\n"
                                    "    - --secure-port=6443\n"
                                    "    - --emulated-version=1.30\n";

static const char etcd_yaml[] = "apiVersion: v1\n"
                                "kind: Pod\n"
                                "metadata:\n"
                                "  name: etcd\n"
                                "spec:\n"
                                "  containers:\n"
                                "  - name: etcd\n"
                                "    image: registry.k8s.io/etcd:3.5.15-0\n";

static const revision_info upgrade_info = {
        .reason = "upgrade",
        .plan_id = "plan-7f3a",
        .binary_version = "1.31.0",
        .emulated_version = "1.30",
        .min_compat_version = "1.29",
};

static void *free_null(void *p) {
        free(p);
        return NULL;
}

/* ---------------------------------------------------------------------------------------------
 * A scratch node root per test. */

typedef struct fixture {
        char root[64];
        int rootfd;
} fixture;

static int setup(void **state) {
        fixture *f = calloc(1, sizeof(*f));

        if (!f)
                return -1;
        strcpy(f->root, "/tmp/cplet-test-store-XXXXXX");
        f->rootfd = scratch_root(f->root);
        if (f->rootfd < 0) {
                free(f);
                return -1;
        }
        if (fchmodat(f->rootfd, STORE_MANIFEST_DIR, 0700, 0) < 0)
                return -1;
        *state = f;
        return 0;
}

static int teardown(void **state) {
        fixture *f = *state;

        if (!f)
                return 0;
        if (f->rootfd >= 0)
                close(f->rootfd);
        rm_rf(f->root);
        free(f);
        return 0;
}

static char *abs_path(const fixture *f, const char *rel) {
        char *p = strdup_printf("%s/%s", f->root, rel);

        assert_non_null(p);
        return p;
}

static void write_rel(const fixture *f, const char *rel, const void *data, size_t size, mode_t mode) {
        _cleanup_close_ int fd = -EBADF;
        const char *p = data;

        fd = openat(f->rootfd, rel, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode);
        if (fd < 0)
                fail_msg("%s/%s: %s", f->root, rel, strerror(errno));
        while (size > 0) {
                ssize_t n = write(fd, p, size);

                assert_true(n > 0);
                p += n;
                size -= (size_t) n;
        }
        assert_int_equal(fchmod(fd, mode), 0);
}

static void write_str(const fixture *f, const char *rel, const char *s, mode_t mode) {
        write_rel(f, rel, s, strlen(s), mode);
}

/* The file's bytes (NUL-terminated), or NULL when it does not exist. */
static char *read_rel(const fixture *f, const char *rel, size_t *ret_size) {
        _cleanup_close_ int fd = -EBADF;
        char *buf = NULL;
        size_t size = 0, allocated = 0;

        fd = openat(f->rootfd, rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
                if (errno == ENOENT)
                        return NULL;
                fail_msg("%s/%s: %s", f->root, rel, strerror(errno));
        }
        for (;;) {
                ssize_t n;

                if (allocated - size < 4096) {
                        allocated = allocated * 2 + 4096;
                        buf = realloc(buf, allocated + 1);
                        assert_non_null(buf);
                }
                n = read(fd, buf + size, allocated - size);
                assert_true(n >= 0);
                if (n == 0)
                        break;
                size += (size_t) n;
        }
        buf[size] = 0;
        if (ret_size)
                *ret_size = size;
        return buf;
}

static bool exists_rel(const fixture *f, const char *rel) {
        struct stat st;

        return fstatat(f->rootfd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static struct stat stat_rel(const fixture *f, const char *rel) {
        struct stat st;

        if (fstatat(f->rootfd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0)
                fail_msg("%s/%s: %s", f->root, rel, strerror(errno));
        return st;
}

static unsigned mode_rel(const fixture *f, const char *rel) {
        return (unsigned) (stat_rel(f, rel).st_mode & 07777);
}

static void mkdir_rel(const fixture *f, const char *rel, mode_t mode) {
        if (mkdirat(f->rootfd, rel, mode) < 0)
                fail_msg("%s/%s: %s", f->root, rel, strerror(errno));
        assert_int_equal(fchmodat(f->rootfd, rel, mode, 0), 0);
}

static int name_cmp(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* The directory's entries, sorted, joined by one space ("" when empty). */
static char *list_rel(const fixture *f, const char *rel) {
        char **names = NULL, *out = NULL;
        size_t n = 0, len = 0;
        struct dirent *de;
        FILE *mem;
        DIR *d;
        int fd;

        fd = openat(f->rootfd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                fail_msg("%s/%s: %s", f->root, rel, strerror(errno));
        d = fdopendir(fd);
        assert_non_null(d);
        while ((de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                names = realloc(names, (n + 1) * sizeof(char *));
                assert_non_null(names);
                names[n] = strdup(de->d_name);
                assert_non_null(names[n]);
                n++;
        }
        closedir(d);
        if (n > 0)
                qsort(names, n, sizeof(char *), name_cmp);
        mem = open_memstream(&out, &len);
        assert_non_null(mem);
        for (size_t i = 0; i < n; i++) {
                fprintf(mem, "%s%s", i > 0 ? " " : "", names[i]);
                free(names[i]);
        }
        free(names);
        assert_int_equal(fclose(mem), 0);
        return out;
}

static void assert_listing(const fixture *f, const char *rel, const char *want) {
        _cleanup_free_ char *got = list_rel(f, rel);

        if (!streq(got, want))
                fail_msg("%s/%s contains \"%s\", expected \"%s\"", f->root, rel, got, want);
}

/* Everything about the tree that a create, remove, rename, chmod or rewrite would change. */
static void digest_dir(int dirfd, const char *prefix, FILE *out) {
        _cleanup_free_ char *listing = NULL;
        struct dirent *de;
        char **names = NULL;
        size_t n = 0;
        DIR *d;

        d = fdopendir(fcntl(dirfd, F_DUPFD_CLOEXEC, 3));
        assert_non_null(d);
        rewinddir(d); /* the duplicate shares its position with dirfd */
        while ((de = readdir(d))) {
                if (streq(de->d_name, ".") || streq(de->d_name, ".."))
                        continue;
                names = realloc(names, (n + 1) * sizeof(char *));
                assert_non_null(names);
                names[n++] = strdup(de->d_name);
        }
        closedir(d);
        if (n > 0)
                qsort(names, n, sizeof(char *), name_cmp);
        for (size_t i = 0; i < n; i++) {
                struct stat st;

                assert_int_equal(fstatat(dirfd, names[i], &st, AT_SYMLINK_NOFOLLOW), 0);
                fprintf(out, "%s/%s mode=%o uid=%u ino=%lu size=%lld mtime=%lld.%09ld", prefix, names[i],
                        (unsigned) st.st_mode, (unsigned) st.st_uid, (unsigned long) st.st_ino,
                        (long long) st.st_size, (long long) st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
                if (S_ISREG(st.st_mode)) {
                        _cleanup_free_ char *data = NULL;
                        char sha[65];
                        size_t size;

                        assert_int_equal(read_file_at(dirfd, names[i], 16 * 1024 * 1024, &data, &size), 0);
                        sha256_hex(data, size, sha);
                        fprintf(out, " sha=%s", sha);
                } else if (S_ISLNK(st.st_mode)) {
                        char target[PATH_MAX];
                        ssize_t l = readlinkat(dirfd, names[i], target, sizeof(target) - 1);

                        assert_true(l >= 0);
                        target[l] = 0;
                        fprintf(out, " -> %s", target);
                }
                fputc('\n', out);
                if (S_ISDIR(st.st_mode)) {
                        _cleanup_free_ char *sub = strdup_printf("%s/%s", prefix, names[i]);
                        _cleanup_close_ int fd =
                                openat(dirfd, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

                        assert_true(fd >= 0);
                        digest_dir(fd, sub, out);
                }
                free(names[i]);
        }
        free(names);
}

static char *tree_digest(const fixture *f) {
        char *out = NULL;
        size_t len = 0;
        FILE *mem = open_memstream(&out, &len);

        assert_non_null(mem);
        digest_dir(f->rootfd, "", mem);
        assert_int_equal(fclose(mem), 0);
        return out;
}

/* ---------------------------------------------------------------------------------------------
 * Store helpers. */

static store *open_store(const fixture *f, unsigned keep, bool writable) {
        _cleanup_free_ char *err = NULL;
        store *s = NULL;
        int r;

        r = store_open(f->root, keep, writable, &s, &err);
        if (r < 0)
                fail_msg("store_open(%s, writable=%d): %d %s", f->root, writable, r, err ?: "(no message)");
        assert_non_null(s);
        return s;
}

static unsigned sync_live(store *s, const revision_info *info) {
        _cleanup_free_ char *err = NULL;
        unsigned n = 0;
        int r;

        r = store_sync_live(s, COMPONENT, LIVE, info, &n, &err);
        if (r < 0)
                fail_msg("store_sync_live: %d %s", r, err ?: "(no message)");
        assert_true(n > 0);
        return n;
}

static unsigned commit(store *s, json_t *pod, const revision_info *info, unsigned parent) {
        _cleanup_free_ char *err = NULL;
        unsigned n = 0;
        int r;

        r = store_commit(s, COMPONENT, LIVE, pod, info, parent, &n, &err);
        if (r < 0)
                fail_msg("store_commit: %d %s", r, err ?: "(no message)");
        assert_true(n > 0);
        return n;
}

static json_t *parse_pod(const char *data, size_t size) {
        _cleanup_free_ char *err = NULL;
        json_t *j = NULL;
        int r;

        r = manifest_parse(data, size, "pod.yaml", &j, &err);
        if (r < 0)
                fail_msg("does not parse (%d %s): <<%s>>", r, err ?: "(no message)", data);
        assert_non_null(j);
        return j;
}

static json_t *first_container(json_t *pod) {
        json_t *c = json_array_get(json_object_get(json_object_get(pod, "spec"), "containers"), 0);

        assert_true(json_is_object(c));
        return c;
}

/* A copy of the original pod with another image tag. */
static json_t *pod_with_tag(const char *tag) {
        json_t *pod = parse_pod(original_yaml, strlen(original_yaml));
        _cleanup_free_ char *image = strdup_printf("registry.k8s.io/kube-apiserver:%s", tag);

        assert_non_null(image);
        assert_int_equal(json_object_set_new(first_container(pod), "image", json_string(image)), 0);
        return pod;
}

static void commit_tag(store *s, const char *tag, unsigned parent, unsigned *ret) {
        json_auto_t *pod = pod_with_tag(tag);

        *ret = commit(s, pod, &upgrade_info, parent);
}

static char *rev_rel(unsigned n, const char *ext) {
        char *p = strdup_printf("%s/%u.%s", COMPONENT_DIR, n, ext);

        assert_non_null(p);
        return p;
}

static json_t *load_meta(const fixture *f, unsigned n) {
        _cleanup_free_ char *rel = rev_rel(n, "json"), *data = NULL;
        json_error_t e;
        json_t *j;
        size_t size;

        data = read_rel(f, rel, &size);
        if (!data)
                fail_msg("%s/%s does not exist", f->root, rel);
        j = json_loadb(data, size, 0, &e);
        if (!j)
                fail_msg("%s/%s: %s", f->root, rel, e.text);
        return j;
}

static const char *meta_str(json_t *meta, const char *key) {
        return json_string_value(json_object_get(meta, key));
}

static bool is_rfc3339_utc(const char *s) {
        static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";

        if (!s || strlen(s) != strlen(shape))
                return false;
        for (size_t i = 0; shape[i]; i++)
                if (shape[i] == 'd' ? s[i] < '0' || s[i] > '9' : s[i] != shape[i])
                        return false;
        return true;
}

/* Asserts that the live manifest is byte-equal to revision n's manifest. */
static void assert_live_is(const fixture *f, unsigned n) {
        _cleanup_free_ char *rel = rev_rel(n, "yaml"), *rev = NULL, *live = NULL;
        size_t rev_size = 0, live_size = 0;

        rev = read_rel(f, rel, &rev_size);
        live = read_rel(f, LIVE_PATH, &live_size);
        assert_non_null(rev);
        assert_non_null(live);
        if (rev_size != live_size || memcmp(rev, live, rev_size) != 0)
                fail_msg("live manifest differs from revision %u:\n<<%s>>\n<<%s>>", n, live, rev);
}

static void list_revisions(store *s, revision_list *ret) {
        _cleanup_free_ char *err = NULL;
        int r;

        r = store_list(s, COMPONENT, ret, &err);
        if (r < 0)
                fail_msg("store_list: %d %s", r, err ?: "(no message)");
}

static bool str_contains(const char *haystack, const char *needle) {
        return haystack && strstr(haystack, needle);
}

/* ---------------------------------------------------------------------------------------------
 * 1. adoption */

static void test_sha256_hex_vector(void **state) {
        char sha[65];

        /* FIPS 180-2 test vector: the store's checksums below are compared against this function. */
        sha256_hex("abc", 3, sha);
        assert_string_equal(sha, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        sha256_hex("", 0, sha);
        assert_string_equal(sha, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

static void test_adopt(void **state) {
        fixture *f = *state;
        _cleanup_(store_freep) store *s = NULL;
        _cleanup_(revision_list_done) revision_list l = {};
        _cleanup_free_ char *rev = NULL, *live = NULL, *rel_yaml = rev_rel(1, "yaml"),
                            *rel_json = rev_rel(1, "json");
        json_auto_t *meta = NULL;
        struct stat before, after;
        size_t rev_size = 0, live_size = 0;
        char sha[65];
        unsigned n;

        write_str(f, LIVE_PATH, original_yaml, 0644);
        before = stat_rel(f, LIVE_PATH);

        s = open_store(f, 0, true);
        n = sync_live(s, &upgrade_info);
        assert_int_equal(n, 1);

        /* Byte-equal to what was live, and the live file itself was not touched. */
        rev = read_rel(f, rel_yaml, &rev_size);
        assert_non_null(rev);
        assert_int_equal(rev_size, strlen(original_yaml));
        assert_memory_equal(rev, original_yaml, rev_size);
        live = read_rel(f, LIVE_PATH, &live_size);
        assert_int_equal(live_size, strlen(original_yaml));
        assert_memory_equal(live, original_yaml, live_size);
        after = stat_rel(f, LIVE_PATH);
        assert_int_equal(after.st_ino, before.st_ino);
        assert_int_equal(after.st_mode, before.st_mode);
        assert_int_equal(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
        assert_int_equal(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
        assert_listing(f, STORE_MANIFEST_DIR, LIVE);

        /* The metadata. */
        meta = load_meta(f, 1);
        sha256_hex(original_yaml, strlen(original_yaml), sha);
        assert_string_equal(meta_str(meta, "sha256"), sha);
        assert_int_equal(json_integer_value(json_object_get(meta, "revision")), 1);
        assert_string_equal(meta_str(meta, "reason"), "adopted");
        assert_string_equal(meta_str(meta, "component"), COMPONENT);
        assert_string_equal(meta_str(meta, "manifest"), LIVE);
        assert_true(is_rfc3339_utc(meta_str(meta, "time")));
        assert_int_equal(json_integer_value(json_object_get(meta, "parent")), 0);
        assert_true(json_is_false(json_object_get(meta, "healthy")));
        assert_false(json_is_string(json_object_get(meta, "planId")));

        list_revisions(s, &l);
        assert_int_equal(l.n, 1);
        assert_int_equal(l.items[0].number, 1);
        assert_string_equal(l.items[0].reason, "adopted");
        assert_string_equal(l.items[0].sha256, sha);
        assert_null(l.items[0].plan_id);

        /* Private: files 0600, directories 0700, nothing else in the component directory. */
        assert_int_equal(mode_rel(f, rel_yaml), 0600);
        assert_int_equal(mode_rel(f, rel_json), 0600);
        assert_int_equal(mode_rel(f, STORE_STATE_DIR), 0700);
        assert_int_equal(mode_rel(f, STORE_REVISIONS_DIR), 0700);
        assert_int_equal(mode_rel(f, COMPONENT_DIR), 0700);
        assert_true(S_ISREG(stat_rel(f, rel_yaml).st_mode));
        assert_listing(f, COMPONENT_DIR, "1.json 1.yaml");

        /* Adopting again changes nothing. */
        assert_int_equal(sync_live(s, &upgrade_info), 1);
        assert_listing(f, COMPONENT_DIR, "1.json 1.yaml");
}

/* ---------------------------------------------------------------------------------------------
 * 2. commit */

static void test_commit(void **state) {
        fixture *f = *state;
        _cleanup_(store_freep) store *s = NULL;
        _cleanup_(revision_list_done) revision_list l = {};
        _cleanup_free_ char *live = NULL, *rel_yaml = rev_rel(2, "yaml"), *rel_json = rev_rel(2, "json");
        _cleanup_free_ char *etcd_after = NULL;
        json_auto_t *pod = NULL, *back = NULL, *meta = NULL;
        json_t *annotations;
        size_t live_size = 0;
        char sha[65];
        unsigned n;

        write_str(f, LIVE_PATH, original_yaml, 0644);
        write_str(f, STORE_MANIFEST_DIR "/etcd.yaml", etcd_yaml, 0600);
        s = open_store(f, 0, true);
        assert_int_equal(sync_live(s, &upgrade_info), 1);

        pod = pod_with_tag("v1.31.0");
        n = commit(s, pod, &upgrade_info, 1);
        assert_int_equal(n, 2);

        /* The live manifest is revision 2, byte for byte, annotated with its number. */
        assert_live_is(f, 2);
        live = read_rel(f, LIVE_PATH, &live_size);
        back = parse_pod(live, live_size);
        annotations = json_object_get(json_object_get(back, "metadata"), "annotations");
        assert_true(json_is_string(json_object_get(annotations, STORE_REVISION_ANNOTATION)));
        assert_string_equal(json_string_value(json_object_get(annotations, STORE_REVISION_ANNOTATION)), "2");
        assert_string_equal(json_string_value(json_object_get(first_container(back), "image")),
                            "registry.k8s.io/kube-apiserver:v1.31.0");
        assert_int_equal(mode_rel(f, LIVE_PATH), 0600);
        assert_int_equal(mode_rel(f, rel_yaml), 0600);
        assert_int_equal(mode_rel(f, rel_json), 0600);

        /* Only the live manifests in the manifest directory: no temporary, no dot-file. */
        assert_listing(f, STORE_MANIFEST_DIR, "etcd.yaml " LIVE);
        etcd_after = read_rel(f, STORE_MANIFEST_DIR "/etcd.yaml", NULL);
        assert_string_equal(etcd_after, etcd_yaml);
        assert_listing(f, COMPONENT_DIR, "1.json 1.yaml 2.json 2.yaml");

        /* The metadata. */
        meta = load_meta(f, 2);
        sha256_hex(live, live_size, sha);
        assert_string_equal(meta_str(meta, "sha256"), sha);
        assert_int_equal(json_integer_value(json_object_get(meta, "revision")), 2);
        assert_int_equal(json_integer_value(json_object_get(meta, "parent")), 1);
        assert_string_equal(meta_str(meta, "reason"), "upgrade");
        assert_string_equal(meta_str(meta, "planId"), "plan-7f3a");
        assert_string_equal(meta_str(meta, "binaryVersion"), "1.31.0");
        assert_string_equal(meta_str(meta, "emulatedVersion"), "1.30");
        assert_string_equal(meta_str(meta, "minCompatibilityVersion"), "1.29");
        assert_string_equal(meta_str(meta, "component"), COMPONENT);
        assert_string_equal(meta_str(meta, "manifest"), LIVE);
        assert_true(is_rfc3339_utc(meta_str(meta, "time")));
        assert_true(json_is_false(json_object_get(meta, "healthy")));

        list_revisions(s, &l);
        assert_int_equal(l.n, 2);
        assert_int_equal(l.items[1].number, 2);
        assert_int_equal(l.items[1].parent, 1);
        assert_string_equal(l.items[1].reason, "upgrade");
        assert_string_equal(l.items[1].plan_id, "plan-7f3a");
        assert_string_equal(l.items[1].binary_version, "1.31.0");
        assert_string_equal(l.items[1].emulated_version, "1.30");
        assert_string_equal(l.items[1].min_compat_version, "1.29");
        assert_false(l.items[1].healthy);

        /* What store_render shows for --dry-run is what store_commit wrote. */
        {
                json_auto_t *again = pod_with_tag("v1.31.0");
                _cleanup_free_ char *rendered = NULL;
                size_t rendered_size = 0;

                assert_int_equal(store_render(again, 2, &rendered, &rendered_size), 0);
                assert_int_equal(rendered_size, live_size);
                assert_memory_equal(rendered, live, live_size);
        }

        /* The store is in sync with what it wrote: nothing new is recorded. */
        assert_int_equal(sync_live(s, &upgrade_info), 2);
        assert_listing(f, COMPONENT_DIR, "1.json 1.yaml 2.json 2.yaml");
}

/* ---------------------------------------------------------------------------------------------
 * 3. external edit */

static void test_external_edit(void **state) {
        fixture *f = *state;
        _cleanup_(store_freep) store *s = NULL;
        _cleanup_(revision_list_done) revision_list l = {}, l2 = {};
        _cleanup_free_ char *live = NULL, *edited = NULL, *rev3 = NULL, *rel3 = rev_rel(3, "yaml");
        _cleanup_free_ char *listing = NULL, *listing2 = NULL;
        json_auto_t *meta = NULL;
        struct stat before, after;
        size_t live_size = 0, rev3_size = 0;
        unsigned n, c;

        write_str(f, LIVE_PATH, original_yaml, 0600);
        s = open_store(f, 0, true);
        assert_int_equal(sync_live(s, &upgrade_info), 1);
        commit_tag(s, "v1.31.0", 1, &c);
        assert_int_equal(c, 2);

        /* Someone edits the live manifest by hand. */
        live = read_rel(f, LIVE_PATH, &live_size);
        edited = strdup_printf("%s    - --v=4\n", live);
        assert_non_null(edited);
        write_str(f, LIVE_PATH, edited, 0600);
        before = stat_rel(f, LIVE_PATH);

        n = sync_live(s, &upgrade_info);
        assert_int_equal(n, 3);
        rev3 = read_rel(f, rel3, &rev3_size);
        assert_non_null(rev3);
        assert_int_equal(rev3_size, strlen(edited));
        assert_memory_equal(rev3, edited, rev3_size);
        meta = load_meta(f, 3);
        assert_string_equal(meta_str(meta, "reason"), "external edit");
        assert_int_equal(json_integer_value(json_object_get(meta, "parent")), 2);
        list_revisions(s, &l);
        assert_int_equal(l.n, 3);
        assert_string_equal(l.items[2].reason, "external edit");
        assert_int_equal(l.items[2].parent, 2);

        /* The hand edit stays live, untouched. */
        after = stat_rel(f, LIVE_PATH);
        assert_int_equal(after.st_ino, before.st_ino);
        assert_int_equal(after.st_mtim.tv_nsec, before.st_mtim.tv_nsec);
        assert_live_is(f, 3);

        /* Once recorded, it is in sync: nothing new. */
        listing = list_rel(f, COMPONENT_DIR);
        assert_int_equal(sync_live(s, &upgrade_info), 3);
        listing2 = list_rel(f, COMPONENT_DIR);
        assert_string_equal(listing, listing2);
        list_revisions(s, &l2);
        assert_int_equal(l2.n, 3);

        /* A second hand edit: a new revision whose parent is the previous newest. */
        {
                json_auto_t *meta4 = NULL;

                write_str(f, LIVE_PATH, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\n",
                          0600);
                assert_int_equal(sync_live(s, &upgrade_info), 4);
                meta4 = load_meta(f, 4);
                assert_string_equal(meta_str(meta4, "reason"), "external edit");
                assert_int_equal(json_integer_value(json_object_get(meta4, "parent")), 3);
                assert_false(json_is_string(json_object_get(meta4, "planId")));
                assert_live_is(f, 4);
        }
}

/* ---------------------------------------------------------------------------------------------
 * 4. list, read, live number */

static void test_list_read_live_number(void **state) {
        fixture *f = *state;
        _cleanup_(store_freep) store *s = NULL, *ro = NULL;
        _cleanup_(revision_list_done) revision_list l = {}, empty = {};
        _cleanup_free_ char *data = NULL, *err = NULL, *live = NULL;
        size_t size = 0, live_size = 0;
        unsigned c;
        int r;

        write_str(f, LIVE_PATH, original_yaml, 0600);

        /* Read-only before anything was recorded: empty, nothing to read. */
        ro = open_store(f, 0, false);
        list_revisions(ro, &empty);
        assert_int_equal(empty.n, 0);
        assert_null(empty.items);
        r = store_read(ro, COMPONENT, 1, &data, &size, &err);
        assert_int_equal(r, -ENOENT);
        assert_true(str_contains(err, "1.yaml"));
        assert_null(data);
        err = free_null(err);
        r = store_sync_live(ro, COMPONENT, LIVE, &upgrade_info, &c, NULL);
        assert_int_equal(r, -EROFS);
        {
                json_auto_t *pod = pod_with_tag("v1.31.0");

                r = store_commit(ro, COMPONENT, LIVE, pod, &upgrade_info, 0, &c, NULL);
                assert_int_equal(r, -EROFS);
        }
        assert_false(exists_rel(f, STORE_STATE_DIR));
        ro = store_free(ro);

        s = open_store(f, 0, true);
        assert_int_equal(sync_live(s, &upgrade_info), 1);
        commit_tag(s, "v1.31.0", 1, &c);
        assert_int_equal(c, 2);
        commit_tag(s, "v1.32.0", 2, &c);
        assert_int_equal(c, 3);

        list_revisions(s, &l);
        assert_int_equal(l.n, 3);
        for (size_t i = 0; i < l.n; i++) {
                _cleanup_free_ char *rel = rev_rel((unsigned) i + 1, "yaml"), *raw = NULL, *bytes = NULL;
                size_t raw_size = 0, bytes_size = 0;
                char sha[65];

                assert_int_equal(l.items[i].number, i + 1);
                assert_string_equal(l.items[i].component, COMPONENT);
                assert_string_equal(l.items[i].manifest, LIVE);
                assert_int_equal(l.items[i].parent, i);
                assert_ptr_equal(revision_list_find(&l, (unsigned) i + 1), &l.items[i]);

                /* store_read returns the stored bytes, and their sha is the one listed. */
                raw = read_rel(f, rel, &raw_size);
                assert_int_equal(store_read(s, COMPONENT, (unsigned) i + 1, &bytes, &bytes_size, NULL), 0);
                assert_int_equal(bytes_size, raw_size);
                assert_memory_equal(bytes, raw, raw_size);
                sha256_hex(bytes, bytes_size, sha);
                assert_string_equal(l.items[i].sha256, sha);

                /* Each revision's bytes map back to it. */
                assert_int_equal(store_live_number(&l, bytes, bytes_size), i + 1);
        }
        assert_null(revision_list_find(&l, 4));
        assert_null(revision_list_find(&l, 0));

        live = NULL;
        assert_int_equal(store_read_live(s, LIVE, &live, &live_size, NULL), 0);
        assert_int_equal(store_live_number(&l, live, live_size), 3);
        assert_int_equal(store_live_number(&l, "something else", 14), 0);
        assert_int_equal(store_live_number(&l, original_yaml, strlen(original_yaml) - 1), 0);
        assert_int_equal(store_live_number(&empty, live, live_size), 0);

        /* Missing revision, unknown component, missing live manifest: -ENOENT, with a message. */
        data = NULL;
        r = store_read(s, COMPONENT, 99, &data, &size, &err);
        assert_int_equal(r, -ENOENT);
        assert_null(data);
        if (!str_contains(err, "99.yaml") || !str_contains(err, "no such revision") ||
            !str_contains(err, f->root))
                fail_msg("unexpected message: %s", err ?: "(null)");
        err = free_null(err);
        r = store_read(s, "kube-nothing", 1, &data, &size, &err);
        assert_int_equal(r, -ENOENT);
        assert_true(str_contains(err, "kube-nothing"));
        err = free_null(err);
        {
                _cleanup_(revision_list_done) revision_list none = {};

                assert_int_equal(store_list(s, "kube-nothing", &none, NULL), 0);
                assert_int_equal(none.n, 0);
        }
        r = store_read_live(s, "missing.yaml", &data, &size, &err);
        assert_int_equal(r, -ENOENT);
        assert_true(str_contains(err, "missing.yaml"));
        err = free_null(err);

        /* Equal bytes in two revisions: the newest wins. */
        {
                revision items[3] = {};
                revision_list dup = { .items = items, .n = 3 };

                for (unsigned i = 0; i < 3; i++)
                        items[i].number = 10 + i;
                sha256_hex("same", 4, items[0].sha256);
                sha256_hex("same", 4, items[1].sha256);
                sha256_hex("other", 5, items[2].sha256);
                assert_int_equal(store_live_number(&dup, "same", 4), 11);
                assert_int_equal(store_live_number(&dup, "other", 5), 12);
        }

        /* A corrupt metadata file is reported, naming it. */
        write_str(f, COMPONENT_DIR "/4.json", "{ not json", 0600);
        {
                _cleanup_(revision_list_done) revision_list bad = {};

                r = store_list(s, COMPONENT, &bad, &err);
                assert_int_equal(r, -EINVAL);
                assert_true(str_contains(err, "4.json"));
                err = free_null(err);
        }
}

/* ---------------------------------------------------------------------------------------------
 * 5. retention */

static void set_healthy(const fixture *f, unsigned n) {
        _cleanup_free_ char *rel = rev_rel(n, "json"), *out = NULL;
        json_auto_t *meta = load_meta(f, n);

        assert_int_equal(json_object_set_new(meta, "healthy", json_true()), 0);
        out = json_dumps(meta, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        assert_non_null(out);
        write_str(f, rel, out, 0600);
}

static void test_retention(void **state) {
        fixture *f = *state;
        _cleanup_(store_freep) store *s = NULL;
        unsigned live, c;
        char tag[32];

        write_str(f, LIVE_PATH, original_yaml, 0600);
        s = open_store(f, 3, true);
        live = sync_live(s, &upgrade_info);
        assert_int_equal(live, 1);
        for (unsigned i = 0; i < 6; i++) {
                snprintf(tag, sizeof(tag), "v1.31.%u", i);
                commit_tag(s, tag, live, &c);
                assert_int_equal(c, live + 1);
                live = c;
                /* The live revision is never the one pruned. */
                assert_live_is(f, live);
        }
        assert_int_equal(live, 7);
        assert_listing(f, COMPONENT_DIR, "5.json 5.yaml 6.json 6.yaml 7.json 7.yaml");
        {
                _cleanup_(revision_list_done) revision_list l = {};

                list_revisions(s, &l);
                assert_int_equal(l.n, 3);
                assert_int_equal(l.items[0].number, 5);
                assert_int_equal(l.items[2].number, 7);
        }
        assert_listing(f, STORE_MANIFEST_DIR, LIVE);
}

/* A revision written but never swapped in (a crash between the two, or a failed swap) is
 * newer than the live one: retention must still keep the live revision. */
static void test_retention_keeps_live_when_not_newest(void **state) {
        fixture *f = *state;
        _cleanup_(store_freep) store *s = NULL;
        unsigned live, n;

        write_str(f, LIVE_PATH, original_yaml, 0600);
        s = open_store(f, 2, true);
        live = sync_live(s, &upgrade_info);
        commit_tag(s, "v1.31.0", live, &live);
        assert_int_equal(live, 2);
        for (unsigned i = 0; i < 2; i++) {
                json_auto_t *pod = pod_with_tag(i == 0 ? "v1.31.1" : "v1.31.2");
                _cleanup_free_ char *err = NULL;

                if (store_prepare(s, COMPONENT, LIVE, pod, &upgrade_info, live, &n, &err) < 0)
                        fail_msg("store_prepare: %s", err ?: "?");
        }
        assert_int_equal(n, 4);
        store_prune(s, COMPONENT, live);
        assert_listing(f, COMPONENT_DIR, "2.json 2.yaml 3.json 3.yaml 4.json 4.yaml");
        assert_live_is(f, 2);
}

static void test_retention_keeps_newest_healthy(void **state) {
        fixture *f = *state;
        _cleanup_(store_freep) store *s = NULL;
        _cleanup_(revision_list_done) revision_list l = {};
        unsigned live, c;
        char tag[32];

        write_str(f, LIVE_PATH, original_yaml, 0600);
        s = open_store(f, 3, true);
        live = sync_live(s, &upgrade_info);
        commit_tag(s, "v1.31.0", live, &live);
        commit_tag(s, "v1.31.1", live, &live);
        assert_int_equal(live, 3);
        assert_listing(f, COMPONENT_DIR, "1.json 1.yaml 2.json 2.yaml 3.json 3.yaml");

        /* A gated rollout found revisions 1 and 2 healthy; 2 is the newest healthy one. */
        set_healthy(f, 1);
        set_healthy(f, 2);
        for (unsigned i = 0; i < 4; i++) {
                snprintf(tag, sizeof(tag), "v1.32.%u", i);
                commit_tag(s, tag, live, &c);
                live = c;
                assert_live_is(f, live);
        }
        assert_int_equal(live, 7);
        assert_listing(f, COMPONENT_DIR, "2.json 2.yaml 5.json 5.yaml 6.json 6.yaml 7.json 7.yaml");
        list_revisions(s, &l);
        assert_int_equal(l.n, 4);
        assert_int_equal(l.items[0].number, 2);
        assert_true(l.items[0].healthy);
        assert_false(l.items[1].healthy);
}

/* ---------------------------------------------------------------------------------------------
 * 6. permissions and symbolic links */

/* store_open must fail with `want` (any error when 0) and a message containing both needles. */
static void assert_open_refused(const fixture *f, bool writable, int want, const char *needle1,
                                const char *needle2) {
        _cleanup_free_ char *err = NULL;
        store *s = NULL;
        int r;

        r = store_open(f->root, 0, writable, &s, &err);
        if ((want == 0 ? r >= 0 : r != want) || !str_contains(err, needle1) ||
            (needle2 && !str_contains(err, needle2))) {
                s = store_free(s);
                fail_msg("store_open(writable=%d): got %d \"%s\", expected %d (%s) naming \"%s\"%s%s",
                         writable, r, err ?: "(null)", want, want == 0 ? "any error" : strerror(-want),
                         needle1, needle2 ? " and " : "", needle2 ?: "");
        }
        assert_null(s);
}

static void test_refuses_writable_manifest_dir(void **state) {
        fixture *f = *state;
        _cleanup_free_ char *dir = abs_path(f, STORE_MANIFEST_DIR);

        assert_int_equal(fchmodat(f->rootfd, STORE_MANIFEST_DIR, 0770, 0), 0);
        assert_open_refused(f, false, -EPERM, dir, "writable");
        assert_open_refused(f, true, -EPERM, dir, "writable");
        assert_int_equal(fchmodat(f->rootfd, STORE_MANIFEST_DIR, 0702, 0), 0);
        assert_open_refused(f, false, -EPERM, dir, "writable");
        assert_open_refused(f, true, -EPERM, dir, "writable");
        /* Refused before anything was created. */
        assert_false(exists_rel(f, "var"));

        /* Owned by someone else: only root can give a directory away (a package build, e.g. the
         * RPM's %check in a Fedora build root, runs the tests as an ordinary user). */
        assert_int_equal(fchmodat(f->rootfd, STORE_MANIFEST_DIR, 0700, 0), 0);
        if (geteuid() == 0) {
                assert_int_equal(fchownat(f->rootfd, STORE_MANIFEST_DIR, 4242, 4242, AT_SYMLINK_NOFOLLOW), 0);
                assert_open_refused(f, true, -EPERM, dir, "4242");
                assert_open_refused(f, false, -EPERM, dir, "4242");
                assert_int_equal(fchownat(f->rootfd, STORE_MANIFEST_DIR, geteuid(), getegid(),
                                          AT_SYMLINK_NOFOLLOW), 0);
        }

        /* Back to private: accepted. */
        store_free(open_store(f, 0, true));
}

static void test_refuses_writable_state_dir(void **state) {
        fixture *f = *state;
        _cleanup_free_ char *dir = abs_path(f, STORE_STATE_DIR), *revs = abs_path(f, STORE_REVISIONS_DIR);

        mkdir_rel(f, "var", 0755);
        mkdir_rel(f, "var/lib", 0755);
        mkdir_rel(f, STORE_STATE_DIR, 0777);
        assert_open_refused(f, true, -EPERM, dir, "writable");
        /* Nothing was created below a directory that was refused. */
        assert_false(exists_rel(f, STORE_REVISIONS_DIR));

        assert_int_equal(fchmodat(f->rootfd, STORE_STATE_DIR, 0770, 0), 0);
        assert_open_refused(f, true, -EPERM, dir, "writable");

        /* A group-writable revisions directory, in both modes. */
        assert_int_equal(fchmodat(f->rootfd, STORE_STATE_DIR, 0700, 0), 0);
        mkdir_rel(f, STORE_REVISIONS_DIR, 0775);
        assert_open_refused(f, true, -EPERM, revs, "writable");
        assert_open_refused(f, false, -EPERM, revs, "writable");
        assert_int_equal(fchmodat(f->rootfd, STORE_REVISIONS_DIR, 0700, 0), 0);
        store_free(open_store(f, 0, true));
        store_free(open_store(f, 0, false));

        /* The state directory is refused when only reading, too (store.h: "Refuses
         * group/world-writable ... state directories"). */
        assert_int_equal(fchmodat(f->rootfd, STORE_STATE_DIR, 0777, 0), 0);
        assert_open_refused(f, false, -EPERM, dir, "writable");
}

static void test_refuses_symlinked_dirs(void **state) {
        fixture *f = *state;

        /* The manifest directory itself is a symbolic link. */
        mkdir_rel(f, "elsewhere", 0700);
        mkdir_rel(f, "elsewhere/manifests", 0700);
        assert_int_equal(renameat(f->rootfd, STORE_MANIFEST_DIR, f->rootfd, "real-manifests"), 0);
        assert_int_equal(symlinkat("../../elsewhere/manifests", f->rootfd, STORE_MANIFEST_DIR), 0);
        assert_open_refused(f, false, 0, "manifests", "symbolic link");
        assert_open_refused(f, true, 0, "manifests", "symbolic link");
        assert_false(exists_rel(f, "var"));
        assert_int_equal(unlinkat(f->rootfd, STORE_MANIFEST_DIR, 0), 0);
        assert_int_equal(renameat(f->rootfd, "real-manifests", f->rootfd, STORE_MANIFEST_DIR), 0);
        store_free(open_store(f, 0, false));

        /* A symbolic link higher up: etc/kubernetes → elsewhere. */
        assert_int_equal(renameat(f->rootfd, "etc/kubernetes", f->rootfd, "kubernetes-real"), 0);
        assert_int_equal(symlinkat("../kubernetes-real", f->rootfd, "etc/kubernetes"), 0);
        assert_true(exists_rel(f, "etc/kubernetes/manifests")); /* reachable by following the link */
        assert_open_refused(f, false, 0, "manifests", "symbolic link");
        assert_open_refused(f, true, 0, "manifests", "symbolic link");
        assert_int_equal(unlinkat(f->rootfd, "etc/kubernetes", 0), 0);
        assert_int_equal(renameat(f->rootfd, "kubernetes-real", f->rootfd, "etc/kubernetes"), 0);

        /* The state directory is a symbolic link: refused, nothing created through it. */
        mkdir_rel(f, "var", 0755);
        mkdir_rel(f, "var/lib", 0755);
        mkdir_rel(f, "other-state", 0700);
        assert_int_equal(symlinkat("../../other-state", f->rootfd, STORE_STATE_DIR), 0);
        assert_open_refused(f, true, 0, "var/lib/cplet", "symbolic link");
        assert_open_refused(f, false, 0, "var/lib/cplet", NULL);
        assert_listing(f, "other-state", "");
        assert_int_equal(unlinkat(f->rootfd, STORE_STATE_DIR, 0), 0);

        /* The revisions directory is a symbolic link. */
        mkdir_rel(f, STORE_STATE_DIR, 0700);
        assert_int_equal(symlinkat("../../../other-state", f->rootfd, STORE_REVISIONS_DIR), 0);
        assert_open_refused(f, true, 0, "revisions", "symbolic link");
        assert_open_refused(f, false, 0, "revisions", NULL);
        assert_listing(f, "other-state", "");
}

static void test_refuses_symlinked_live_manifest(void **state) {
        fixture *f = *state;
        _cleanup_(store_freep) store *s = NULL;
        _cleanup_free_ char *err = NULL, *data = NULL;
        size_t size = 0;
        unsigned n = 0;
        int r;

        write_str(f, "elsewhere.yaml", original_yaml, 0600);
        assert_int_equal(symlinkat("../../../elsewhere.yaml", f->rootfd, LIVE_PATH), 0);
        s = open_store(f, 0, true);

        r = store_read_live(s, LIVE, &data, &size, &err);
        assert_true(r < 0);
        assert_null(data);
        if (!str_contains(err, "symbolic link") || !str_contains(err, LIVE))
                fail_msg("unexpected message: %s", err ?: "(null)");
        err = free_null(err);

        r = store_sync_live(s, COMPONENT, LIVE, &upgrade_info, &n, &err);
        assert_true(r < 0);
        if (!str_contains(err, "symbolic link") || !str_contains(err, LIVE))
                fail_msg("unexpected message: %s", err ?: "(null)");
        /* Nothing adopted through the link. */
        assert_false(exists_rel(f, COMPONENT_DIR "/1.yaml"));
        assert_false(exists_rel(f, COMPONENT_DIR "/1.json"));
        assert_true(S_ISLNK(stat_rel(f, LIVE_PATH).st_mode));
}

static void test_refuses_symlinked_component_dir(void **state) {
        fixture *f = *state;
        _cleanup_(store_freep) store *s = NULL;
        _cleanup_(revision_list_done) revision_list l = {};
        _cleanup_free_ char *err = NULL, *data = NULL, *live = NULL;
        json_auto_t *pod = NULL;
        size_t size = 0;
        unsigned n = 0;
        int r;

        write_str(f, LIVE_PATH, original_yaml, 0600);
        s = open_store(f, 0, true);
        mkdir_rel(f, "evil", 0700);
        assert_int_equal(symlinkat("../../../../evil", f->rootfd, COMPONENT_DIR), 0);

        r = store_list(s, COMPONENT, &l, &err);
        assert_true(r < 0);
        assert_true(str_contains(err, COMPONENT));
        err = free_null(err);

        r = store_sync_live(s, COMPONENT, LIVE, &upgrade_info, &n, &err);
        assert_true(r < 0);
        assert_true(str_contains(err, COMPONENT));
        err = free_null(err);

        pod = pod_with_tag("v1.31.0");
        r = store_commit(s, COMPONENT, LIVE, pod, &upgrade_info, 1, &n, &err);
        assert_true(r < 0);
        assert_true(str_contains(err, COMPONENT));
        err = free_null(err);

        r = store_read(s, COMPONENT, 1, &data, &size, &err);
        assert_true(r < 0);
        assert_null(data);

        /* Nothing written through the link, the live manifest unchanged. */
        assert_listing(f, "evil", "");
        live = read_rel(f, LIVE_PATH, NULL);
        assert_string_equal(live, original_yaml);
        assert_listing(f, STORE_MANIFEST_DIR, LIVE);
}

/* ---------------------------------------------------------------------------------------------
 * 7. lock */

/* In a child: takes the lock and reports "r|message" through the pipe. */
static void lock_in_child(const fixture *f, const char *command, char *buf, size_t size) {
        int p[2];
        pid_t pid;
        ssize_t n;
        int status;

        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        fflush(stdout);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                char *err = NULL, *line;
                int fd = -EBADF, r;

                close(p[0]);
                r = store_lock(f->root, command, &fd, &err);
                line = strdup_printf("%d|%s", r, err ?: "");
                if (line)
                        (void) !write(p[1], line, strlen(line));
                _exit(0);
        }
        close(p[1]);
        n = 0;
        for (;;) {
                ssize_t k = read(p[0], buf + n, size - 1 - (size_t) n);

                if (k <= 0)
                        break;
                n += k;
        }
        buf[n] = 0;
        close(p[0]);
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
}

static void assert_lock_file(const fixture *f, pid_t pid, const char *command) {
        _cleanup_free_ char *content = read_rel(f, STORE_LOCK_DIR "/" STORE_LOCK_FILE, NULL), *want = NULL;

        want = strdup_printf("%d %s\n", (int) pid, command);
        assert_non_null(content);
        assert_string_equal(content, want);
}

static void test_lock(void **state) {
        fixture *f = *state;
        _cleanup_free_ char *err = NULL, *pid_str = strdup_printf("%d", (int) getpid());
        char buf[1024];
        int fd = -EBADF, fd2 = -EBADF, r;

        r = store_lock(f->root, "cplet upgrade --to v1.31.0 --plan some-long-plan-identifier", &fd, &err);
        if (r < 0)
                fail_msg("store_lock: %d %s", r, err ?: "(no message)");
        assert_true(fd >= 0);
        assert_lock_file(f, getpid(), "cplet upgrade --to v1.31.0 --plan some-long-plan-identifier");
        assert_int_equal(mode_rel(f, STORE_LOCK_DIR), 0700);
        assert_int_equal(mode_rel(f, STORE_LOCK_DIR "/" STORE_LOCK_FILE), 0600);
        assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);

        /* A second open file description in this process conflicts. */
        r = store_lock(f->root, "cplet rollback", &fd2, &err);
        assert_int_equal(r, -EBUSY);
        assert_int_equal(fd2, -EBADF);
        if (!str_contains(err, pid_str) || !str_contains(err, "cplet upgrade --to v1.31.0"))
                fail_msg("message does not name the holder %s: %s", pid_str, err ?: "(null)");
        err = free_null(err);
        /* A failed attempt does not overwrite the holder's line. */
        assert_lock_file(f, getpid(), "cplet upgrade --to v1.31.0 --plan some-long-plan-identifier");

        /* Another process: busy too, naming this one. */
        lock_in_child(f, "cplet daemon", buf, sizeof(buf));
        if (strncmp(buf, "-16|", 4) != 0 || !strstr(buf, pid_str) || !strstr(buf, "cplet upgrade"))
                fail_msg("child got \"%s\", expected -EBUSY naming %s", buf, pid_str);

        /* Released: it can be taken again, and the file says who has it now (shorter line). */
        close(fd);
        r = store_lock(f->root, "cplet daemon", &fd, &err);
        if (r < 0)
                fail_msg("store_lock after release: %d %s", r, err ?: "(no message)");
        assert_lock_file(f, getpid(), "cplet daemon");
        close(fd);

        /* A child holds it: the parent is refused with the child's pid and command. */
        {
                _cleanup_free_ char *child_pid = NULL;
                int ready[2], hold[2], status;
                pid_t pid;
                char c;

                assert_int_equal(pipe2(ready, O_CLOEXEC), 0);
                assert_int_equal(pipe2(hold, O_CLOEXEC), 0);
                fflush(stdout);
                pid = fork();
                assert_true(pid >= 0);
                if (pid == 0) {
                        int cfd = -EBADF;

                        close(ready[0]);
                        close(hold[1]);
                        if (store_lock(f->root, "cplet daemon --child", &cfd, NULL) < 0)
                                _exit(1);
                        (void) !write(ready[1], "x", 1);
                        (void) !read(hold[0], &c, 1); /* until the parent closes its end */
                        _exit(0);
                }
                close(ready[1]);
                close(hold[0]);
                assert_int_equal(read(ready[0], &c, 1), 1);
                child_pid = strdup_printf("%d", (int) pid);
                r = store_lock(f->root, "cplet status", &fd, &err);
                assert_int_equal(r, -EBUSY);
                if (!str_contains(err, child_pid) || !str_contains(err, "cplet daemon --child"))
                        fail_msg("message does not name the holder %s: %s", child_pid, err ?: "(null)");
                err = free_null(err);
                close(hold[1]);
                assert_int_equal(waitpid(pid, &status, 0), pid);
                assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
                close(ready[0]);

                /* The holder is gone: free again. */
                r = store_lock(f->root, "cplet status", &fd, &err);
                if (r < 0)
                        fail_msg("store_lock after the holder exited: %d %s", r, err ?: "(no message)");
                assert_lock_file(f, getpid(), "cplet status");
                close(fd);
        }
}

/* ---------------------------------------------------------------------------------------------
 * 8. interrupted writes */

static void test_orphan_yaml_removed(void **state) {
        fixture *f = *state;
        _cleanup_(store_freep) store *s = NULL;
        _cleanup_(revision_list_done) revision_list l = {};
        unsigned c;

        write_str(f, LIVE_PATH, original_yaml, 0600);
        s = open_store(f, 0, true);
        assert_int_equal(sync_live(s, &upgrade_info), 1);

        /* A crash between N.yaml and N.json, and one inside write_file_atomic. */
        write_str(f, COMPONENT_DIR "/2.yaml", "apiVersion: v1\nkind: Pod\n", 0600);
        write_str(f, COMPONENT_DIR "/.cplet-2.json.12345.tmp", "{", 0600);
        assert_int_equal(sync_live(s, &upgrade_info), 1);
        assert_listing(f, COMPONENT_DIR, "1.json 1.yaml");

        /* Same after a commit whose metadata never made it. */
        commit_tag(s, "v1.31.0", 1, &c);
        assert_int_equal(c, 2);
        write_str(f, COMPONENT_DIR "/3.yaml", "apiVersion: v1\nkind: Pod\n", 0600);
        assert_int_equal(sync_live(s, &upgrade_info), 2);
        assert_listing(f, COMPONENT_DIR, "1.json 1.yaml 2.json 2.yaml");
        list_revisions(s, &l);
        assert_int_equal(l.n, 2);
}

static void test_stale_temporaries_removed(void **state) {
        fixture *f = *state;
        _cleanup_(store_freep) store *s = NULL;

        write_str(f, LIVE_PATH, original_yaml, 0600);
        write_str(f, STORE_MANIFEST_DIR "/.cplet-" LIVE ".4242.tmp", "half a manif", 0600);
        write_str(f, STORE_MANIFEST_DIR "/.cplet-etcd.yaml.1.tmp", "", 0600);
        write_str(f, STORE_MANIFEST_DIR "/.keep", "", 0600); /* not ours */

        s = open_store(f, 0, true);
        assert_listing(f, STORE_MANIFEST_DIR, ".keep " LIVE);
}

static void test_read_only_open_changes_nothing(void **state) {
        fixture *f = *state;
        _cleanup_free_ char *before = NULL, *after = NULL, *data = NULL;
        _cleanup_(revision_list_done) revision_list l = {};
        size_t size;
        store *s;

        /* Nothing recorded yet: a read-only open must not create the state directory. */
        write_str(f, LIVE_PATH, original_yaml, 0600);
        write_str(f, STORE_MANIFEST_DIR "/.cplet-" LIVE ".4242.tmp", "half a manif", 0600);
        before = tree_digest(f);
        s = open_store(f, 0, false);
        list_revisions(s, &l);
        assert_int_equal(store_read_live(s, LIVE, &data, &size, NULL), 0);
        s = store_free(s);
        after = tree_digest(f);
        assert_string_equal(before, after);
        before = free_null(before);
        after = free_null(after);
        data = free_null(data);
        revision_list_done(&l);

        /* With a store that has leftovers: they stay until someone opens it for writing. */
        s = open_store(f, 0, true);
        assert_int_equal(sync_live(s, &upgrade_info), 1);
        s = store_free(s);
        write_str(f, STORE_MANIFEST_DIR "/.cplet-" LIVE ".4243.tmp", "half a manif", 0600);
        write_str(f, COMPONENT_DIR "/2.yaml", "apiVersion: v1\n", 0600);
        write_str(f, COMPONENT_DIR "/.cplet-2.json.4243.tmp", "{", 0600);
        before = tree_digest(f);
        s = open_store(f, 0, false);
        list_revisions(s, &l);
        assert_int_equal(l.n, 1);
        assert_int_equal(store_read(s, COMPONENT, 1, &data, &size, NULL), 0);
        s = store_free(s);
        after = tree_digest(f);
        assert_string_equal(before, after);
}

/* ---------------------------------------------------------------------------------------------
 * 9. crash consistency: SIGKILL at arbitrary instants of a series of commits */

#define CRASH_KEEP 3
#define CRASH_COMMITS 5
#define CRASH_ITERATIONS 220
#define CRASH_SPAN_MAX_US 20000

typedef struct crash_stats {
        unsigned iterations;
        unsigned killed;   /* died of the SIGKILL before finishing its commits */
        unsigned mid_write; /* iterations that left a temporary or an orphan N.yaml behind */
        unsigned temp_manifest_dir;
        unsigned temp_revisions;
        unsigned orphan_yaml;
        unsigned not_swapped; /* killed between N.json and the swap */
        unsigned cleanup_failures; /* leftovers the next writable open + store_sync_live did not remove */
        char first_failure[512];
        unsigned sequence;
        unsigned newest; /* newest revision after the previous iteration's cleanup */
} crash_stats;

static uint64_t now_us(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000u + (uint64_t) ts.tv_nsec / 1000u;
}

/* The child: what a cplet doing a rollout does, without cmocka. Never returns. */
__attribute__((noreturn)) static void crash_child(const fixture *f, unsigned sequence, int ready_fd) {
        store *s = NULL;
        unsigned live = 0;
        int lock = -EBADF;

        if (store_lock(f->root, "test-store crash child", &lock, NULL) < 0)
                _exit(10);
        if (store_open(f->root, CRASH_KEEP, true, &s, NULL) < 0)
                _exit(11);
        if (store_sync_live(s, COMPONENT, LIVE, &upgrade_info, &live, NULL) < 0)
                _exit(12);
        if (write(ready_fd, "x", 1) != 1)
                _exit(13);
        for (unsigned i = 0; i < CRASH_COMMITS; i++) {
                json_t *pod;
                char *err = NULL;
                char image[96];
                unsigned n;

                if (manifest_parse(original_yaml, strlen(original_yaml), "pod.yaml", &pod, NULL) < 0)
                        _exit(14);
                snprintf(image, sizeof(image), "registry.k8s.io/kube-apiserver:v1.31.%u",
                         sequence * CRASH_COMMITS + i);
                json_object_set_new(first_container(pod), "image", json_string(image));
                if (store_commit(s, COMPONENT, LIVE, pod, &upgrade_info, live, &n, &err) < 0)
                        _exit(15);
                live = n;
                json_decref(pod);
        }
        _exit(0);
}

static bool is_temporary(const char *name) {
        size_t l = strlen(name);

        return startswith(name, ".cplet-") && l > 4 && streq(name + l - 4, ".tmp");
}

/* "N.yaml"/"N.json" → N, else 0. */
static unsigned revision_file(const char *name, const char *ext) {
        char *end;
        unsigned long n;

        if (name[0] < '1' || name[0] > '9')
                return 0;
        n = strtoul(name, &end, 10);
        return *end == '.' && streq(end + 1, ext) ? (unsigned) n : 0;
}

typedef struct scan {
        unsigned temp_manifest_dir; /* .cplet-*.tmp in the manifest directory */
        unsigned temp_revisions;    /* .cplet-*.tmp in the component's revisions directory */
        unsigned orphan_yaml;       /* N.yaml without N.json */
        unsigned newest;            /* newest revision with its metadata */
        unsigned live;              /* newest revision byte-equal to the live manifest, 0 if none */
} scan;

/* Checks the invariants on disk as a crash left them, and counts what was left in progress. */
static void scan_after_crash(const fixture *f, const char *original, size_t original_size, const char *when,
                             scan *ret) {
        _cleanup_free_ char *live = NULL;
        scan sc = {};
        size_t live_size = 0;
        bool live_is_original;
        struct dirent *de;
        DIR *d;
        int fd;

        /* (b) nothing in the manifest directory a kubelet would load but the live manifest. */
        fd = openat(f->rootfd, STORE_MANIFEST_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(fd >= 0);
        d = fdopendir(fd);
        assert_non_null(d);
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.') {
                        if (is_temporary(de->d_name))
                                sc.temp_manifest_dir++;
                        continue;
                }
                if (!streq(de->d_name, LIVE))
                        fail_msg("%s: stray file \"%s\" in the manifest directory", when, de->d_name);
        }
        closedir(d);

        /* (a) the live manifest parses and equals a stored revision (or the original). */
        live = read_rel(f, LIVE_PATH, &live_size);
        if (!live)
                fail_msg("%s: the live manifest is gone", when);
        {
                json_auto_t *j = NULL;
                _cleanup_free_ char *err = NULL;

                if (manifest_parse(live, live_size, LIVE, &j, &err) < 0)
                        fail_msg("%s: the live manifest does not parse: %s", when, err ?: "");
        }
        live_is_original = live_size == original_size && memcmp(live, original, live_size) == 0;

        fd = openat(f->rootfd, COMPONENT_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(fd >= 0);
        d = fdopendir(fd);
        assert_non_null(d);
        while ((de = readdir(d))) {
                unsigned y = revision_file(de->d_name, "yaml"), j = revision_file(de->d_name, "json");

                if (is_temporary(de->d_name)) {
                        sc.temp_revisions++;
                        continue;
                }
                if (j > 0) {
                        _cleanup_free_ char *rel = rev_rel(j, "yaml");

                        /* Metadata is removed first and written last: never without its manifest. */
                        if (!exists_rel(f, rel))
                                fail_msg("%s: %u.json exists without %u.yaml", when, j, j);
                        if (j > sc.newest)
                                sc.newest = j;
                }
                if (y > 0) {
                        _cleanup_free_ char *rel_json = rev_rel(y, "json"), *rel_yaml = rev_rel(y, "yaml"),
                                            *bytes = NULL;
                        size_t size = 0;

                        if (!exists_rel(f, rel_json)) {
                                sc.orphan_yaml++;
                                continue;
                        }
                        bytes = read_rel(f, rel_yaml, &size);
                        if (bytes && size == live_size && memcmp(bytes, live, size) == 0 && y > sc.live)
                                sc.live = y;
                }
        }
        closedir(d);
        if (sc.live == 0 && !live_is_original)
                fail_msg("%s: the live manifest equals no stored revision:\n<<%s>>", when, live);
        *ret = sc;
}

/* Removes what the store failed to clean up, so that the next iteration observes only its own crash. */
static void repair(const fixture *f) {
        const char *dirs[] = { STORE_MANIFEST_DIR, COMPONENT_DIR };

        for (size_t i = 0; i < ELEMENTSOF(dirs); i++) {
                _cleanup_close_ int fd = openat(f->rootfd, dirs[i], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                struct dirent *de;
                DIR *d;

                assert_true(fd >= 0);
                d = fdopendir(fcntl(fd, F_DUPFD_CLOEXEC, 3));
                assert_non_null(d);
                while ((de = readdir(d))) {
                        unsigned y = revision_file(de->d_name, "yaml");
                        char json[32];

                        snprintf(json, sizeof(json), "%u.json", y);
                        if (is_temporary(de->d_name) ||
                            (y > 0 && faccessat(fd, json, F_OK, AT_SYMLINK_NOFOLLOW) < 0))
                                assert_int_equal(unlinkat(fd, de->d_name, 0), 0);
                }
                closedir(d);
        }
}

/* Runs one child; kills it after delay_us (never when delay_us is UINT64_MAX). Returns how long
 * the commits ran (µs) when the child finished on its own. */
static uint64_t crash_once(const fixture *f, uint64_t delay_us, const char *original, size_t original_size,
                           crash_stats *st) {
        _cleanup_(store_freep) store *s = NULL;
        _cleanup_(revision_list_done) revision_list before = {}, after = {};
        _cleanup_free_ char *err = NULL, *when = NULL;
        uint64_t start, elapsed;
        int p[2], status, lock = -EBADF, r;
        unsigned live = 0;
        scan sc = {};
        pid_t pid;
        char c;

        when = strdup_printf("iteration %u (kill after %" PRIu64 " us)", st->iterations, delay_us);
        assert_non_null(when);
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        fflush(stdout);
        fflush(stderr);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                close(p[0]);
                crash_child(f, st->sequence, p[1]);
        }
        close(p[1]);
        st->sequence++;
        if (read(p[0], &c, 1) != 1) {
                close(p[0]);
                assert_int_equal(waitpid(pid, &status, 0), pid);
                fail_msg("%s: the child failed before committing (status 0x%x)", when, (unsigned) status);
        }
        close(p[0]);
        start = now_us();
        if (delay_us != UINT64_MAX) {
                if (delay_us > 0) {
                        struct timespec ts = { .tv_sec = (time_t) (delay_us / 1000000u),
                                               .tv_nsec = (long) (delay_us % 1000000u) * 1000 };

                        (void) nanosleep(&ts, NULL);
                }
                (void) kill(pid, SIGKILL);
        }
        assert_int_equal(waitpid(pid, &status, 0), pid);
        elapsed = now_us() - start;
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
                st->killed++;
        else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                fail_msg("%s: the child failed (status 0x%x)", when, (unsigned) status);
        st->iterations++;

        /* The disk exactly as the crash left it. */
        scan_after_crash(f, original, original_size, when, &sc);
        if (sc.temp_manifest_dir > 0)
                st->temp_manifest_dir++;
        if (sc.temp_revisions > 0)
                st->temp_revisions++;
        if (sc.orphan_yaml > 0)
                st->orphan_yaml++;
        if (sc.temp_manifest_dir > 0 || sc.temp_revisions > 0 || sc.orphan_yaml > 0)
                st->mid_write++;
        if (sc.newest > st->newest && sc.live > 0 && sc.newest > sc.live)
                st->not_swapped++; /* this child recorded a revision it did not swap in */

        /* (c) the next cplet cleans up and finds the live manifest already recorded. */
        r = store_lock(f->root, "test-store parent", &lock, &err);
        if (r < 0)
                fail_msg("%s: store_lock: %d %s", when, r, err ?: "");
        r = store_open(f->root, CRASH_KEEP, true, &s, &err);
        if (r < 0)
                fail_msg("%s: store_open: %d %s", when, r, err ?: "");
        list_revisions(s, &before);
        r = store_sync_live(s, COMPONENT, LIVE, &upgrade_info, &live, &err);
        if (r < 0)
                fail_msg("%s: store_sync_live: %d %s", when, r, err ?: "");
        list_revisions(s, &after);
        if (after.n != before.n)
                fail_msg("%s: store_sync_live recorded revision %u (\"%s\"): the live manifest was not a "
                         "revision",
                         when, live, after.n > 0 ? after.items[after.n - 1].reason : "");
        if (sc.live > 0 && live != sc.live)
                fail_msg("%s: live revision is %u, the bytes are those of %u", when, live, sc.live);
        close(lock);

        memset(&sc, 0, sizeof(sc));
        scan_after_crash(f, original, original_size, when, &sc);
        if (sc.temp_manifest_dir > 0 || sc.temp_revisions > 0 || sc.orphan_yaml > 0) {
                /* Reported at the end, with the statistics; repaired so that measuring goes on. */
                if (st->cleanup_failures++ == 0)
                        snprintf(st->first_failure, sizeof(st->first_failure),
                                 "%s: after store_open(writable) + store_sync_live: %u temporaries in the "
                                 "manifest "
                                 "directory, %u in the revisions directory, %u N.yaml without N.json",
                                 when, sc.temp_manifest_dir, sc.temp_revisions, sc.orphan_yaml);
                repair(f);
        }
        assert_listing(f, STORE_MANIFEST_DIR, LIVE);
        st->newest = sc.newest;
        return elapsed;
}

static void test_crash_consistency(void **state) {
        fixture *f = *state;
        crash_stats st = {};
        uint64_t run_us = 0, start = now_us(), span;

        write_str(f, LIVE_PATH, original_yaml, 0600);
        {
                _cleanup_(store_freep) store *s = open_store(f, CRASH_KEEP, true);

                assert_int_equal(sync_live(s, &upgrade_info), 1);
        }

        /* How long a whole series of commits takes here (fsync speed, sanitizers); the fastest run,
         * as fsync latency has spikes. */
        for (unsigned i = 0; i < 5; i++) {
                uint64_t t = crash_once(f, UINT64_MAX, original_yaml, strlen(original_yaml), &st);

                if (i == 0 || t < run_us)
                        run_us = t;
        }
        assert_int_equal(st.killed, 0);
        st.iterations = 0;

        /* Kill after 0 … 1.2× that, spread evenly so that the kills land all over the writes;
         * capped so that a slow disk does not make the test slow. */
        span = run_us + run_us / 5 + 1;
        if (span > CRASH_SPAN_MAX_US)
                span = CRASH_SPAN_MAX_US;
        for (unsigned i = 0; i < CRASH_ITERATIONS; i++) {
                uint64_t delay = span * i / CRASH_ITERATIONS;

                (void) crash_once(f, delay, original_yaml, strlen(original_yaml), &st);
        }

        printf("# diagnostic: crash: %u iterations in %.1f s (a series of %d commits takes ~%" PRIu64
               " us); %u killed before finishing, %u left a write in progress (%u temporary in the manifest "
               "dir, "
               "%u temporary in the revisions dir, %u N.yaml without N.json), %u killed between N.json and "
               "the "
               "swap; %u left leftovers the next cplet did not clean up\n",
               st.iterations, (double) (now_us() - start) / 1e6, CRASH_COMMITS, run_us, st.killed,
               st.mid_write, st.temp_manifest_dir, st.temp_revisions, st.orphan_yaml, st.not_swapped,
               st.cleanup_failures);
        fflush(stdout);

        if (st.cleanup_failures > 0)
                fail_msg("%u of %u iterations: %s", st.cleanup_failures, st.iterations, st.first_failure);

        assert_true(st.iterations >= 200);
        /* The test must have crashed the writer in the middle of writes, or it proved nothing. */
        assert_true(st.killed > st.iterations / 2);
        assert_true(st.mid_write > 0);
}

/* ---------------------------------------------------------------------------------------------
 * The swap is a compare-and-swap: a hand edit made after the revision was prepared (while a
 * rollout waited on another component) is never overwritten. */

static void test_swap_refuses_a_changed_live_manifest(void **state) {
        fixture *f = *state;
        _cleanup_(store_freep) store *s = NULL;
        _cleanup_free_ char *err = NULL, *live = NULL;
        json_auto_t *pod = NULL;
        static const char edited[] = "# edited by hand\n";
        unsigned n = 0;
        size_t size = 0;
        int r;

        write_str(f, LIVE_PATH, original_yaml, 0600);
        s = open_store(f, 0, true);
        assert_int_equal(sync_live(s, &upgrade_info), 1);
        assert_int_equal(store_check_live(s, COMPONENT, LIVE, 1, NULL), 0);

        pod = pod_with_tag("v1.31.0");
        r = store_prepare(s, COMPONENT, LIVE, pod, &upgrade_info, 1, &n, &err);
        assert_int_equal(r, 0);
        assert_int_equal(n, 2);

        write_str(f, LIVE_PATH, edited, 0600);
        assert_int_equal(store_check_live(s, COMPONENT, LIVE, 1, NULL), -ESTALE);
        r = store_swap(s, COMPONENT, LIVE, n, &err);
        assert_int_equal(r, -ESTALE);
        assert_true(str_contains(err, "changed outside cplet"));
        assert_true(str_contains(err, LIVE));
        live = read_rel(f, LIVE_PATH, &size);
        assert_string_equal(live, edited);

        /* Once the edit is put back, the same swap goes through. */
        write_str(f, LIVE_PATH, original_yaml, 0600);
        assert_int_equal(store_swap(s, COMPONENT, LIVE, n, NULL), 0);
        assert_live_is(f, 2);
        assert_int_equal(store_check_live(s, COMPONENT, LIVE, 2, NULL), 0);
        assert_int_equal(store_check_live(s, COMPONENT, LIVE, 1, NULL), -ESTALE);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_sha256_hex_vector),
                cmocka_unit_test_setup_teardown(test_adopt, setup, teardown),
                cmocka_unit_test_setup_teardown(test_commit, setup, teardown),
                cmocka_unit_test_setup_teardown(test_external_edit, setup, teardown),
                cmocka_unit_test_setup_teardown(test_list_read_live_number, setup, teardown),
                cmocka_unit_test_setup_teardown(test_retention, setup, teardown),
                cmocka_unit_test_setup_teardown(test_retention_keeps_newest_healthy, setup, teardown),
                cmocka_unit_test_setup_teardown(test_retention_keeps_live_when_not_newest, setup, teardown),
                cmocka_unit_test_setup_teardown(test_refuses_writable_manifest_dir, setup, teardown),
                cmocka_unit_test_setup_teardown(test_refuses_writable_state_dir, setup, teardown),
                cmocka_unit_test_setup_teardown(test_refuses_symlinked_dirs, setup, teardown),
                cmocka_unit_test_setup_teardown(test_refuses_symlinked_live_manifest, setup, teardown),
                cmocka_unit_test_setup_teardown(test_refuses_symlinked_component_dir, setup, teardown),
                cmocka_unit_test_setup_teardown(test_lock, setup, teardown),
                cmocka_unit_test_setup_teardown(test_orphan_yaml_removed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stale_temporaries_removed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_read_only_open_changes_nothing, setup, teardown),
                cmocka_unit_test_setup_teardown(test_swap_refuses_a_changed_live_manifest, setup, teardown),
                cmocka_unit_test_setup_teardown(test_crash_consistency, setup, teardown),
        };

        umask(022);
        cmocka_set_message_output(CM_OUTPUT_TAP);
        return cmocka_run_group_tests(tests, NULL, NULL);
}
