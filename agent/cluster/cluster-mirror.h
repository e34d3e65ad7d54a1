/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The mirror pod the kubelet creates for each static pod (kube-system/<component>-<node>):
 * the API's view of what really runs, beyond the agent's word. The kubelet copies the
 * manifest's annotations (cplet.io/revision), its image and command line, and reports
 * Ready from the container's probes. */

#include <jansson.h>
#include <stdbool.h>

#include "cluster-plan.h"

typedef struct mirror_pod {
        bool present;
        unsigned revision; /* cplet.io/revision; 0: none or not a number */
        char *image;       /* the component's container's image; NULL: none */
        bool ready;        /* condition Ready is True */
        json_t *container; /* the component's container (a reference), for its command line;
                            * NULL: none */
} mirror_pod;

void mirror_pod_done(mirror_pod *m);

/* Reads a pod object (NULL: absent). The component's container is the one of its name, else the
 * only one. */
int mirror_pod_read(json_t *pod, int component, mirror_pod *ret);

/* "kube-apiserver-n1". */
char *mirror_pod_name(int component, const char *node);

/* Whether the pod shows exactly the step: the revision the agent reported for it, an image
 * tagged with the step's binary version, the step's emulated and min-compatibility versions
 * as its command line gives them (flags, else the binary's defaults), and Ready. 1 yes; 0 not
 * (yet), with what differs in *ret_why; negative errno on OOM. */
int mirror_pod_shows_step(json_t *pod, const cluster_step *s, unsigned revision, char **ret_why);
