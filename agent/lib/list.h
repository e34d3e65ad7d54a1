/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/* An intrusive doubly linked list: an item has `prev` and `next`, the list is its head pointer. */

#define LIST_PREPEND(head, item)                                                                           \
        do {                                                                                               \
                (item)->prev = NULL;                                                                       \
                (item)->next = (head);                                                                     \
                if (head)                                                                                  \
                        (head)->prev = (item);                                                             \
                (head) = (item);                                                                           \
        } while (0)

#define LIST_REMOVE(head, item)                                                                            \
        do {                                                                                               \
                if ((item)->next)                                                                          \
                        (item)->next->prev = (item)->prev;                                                 \
                if ((item)->prev)                                                                          \
                        (item)->prev->next = (item)->next;                                                 \
                else                                                                                       \
                        (head) = (item)->next;                                                             \
                (item)->prev = (item)->next = NULL;                                                        \
        } while (0)
