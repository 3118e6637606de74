/*
 * store_message.c: one message of an open mailbox: its index row
 * (store_message_lookup) and its file (store_message_open). A file renamed
 * (flags) or removed by another process since the index was read is found
 * again after a sync, or reported NOTFOUND. Also what the file name says
 * beyond UID and flags: the save date (RFC 8514) and the EMAILID (RFC 8474).
 *
 * EMAILID design. RFC 8474 5.1 wants an id that stays with a message for
 * its whole life in the user's account: the same in every mailbox it is
 * copied or moved to, never reused for another message, and (this store's
 * promise) the same after the index is lost or the disk is moved with
 * `rsync -aH`. So it is derived from what all links of one file share and
 * what the disk keeps: the unique base of the file name (store_fname.c),
 * which delivery gives once for all recipients and COPY, MOVE and flag
 * changes carry over; never the inode number, which rsync and tar do not
 * keep. The user's name is hashed in with the base: the same delivery to
 * two users gives each user another EMAILID, so ids shown to one user say
 * nothing about another user's mail (RFC 8474 9 warns against ids that
 * prove what the server has seen); within one user the id is stable.
 * "M" + 24 base32 characters of SHA-256(user NUL base): 120 bits, far from
 * any collision, and the objectid syntax (1*255 ALPHA / DIGIT / "_" / "-").
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <string.h>

#include "lib/fsx.h"
#include "lib/log.h"

int64_t store_message_savedate(const char *fname)
{
	struct store_fname f;
	if (fname == NULL || store_fname_parse(fname, &f) < 0)
		return 0;
	return f.savedate;
}

int store_message_emailid(const struct store_mailbox *mbox, const char *fname,
			  char out[STORE_OBJECTID_SIZE])
{
	static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";
	struct store_fname f;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;
	char in[STORE_MAX_USERNAME + 1 + sizeof(f.base)];
	if (fname == NULL)
		return -1;
	if (store_fname_parse(fname, &f) < 0) /* not one of our names: the name is all we have */
		snprintf(f.base, sizeof(f.base), "%s", fname);
	size_t ul = strlen(mbox->user->name), bl = strlen(f.base);
	memcpy(in, mbox->user->name, ul + 1); /* with its NUL: "ab"+"c" != "a"+"bc" */
	memcpy(in + ul + 1, f.base, bl);
	if (EVP_Digest(in, ul + 1 + bl, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen < 15)
		return -1;
	out[0] = 'M';
	/* 24 characters of 5 bits: the first 15 bytes */
	for (unsigned i = 0; i < 24; i++) {
		unsigned bit = i * 5, byte = bit / 8, shift = bit % 8;
		unsigned v = (unsigned)md[byte] << 8 | (byte + 1 < 15 ? md[byte + 1] : 0);
		out[1 + i] = b32[(v >> (11 - shift)) & 31];
	}
	out[25] = '\0';
	return 0;
}

int store_message_lookup(struct store_mailbox *mbox, uint32_t uid, struct store_msg *msg_r,
			 char *fname, size_t fname_size, struct error *err)
{
	sqlite3_stmt *st = store_index_stmt(
		mbox->user,
		"SELECT flags, keywords, modseq, size, internaldate, fname FROM msg"
		" WHERE mailbox=? AND uid=? AND pending=0",
		err);
	if (st == NULL)
		return -1;
	sqlite3_bind_int64(st, 1, mbox->id);
	sqlite3_bind_int64(st, 2, uid);
	int rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(st);
		if (rc == SQLITE_DONE)
			error_set(err, ERR_NOTFOUND, "no message with UID %u", uid);
		else
			store_index_sqlerr(mbox->user, err, "lookup");
		return -1;
	}
	struct store_msg m;
	m.uid = uid;
	m.flags = (uint32_t)sqlite3_column_int64(st, 0);
	m.keywords = (uint32_t)sqlite3_column_int64(st, 1);
	m.modseq = (uint64_t)sqlite3_column_int64(st, 2);
	m.size = (uint64_t)sqlite3_column_int64(st, 3);
	m.internaldate = sqlite3_column_int64(st, 4);
	snprintf(fname, fname_size, "%s", (const char *)sqlite3_column_text(st, 5));
	m.fname = fname;
	sqlite3_reset(st);
	*msg_r = m;
	return 0;
}

int store_message_open(struct store_mailbox *mbox, uint32_t uid, int *fd_r, uint64_t *size_r,
		       struct error *err)
{
	if (store_fds_open(mbox, err) < 0)
		return -1;
	char fname[512];
	struct store_msg m;
	for (int attempt = 0; attempt < 2; attempt++) {
		if (store_message_lookup(mbox, uid, &m, fname, sizeof(fname), err) < 0)
			return -1;
		int fd = fsx_open_beneath(mbox->cur_fd, fname, O_RDONLY, 0);
		if (fd >= 0) {
			struct stat st;
			if (fstat(fd, &st) < 0) {
				error_errno(err, "stat message");
				close(fd);
				return -1;
			}
			if ((uint64_t)st.st_size != m.size && attempt == 0) {
				/* Not the bytes the index describes (truncated, or
				 * changed by hand): a full sync takes the file as it
				 * is (its size in the name and the index, its cached
				 * parse dropped), so that what the client is told
				 * matches what it gets. */
				log_warn("store %s/%s: UID %u: %s has %llu bytes, the index says %llu",
					 mbox->user->name, mbox->name, uid, fname,
					 (unsigned long long)st.st_size, (unsigned long long)m.size);
				close(fd);
				store_sync_mark_rescan(mbox);
				if (store_mailbox_sync(mbox, 1, err) < 0)
					return -1;
				continue;
			}
			*fd_r = fd;
			*size_r = (uint64_t)st.st_size;
			return 0;
		}
		if (errno != ENOENT) {
			error_errno(err, "cannot open the message");
			return -1;
		}
		/* Renamed (flags) or removed by another process: catch up. */
		if (store_mailbox_sync(mbox, 1, err) < 0)
			return -1;
	}
	error_set(err, ERR_NOTFOUND, "message %u is gone", uid);
	return -1;
}
