/*
 * imap_cmd_append.c: APPEND (RFC 9051 6.3.12) with MULTIAPPEND (RFC 3502),
 * UIDPLUS APPENDUID (RFC 4315) and literal8 (RFC 3516).
 *
 * Design note. A message literal never sits in memory: when the parser
 * meets a literal in an APPEND after the mailbox name, it asks us
 * (imap_cmd_append_literal_start) and we open a staging file in the store and
 * take the bytes as they arrive (imap_cmd_append_literal_data), CRLF-normalised
 * by the store. A literal above message_size_limit is refused before any of
 * it is read ([TOOBIG]). When the whole command has arrived, the work that
 * can block (fsync, linking into the mailbox) runs off the event loop. A
 * MULTIAPPEND is all or nothing: if one message fails, the ones already
 * added are expunged again. A client that disconnects mid-literal leaves
 * only a staging file, which is removed at once.
 *
 * A store failure while the literal arrives (a full disk: ENOSPC on the
 * staging file) is not the client's fault: the rest of the literal is read
 * and dropped and the command answers NO with the store's reason
 * (imap_send_store_error: NO [UNAVAILABLE] for a temporary failure), not
 * BAD or [TOOBIG] from the parser.
 *
 * REPLACE (RFC 8508 3): the new message is added first, then the old one
 * expunged, in the same job; if the add fails the old message stays, and
 * if the expunge fails the new one is expunged again, so the client sees
 * both or neither change. It answers "* OK [APPENDUID ...]" (untagged,
 * RFC 8508 3.2), then the EXPUNGE (or VANISHED) and EXISTS of the view
 * sync, then the tagged OK.
 */
#include "imap/imap_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "imap/imap_seqset.h"
#include "lib/buf.h"
#include "lib/config.h"

#define MAX_APPEND_MESSAGES 1000

struct imap_append {
	struct store_stage *stages[MAX_APPEND_MESSAGES];
	size_t n;
	bool failed;
	struct error err;
};

enum imap_literal_action imap_cmd_append_literal_start(struct imap_session *s, const char *name,
						   size_t argc, uint64_t size, bool is_sync,
						   bool is_literal8)
{
	(void)is_sync;
	(void)is_literal8;
	/* APPEND mailbox ...; REPLACE number mailbox ... (RFC 8508 6) */
	bool replace = strcmp(name, "REPLACE") == 0;
	if (argc <= (replace ? 1u : 0u))
		return size <= 1024 ? IMAP_LITERAL_BUFFER : IMAP_LITERAL_REJECT; /* the mailbox name */
	uint64_t limit = config_uint(s->base.env->config, "message_size_limit");
	if (limit != 0 && size > limit)
		return IMAP_LITERAL_REJECT;
	if (s->append == NULL) {
		s->append = calloc(1, sizeof(*s->append));
		if (s->append == NULL)
			return IMAP_LITERAL_REJECT;
	}
	struct imap_append *a = s->append;
	if (a->failed)
		return IMAP_LITERAL_STREAM; /* dropped: the command answers NO */
	if (a->n == (replace ? 1u : MAX_APPEND_MESSAGES))
		return IMAP_LITERAL_REJECT; /* REPLACE: one message (RFC 8508 6) */
	/* The previous message of a MULTIAPPEND is complete: close its file
	 * until the command ends, so one client cannot hold a descriptor per
	 * message. */
	if (a->n > 0 && store_stage_pause(a->stages[a->n - 1], &a->err) < 0) {
		a->failed = true;
		return IMAP_LITERAL_STREAM;
	}
	if (store_stage_new(s->base.env->store, &a->stages[a->n], &a->err) < 0) {
		a->failed = true;
		return IMAP_LITERAL_STREAM;
	}
	a->n++;
	return IMAP_LITERAL_STREAM;
}

int imap_cmd_append_literal_data(struct imap_session *s, const void *data, size_t len)
{
	struct imap_append *a = s->append;
	if (a == NULL)
		return -1;
	if (a->failed)
		return 0; /* dropped: the command answers NO */
	if (a->n == 0)
		return -1;
	if (store_stage_write(a->stages[a->n - 1], data, len, &a->err) < 0)
		a->failed = true;
	return 0;
}

void imap_cmd_append_abort(struct imap_session *s)
{
	struct imap_append *a = s->append;
	if (a == NULL)
		return;
	for (size_t i = 0; i < a->n; i++)
		store_stage_free(&a->stages[i]);
	free(a);
	s->append = NULL;
}

/* RFC 9051 9: date-time = DQUOTE date-day-fixed "-" date-month "-"
 * date-year SP time SP zone DQUOTE, e.g. " 7-Feb-1994 21:52:25 -0800". */
static int parse_date_time(const char *s, size_t len, time_t *t_r)
{
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	char mon[4];
	int day, year, hh, mm, ss, zone, n = 0;
	char sign;
	if (len != 26 || s[2] != '-' || s[6] != '-')
		return -1;
	if (sscanf(s, "%2d-%3c-%4d %2d:%2d:%2d %c%4d%n", &day, mon, &year, &hh, &mm, &ss, &sign,
		   &zone, &n) != 8 || (size_t)n != len)
		return -1;
	mon[3] = '\0';
	const char *m = strstr(months, mon);
	if (m == NULL || (m - months) % 3 != 0 || day < 1 || day > 31 || year < 1900 ||
	    hh > 23 || mm > 59 || ss > 60 || (sign != '+' && sign != '-') || zone % 100 > 59 ||
	    !(s[12] >= '0' && s[12] <= '9') || s[20] != ' ')
		return -1;
	struct tm tm;
	memset(&tm, 0, sizeof(tm));
	tm.tm_mday = day;
	tm.tm_mon = (int)((m - months) / 3);
	tm.tm_year = year - 1900;
	tm.tm_hour = hh;
	tm.tm_min = mm;
	tm.tm_sec = ss;
	time_t t = timegm(&tm);
	int offset = (zone / 100) * 3600 + (zone % 100) * 60;
	*t_r = sign == '+' ? t - offset : t + offset;
	return 0;
}

struct append_msg {
	uint32_t flags;
	char *keywords[STORE_MAX_KEYWORDS + 1];
	size_t nkw;
	time_t date;
};

struct append_job {
	struct imap_session *s;
	char *mailbox;
	struct imap_append *a;
	struct append_msg *msgs;
	size_t n;
	uint32_t uidvalidity;
	uint32_t *uids;
	struct error err;
	int rc;
	/* REPLACE: the message of the selected mailbox that the new one
	 * replaces (0: APPEND), and the mailbox it is in */
	uint32_t replace_uid;
	struct store_mailbox *replace_mbox;
};

static void append_work(void *arg)
{
	struct append_job *j = arg;
	struct store_mailbox *m = NULL;
	struct store_status st;
	size_t added = 0;
	j->rc = -1;
	if (store_mailbox_open(j->s->suser, j->mailbox, &m, &j->err) < 0)
		return;
	if (store_mailbox_status(m, &st, &j->err) < 0)
		goto out;
	j->uidvalidity = st.uidvalidity;
	for (size_t i = 0; i < j->n; i++) {
		uint32_t kw = 0;
		for (size_t k = 0; k < j->msgs[i].nkw; k++) {
			unsigned idx;
			if (store_mailbox_keyword_index(m, j->msgs[i].keywords[k], 1, &idx, &j->err) < 0)
				goto undo;
			kw |= 1u << idx;
		}
		if (j->msgs[i].date != 0)
			store_stage_set_internaldate(j->a->stages[i], j->msgs[i].date);
		if (store_stage_finish(j->a->stages[i], &j->err) < 0 ||
		    store_mailbox_add(m, j->a->stages[i], j->msgs[i].flags, kw, &j->uids[i], &j->err) < 0)
			goto undo;
		added++;
	}
	/* RFC 8508 3: the old message goes only once the new one is there. */
	if (j->replace_uid != 0 &&
	    store_mailbox_expunge(j->replace_mbox, &j->replace_uid, 1, &j->err) < 0)
		goto undo;
	j->rc = 0;
	goto out;
undo:
	/* RFC 3502 6: all or nothing. */
	if (added > 0) {
		struct error ignore;
		store_mailbox_expunge(m, j->uids, added, &ignore);
	}
out:
	store_mailbox_close(&m);
}

static void append_job_free(struct append_job *j)
{
	for (size_t i = 0; i < j->n; i++)
		for (size_t k = 0; k < j->msgs[i].nkw; k++)
			free(j->msgs[i].keywords[k]);
	if (j->a != NULL) {
		for (size_t i = 0; i < j->a->n; i++)
			store_stage_free(&j->a->stages[i]);
		free(j->a);
	}
	free(j->msgs);
	free(j->uids);
	free(j->mailbox);
	free(j);
}

static void append_done(struct session *base, void *arg)
{
	struct imap_session *s = imap_session_of(base);
	struct append_job *j = arg;
	if (j->rc < 0) {
		if (j->err.code == ERR_NOTFOUND)
			imap_send_tagged(s, NULL, "NO", "[TRYCREATE] No such mailbox");
		else
			imap_send_store_error(s, NULL, &j->err);
	} else if (j->replace_uid != 0) {
		/* RFC 8508 3.2: APPENDUID in an untagged OK, then the
		 * expunge of the old message as any other. */
		imap_send(s, "* OK [APPENDUID %u %u] Replacement Message ID\r\n", j->uidvalidity,
			  j->uids[0]);
		imap_view_sync(s, true);
		imap_send_tagged(s, NULL, "OK", "Replace completed");
	} else {
		struct buf b = BUF_INIT;
		imap_seqset_format_uids(j->uids, j->n, &b);
		imap_view_sync(s, true);
		imap_send_tagged(s, NULL, "OK", "[APPENDUID %u %s] Append completed", j->uidvalidity,
			    buf_cstr(&b));
		buf_free(&b);
	}
	append_job_free(j);
}

static int parse_flags(const struct imap_arg *a, struct append_msg *m)
{
	for (size_t i = 0; i < a->count; i++) {
		const struct imap_arg *f = &a->list[i];
		uint32_t bit;
		if (f->type != IMAP_ARG_ATOM)
			return -1;
		if (imap_arg_system_flag(f->str, &bit)) {
			m->flags |= bit;
			continue;
		}
		if (f->str[0] == '\\' || m->nkw == STORE_MAX_KEYWORDS)
			return -1;
		m->keywords[m->nkw] = strdup(f->str);
		if (m->keywords[m->nkw] == NULL)
			return -1;
		m->nkw++;
	}
	return 0;
}

/* The job for APPEND (first = 0: args are mailbox, messages) or REPLACE
 * (first = 1: a message number before them), or NULL after a tagged
 * reply. Takes the staged literals. */
static struct append_job *append_prepare(struct imap_session *s, const struct imap_command *cmd,
					 size_t first)
{
	struct imap_append *a = s->append;
	s->append = NULL; /* the job owns the staged messages from here */
	struct append_job *j = calloc(1, sizeof(*j));
	if (j == NULL) {
		if (a != NULL) {
			s->append = a;
			imap_cmd_append_abort(s);
		}
		imap_send_tagged(s, cmd, "NO", "[SERVERBUG] Out of memory");
		return NULL;
	}
	j->s = s;
	j->a = a;
	size_t nlit = a ? a->n : 0;
	j->msgs = calloc(nlit ? nlit : 1, sizeof(*j->msgs));
	j->uids = calloc(nlit ? nlit : 1, sizeof(*j->uids));
	if (j->msgs == NULL || j->uids == NULL) {
		imap_send_tagged(s, cmd, "NO", "[SERVERBUG] Out of memory");
		goto fail;
	}
	if (a != NULL && a->failed) {
		imap_send_store_error(s, cmd, &a->err);
		goto fail;
	}
	if (cmd->argc < first + 2) {
		imap_send_tagged(s, cmd, "BAD", "Usage: %s%s mailbox [(flags)] [date-time] message",
				 cmd->name, first ? " number" : "");
		goto fail;
	}
	/* mailbox, then per message: [flags] [date-time] literal */
	size_t i = first + 1;
	while (i < cmd->argc) {
		struct append_msg *m = &j->msgs[j->n];
		if (j->n >= nlit) {
			imap_send_tagged(s, cmd, "BAD", "Expected a message literal");
			goto fail;
		}
		if (cmd->args[i].type == IMAP_ARG_LIST) {
			if (parse_flags(&cmd->args[i], m) < 0) {
				j->n++; /* so that its keywords are freed */
				imap_send_tagged(s, cmd, "BAD", "Invalid flags");
				goto fail;
			}
			i++;
		}
		if (i < cmd->argc && cmd->args[i].type == IMAP_ARG_STRING) {
			if (parse_date_time(cmd->args[i].str, cmd->args[i].len, &m->date) < 0) {
				j->n++;
				imap_send_tagged(s, cmd, "BAD", "Invalid date-time");
				goto fail;
			}
			i++;
		}
		j->n++;
		if (i >= cmd->argc || cmd->args[i].type != IMAP_ARG_STREAMED) {
			imap_send_tagged(s, cmd, "BAD", "Expected a message literal");
			goto fail;
		}
		if (cmd->args[i].len == 0) {
			imap_send_tagged(s, cmd, "NO", "[CANNOT] Empty message");
			goto fail;
		}
		i++;
	}
	if (j->n != nlit || (first != 0 && j->n != 1)) {
		imap_send_tagged(s, cmd, "BAD", "Invalid %s arguments", cmd->name);
		goto fail;
	}
	j->mailbox = imap_arg_mailbox(s, cmd, &cmd->args[first]);
	if (j->mailbox == NULL)
		goto fail;
	return j;
fail:
	append_job_free(j);
	return NULL;
}

static void append_start(struct imap_session *s, const struct imap_command *cmd,
			 struct append_job *j)
{
	if (session_async(&s->base, append_work, append_done, j) < 0) {
		imap_send_tagged(s, cmd, "NO", "[SERVERBUG] Out of memory");
		append_job_free(j);
	}
}

static int cmd_append(struct imap_session *s, const struct imap_command *cmd)
{
	struct append_job *j = append_prepare(s, cmd, 0);
	if (j != NULL)
		append_start(s, cmd, j);
	return 0;
}

/* The UID of the message REPLACE names, or 0 after a tagged reply. RFC
 * 8508 3.3 (and RFC 9051 9, seq-number): a message sequence number must
 * name a message of the mailbox, so one beyond it is BAD, as FETCH answers
 * here; a UID that names no message (another session expunged it) is a
 * valid UID, answered NO [NONEXISTENT] (RFC 5530), as Cyrus and Dovecot
 * refuse to replace what is gone. */
static uint32_t replace_target(struct imap_session *s, const struct imap_command *cmd)
{
	uint32_t n;
	if (cmd->argc < 1 || !imap_parser_arg_number(&cmd->args[0], &n) || n == 0) {
		imap_send_tagged(s, cmd, "BAD", "Usage: %sREPLACE number mailbox [(flags)] [date-time] message",
				 cmd->uid ? "UID " : "");
		return 0;
	}
	if (!cmd->uid) {
		if (n > s->view->n) {
			imap_send_tagged(s, cmd, "BAD", "Invalid message sequence number");
			return 0;
		}
		return s->view->uids[n - 1];
	}
	if (imap_view_seq(s->view, n) == 0) {
		imap_send_tagged(s, cmd, "NO", "[NONEXISTENT] No message with that UID");
		return 0;
	}
	return n;
}

static int cmd_replace(struct imap_session *s, const struct imap_command *cmd)
{
	uint32_t uid = replace_target(s, cmd);
	if (uid == 0)
		return 0;
	/* RFC 8508 3: the old message is expunged, which needs write access. */
	if (s->view->readonly) {
		imap_send_tagged(s, cmd, "NO", "[READ-ONLY] Mailbox is read-only");
		return 0;
	}
	struct append_job *j = append_prepare(s, cmd, 1);
	if (j == NULL)
		return 0;
	j->replace_uid = uid;
	j->replace_mbox = s->view->mbox; /* the session's: kept while the job runs */
	append_start(s, cmd, j);
	return 0;
}

static const struct imap_cmd_def rows[] = {
	{ { "APPEND", IMAP_IN_AUTH }, cmd_append, 0 },
	{ { "REPLACE", IMAP_IN_SELECTED }, cmd_replace, IMAP_CMD_UID },
};
const struct imap_cmd_family imap_cmd_append = { rows, sizeof(rows) / sizeof(rows[0]) };
