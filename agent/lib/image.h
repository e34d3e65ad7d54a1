/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Container image references: [registry[:port]/]path[:tag][@digest]. */

typedef struct image_ref {
        char *repository; /* "registry.k8s.io/kube-apiserver" */
        char *tag;        /* "v1.34.2"; NULL when absent */
        char *digest;     /* "sha256:…"; NULL when absent */
} image_ref;

int image_ref_parse(const char *s, image_ref *ret, char **ret_error);
void image_ref_done(image_ref *ref);
/* repository[:tag][@digest], newly allocated. */
char *image_ref_format(const image_ref *ref);
/* The last path element of the repository ("kube-apiserver-amd64"). */
const char *image_ref_name(const image_ref *ref);
