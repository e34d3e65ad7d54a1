/* SPDX-License-Identifier: Apache-2.0 */
/* The operations that only read: status, history, diff. None takes the lock. */

#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "macro.h"
#include "op-internal.h"
#include "preflight.h"

/* Issue 11: what the next minor release removes of each component's command line, so that it
 * can be dropped before a plan to that release refuses it. */
static int removed_in_next_minor(const node *n, op_status_result *st) {
        st->removed_next = calloc(n->n_components + 1, sizeof(preflight_report));
        st->next_known = calloc(n->n_components + 1, sizeof(bool));
        if (!st->removed_next || !st->next_known)
                return -ENOMEM;
        for (size_t i = 0; i < n->n_components; i++) {
                const component *co = &n->components[i];
                kminor next;
                int r;

                if (!co->binary_known || !co->cmdline_ok)
                        continue;
                next = kminor_add(kversion_minor(&co->binary), 1);
                if (!preflight_release_known(next))
                        continue;
                r = preflight_removed_in(co->plugin->name, co->file, next, &co->cmdline, &st->removed_next[i]);
                if (r < 0)
                        return r;
                st->next_known[i] = true;
        }
        return 0;
}

int op_status(op_env *e, op_status_result *ret, char **ret_error) {
        _cleanup_(node_freep) node *n = NULL;
        _cleanup_free_ char *journal_error = NULL;
        _cleanup_(journal_freep) journal *j = NULL;
        _cleanup_(store_freep) store *s = NULL;
        int r;

        /* Unusable manifests are shown, not refused: status tells the truth about the node. */
        r = node_load_full(e->root, e->plugins, NODE_LOAD_KEEP_BROKEN, &n, ret_error);
        if (r < 0)
                return r;
        /* An unreadable journal does not hide the node: status says both. A state directory
         * cplet may not use is no journal problem: every write says so itself. */
        if (store_open(e->root, 0, false, &s, NULL) >= 0) {
                r = journal_load(s, &j, &journal_error);
                if (r < 0 && r != -ENOENT && !journal_error)
                        journal_error = strdup("the rollout journal cannot be read");
                if (j && !journal_in_progress(j))
                        j = journal_free(j);
        }
        *ret = (op_status_result){ .interrupted = j ? journal_to_json(j) : NULL,
                                   .journal_error = TAKE_PTR(journal_error) };
        r = removed_in_next_minor(n, ret);
        ret->node = TAKE_PTR(n);
        if (r < 0)
                op_status_result_done(ret);
        return r;
}

void op_status_result_done(op_status_result *r) {
        for (size_t i = 0; r->removed_next && r->node && i < r->node->n_components; i++)
                preflight_report_done(&r->removed_next[i]);
        free(r->removed_next);
        free(r->next_known);
        node_free(r->node);
        json_decref(r->interrupted);
        free(r->journal_error);
        *r = (op_status_result){};
}

static int find_component(const node *n, const char *name, const component **ret, char **ret_error) {
        const component *co = node_find(n, name);

        if (!co)
                return set_error(ret_error, -EINVAL, "no component \"%s\" on this node (see cplet status)", name);
        *ret = co;
        return 0;
}

static int history_entry(store *s, const component *co, op_history_entry *ret, char **ret_error) {
        _cleanup_(revision_list_done) revision_list l = {};
        _cleanup_free_ char *live = NULL;
        size_t size;
        int r;

        r = store_list(s, co->plugin->name, &l, ret_error);
        if (r >= 0)
                r = store_read_live(s, co->file, &live, &size, ret_error);
        if (r < 0)
                return r;
        *ret = (op_history_entry){ .component = co, .live = store_live_number(&l, live, size), .revisions = l };
        l = (revision_list){};
        return 0;
}

int op_history(op_env *e, const char *name, op_history_result *ret, char **ret_error) {
        _cleanup_(op_history_result_done) op_history_result h = {};
        _cleanup_(store_freep) store *s = NULL;
        const component *co;
        int r;

        r = op_load_node(e, &h.node, ret_error);
        if (r >= 0 && name)
                r = find_component(h.node, name, &co, ret_error);
        if (r >= 0)
                r = store_open(e->root, 0, false, &s, ret_error);
        if (r < 0)
                return r;
        h.entries = calloc(h.node->n_components + 1, sizeof(op_history_entry));
        if (!h.entries)
                return -ENOMEM;
        for (size_t i = 0; i < h.node->n_components; i++) {
                if (name && !streq(name, h.node->components[i].plugin->name))
                        continue;
                r = history_entry(s, &h.node->components[i], &h.entries[h.n_entries], ret_error);
                if (r < 0)
                        return r;
                h.n_entries++;
        }
        *ret = h;
        h = (op_history_result){};
        return 0;
}

void op_history_result_done(op_history_result *r) {
        for (size_t i = 0; i < r->n_entries; i++)
                revision_list_done(&r->entries[i].revisions);
        free(r->entries);
        node_free(r->node);
        *r = (op_history_result){};
}

static int parse_revision_number(const char *s, unsigned *ret, char **ret_error) {
        char *end;
        unsigned long n;

        errno = 0;
        n = strtoul(s, &end, 10);
        if (!isdigit((unsigned char) s[0]) || *end || errno != 0 || n == 0 || n > 999999999)
                return set_error(ret_error, -EINVAL, "\"%s\" is not a revision number (see cplet history)", s);
        *ret = (unsigned) n;
        return 0;
}

int op_diff_revisions(op_env *e, const char *name, const char *a, const char *b, op_diff *ret, char **ret_error) {
        _cleanup_(node_freep) node *n = NULL;
        _cleanup_(store_freep) store *s = NULL;
        _cleanup_(op_diff_done) op_diff d = {};
        const component *co = NULL;
        unsigned ra, rb = 0;
        size_t size;
        int r;

        r = parse_revision_number(a, &ra, ret_error);
        if (r >= 0 && b)
                r = parse_revision_number(b, &rb, ret_error);
        if (r >= 0)
                r = op_load_node(e, &n, ret_error);
        if (r >= 0)
                r = find_component(n, name, &co, ret_error);
        if (r >= 0)
                r = store_open(e->root, 0, false, &s, ret_error);
        if (r >= 0)
                r = store_read(s, co->plugin->name, ra, &d.before, &size, ret_error);
        if (r >= 0)
                r = rb ? store_read(s, co->plugin->name, rb, &d.after, &size, ret_error)
                       : store_read_live(s, co->file, &d.after, &size, ret_error);
        if (r < 0)
                return r;
        d.label_a = strdup_printf("%s revision %u", co->plugin->name, ra);
        d.label_b = rb ? strdup_printf("%s revision %u", co->plugin->name, rb)
                       : strdup_printf("%s/%s (live)", s->manifest_dir, co->file);
        if (!d.label_a || !d.label_b)
                return -ENOMEM;
        *ret = d;
        d = (op_diff){};
        return 0;
}
