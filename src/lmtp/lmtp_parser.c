/* lmtp_parser.c: LMTP command lines and DATA dot-decoding; see lmtp_parser.h. */
#include "lmtp/lmtp_parser.h"

#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "lib/strnum.h"

static const struct {
	const char *name;
	enum lmtp_verb verb;
} verbs[] = {
	{ "LHLO", LMTP_LHLO }, { "MAIL", LMTP_MAIL }, { "RCPT", LMTP_RCPT }, { "DATA", LMTP_DATA },
	{ "BDAT", LMTP_BDAT }, { "RSET", LMTP_RSET }, { "NOOP", LMTP_NOOP }, { "QUIT", LMTP_QUIT },
	{ "VRFY", LMTP_VRFY }, { "HELP", LMTP_HELP }, { "STARTTLS", LMTP_STARTTLS },
};

/* "FROM:<path> params" / "TO:<path> params" (RFC 5321 4.1.1.2-3; a space
 * after the colon is tolerated, as Postfix and others do). */
static int parse_path(const char *p, const char *end, struct lmtp_command *cmd, struct error *err)
{
	while (p < end && *p == ' ')
		p++;
	if (p >= end || *p != '<') {
		error_set(err, ERR_INVALID, "501 5.5.4 Syntax: address must be in angle brackets");
		return -1;
	}
	p++;
	const char *start = p;
	bool quoted = false;
	while (p < end && (quoted || *p != '>')) {
		if (*p == '"')
			quoted = !quoted;
		else if (*p == '\\' && quoted && p + 1 < end)
			p++;
		p++;
	}
	if (p >= end) {
		error_set(err, ERR_INVALID, "501 5.5.4 Syntax: missing '>'");
		return -1;
	}
	size_t alen = (size_t)(p - start);
	/* Drop a source route "@a,@b:" (RFC 5321 4.1.2: must be accepted, ignored). */
	if (alen > 0 && start[0] == '@') {
		const char *colon = memchr(start, ':', alen);
		if (colon == NULL) {
			error_set(err, ERR_INVALID, "501 5.1.3 Bad address syntax");
			return -1;
		}
		alen -= (size_t)(colon + 1 - start);
		start = colon + 1;
	}
	if (alen > LMTP_MAX_ADDRESS) {
		error_set(err, ERR_INVALID, "501 5.1.3 Address too long");
		return -1;
	}
	memcpy(cmd->address, start, alen);
	cmd->address[alen] = '\0';
	p++; /* '>' */
	while (p < end) {
		while (p < end && *p == ' ')
			p++;
		if (p >= end)
			break;
		const char *ps = p;
		while (p < end && *p != ' ')
			p++;
		if (cmd->nparams == LMTP_MAX_PARAMS) {
			error_set(err, ERR_INVALID, "501 5.5.4 Too many parameters");
			return -1;
		}
		struct lmtp_param *pr = &cmd->params[cmd->nparams++];
		const char *eq = memchr(ps, '=', (size_t)(p - ps));
		size_t nlen = eq ? (size_t)(eq - ps) : (size_t)(p - ps);
		size_t vlen = eq ? (size_t)(p - eq - 1) : 0;
		if (nlen == 0 || nlen >= sizeof(pr->name) || vlen >= sizeof(pr->value)) {
			error_set(err, ERR_INVALID, "501 5.5.4 Invalid parameter");
			return -1;
		}
		for (size_t i = 0; i < nlen; i++)
			pr->name[i] = (char)toupper((unsigned char)ps[i]);
		pr->name[nlen] = '\0';
		if (eq != NULL)
			memcpy(pr->value, eq + 1, vlen);
		pr->value[vlen] = '\0';
	}
	return 0;
}

int lmtp_parse_command(const char *line, size_t len, struct lmtp_command *cmd, struct error *err)
{
	memset(cmd, 0, offsetof(struct lmtp_command, params));
	cmd->nparams = 0;
	cmd->chunk_size = 0;
	cmd->last = false;
	cmd->verb = LMTP_UNKNOWN;
	if (len >= LMTP_MAX_LINE) {
		error_set(err, ERR_INVALID, "500 5.5.2 Line too long");
		return -1;
	}
	for (size_t i = 0; i < len; i++)
		if (line[i] == '\0' || line[i] == '\r') {
			error_set(err, ERR_INVALID, "500 5.5.2 Invalid character in command");
			return -1;
		}
	const char *end = line + len;
	const char *sp = memchr(line, ' ', len);
	size_t vlen = sp ? (size_t)(sp - line) : len;
	for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (strlen(verbs[i].name) == vlen && strncasecmp(line, verbs[i].name, vlen) == 0)
			cmd->verb = verbs[i].verb;
	if (cmd->verb == LMTP_UNKNOWN) {
		error_set(err, ERR_INVALID, "500 5.5.2 Command not recognized");
		return -1;
	}
	const char *args = sp ? sp + 1 : end;
	size_t alen = (size_t)(end - args);
	memcpy(cmd->arg, args, alen);
	cmd->arg[alen] = '\0';
	switch (cmd->verb) {
	case LMTP_LHLO:
		if (alen == 0) {
			error_set(err, ERR_INVALID, "501 5.5.4 Syntax: LHLO hostname");
			return -1;
		}
		return 0;
	case LMTP_MAIL:
	case LMTP_RCPT: {
		const char *kw = cmd->verb == LMTP_MAIL ? "FROM:" : "TO:";
		size_t kl = strlen(kw);
		if (alen < kl || strncasecmp(args, kw, kl) != 0) {
			error_set(err, ERR_INVALID, "501 5.5.4 Syntax: %s",
				  cmd->verb == LMTP_MAIL ? "MAIL FROM:<address>"
							 : "RCPT TO:<address>");
			return -1;
		}
		return parse_path(args + kl, end, cmd, err);
	}
	case LMTP_BDAT: {
		/* BDAT size [LAST] (RFC 3030 2) */
		const char *s2 = memchr(args, ' ', alen);
		size_t nlen = s2 ? (size_t)(s2 - args) : alen;
		if (strnum_u64(args, nlen, UINT64_MAX / 2, &cmd->chunk_size) < 0) {
			error_set(err, ERR_INVALID, "501 5.5.4 Syntax: BDAT size [LAST]");
			return -1;
		}
		if (s2 != NULL) {
			if (end - (s2 + 1) != 4 || strncasecmp(s2 + 1, "LAST", 4) != 0) {
				error_set(err, ERR_INVALID, "501 5.5.4 Syntax: BDAT size [LAST]");
				return -1;
			}
			cmd->last = true;
		}
		return 0;
	}
	case LMTP_DATA:
	case LMTP_RSET:
	case LMTP_QUIT:
	case LMTP_STARTTLS:
		if (alen != 0) {
			error_set(err, ERR_INVALID, "501 5.5.4 Syntax: no arguments allowed");
			return -1;
		}
		return 0;
	default:
		return 0;
	}
}

int lmtp_split_address(const char *addr, char *local_r, size_t local_size, char *domain_r,
		       size_t domain_size)
{
	const char *at = NULL;
	bool quoted = false;
	for (const char *p = addr; *p != '\0'; p++) {
		if (*p == '"')
			quoted = !quoted;
		else if (*p == '\\' && quoted && p[1] != '\0')
			p++;
		else if (*p == '@' && !quoted)
			at = p;
	}
	size_t llen = at ? (size_t)(at - addr) : strlen(addr);
	if (llen == 0)
		return -1;
	/* unquote the local part */
	size_t o = 0;
	for (size_t i = 0; i < llen; i++) {
		char c = addr[i];
		if (c == '"')
			continue;
		if (c == '\\' && i + 1 < llen)
			c = addr[++i];
		if (o + 1 >= local_size)
			return -1;
		local_r[o++] = c;
	}
	local_r[o] = '\0';
	const char *dom = at ? at + 1 : "";
	if (strlen(dom) >= domain_size)
		return -1;
	strcpy(domain_r, dom);
	return o > 0 ? 0 : -1;
}

bool lmtp_dot_feed(struct lmtp_dot *d, const char *in, size_t len, char *out, size_t *out_len_r,
		   size_t *consumed_r)
{
	size_t o = 0, i = 0;
	for (; i < len && d->state != LMTP_DOT_END; i++) {
		char c = in[i];
		switch (d->state) {
		case LMTP_DOT_LS:
			if (c == '.') {
				d->state = LMTP_DOT_DOT; /* stuffed, or the end */
				break;
			}
			out[o++] = c;
			d->state = c == '\n' ? LMTP_DOT_LS : c == '\r' ? LMTP_DOT_CR : LMTP_DOT_MID;
			break;
		case LMTP_DOT_DOT:
			if (c == '\r') {
				d->state = LMTP_DOT_DOTCR;
			} else if (c == '\n') {
				d->state = LMTP_DOT_END; /* ".\n": lenient end */
			} else {
				out[o++] = c; /* the leading dot is dropped */
				d->state = LMTP_DOT_MID;
			}
			break;
		case LMTP_DOT_DOTCR:
			if (c == '\n') {
				d->state = LMTP_DOT_END;
			} else {
				/* ".\rX": not the end; the dot was stuffing */
				out[o++] = '\r';
				out[o++] = c;
				d->state = c == '\r' ? LMTP_DOT_CR : c == '\n' ? LMTP_DOT_LS : LMTP_DOT_MID;
			}
			break;
		case LMTP_DOT_MID:
		case LMTP_DOT_CR:
			out[o++] = c;
			d->state = c == '\n' ? LMTP_DOT_LS : c == '\r' ? LMTP_DOT_CR : LMTP_DOT_MID;
			break;
		case LMTP_DOT_END:
			break;
		}
	}
	*out_len_r = o;
	*consumed_r = i;
	return d->state == LMTP_DOT_END;
}
