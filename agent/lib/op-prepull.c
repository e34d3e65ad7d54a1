/* SPDX-License-Identifier: Apache-2.0 */
/* An upgrade's images pulled before its first write (prepull.h), told through the operation's
 * progress callback and warnings. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "op-internal.h"
#include "prepull.h"

int op_parse_pull_timeout(const char *text, uint64_t *ret_usec, char **ret_error) {
        uint64_t usec = PREPULL_TIMEOUT_DEFAULT_USEC;

        if (text && (parse_duration(text, &usec) < 0 || usec == 0))
                return set_error(ret_error, -EINVAL, "--pull-timeout \"%s\": expected a duration such as 30s, 5m",
                                 text);
        *ret_usec = usec;
        return 0;
}

void op_pulls_done(op_pulls *s) {
        strv_free(s->pulled);
        *s = (op_pulls){};
}

static void on_pull_progress(const prepull_event *ev, void *userdata) {
        const op_options *o = userdata;
        rollout_event re = { .event = ev->event, .kind = "image", .detail = ev->image, .step = ev->index,
                             .n_planned = ev->n, .elapsed_usec = ev->elapsed_usec };

        o->progress(&re, o->userdata);
}

/* Where the pull cannot happen, the upgrade goes on as before: the kubelet pulls each image
 * when its step's manifest is written. Said once. */
static int find_runtime(op_env *e, op_pulls *s, char **ret_client, char ***ret_args) {
        _cleanup_free_ char *client = NULL;
        int r;

        r = prepull_find_client(getenv("PATH"), &client);
        if (r == 0)
                op_warn(e, "no container runtime client (crictl) found: images are pulled by the kubelet at each "
                           "step");
        if (r > 0) {
                r = prepull_endpoint_args(e->root, client, environ, ret_args);
                if (r == 0)
                        op_warn(e,
                                "no container runtime endpoint found (no %s/etc/crictl.yaml, none of the sockets "
                                "/run/containerd/containerd.sock, /run/crio/crio.sock, /var/run/cri-dockerd.sock "
                                "under %s): images are pulled by the kubelet at each step",
                                streq(e->root, "/") ? "" : e->root, e->root);
        }
        if (r < 0)
                return r;
        s->unavailable = r == 0;
        *ret_client = TAKE_PTR(client);
        return 0;
}

static bool strv_has(char *const *l, const char *s) {
        for (; l && *l; l++)
                if (streq(*l, s))
                        return true;
        return false;
}

static size_t strv_size(char *const *l) {
        size_t n = 0;

        while (l && l[n])
                n++;
        return n;
}

/* Moves every image of `pulled_now` (left empty) to the end of s->pulled, so that the plan made
 * again under the lock pulls only what is new. */
static int remember(op_pulls *s, char **pulled_now) {
        size_t k = strv_size(s->pulled), n = strv_size(pulled_now);
        char **m = realloc(s->pulled, (k + n + 1) * sizeof(char *));

        if (!m)
                return -ENOMEM;
        s->pulled = m;
        for (size_t i = 0; i < n; i++)
                m[k++] = TAKE_PTR(pulled_now[i]);
        m[k] = NULL;
        return 0;
}

int op_prepull(op_env *e, const op_options *o, const plan *p, op_pulls *s, char **ret_error) {
        _cleanup_strv_free_ char **images = NULL, **args = NULL;
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        _cleanup_free_ char *client = NULL;
        prepull_options po;
        size_t n = 0;
        int r;

        if (o->skip_pull || s->unavailable)
                return 0;
        r = prepull_plan_images(p, &images);
        if (r < 0)
                return set_error(ret_error, r, "cannot list the plan's images: %s", strerror(-r));
        /* The plan made again under the lock usually needs exactly the images pulled before it. */
        for (size_t i = 0; images[i]; i++)
                if (strv_has(s->pulled, images[i]))
                        free(images[i]);
                else
                        images[n++] = images[i];
        images[n] = NULL;
        if (n == 0)
                return 0;
        r = find_runtime(e, s, &client, &args);
        if (r < 0)
                return set_error(ret_error, r, "cannot look for a container runtime: %s", strerror(-r));
        if (s->unavailable)
                return 0;
        event = o->event ? sd_event_ref(o->event) : NULL;
        if (!event && sd_event_new(&event) < 0)
                return set_error(ret_error, -ENOMEM, "cannot set up the event loop");
        po = (prepull_options){ .timeout_usec = o->pull_timeout_usec, .event = event, .interrupted = o->interrupted,
                                .progress = o->progress ? on_pull_progress : NULL, .userdata = (void *) o };
        r = prepull_images(client, args, images, &po, ret_error);
        if (r < 0)
                return r;
        r = remember(s, images);
        return r < 0 ? set_error(ret_error, r, "out of memory") : 0;
}
