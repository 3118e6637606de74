/*
 * export_mbox.c: one mailbox out as an mboxrd file (the layout and the
 * headers are described in export.h).
 *
 * mboxrd (RFC 4155 appendix; the "mboxrd" of qmail and mutt): each message
 * starts with a From_ line and ends with a blank line; a line of the message
 * matching ^>*From  gets one more '>', so that a reader takes off exactly
 * one and gets the message back byte for byte (mboxo, which quotes only
 * ^From , cannot tell a quoted line from one that had a '>' already). The
 * status headers follow UW-IMAP and Dovecot: Status "RO"/"O", X-Status with
 * A F T D in Dovecot's order, X-Keywords, X-UID, and X-IMAPbase in the
 * first message with the UIDVALIDITY, the last UID given (UIDNEXT - 1,
 * ten digits as both servers write it) and the mailbox's keywords.
 */
#include "import/export.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/fsx.h"
#include "store/store.h"

/* ---- mboxrd quoting ------------------------------------------------------ */

enum { Q_GT = 1, Q_FROM = 2, Q_REST = 3 };
static const char from_[] = "From ";

void export_mboxrd_init(struct export_mboxrd *q)
{
	q->state = Q_GT;
	q->gt = 0;
	q->matched = 0;
}

static void put_held(struct export_mboxrd *q, struct buf *out)
{
	for (size_t i = 0; i < q->gt; i++)
		buf_putc(out, '>');
	buf_append(out, from_, q->matched);
	q->gt = 0;
	q->matched = 0;
}

void export_mboxrd_quote(struct export_mboxrd *q, const char *in, size_t len, struct buf *out)
{
	for (size_t i = 0; i < len; i++) {
		char c = in[i];
		if (q->state == Q_GT) {
			if (c == '>') {
				q->gt++;
				continue;
			}
			q->state = Q_FROM;
		}
		if (q->state == Q_FROM) {
			if (c == from_[q->matched]) {
				if (++q->matched == sizeof(from_) - 1) {
					buf_putc(out, '>');
					put_held(q, out);
					q->state = Q_REST;
				}
				continue;
			}
			put_held(q, out);
			q->state = Q_REST;
		}
		buf_putc(out, c);
		if (c == '\n')
			export_mboxrd_init(q);
	}
}

void export_mboxrd_flush(struct export_mboxrd *q, struct buf *out)
{
	put_held(q, out);
	export_mboxrd_init(q);
}

/* ---- one message ----------------------------------------------------------- */

void export_mbox_msg_begin(struct export_mbox_msg *m, const char *sender, int64_t internaldate,
			   const char *extra, struct buf *out)
{
	char date[64];
	struct tm tm;
	time_t t = internaldate > 0 ? (time_t)internaldate : 0;
	/* asctime's form, in UTC (RFC 4155 2) */
	if (gmtime_r(&t, &tm) == NULL ||
	    strftime(date, sizeof(date), "%a %b %e %H:%M:%S %Y", &tm) == 0)
		snprintf(date, sizeof(date), "Thu Jan  1 00:00:00 1970");
	buf_printf(out, "From %s %s\n", sender, date);
	export_mboxrd_init(&m->q);
	m->extra = extra;
	m->in_header = 1;
	m->bol = 1;
	m->cr = 0;
	m->last = '\n';
}

static void put_char(struct export_mbox_msg *m, char c, struct buf *out)
{
	if (m->in_header && m->bol && c == '\n') {
		/* the blank line after the header: ours go before it */
		export_mboxrd_quote(&m->q, m->extra, strlen(m->extra), out);
		m->in_header = 0;
	}
	export_mboxrd_quote(&m->q, &c, 1, out);
	m->bol = c == '\n';
}

void export_mbox_msg_feed(struct export_mbox_msg *m, const char *data, size_t len, struct buf *out)
{
	for (size_t i = 0; i < len; i++) {
		char c = data[i];
		if (m->cr) {
			m->cr = 0;
			if (c != '\n')
				put_char(m, '\r', out);
		}
		if (c == '\r') {
			m->cr = 1;
			continue;
		}
		put_char(m, c, out);
	}
}

void export_mbox_msg_end(struct export_mbox_msg *m, struct buf *out)
{
	if (m->cr)
		put_char(m, '\r', out);
	m->cr = 0;
	if (!m->bol)
		put_char(m, '\n', out);
	if (m->in_header) {
		/* a message that is all header */
		export_mboxrd_quote(&m->q, m->extra, strlen(m->extra), out);
		m->in_header = 0;
	}
	export_mboxrd_quote(&m->q, "\n", 1, out);
	export_mboxrd_flush(&m->q, out);
}

void export_mbox_sender(const char *head, size_t len, char *sender_r, size_t size)
{
	static const char rp[] = "Return-Path:";
	const char *p = head, *end = head + len;
	snprintf(sender_r, size, "MAILER-DAEMON");
	while (p < end && *p != '\n' && !(*p == '\r' && p + 1 < end && p[1] == '\n')) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		if (eol == NULL)
			return; /* a header line cut off: not decidable, keep the default */
		if ((size_t)(eol - p) >= sizeof(rp) - 1 &&
		    strncasecmp(p, rp, sizeof(rp) - 1) == 0) {
			const char *v = p + sizeof(rp) - 1;
			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			int bracket = v < eol && *v == '<';
			const char *a = v + bracket;
			v = a;
			while (v < eol && (unsigned char)*v > ' ' && (unsigned char)*v < 0x7f &&
			       *v != '>')
				v++;
			int ended = bracket ? v < eol && *v == '>'
					    : v == eol || *v == ' ' || *v == '\t' || *v == '\r';
			if (v > a && (size_t)(v - a) < size && ended) {
				memcpy(sender_r, a, (size_t)(v - a));
				sender_r[v - a] = '\0';
			}
			return;
		}
		p = eol + 1;
	}
}

/* ---- one mailbox -------------------------------------------------------------- */

static int is_mailbox(const struct export_ctx *x, const char *name, size_t len)
{
	for (size_t i = 0; i < x->nall; i++)
		if (strncmp(x->all[i], name, len) == 0 && x->all[i][len] == '\0')
			return 1;
	return 0;
}

/* One level of a name as a file name: modified UTF-7, as UW-IMAP and
 * Dovecot name mbox files (RFC 3501 5.1.3), with suffix. */
static int level_name(const char *level, size_t len, const char *suffix, struct buf *out,
		      struct error *err)
{
	char one[STORE_MAX_MAILBOX_NAME + 1];
	buf_truncate(out, 0);
	snprintf(one, sizeof(one), "%.*s", (int)len, level);
	if (len == 0 || len >= sizeof(one) || (len == 1 && level[0] == '.') ||
	    (len == 2 && strncmp(level, "..", 2) == 0)) {
		error_set(err, ERR_INVALID, "mailbox name has an empty, '.' or '..' level");
		return -1;
	}
	if (export_name_path(one, '/', out, err) < 0)
		return -1;
	buf_puts(out, suffix);
	return out->failed ? -1 : 0;
}

/* Open (creating as needed) the folder that holds the mailbox's file and
 * put the file's own name in leaf: "A/B/C" is A[.sbd]/B[.sbd]/C. Every
 * folder on the way is fsynced by the caller through dirs[]. */
static int open_parent(struct export_ctx *x, const char *name, int *dirs, size_t *ndirs,
		       struct buf *leaf, struct error *err)
{
	int dirfd = x->outfd;
	const char *p = name;
	for (;;) {
		const char *slash = strchr(p, '/');
		size_t len = slash ? (size_t)(slash - p) : strlen(p);
		int parent = slash != NULL && is_mailbox(x, name, (size_t)(slash - name));
		if (level_name(p, len, parent ? ".sbd" : "", leaf, err) < 0) {
			if (leaf->failed)
				error_set(err, ERR_TEMP, "export: out of memory");
			return -1;
		}
		if (slash == NULL)
			return 0;
		if (mkdirat(dirfd, leaf->data, 0700) < 0 && errno != EEXIST) {
			export_out_errno(x, err, "export: create a folder");
			return -1;
		}
		int fd = openat(dirfd, leaf->data, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			export_out_errno(x, err, "export: open a folder");
			return -1;
		}
		dirs[(*ndirs)++] = fd;
		dirfd = fd;
		p = slash + 1;
	}
}

static void extra_headers(const struct export_box *b, const struct export_msg *m, int first,
			  struct buf *h)
{
	if (first) {
		buf_printf(h, "X-IMAPbase: %u %010u", b->uidvalidity,
			   b->uidnext > 0 ? b->uidnext - 1 : 0);
		for (unsigned i = 0; i < STORE_MAX_KEYWORDS; i++)
			if (store_mailbox_keyword(b->mbox, i) != NULL)
				buf_printf(h, " %s", store_mailbox_keyword(b->mbox, i));
		buf_putc(h, '\n');
	}
	buf_printf(h, "Status: %s\n", (m->flags & STORE_F_SEEN) ? "RO" : "O");
	static const struct {
		char letter;
		uint32_t flag;
	} xs[] = {{'A', STORE_F_ANSWERED},
		  {'F', STORE_F_FLAGGED},
		  {'T', STORE_F_DRAFT},
		  {'D', STORE_F_DELETED}};
	if (m->flags & (STORE_F_ANSWERED | STORE_F_FLAGGED | STORE_F_DRAFT | STORE_F_DELETED)) {
		buf_puts(h, "X-Status: ");
		for (size_t i = 0; i < sizeof(xs) / sizeof(xs[0]); i++)
			if (m->flags & xs[i].flag)
				buf_putc(h, xs[i].letter);
		buf_putc(h, '\n');
	}
	size_t mark = h->len;
	buf_puts(h, "X-Keywords:");
	size_t start = h->len;
	if (m->flags & STORE_F_PASSED)
		buf_puts(h, " $Forwarded");
	for (unsigned i = 0; i < STORE_MAX_KEYWORDS; i++)
		if ((m->keywords & (1u << i)) && store_mailbox_keyword(b->mbox, i) != NULL)
			buf_printf(h, " %s", store_mailbox_keyword(b->mbox, i));
	if (h->len == start)
		buf_truncate(h, mark);
	else
		buf_putc(h, '\n');
	buf_printf(h, "X-UID: %u\n", m->uid);
}

/* An empty mailbox keeps its UIDVALIDITY and UIDNEXT the way UW-IMAP
 * keeps them (unix.c, unix_write_pseudo): a first message with X-IMAP,
 * which UW-IMAP, Dovecot and `mailroom import mbox:` read and never show
 * as a message (mutt does show it: one message that says what it is). */
static void pseudo_message(const struct export_box *b, struct buf *out)
{
	static const char text[] =
		"From: Mail System Internal Data <MAILER-DAEMON@localhost>\n"
		"Subject: DON'T DELETE THIS MESSAGE -- FOLDER INTERNAL DATA\n"
		"X-IMAP: %u %010u%s\n"
		"Status: RO\n"
		"\n"
		"This text is part of the internal format of your mail folder, and is not\n"
		"a real message.  It is created automatically by the mail system software.\n"
		"If deleted, important folder data will be lost, and it will be re-created\n"
		"with the data reset to initial values.\n";
	struct buf kws = BUF_INIT, msg = BUF_INIT;
	struct export_mbox_msg w;
	for (unsigned i = 0; i < STORE_MAX_KEYWORDS; i++)
		if (store_mailbox_keyword(b->mbox, i) != NULL)
			buf_printf(&kws, " %s", store_mailbox_keyword(b->mbox, i));
	buf_printf(&msg, text, b->uidvalidity, b->uidnext > 0 ? b->uidnext - 1 : 0, buf_cstr(&kws));
	export_mbox_msg_begin(&w, "MAILER-DAEMON", (int64_t)time(NULL), "", out);
	export_mbox_msg_feed(&w, msg.data, msg.len, out);
	export_mbox_msg_end(&w, out);
	if (kws.failed || msg.failed)
		out->failed = 1;
	buf_free(&kws);
	buf_free(&msg);
}

static int flush_out(struct export_ctx *x, int fd, struct buf *out, struct error *err)
{
	if (out->failed) {
		error_set(err, ERR_TEMP, "export: out of memory");
		return -1;
	}
	if (out->len > 0 && fsx_write_all(fd, out->data, out->len) < 0) {
		export_out_errno(x, err, "export: write an mbox file");
		return -1;
	}
	x->report.bytes += out->len;
	buf_truncate(out, 0);
	return 0;
}

/* Append one message to the mbox file fd. 1 written, 0 gone, -1 error. */
static int mbox_message(struct export_ctx *x, const struct export_box *b,
			const struct export_msg *m, int first, int fd, struct buf *out,
			struct error *err)
{
	char block[65536];
	struct buf extra = BUF_INIT;
	struct export_mbox_msg w;
	char sender[256];
	int mfd = -1, ret = -1;
	uint64_t size;

	if (store_message_open(b->mbox, m->uid, &mfd, &size, err) < 0) {
		/* expunged since its row was read: gone, not skipped */
		return err->code == ERR_NOTFOUND ? 0 : -1;
	}
	extra_headers(b, m, first, &extra);
	off_t off = 0;
	for (int started = 0;;) {
		ssize_t n = pread(mfd, block, sizeof(block), off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			error_errno(err, "export: read a message file");
			goto out;
		}
		if (!started) {
			export_mbox_sender(block, (size_t)n, sender, sizeof(sender));
			export_mbox_msg_begin(&w, sender, m->internaldate, buf_cstr(&extra), out);
			started = 1;
		}
		if (n == 0)
			break;
		export_mbox_msg_feed(&w, block, (size_t)n, out);
		off += n;
		if (out->len >= sizeof(block) && flush_out(x, fd, out, err) < 0)
			goto out;
	}
	export_mbox_msg_end(&w, out);
	ret = extra.failed ? -1 : 1;
	if (extra.failed)
		error_set(err, ERR_TEMP, "export: out of memory");
out:
	buf_free(&extra);
	close(mfd);
	return ret;
}

int export_mbox_box(struct export_ctx *x, const struct export_box *b, struct error *err)
{
	int dirs[STORE_MAX_MAILBOX_NAME];
	size_t ndirs = 0;
	struct buf leaf = BUF_INIT, out = BUF_INIT;
	int fd = -1, ret = -1;

	if (open_parent(x, b->name, dirs, &ndirs, &leaf, err) < 0)
		goto out;
	/* the leaf as a file; ".sbd" folders never clash with it */
	fd = openat(ndirs ? dirs[ndirs - 1] : x->outfd, leaf.data,
		    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		export_out_errno(x, err, "export: create an mbox file");
		goto out;
	}
	int first = 1;
	for (size_t i = 0; i < b->nmsgs; i++) {
		int r = mbox_message(x, b, &b->msgs[i], first, fd, &out, err);
		if (r < 0)
			goto out;
		if (r > 0) {
			first = 0;
			x->report.messages++;
		}
		if (x->opt->progress != NULL)
			x->opt->progress(x->opt->ctx, b->name, (uint32_t)(i + 1),
					 (uint32_t)b->nmsgs);
	}
	if (first)
		pseudo_message(b, &out);
	if (flush_out(x, fd, &out, err) < 0)
		goto out;
	if (fsx_fsync(fd) < 0) {
		export_out_errno(x, err, "export: fsync an mbox file");
		goto out;
	}
	for (size_t i = 0; i < ndirs; i++)
		if (fsx_fsync(dirs[i]) < 0) {
			export_out_errno(x, err, "export: fsync a folder");
			goto out;
		}
	x->report.mailboxes++;
	ret = 0;
out:
	if (fd >= 0)
		close(fd);
	for (size_t i = 0; i < ndirs; i++)
		close(dirs[i]);
	buf_free(&out);
	buf_free(&leaf);
	return ret;
}
