/*
 * store_deliver.c: one staged message to many recipients (LMTP, `mailroom
 * deliver`). Single instance: every recipient's mailbox gets a hard link to
 * the same inode, so the bytes are written and fsynced once whatever the
 * number of recipients. Each recipient succeeds or fails on its own.
 */
#include "store/store_int.h"

#include <string.h>

static int deliver_one(struct store *store, struct store_stage *stage, uint32_t flags,
		       struct store_rcpt *r)
{
	struct store_user *user = NULL;
	struct store_mailbox *mbox = NULL;
	int ret = -1;

	r->uid = 0;
	if (store_user_open(store, r->user, &user, &r->result) < 0)
		return -1;
	const char *name = r->mailbox != NULL ? r->mailbox : "INBOX";
	if (store_mailbox_open(user, name, &mbox, &r->result) < 0) {
		/* Like dovecot-lda -m: a missing (or invalid) target mailbox
		 * falls back to INBOX rather than bouncing the mail. */
		if (r->result.code != ERR_NOTFOUND && r->result.code != ERR_INVALID)
			goto out;
		if (store_mailbox_open(user, "INBOX", &mbox, &r->result) < 0)
			goto out;
	}
	if (store_mailbox_add(mbox, stage, flags, 0, &r->uid, &r->result) < 0)
		goto out;
	r->result.code = ERR_OK;
	r->result.text[0] = '\0';
	ret = 0;
out:
	store_mailbox_close(&mbox);
	store_user_close(&user);
	return ret;
}

size_t store_deliver(struct store *store, struct store_stage *stage, uint32_t flags,
		     struct store_rcpt *rcpts, size_t n)
{
	size_t failed = 0;
	for (size_t i = 0; i < n; i++)
		if (deliver_one(store, stage, flags, &rcpts[i]) < 0)
			failed++;
	return failed;
}
