/*
 * imap_cmd_store.c: STORE and UID STORE (RFC 9051 6.4.6), with the
 * UNCHANGEDSINCE modifier and [MODIFIED] response code of CONDSTORE
 * (RFC 7162 3.1.3).
 *
 * Design note. The change itself is one store call
 * (store_mailbox_set_flags): the store renames each file, gives each
 * changed message a new modseq, and reports each message of the set as it
 * left it (flags, keywords, modseq, whether this call changed it, whether
 * it failed UNCHANGEDSINCE). The responses come from that report, compared
 * with the view, which holds what the client was last told:
 *
 *  - without .SILENT, every message of the set that still exists (and did
 *    not fail UNCHANGEDSINCE) gets an untagged FETCH with its new FLAGS
 *    (RFC 9051 6.4.6), plus UID for UID STORE or under QRESYNC (RFC 7162
 *    3.2.4) and MODSEQ under CONDSTORE (RFC 7162 3.1.3);
 *  - with .SILENT, nothing about FLAGS is sent (the client knows what it
 *    asked for), but under CONDSTORE each message whose modseq moved still
 *    gets FETCH (MODSEQ) so the client learns the new mod-sequence (RFC
 *    7162 3.1.3 and its example 3).
 *
 * Each message whose state was reported here, or whose new state is
 * exactly what the client asked for, is recorded with imap_view_update so
 * that the sync before the tagged reply does not echo it. A message that
 * someone else changed at the same time (its flags are not what this
 * STORE alone would give: store_flags_apply, the store's own arithmetic,
 * on the flags the view holds) is left to that sync, which reports it.
 *
 * Keywords named in +FLAGS/FLAGS are created on the way (imap_arg_flags
 * with create); a new keyword is announced with FLAGS before the first
 * FETCH that shows it.
 */
#include "imap/imap_int.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/imap_seqset.h"
#include "lib/buf.h"

struct store_ctx {
	struct imap_session *s;
	uint32_t *failed; /* UIDs that failed UNCHANGEDSINCE, ascending */
	size_t nfailed;
	bool announced; /* keywords new to the client were announced */
	enum store_flag_mode mode;
	uint32_t flags, keywords;
	bool silent, uid_cmd;
};

static unsigned keyword_count(struct store_mailbox *mbox)
{
	unsigned n = 0;
	for (unsigned k = 0; k < STORE_MAX_KEYWORDS; k++)
		if (store_mailbox_keyword(mbox, k) != NULL)
			n = k + 1;
	return n;
}

/* A keyword created just now (or by another process) is announced with
 * FLAGS before a FETCH shows it. */
static void announce_keywords(struct store_ctx *sc)
{
	struct imap_view *v = sc->s->view;
	if (sc->announced)
		return;
	sc->announced = true;
	if (keyword_count(v->mbox) > v->nkeywords_announced)
		imap_view_send_flags(sc->s);
}

static void report(void *ctx, const struct store_flag_report *r)
{
	struct store_ctx *sc = ctx;
	struct imap_session *s = sc->s;
	struct imap_view *v = s->view;
	if (r->modified) {
		sc->failed[sc->nfailed++] = r->uid; /* in the set's order: ascending */
		return;
	}
	announce_keywords(sc);
	uint32_t seq = imap_view_seq(v, r->uid);
	if (seq == 0)
		return;
	bool modseq_changed = r->modseq != v->modseqs[seq - 1];
	if (sc->silent) {
		uint32_t ef = v->flags[seq - 1] & ~IMAP_FLAG_RECENT, ek = v->keywords[seq - 1];
		store_flags_apply(sc->mode, sc->flags, sc->keywords, &ef, &ek);
		if (ef != r->flags || ek != r->keywords)
			return; /* changed elsewhere too: the sync reports it */
		if (s->condstore && modseq_changed) {
			imap_send_fetch_open(s, seq, r->uid);
			if ((sc->uid_cmd || s->qresync) && !s->uidonly)
				imap_send(s, "UID %u ", r->uid);
			imap_send(s, "MODSEQ (%" PRIu64 "))\r\n", r->modseq);
		}
	} else {
		imap_send_fetch_open(s, seq, r->uid);
		if ((sc->uid_cmd || s->qresync) && !s->uidonly)
			imap_send(s, "UID %u ", r->uid);
		imap_send(s, "FLAGS ");
		imap_send_flags(s, r->flags | imap_view_recent(s, r->uid), r->keywords);
		if (s->condstore)
			imap_send(s, " MODSEQ (%" PRIu64 ")", r->modseq);
		imap_send(s, ")\r\n");
	}
	imap_view_update(v, r->uid, r->flags, r->keywords, r->modseq);
}

/* (UNCHANGEDSINCE n); *given_r tells it was there (n may be 0). */
static int parse_modifiers(const struct imap_arg *a, uint64_t *since_r, bool *given_r)
{
	*given_r = false;
	for (size_t i = 0; i < a->count; i++) {
		if (!imap_parser_arg_atom_eq(&a->list[i], "UNCHANGEDSINCE") || i + 1 >= a->count ||
		    !imap_parser_arg_number64(&a->list[i + 1], since_r))
			return -1;
		*given_r = true;
		i++;
	}
	return 0;
}

static int cmd_store(struct imap_session *s, const struct imap_command *cmd)
{
	struct imap_view *v = s->view;
	struct store_ctx sc = { .s = s, .uid_cmd = cmd->uid };
	struct error err;
	uint32_t *uids = NULL;
	size_t n = 0, k = 1;
	uint64_t since = 0;
	bool since_given = false;

	if (cmd->argc >= 2 && cmd->args[1].type == IMAP_ARG_LIST) {
		if (parse_modifiers(&cmd->args[1], &since, &since_given) < 0) {
			imap_send_tagged(s, cmd, "BAD", "Invalid STORE modifier");
			return 0;
		}
		k = 2;
	}
	if (cmd->argc < k + 2 || cmd->args[k].type != IMAP_ARG_ATOM) {
		imap_send_tagged(s, cmd, "BAD", "STORE needs a set, an action and flags");
		return 0;
	}
	/* store-att-flags = (["+" / "-"] "FLAGS" [".SILENT"]) SP (flag-list / (flag *(SP flag))) */
	const char *item = cmd->args[k].str;
	if (*item == '+') {
		sc.mode = STORE_FLAGS_ADD;
		item++;
	} else if (*item == '-') {
		sc.mode = STORE_FLAGS_REMOVE;
		item++;
	} else {
		sc.mode = STORE_FLAGS_SET;
	}
	if (strcasecmp(item, "FLAGS.SILENT") == 0) {
		sc.silent = true;
	} else if (strcasecmp(item, "FLAGS") != 0) {
		imap_send_tagged(s, cmd, "BAD", "Unknown STORE data item");
		return 0;
	}
	struct imap_arg many = { .type = IMAP_ARG_LIST };
	const struct imap_arg *flagarg = &cmd->args[k + 1];
	if (cmd->argc - (k + 1) > 1) {
		many.list = &cmd->args[k + 1];
		many.count = cmd->argc - (k + 1);
		for (size_t i = 0; i < many.count; i++)
			if (many.list[i].type == IMAP_ARG_LIST) {
				imap_send_tagged(s, cmd, "BAD", "Invalid flag list");
				return 0;
			}
		flagarg = &many;
	}
	if (imap_arg_uidset(s, cmd, &cmd->args[0], cmd->uid, &uids, &n) < 0)
		return 0;
	if (imap_arg_limit(s, cmd, &n) < 0) {
		free(uids);
		return 0;
	}
	if (v->readonly) {
		/* RFC 9051 6.4.6 / 6.3.3: flags of an EXAMINEd mailbox are fixed */
		free(uids);
		imap_send_tagged(s, cmd, "NO", "[READ-ONLY] The mailbox is read-only");
		return 0;
	}
	if (imap_arg_flags(s, cmd, flagarg, v->mbox, sc.mode != STORE_FLAGS_REMOVE, &sc.flags,
			   &sc.keywords) < 0) {
		free(uids);
		return 0;
	}
	if (since_given)
		imap_view_enable_condstore(s); /* RFC 7162 3.1: CONDSTORE-enabling */
	if (since_given && n > 0 && (sc.failed = malloc(n * sizeof(*sc.failed))) == NULL) {
		free(uids);
		imap_send_tagged(s, cmd, "NO", "[SERVERBUG] Out of memory");
		return 0;
	}
	if (n > 0 && since_given && since == 0) {
		/* Every message has a mod-sequence of at least 1 (RFC 7162 3.1.3:
		 * UNCHANGEDSINCE 0 fails for all of them). */
		memcpy(sc.failed, uids, n * sizeof(*uids));
		sc.nfailed = n;
	} else if (n > 0 && store_mailbox_set_flags(v->mbox, uids, n, sc.mode, sc.flags, sc.keywords,
						    since, report, &sc, &err) < 0) {
		free(uids);
		free(sc.failed);
		imap_send_store_error(s, cmd, &err);
		return 0;
	}
	announce_keywords(&sc);
	struct buf modified = BUF_INIT;
	if (sc.nfailed > 0) {
		/* RFC 7162 3.1.3: message numbers for STORE, UIDs for UID STORE */
		if (cmd->uid) {
			imap_seqset_format_uids(sc.failed, sc.nfailed, &modified);
		} else {
			struct imap_seqset set = IMAP_SEQSET_INIT;
			for (size_t i = 0; i < sc.nfailed; i++) {
				uint32_t seq = imap_view_seq(v, sc.failed[i]);
				if (seq != 0)
					imap_seqset_add(&set, seq, seq);
			}
			imap_seqset_format(&set, &modified);
			imap_seqset_free(&set);
		}
	}
	free(uids);
	free(sc.failed);
	imap_view_sync(s, cmd->uid);
	if (!s->base.closing) {
		if (modified.len > 0) { /* imap_send_tagged would cut a long set */
			imap_send(s, "%s OK [MODIFIED %s] Conditional STORE failed\r\n", cmd->tag,
				  buf_cstr(&modified));
			imap_send_good(s);
		} else
			imap_send_tagged(s, cmd, "OK", "Store completed");
	}
	buf_free(&modified);
	return 0;
}

static const struct imap_cmd_def rows[] = {
	{ { "STORE", IMAP_IN_SELECTED }, cmd_store, IMAP_CMD_UID | IMAP_CMD_NO_EXPUNGE },
};
const struct imap_cmd_family imap_cmd_store = { rows, sizeof(rows) / sizeof(rows[0]) };
