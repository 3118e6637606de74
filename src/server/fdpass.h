/* fdpass.h: pass a file descriptor over a unix socket (SCM_RIGHTS), with a
 * short message. Both return 0 or -1 (errno set). */
#ifndef MAILROOM_FDPASS_H
#define MAILROOM_FDPASS_H

#include <stddef.h>

int fdpass_send(int sock, int fd, const void *msg, size_t len);
/* Receives up to size bytes into msg (*len_r set) and the fd if one came
 * (*fd_r, else -1). */
int fdpass_recv(int sock, int *fd_r, void *msg, size_t size, size_t *len_r);

#endif
