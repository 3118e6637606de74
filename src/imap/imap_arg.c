/*
 * imap_arg.c: command arguments that several commands share: a mailbox
 * name, a flag list, a sequence or UID set resolved against the view. Each
 * answers the command itself (tagged BAD or NO) when the argument is bad.
 */
#include "imap/imap_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/imap_seqset.h"
#include "lib/config.h"
#include "imap/imap_utf7.h"
#include "lib/buf.h"

char *imap_arg_mailbox(struct imap_session *s, const struct imap_command *cmd,
		       const struct imap_arg *arg)
{
	const char *str;
	size_t len;
	char *name = NULL;
	if (!imap_parser_arg_astring(arg, &str, &len) || memchr(str, '\0', len) != NULL) {
		imap_send_tagged(s, cmd, "BAD", "Expected a mailbox name");
		return NULL;
	}
	if (s->utf8) {
		name = strndup(str, len);
	} else {
		struct buf b = BUF_INIT;
		struct error why;
		if (imap_utf7_decode(str, len, &b, &why) < 0) {
			/* RFC 3501 5.1.3: names must be valid modified UTF-7. */
			buf_free(&b);
			imap_send_tagged(s, cmd, "NO", "[CANNOT] Mailbox name is not valid modified UTF-7");
			return NULL;
		}
		name = buf_steal(&b);
	}
	if (name == NULL)
		imap_send_tagged(s, cmd, "NO", "[SERVERBUG] Out of memory");
	return name;
}

bool imap_arg_system_flag(const char *name, uint32_t *bit_r)
{
	static const struct {
		const char *name;
		uint32_t bit;
	} sys[] = {
		{ "\\Answered", STORE_F_ANSWERED }, { "\\Flagged", STORE_F_FLAGGED },
		{ "\\Deleted", STORE_F_DELETED },   { "\\Seen", STORE_F_SEEN },
		{ "\\Draft", STORE_F_DRAFT },	    { "$Forwarded", STORE_F_PASSED },
	};
	for (size_t k = 0; k < sizeof(sys) / sizeof(sys[0]); k++)
		if (strcasecmp(name, sys[k].name) == 0) {
			*bit_r = sys[k].bit;
			return true;
		}
	return false;
}

int imap_arg_flags(struct imap_session *s, const struct imap_command *cmd,
		   const struct imap_arg *arg, struct store_mailbox *mbox, bool create,
		   uint32_t *flags_r, uint32_t *keywords_r)
{
	const struct imap_arg *list = arg;
	size_t n = 1;
	uint32_t flags = 0, kws = 0;
	if (arg->type == IMAP_ARG_LIST) {
		list = arg->list;
		n = arg->count;
	} else if (arg->type == IMAP_ARG_NIL) {
		/* STORE 1 FLAGS NIL: RFC 3501 9 and RFC 9051 9 allow only
		 * "(" [flag-list] ")" or flags without parentheses, never NIL;
		 * Dovecot (imap_arg_get_list_full takes NIL as an empty list)
		 * and Cyrus accept it as "()", and clients send it. So do we. */
		n = 0;
	}
	for (size_t i = 0; i < n; i++) {
		const struct imap_arg *a = &list[i];
		if (a->type != IMAP_ARG_ATOM) {
			imap_send_tagged(s, cmd, "BAD", "Invalid flag");
			return -1;
		}
		uint32_t bit;
		if (imap_arg_system_flag(a->str, &bit)) {
			flags |= bit;
			continue;
		}
		if (a->str[0] == '\\') {
			/* \Recent cannot be set (RFC 3501 2.3.2); other system
			 * flags are unknown to us. */
			imap_send_tagged(s, cmd, "BAD", "Invalid system flag %s", a->str);
			return -1;
		}
		if (mbox == NULL)
			continue; /* no mailbox yet (APPEND target checked later) */
		unsigned idx;
		struct error err;
		if (store_mailbox_keyword_index(mbox, a->str, create, &idx, &err) < 0) {
			if (!create && err.code == ERR_NOTFOUND)
				continue; /* removing a keyword nobody has: nothing to do */
			if (err.code == ERR_INVALID) {
				imap_send_tagged(s, cmd, "BAD", "Invalid keyword");
				return -1;
			}
			imap_send_store_error(s, cmd, &err);
			return -1;
		}
		kws |= 1u << idx;
	}
	*flags_r = flags;
	*keywords_r = kws;
	return 0;
}

static int uidset(struct imap_session *s, const struct imap_command *cmd, const struct imap_arg *arg,
		  bool uid, bool clip, uint32_t **uids_r, size_t *n_r)
{
	struct imap_view *v = s->view;
	struct imap_seqset set = IMAP_SEQSET_INIT;
	struct error why;
	if (arg->type != IMAP_ARG_ATOM) {
		imap_send_tagged(s, cmd, "BAD", "Expected a sequence set");
		return -1;
	}
	uint32_t star = uid ? (v->n ? v->uids[v->n - 1] : 1) : (uint32_t)v->n;
	if (imap_seqset_parse(arg->str, arg->len, star, IMAP_SEQSET_ALLOW_SEARCHRES, &set, &why) < 0) {
		imap_send_tagged(s, cmd, "BAD", "Invalid sequence set: %s", why.text);
		return -1;
	}
	uint32_t *out = malloc((v->n ? v->n : 1) * sizeof(*out));
	size_t n = 0;
	if (out == NULL) {
		imap_seqset_free(&set);
		imap_send_tagged(s, cmd, "NO", "[SERVERBUG] Out of memory");
		return -1;
	}
	if (set.searchres) {
		/* RFC 5182: "$" is the last saved SEARCH result (UIDs), minus
		 * what has been expunged since. */
		for (size_t i = 0; i < s->nsaved && s->saved_valid; i++)
			if (imap_view_seq(v, s->saved[i]) != 0)
				out[n++] = s->saved[i];
	} else if (uid) {
		for (size_t i = 0; i < v->n; i++)
			if (imap_seqset_contains(&set, v->uids[i]))
				out[n++] = v->uids[i];
	} else {
		for (size_t r = 0; r < set.count; r++) {
			if (clip && set.ranges[r].lo > v->n)
				break; /* ascending: no later range is in the view */
			if (clip && set.ranges[r].hi > v->n)
				set.ranges[r].hi = v->n;
			if (set.ranges[r].hi > v->n) {
				imap_seqset_free(&set);
				free(out);
				imap_send_tagged(s, cmd, "BAD", "Message sequence number out of range");
				return -1;
			}
			for (uint64_t q = set.ranges[r].lo; q <= set.ranges[r].hi; q++)
				out[n++] = v->uids[q - 1];
		}
	}
	imap_seqset_free(&set);
	*uids_r = out;
	*n_r = n;
	return 0;
}

int imap_arg_uidset(struct imap_session *s, const struct imap_command *cmd,
		    const struct imap_arg *arg, bool uid, uint32_t **uids_r, size_t *n_r)
{
	return uidset(s, cmd, arg, uid, false, uids_r, n_r);
}

int imap_arg_uidset_search(struct imap_session *s, const struct imap_command *cmd,
			   const struct imap_arg *arg, uint32_t **uids_r, size_t *n_r)
{
	return uidset(s, cmd, arg, false, true, uids_r, n_r);
}

/* ---- PARTIAL (RFC 9394 3.1) -------------------------------------------------- */

/* One nz-number of a partial range, with its sign. */
static bool partial_number(const char *p, const char *end, bool *neg_r, uint32_t *n_r)
{
	uint64_t v = 0;
	*neg_r = p < end && *p == '-';
	if (*neg_r)
		p++;
	if (p == end || *p == '0')
		return false;
	for (; p < end; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (uint64_t)(*p - '0');
		if (v > UINT32_MAX)
			return false;
	}
	*n_r = (uint32_t)v;
	return true;
}

int imap_arg_partial(const struct imap_arg *arg, struct imap_partial *p)
{
	/* partial-range = partial-range-first / partial-range-last;
	 * first = nz-number ":" nz-number, last = "-" nz-number ":" "-"
	 * nz-number (RFC 9394 5). */
	if (arg->type != IMAP_ARG_ATOM || arg->len >= sizeof(p->text))
		return -1;
	const char *s = arg->str, *end = s + arg->len, *colon = memchr(s, ':', arg->len);
	bool neg1, neg2;
	uint32_t a, b;
	if (colon == NULL || !partial_number(s, colon, &neg1, &a) ||
	    !partial_number(colon + 1, end, &neg2, &b) || neg1 != neg2)
		return -1;
	p->last = neg1;
	/* 100:1 is the range 1:100, as a seq-range is (RFC 9051 9) */
	p->lo = a < b ? a : b;
	p->hi = a < b ? b : a;
	memcpy(p->text, arg->str, arg->len);
	p->text[arg->len] = '\0';
	return 0;
}

void imap_partial_slice(const struct imap_partial *p, size_t n, size_t *first_r, size_t *count_r)
{
	*first_r = *count_r = 0;
	if (p->lo > n)
		return;
	size_t hi = p->hi < n ? p->hi : n; /* positions lo..hi, 1-based */
	if (!p->last) {
		*first_r = p->lo - 1;
		*count_r = hi - p->lo + 1;
	} else {
		/* -1 is the last: -lo..-hi are the positions n-hi+1..n-lo+1 */
		*first_r = n - hi;
		*count_r = hi - p->lo + 1;
	}
}

/* ---- MESSAGELIMIT (RFC 9738) -------------------------------------------------- */

int imap_arg_limit(struct imap_session *s, const struct imap_command *cmd, size_t *n)
{
	uint64_t limit = config_uint(s->base.env->config, "imap_message_limit");
	if (limit == 0 || *n <= limit)
		return 0;
	if (!cmd->uid) {
		imap_send_tagged(s, cmd, "NO", "[LIMIT] More than %llu messages; use UID ranges",
				 (unsigned long long)limit);
		return -1;
	}
	*n = (size_t)limit;
	s->limit_hit = true;
	return 0;
}
