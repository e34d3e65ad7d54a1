/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Pulling the images a plan needs into the node's container runtime before its first step,
 * so that a step's downtime no longer includes a download. Through the runtime's own client,
 * crictl, as a person would: it speaks CRI to whatever runtime the kubelet uses (containerd,
 * CRI-O, cri-dockerd), and the runtime's registry configuration (mirrors, credentials)
 * applies. Each pull is a child process on the caller's sd-event loop, bounded by a timeout. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

#include "plan.h"

#define PREPULL_TIMEOUT_DEFAULT_USEC (5ULL * 60 * 1000 * 1000)

/* crictl's default endpoints (cri-tools cmd/crictl/main_unix.go), in its order: tried when
 * neither a configuration file nor the environment names one. */
extern const char *const prepull_default_sockets[];

typedef struct prepull_event {
        const char *event;     /* "pull" (starting), "pulled" */
        const char *image;
        size_t index, n;       /* 1-based index among the images to pull */
        uint64_t elapsed_usec; /* "pulled": how long the pull took */
        const char *image_ref; /* "pulled": the runtime's image id as crictl printed it (NULL: none) */
} prepull_event;

typedef void (*prepull_progress_fn)(const prepull_event *ev, void *userdata);

typedef struct prepull_options {
        uint64_t timeout_usec; /* per image (0: PREPULL_TIMEOUT_DEFAULT_USEC) */
        sd_event *event;
        const volatile bool *interrupted; /* set by the caller's signal sources: ends a pull */
        prepull_progress_fn progress;     /* may be NULL */
        void *userdata;
} prepull_options;

/* The images a plan's binary steps write, each once, in step order (a NULL-terminated list,
 * empty when no step changes a binary). */
int prepull_plan_images(const plan *p, char ***ret);

/* crictl in the search path (NULL: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
 * as systemd gives services): 1 and its path, 0 when there is none. */
int prepull_find_client(const char *search_path, char **ret);

/* The global options that point crictl at the node's runtime, as crictl itself would find it
 * on the node under `root` ("/" on a real node): nothing when the environment already names
 * one (CONTAINER_RUNTIME_ENDPOINT, IMAGE_SERVICE_ENDPOINT, CRI_CONFIG_FILE: environ as given)
 * or a crictl.yaml lies next to the client; --config ROOT/etc/crictl.yaml when that exists;
 * else --runtime-endpoint unix://ROOT/SOCKET for the first of prepull_default_sockets that is
 * a socket. Returns 1 and the options (possibly an empty list), 0 when none of them applies:
 * no runtime to pull through. */
int prepull_endpoint_args(const char *root, const char *client, char *const *environ_, char ***ret_args);

/* Runs `CLIENT ENDPOINT_ARGS... pull IMAGE` for each image in turn, one at a time. Returns 0
 * when every image is pulled; else, with a sentence naming the image and crictl's last
 * message: -EIO (crictl failed), -ETIMEDOUT (the pull took longer than the timeout; crictl is
 * killed), -EINTR (interrupted; crictl is killed), or another negative errno (it could not
 * be run). */
int prepull_images(const char *client, char *const *endpoint_args, char *const *images, const prepull_options *o,
                   char **ret_error);
