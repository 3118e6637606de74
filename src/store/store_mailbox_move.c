/*
 * store_mailbox_move.c: MOVE (RFC 6851) as the store does it: rename each
 * message from the source's cur/ into the destination's (store_mailbox_copy.c
 * with move set: a crash leaves it in one of them, never both), then expunge
 * from the source's index exactly what reached the destination (its files
 * are gone already: the expunge takes ENOENT as done).
 */
#include "store/store_int.h"

#include <stdlib.h>

#include "lib/fsx.h"

int store_mailbox_move(struct store_mailbox *src, const uint32_t *uids, size_t n,
		       struct store_mailbox *dst, uint32_t *dst_uids_r, struct error *err)
{
	/* The files leave src's cur/ before its index forgets them: raise the
	 * floor first, as an expunge does. */
	uint32_t max_uid = 0;
	for (size_t i = 0; i < n; i++)
		if (uids[i] > max_uid)
			max_uid = uids[i];
	if (n > 0 && store_mailbox_raise_uid_floor(src, max_uid, err) < 0)
		return -1;
	if (store_mailbox_transfer(src, uids, n, dst, dst_uids_r, 1, err) < 0)
		return -1;
	/* The transfer synced dst's cur/; the names are gone from src's only
	 * once its cur/ is synced too, or a power cut brings them back there
	 * beside their copy in dst (tests/e2e/test_powercut.py). */
	if (n > 0 && fsx_fsync(src->cur_fd) < 0) {
		error_errno(err, "cannot fsync the mailbox");
		return -1;
	}
	/* Expunge only what reached dst: a message that could not be copied
	 * stays where it was. */
	uint32_t *moved = calloc(n ? n : 1, sizeof(*moved));
	size_t k = 0;
	if (moved == NULL) {
		error_set(err, ERR_TEMP, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		if (dst_uids_r[i] != 0)
			moved[k++] = uids[i];
	int ret = store_mailbox_expunge(src, moved, k, err);
	free(moved);
	return ret;
}
