/* SPDX-License-Identifier: Apache-2.0 */
/* What every operation needs before it does anything: the node's configuration and plugins,
 * the node as it is, the checks that refuse a write before the lock, and the lock. */

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/statvfs.h>

#include "cplet-build.h"
#include "macro.h"
#include "op-internal.h"

/* A write needs room for a few revisions and the journal; a filesystem with less is refused
 * before anything is written, rather than failing half-way. */
#define OP_FREE_BYTES_MIN (1024 * 1024)

int op_env_new(const char *root, const char *config_path, const char *plugin_dir, const char *holder,
               op_env **ret, char **ret_error) {
        _cleanup_(op_env_freep) op_env *e = calloc(1, sizeof(op_env));
        int r;

        if (!e)
                return -ENOMEM;
        e->root = strdup(root);
        e->holder = strdup(holder ?: "cplet");
        if (!e->root || !e->holder)
                return -ENOMEM;
        r = config_load(root, config_path, &e->config, ret_error);
        if (r < 0)
                return r;
        r = plugin_set_load(plugin_dir ?: e->config.plugin_dir ?: CPLET_PLUGIN_DIR, &e->plugins, ret_error);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(e);
        return 0;
}

op_env *op_env_free(op_env *e) {
        if (!e)
                return NULL;
        plugin_set_free(e->plugins);
        config_done(&e->config);
        free(e->root);
        free(e->holder);
        free(e);
        return NULL;
}

op_outcome op_outcome_of(int r) {
        if (r >= 0)
                return OP_OK;
        switch (-r) {
        case EINTR:
                return OP_INTERRUPTED;
        case EINVAL:
        case E2BIG:
        case EOPNOTSUPP:
        case ELOOP:
        case EPERM:
        case EACCES:
        case EEXIST:
        case EPROTO:
        case ERANGE:
        case ENOENT:
        case ENOTDIR:
        case EBUSY:   /* another writer holds the lock */
        case ESTALE:  /* the node changed outside cplet since the journal */
        case EILSEQ:  /* a name that is not valid UTF-8 */
                return OP_REFUSED;
        default:
                return OP_FAILED;
        }
}

int op_parse_rollout_options(const char *stable_for, const char *step_timeout, const char *on_failure,
                             rollout_options *ret, char **ret_error) {
        rollout_options o = {
                .stable_usec = ROLLOUT_STABLE_DEFAULT_USEC,
                .step_timeout_usec = ROLLOUT_TIMEOUT_DEFAULT_USEC,
                .unwind_on_failure = true,
        };

        if (stable_for && parse_duration(stable_for, &o.stable_usec) < 0)
                return set_error(ret_error, -EINVAL, "--stable-for \"%s\": expected a duration such as 0s, 10s, 1m30s",
                                 stable_for);
        if (step_timeout && (parse_duration(step_timeout, &o.step_timeout_usec) < 0 || o.step_timeout_usec == 0))
                return set_error(ret_error, -EINVAL, "--step-timeout \"%s\": expected a duration such as 30s, 5m",
                                 step_timeout);
        if (o.stable_usec >= o.step_timeout_usec)
                return set_error(ret_error, -EINVAL,
                                 "--stable-for %s is not shorter than --step-timeout %s: every step would time out "
                                 "before its health held that long",
                                 stable_for ?: "10s", step_timeout ?: "5m");
        if (on_failure) {
                if (streq(on_failure, "rollback"))
                        o.unwind_on_failure = true;
                else if (streq(on_failure, "stop"))
                        o.unwind_on_failure = false;
                else
                        return set_error(ret_error, -EINVAL, "--on-failure \"%s\": expected rollback or stop",
                                         on_failure);
        }
        *ret = o;
        return 0;
}

void op_warn(op_env *e, const char *fmt, ...) {
        _cleanup_free_ char *m = NULL;
        va_list ap;

        if (!e->warn)
                return;
        va_start(ap, fmt);
        m = strdup_vprintf(fmt, ap);
        va_end(ap);
        if (m)
                e->warn(m, e->warn_userdata);
}

int op_high_water(op_env *e, kminor *ret, char **ret_error) {
        _cleanup_(store_freep) store *s = NULL;
        char m[KMINOR_STRING_MAX];
        int r;

        *ret = KMINOR(0, 0);
        if (store_open(e->root, 0, false, &s, NULL) < 0)
                return 0; /* nothing stored yet; a store that cannot be opened refuses writes elsewhere */
        r = store_high_water_get(s, ret, ret_error);
        if (r > 0) {
                kminor_format(*ret, m);
                op_warn(e, "%s/%s/%s was missing; rebuilt from the revisions' metadata: %s", e->root,
                        STORE_STATE_DIR, STORE_HIGH_WATER_FILE, m);
        }
        return r < 0 ? r : 0;
}

int op_load_node(op_env *e, node **ret, char **ret_error) {
        return node_load(e->root, e->plugins, ret, ret_error);
}

void op_new_plan_id(char buf[static 32]) {
        snprintf(buf, 32, "plan-%08x", (uint32_t) random_u64());
}

int op_unfinished_journal(const char *root, journal **ret, char **ret_error) {
        _cleanup_(store_freep) store *s = NULL;
        _cleanup_(journal_freep) journal *j = NULL;
        int r;

        r = store_open(root, 0, false, &s, ret_error);
        if (r < 0)
                return r;
        r = journal_load(s, &j, ret_error);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        if (!journal_in_progress(j))
                return 0;
        *ret = TAKE_PTR(j);
        return 1;
}

/* Refuses while another writer holds the lock, naming it: a rollout running right now is not
 * an interrupted one. */
static int refuse_if_locked(const char *root, char **ret_error) {
        _cleanup_free_ char *holder = NULL;
        const char *space;

        if (store_lock_holder(root, &holder) <= 0)
                return 0;
        space = holder ? strchr(holder, ' ') : NULL;
        if (space)
                return set_error(ret_error, -EBUSY,
                                 "another cplet is changing this node: pid %.*s (%s) holds the lock; wait for it to "
                                 "finish",
                                 (int) (space - holder), holder, space + 1);
        return set_error(ret_error, -EBUSY, "another cplet is changing this node (it holds the lock); wait for it to "
                                            "finish");
}

static int refuse_if_unfinished(const char *root, char **ret_error) {
        _cleanup_(journal_freep) journal *j = NULL;
        _cleanup_free_ char *error = NULL;
        int r;

        r = op_unfinished_journal(root, &j, &error);
        if (r < 0)
                return set_error(ret_error, r, "%s; no write is possible until the journal is readable (move it "
                                               "aside only if no rollout was running)",
                                 error ?: strerror(-r));
        if (r == 0)
                return 0;
        return set_error(ret_error, -EINVAL,
                         "rollout %s (%s) did not finish: run cplet resume to continue it or cplet abort to undo it "
                         "first",
                         j->plan_id, j->command);
}

/* A read-only or full filesystem stops a write before it starts rather than half-way: the same
 * failure (EROFS, ENOSPC), found before anything is touched. Checked at the nearest existing
 * directory at or above ROOT/path. */
static int check_filesystem(const char *root, const char *path, char **ret_error) {
        _cleanup_free_ char *dir = strdup_printf("%s/%s", streq(root, "/") ? "" : root, path);
        struct statvfs sv;

        if (!dir)
                return -ENOMEM;
        while (statvfs(dir, &sv) < 0) {
                char *slash = strrchr(dir, '/');

                if (errno != ENOENT || !slash || slash == dir)
                        return set_error(ret_error, -errno, "%s: %s", dir, strerror(errno));
                *slash = 0;
        }
        if (sv.f_flag & ST_RDONLY)
                return set_error(ret_error, -EROFS, "%s: %s: cplet writes nothing there", dir, strerror(EROFS));
        if ((unsigned long long) sv.f_bavail * sv.f_frsize < OP_FREE_BYTES_MIN)
                return set_error(ret_error, -ENOSPC,
                                 "%s: %s (less than 1 MiB free): cplet writes nothing rather than fail half-way; "
                                 "free some space first",
                                 dir, strerror(ENOSPC));
        return 0;
}

int op_preflight_write(op_env *e, const node *n, bool recovery, char **ret_error) {
        _cleanup_(store_freep) store *s = NULL;
        int r;

        r = refuse_if_locked(e->root, ret_error);
        if (r >= 0 && !recovery)
                r = refuse_if_unfinished(e->root, ret_error);
        if (r < 0)
                return r;
        /* Ownership, modes and symbolic links of the manifest and state directories. */
        r = store_open(e->root, 0, false, &s, ret_error);
        if (r < 0)
                return r;
        /* Every revision a write may read back (adoption compares with them, unwinds restore
         * them) must be readable. */
        for (size_t i = 0; i < n->n_components; i++) {
                _cleanup_(revision_list_done) revision_list l = {};

                r = store_list(s, n->components[i].plugin->name, &l, ret_error);
                if (r < 0)
                        return r;
        }
        r = check_filesystem(e->root, STORE_MANIFEST_DIR, ret_error);
        if (r >= 0)
                r = check_filesystem(e->root, STORE_STATE_DIR, ret_error);
        if (r >= 0)
                r = check_filesystem(e->root, STORE_LOCK_DIR, ret_error);
        return r;
}

int op_lock(op_env *e, bool recovery, int *ret_fd, char **ret_error) {
        _cleanup_close_ int fd = -EBADF;
        int r;

        r = store_lock(e->root, e->holder, &fd, ret_error);
        if (r < 0)
                return r;
        /* Again, holding the lock: a rollout killed since the first look left its journal. */
        if (!recovery) {
                r = refuse_if_unfinished(e->root, ret_error);
                if (r < 0)
                        return r;
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}

int op_refuse_ungateable(const node *n, const char *name, char **ret_error) {
        for (size_t i = 0; i < n->n_components; i++) {
                const component *co = &n->components[i];

                if (name && !streq(co->plugin->name, name))
                        continue;
                if (co->cmdline_ok && co->cmdline.entrypoint)
                        return set_error(ret_error, -EINVAL,
                                         "%s (%s): the container has no command (the image's entrypoint runs), so "
                                         "cplet cannot recognise its process; add command: [%s] to the manifest, or "
                                         "pass --no-wait",
                                         co->plugin->name, co->file, co->plugin->name);
        }
        return 0;
}

void op_diff_done(op_diff *d) {
        free(d->label_a);
        free(d->label_b);
        free(d->before);
        free(d->after);
        *d = (op_diff){};
}

void op_result_done(op_result *r) {
        for (size_t i = 0; i < r->n_diffs; i++)
                op_diff_done(&r->diffs[i]);
        free(r->diffs);
        for (size_t i = 0; i < r->n_written; i++) {
                free(r->written[i].manifest);
                free(r->written[i].image);
                free(r->written[i].reason);
        }
        free(r->written);
        *r = (op_result){};
}
