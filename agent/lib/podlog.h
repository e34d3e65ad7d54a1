/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* The last words of a container, from the kubelet's log files: ROOT/var/log/pods/
 * <namespace>_<pod>_<uid>/<container>/<restart>.log, each line in the CRI format
 * "TIME STREAM TAG MESSAGE". A static pod's name is the manifest's metadata.name followed by
 * "-<node name>". */

#define PODLOG_DIR "var/log/pods"

/* Finds the newest log of that container and returns its last non-empty message (at most
 * 512 bytes). -ENOENT when there is none. */
int pod_last_log_line(const char *root, const char *namespace, const char *pod_name, const char *container,
                      char **ret);
