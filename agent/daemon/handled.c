/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <unistd.h>
#include <string.h>

#include "fs-util.h"
#include "handled.h"
#include "macro.h"

void handled_done(handled *h) {
        free(h->id);
        *h = (handled){};
}

int handled_load(store *s, handled *ret, char **ret_error) {
        _cleanup_free_ char *data = NULL;
        json_auto_t *j = NULL;
        json_t *id, *generation, *steps;
        size_t size;
        int r;

        if (s->state_fd < 0)
                return -ENOENT;
        r = read_file_at(s->state_fd, HANDLED_FILE, 4096, &data, &size);
        if (r == -ENOENT)
                return r;
        if (r < 0)
                return set_error(ret_error, r, "%s/%s/%s: %s", s->root, STORE_STATE_DIR, HANDLED_FILE, strerror(-r));
        j = json_loadb(data, size, JSON_REJECT_DUPLICATES, NULL);
        id = json_object_get(j, "id");
        generation = json_object_get(j, "generation");
        steps = json_object_get(j, "steps"); /* since the daemon reports resumed steps by the plan */
        if (!json_is_object(j) || json_object_size(j) != 2u + !!steps || !json_is_string(id) ||
            json_string_length(id) == 0 || json_string_length(id) > TARGET_ID_MAX || !json_is_integer(generation) ||
            json_integer_value(generation) < 1 ||
            (steps && (!json_is_integer(steps) || json_integer_value(steps) < 0 || json_integer_value(steps) > 10000)))
                return set_error(ret_error, -EINVAL,
                                 "%s/%s/%s: not the record of a handled target ({\"id\": ..., \"generation\": N, "
                                 "\"steps\": N})",
                                 s->root, STORE_STATE_DIR, HANDLED_FILE);
        ret->n_steps = steps ? (size_t) json_integer_value(steps) : 0;
        ret->id = strdup(json_string_value(id));
        ret->generation = (uint64_t) json_integer_value(generation);
        return ret->id ? 0 : -ENOMEM;
}

int handled_save(store *s, const char *id, uint64_t generation, size_t n_steps, char **ret_error) {
        _cleanup_free_ char *text = NULL;
        json_auto_t *j = json_pack("{s:s, s:I, s:I}", "id", id, "generation", (json_int_t) generation, "steps",
                                   (json_int_t) n_steps);
        int r;

        if (s->state_fd < 0)
                return -EROFS;
        text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        if (!text)
                return -ENOMEM;
        r = write_file_atomic(s->state_fd, HANDLED_FILE, text, strlen(text), 0600);
        if (r < 0)
                return set_error(ret_error, r, "%s/%s/%s: %s", s->root, STORE_STATE_DIR, HANDLED_FILE, strerror(-r));
        return 0;
}

int handled_forget(store *s, char **ret_error) {
        if (s->state_fd < 0)
                return -EROFS;
        if (unlinkat(s->state_fd, HANDLED_FILE, 0) < 0 && errno != ENOENT)
                return set_error(ret_error, -errno, "%s/%s/%s: %m", s->root, STORE_STATE_DIR, HANDLED_FILE);
        if (fsync(s->state_fd) < 0)
                return set_error(ret_error, -errno, "%s/%s: %m", s->root, STORE_STATE_DIR);
        return 0;
}

bool handled_should_run(const handled *last, const target *t) {
        return !last->id || !streq(last->id, t->id) || t->generation > last->generation;
}
