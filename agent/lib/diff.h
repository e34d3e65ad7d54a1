/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* Unified diff of two texts, line by line (for cplet diff and --dry-run). */

/* Writes a unified diff (3 lines of context) of a → b into *ret (an empty string when
 * equal). Texts of more than DIFF_LINES_MAX lines are refused with -E2BIG. */
#define DIFF_LINES_MAX 20000
int unified_diff(const char *a, const char *b, const char *label_a, const char *label_b, char **ret);
