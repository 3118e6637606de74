/*
 * store_stage.c: a message being received, before it enters any mailbox.
 *
 * The message is streamed into DATA/spool/tmp/ (same file system as mail/,
 * so the mailboxes can hard-link it), with line endings normalised to CRLF on
 * the way: IMAP serves messages in that form, RFC822.SIZE is then the file
 * size, and BODY[] can be sent with sendfile. It is fsynced once
 * (store_stage_finish); every recipient then gets a link to the same inode
 * (store_mailbox_add), and store_stage_free removes the staging name. A
 * process that dies leaves only a file in spool/tmp/, never a partial message
 * in a mailbox; `mailroom check --repair` removes old ones that no process
 * holds (store_check_spool).
 */
#include "store/store_int.h"

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/fsx.h"
#include "mime/mime.h"

#define STAGE_BUF 65536

struct store_stage {
	struct store *store;
	int fd;
	char name[256];
	uint64_t size;
	int prev_cr;
	int finished;
	int failed;
	time_t internaldate;
	/* The message is parsed as it is written (DESIGN.md, Delivery step 1),
	 * so that FETCH finds ENVELOPE, BODY, BODYSTRUCTURE and the part tree
	 * cached from the start. NULL after finish or on failure (then FETCH
	 * parses on first use, as for files adopted from new/). */
	struct mime_parser *parser;
	struct store_cache_row cache; /* all NULL until finish parsed it */
	size_t wlen;
	char wbuf[STAGE_BUF];
};

int store_stage_new(struct store *store, struct store_stage **stage_r, struct error *err)
{
	struct store_stage *s = malloc(sizeof(*s));
	char base[200];
	if (s == NULL) {
		error_set(err, ERR_TEMP, "out of memory");
		return -1;
	}
	memset(s, 0, offsetof(struct store_stage, wbuf));
	s->store = store;
	s->parser = mime_parser_new(NULL);
	store_unique_base(store, base, sizeof(base));
	memcpy(s->name, base, strlen(base) + 1);
	s->fd = fsx_open_beneath(store->spool_fd, s->name, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (s->fd < 0) {
		error_errno(err, "cannot create a file in spool/tmp");
		free(s);
		return -1;
	}
	/* Held while the stage lives: store_check_spool removes only files
	 * nobody holds (a running APPEND may carry an old internal date). */
	flock(s->fd, LOCK_SH);
	*stage_r = s;
	return 0;
}

/* A paused stage has no descriptor; take one again. */
static int reopen(struct store_stage *s, struct error *err)
{
	if (s->fd >= 0)
		return 0;
	s->fd = fsx_open_beneath(s->store->spool_fd, s->name, O_WRONLY | O_APPEND, 0);
	if (s->fd < 0) {
		s->failed = 1;
		error_errno(err, "cannot reopen the staged message");
		return -1;
	}
	flock(s->fd, LOCK_SH);
	return 0;
}

static int flush(struct store_stage *s, struct error *err)
{
	if (s->wlen == 0)
		return 0;
	if (reopen(s, err) < 0)
		return -1;
	if (s->parser != NULL && mime_parser_feed(s->parser, s->wbuf, s->wlen) == MIME_ERROR)
		mime_parser_free(&s->parser); /* out of memory: no cache, still a message */
	if (fsx_write_all(s->fd, s->wbuf, s->wlen) < 0) {
		s->failed = 1;
		error_errno(err, "cannot write the message");
		return -1;
	}
	s->wlen = 0;
	return 0;
}

static int put(struct store_stage *s, char c, struct error *err)
{
	if (s->wlen == STAGE_BUF && flush(s, err) < 0)
		return -1;
	s->wbuf[s->wlen++] = c;
	s->size++;
	return 0;
}

int store_stage_write(struct store_stage *s, const void *data, size_t len, struct error *err)
{
	const char *p = data;
	if (s->finished || s->failed) {
		error_set(err, ERR_TEMP, "message staging already ended");
		return -1;
	}
	for (size_t i = 0; i < len; i++) {
		/* LF without CR before it becomes CRLF (RFC 5322 2.3); a CR
		 * that is not followed by LF is kept as it is. */
		if (p[i] == '\n' && !s->prev_cr && put(s, '\r', err) < 0)
			return -1;
		if (put(s, p[i], err) < 0)
			return -1;
		s->prev_cr = p[i] == '\r';
	}
	return 0;
}

int store_stage_pause(struct store_stage *s, struct error *err)
{
	if (s->failed || s->fd < 0)
		return s->failed ? -1 : 0;
	if (flush(s, err) < 0)
		return -1;
	close(s->fd);
	s->fd = -1;
	return 0;
}

void store_stage_set_internaldate(struct store_stage *stage, time_t when)
{
	stage->internaldate = when;
}

int store_stage_finish(struct store_stage *s, struct error *err)
{
	if (s->finished)
		return 0;
	if (s->failed) {
		error_set(err, ERR_TEMP, "message staging failed earlier");
		return -1;
	}
	if (flush(s, err) < 0 || reopen(s, err) < 0)
		return -1;
	if (s->internaldate != 0) {
		/* The internal date is the file's mtime, so it survives the index. */
		struct timespec ts[2] = { { s->internaldate, 0 }, { s->internaldate, 0 } };
		if (futimens(s->fd, ts) < 0) {
			error_errno(err, "cannot set the internal date");
			return -1;
		}
	}
	if (fsx_fsync(s->fd) < 0) {
		s->failed = 1;
		error_errno(err, "cannot fsync the message");
		return -1;
	}
	s->finished = 1;
	struct mime_tree *tree = NULL;
	struct error why;
	if (s->parser != NULL && mime_parser_finish(&s->parser, &tree, &why) == 0) {
		/* the same row a miss computes (store_cache.c); out of memory
		 * leaves it empty. The preview reads the part back (the page
		 * cache still has it): the stage's own fd is write-only. */
		int rfd = fsx_open_beneath(s->store->spool_fd, s->name, O_RDONLY, 0);
		(void)store_cache_row_fill(&s->cache, tree, rfd);
		if (rfd >= 0)
			close(rfd);
		mime_tree_free(&tree);
	}
	return 0;
}

const struct store_cache_row *store_stage_cache(const struct store_stage *s)
{
	return s->cache.tree != NULL ? &s->cache : NULL; /* all four or none */
}

uint64_t store_stage_size(const struct store_stage *stage)
{
	return stage->size;
}

int store_stage_fd(const struct store_stage *stage)
{
	return stage->fd;
}

const char *store_stage_name(const struct store_stage *stage)
{
	return stage->name;
}

int store_stage_is_finished(const struct store_stage *stage)
{
	return stage->finished;
}

void store_stage_free(struct store_stage **stage)
{
	struct store_stage *s = *stage;
	if (s == NULL)
		return;
	if (s->fd >= 0)
		close(s->fd);
	mime_parser_free(&s->parser);
	store_cache_row_clear(&s->cache);
	/* Not fsx_unlinkat: removing the staging name is cleanup, and a
	 * failure here loses nothing (check --repair removes leftovers). */
	unlinkat(s->store->spool_fd, s->name, 0);
	free(s);
	*stage = NULL;
}
