/*
 * imap_cmd_metadata.c: GETMETADATA and SETMETADATA (RFC 5464, capabilities
 * METADATA and METADATA-SERVER), and the "* METADATA" lines that LIST
 * RETURN (METADATA (...)) sends (RFC 9590, LIST-METADATA).
 *
 * Entries are kept by store_metadata.c. Both /private and /shared entries
 * are supported; with no mailbox sharing between users, a user's /shared
 * entries are seen only by that user too, so [METADATA NOPRIVATE] is never
 * sent. Entry names are case-insensitive (RFC 5464 3.2) and kept in lower
 * case, as Dovecot does.
 */
#include "imap/imap_int.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define DEPTH_INFINITY ((unsigned)-1)

/* RFC 5464 3.2 and its ABNF (5): "/private" or "/shared", then one or more
 * "/component"; printable ASCII without "*" and "%", no "//", no trailing
 * "/". root_ok: the bare "/private" or "/shared" (a GETMETADATA with a
 * DEPTH may ask for everything below it). Lowers *name in place. */
static bool entry_valid(char *name, bool root_ok)
{
	size_t len = strlen(name);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c <= 0x20 || c >= 0x7f || c == '*' || c == '%')
			return false;
		if (c == '/' && (i + 1 == len || name[i + 1] == '/'))
			return false;
		name[i] = (char)tolower(c);
	}
	size_t root;
	if (strncmp(name, "/private", 8) == 0)
		root = 8;
	else if (strncmp(name, "/shared", 7) == 0)
		root = 7;
	else
		return false;
	if (name[root] == '\0')
		return root_ok;
	return name[root] == '/';
}

/* The entry names of arg (one entry or a list): malloc'ed copies, or NULL
 * after a tagged BAD. */
static char **entry_list(struct imap_session *s, const struct imap_command *cmd,
			 const struct imap_arg *arg, bool root_ok, size_t *n_r)
{
	const struct imap_arg *v = arg;
	size_t n = 1;
	if (arg->type == IMAP_ARG_LIST) {
		v = arg->list;
		n = arg->count;
	}
	char **names = calloc(n ? n : 1, sizeof(*names));
	if (names == NULL || n == 0) {
		free(names);
		imap_send_tagged(s, cmd, "BAD", "No entries");
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		const char *str;
		size_t len;
		if (!imap_parser_arg_astring(&v[i], &str, &len) || (names[i] = strdup(str)) == NULL ||
		    !entry_valid(names[i], root_ok)) {
			for (size_t k = 0; k <= i; k++)
				free(names[k]);
			free(names);
			imap_send_tagged(s, cmd, "BAD", "Invalid entry name");
			return NULL;
		}
	}
	*n_r = n;
	return names;
}

static void names_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* The mailbox argument: "" is the server (*name_r NULL). 0, or -1 after a
 * tagged reply. */
static int mailbox_arg(struct imap_session *s, const struct imap_command *cmd,
		       const struct imap_arg *arg, char **name_r)
{
	const char *str;
	size_t len;
	*name_r = NULL;
	if (imap_parser_arg_astring(arg, &str, &len) && len == 0)
		return 0;
	*name_r = imap_arg_mailbox(s, cmd, arg);
	return *name_r == NULL ? -1 : 0;
}

/* Does entry `have` answer request `want` at depth? */
static bool entry_matches(const char *want, const char *have, unsigned depth)
{
	size_t wl = strlen(want);
	if (strcmp(want, have) == 0)
		return true;
	if (depth == 0 || strncmp(want, have, wl) != 0 || have[wl] != '/')
		return false;
	return depth == DEPTH_INFINITY || strchr(have + wl + 1, '/') == NULL;
}

static void send_value(struct imap_session *s, const struct store_metadata_entry *e)
{
	if (memchr(e->value, '\0', e->len) != NULL) {
		/* RFC 5464 5: value = nstring / literal8 */
		imap_send(s, "~{%zu}\r\n", e->len);
		imap_send_raw(s, e->value, e->len);
	} else
		imap_send_string(s, e->value, e->len);
}

/* One "* METADATA" line for the entries that answer the requests; a
 * requested entry that has no value is sent as NIL at depth 0 (as Dovecot
 * does; RFC 9590 4 shows the same for LIST). Values over maxsize are left
 * out and *longest_r is the largest of them (RFC 5464 4.2.1). */
static int send_metadata(struct imap_session *s, const char *mailbox, char **want, size_t nwant,
			 unsigned depth, uint64_t maxsize, uint64_t *longest_r, struct error *err)
{
	struct store_metadata_entry *v;
	size_t n;
	bool any = false;
	if (store_metadata_get(s->suser, mailbox, &v, &n, err) < 0)
		return -1;
	for (size_t w = 0; w < nwant; w++) {
		bool found = false;
		for (size_t i = 0; i < n; i++) {
			if (!entry_matches(want[w], v[i].name, depth))
				continue;
			found = true;
			if (v[i].len > maxsize) {
				if (v[i].len > *longest_r)
					*longest_r = v[i].len;
				continue;
			}
			if (!any) {
				imap_send(s, "* METADATA ");
				if (mailbox == NULL)
					imap_send(s, "\"\"");
				else
					imap_send_mailbox(s, mailbox);
				imap_send(s, " (");
			}
			imap_send(s, "%s%s ", any ? " " : "", v[i].name);
			send_value(s, &v[i]);
			any = true;
		}
		if (!found && depth == 0 && strchr(want[w] + 1, '/') != NULL) {
			if (!any) {
				imap_send(s, "* METADATA ");
				if (mailbox == NULL)
					imap_send(s, "\"\"");
				else
					imap_send_mailbox(s, mailbox);
				imap_send(s, " (");
			}
			imap_send(s, "%s%s NIL", any ? " " : "", want[w]);
			any = true;
		}
	}
	if (any)
		imap_send(s, ")\r\n");
	store_metadata_free(v, n);
	return 0;
}

/* (MAXSIZE n DEPTH d): 0, or -1 after a tagged BAD. */
static int get_options(struct imap_session *s, const struct imap_command *cmd,
		       const struct imap_arg *o, uint64_t *maxsize, unsigned *depth)
{
	for (size_t i = 0; i < o->count; i++) {
		uint32_t num;
		if (i + 1 < o->count && imap_parser_arg_atom_eq(&o->list[i], "MAXSIZE") &&
		    imap_parser_arg_number(&o->list[i + 1], &num)) {
			*maxsize = num;
		} else if (i + 1 < o->count && imap_parser_arg_atom_eq(&o->list[i], "DEPTH") &&
			   (imap_parser_arg_atom_eq(&o->list[i + 1], "0") ||
			    imap_parser_arg_atom_eq(&o->list[i + 1], "1") ||
			    imap_parser_arg_atom_eq(&o->list[i + 1], "infinity"))) {
			const char *d = o->list[i + 1].str;
			*depth = d[0] == '0' ? 0 : d[0] == '1' ? 1 : DEPTH_INFINITY;
		} else {
			imap_send_tagged(s, cmd, "BAD", "Invalid GETMETADATA option");
			return -1;
		}
		i++;
	}
	return 0;
}

static int cmd_getmetadata(struct imap_session *s, const struct imap_command *cmd)
{
	uint64_t maxsize = UINT64_MAX, longest = 0;
	unsigned depth = 0;
	size_t ai = 0, nwant;
	char *mailbox;
	struct error err;
	/* RFC 5464 4.2: GETMETADATA [(options)] mailbox entries */
	if (cmd->argc == 3 && cmd->args[0].type == IMAP_ARG_LIST) {
		if (get_options(s, cmd, &cmd->args[0], &maxsize, &depth) < 0)
			return 0;
		ai = 1;
	}
	if (cmd->argc != ai + 2) {
		imap_send_tagged(s, cmd, "BAD", "Usage: GETMETADATA [(options)] mailbox entries");
		return 0;
	}
	char **want = entry_list(s, cmd, &cmd->args[ai + 1], depth != 0, &nwant);
	if (want == NULL)
		return 0;
	if (mailbox_arg(s, cmd, &cmd->args[ai], &mailbox) < 0) {
		names_free(want, nwant);
		return 0;
	}
	if (send_metadata(s, mailbox, want, nwant, depth, maxsize, &longest, &err) < 0)
		imap_send_store_error(s, cmd, &err);
	else if (longest > 0)
		imap_send_tagged(s, cmd, "OK", "[METADATA LONGENTRIES %llu] GETMETADATA completed",
				 (unsigned long long)longest);
	else
		imap_send_tagged(s, cmd, "OK", "GETMETADATA completed");
	names_free(want, nwant);
	free(mailbox);
	return 0;
}

static int cmd_setmetadata(struct imap_session *s, const struct imap_command *cmd)
{
	/* RFC 5464 4.3: SETMETADATA mailbox (entry value ...) */
	const struct imap_arg *l = cmd->argc == 2 ? &cmd->args[1] : NULL;
	if (l == NULL || l->type != IMAP_ARG_LIST || l->count == 0 || l->count % 2 != 0) {
		imap_send_tagged(s, cmd, "BAD", "Usage: SETMETADATA mailbox (entry value ...)");
		return 0;
	}
	size_t n = l->count / 2;
	struct store_metadata_entry *ch = calloc(n, sizeof(*ch));
	char *mailbox = NULL;
	struct error err;
	if (ch == NULL) {
		imap_send_tagged(s, cmd, "NO", "[SERVERBUG] Out of memory");
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		const struct imap_arg *name = &l->list[2 * i], *val = &l->list[2 * i + 1];
		const char *str;
		size_t len;
		if (!imap_parser_arg_astring(name, &str, &len) || (ch[i].name = strdup(str)) == NULL ||
		    !entry_valid(ch[i].name, false)) {
			imap_send_tagged(s, cmd, "BAD", "Invalid entry name");
			goto out;
		}
		if (val->type == IMAP_ARG_NIL)
			continue; /* remove */
		if (val->type != IMAP_ARG_STRING && val->type != IMAP_ARG_LITERAL) {
			imap_send_tagged(s, cmd, "BAD", "Invalid entry value");
			goto out;
		}
		ch[i].value = (char *)(uintptr_t)val->str; /* only read by the store */
		ch[i].len = val->len;
		if (ch[i].len > store_metadata_max_size(s->suser)) {
			imap_send_tagged(s, cmd, "NO", "[METADATA MAXSIZE %llu] Value too large",
					 (unsigned long long)store_metadata_max_size(s->suser));
			goto out;
		}
	}
	if (mailbox_arg(s, cmd, &cmd->args[0], &mailbox) < 0)
		goto out;
	if (store_metadata_set(s->suser, mailbox, ch, n, &err) < 0) {
		if (err.code == ERR_LIMIT)
			imap_send_tagged(s, cmd, "NO", "[METADATA TOOMANY] Too many entries");
		else
			imap_send_store_error(s, cmd, &err);
	} else
		imap_send_tagged(s, cmd, "OK", "SETMETADATA completed");
out:
	for (size_t i = 0; i < n; i++)
		free(ch[i].name);
	free(ch);
	free(mailbox);
	return 0;
}

int imap_cmd_metadata_list_check(const struct imap_arg *entries)
{
	const struct imap_arg *v = entries->type == IMAP_ARG_LIST ? entries->list : entries;
	size_t n = entries->type == IMAP_ARG_LIST ? entries->count : 1;
	if (n == 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		const char *str;
		size_t len;
		if (!imap_parser_arg_astring(&v[i], &str, &len))
			return -1;
		char *copy = strdup(str);
		bool ok = copy != NULL && entry_valid(copy, false);
		free(copy);
		if (!ok)
			return -1;
	}
	return 0;
}

void imap_cmd_metadata_list_send(struct imap_session *s, const char *name,
				 const struct imap_arg *entries)
{
	const struct imap_arg *v = entries->type == IMAP_ARG_LIST ? entries->list : entries;
	size_t n = entries->type == IMAP_ARG_LIST ? entries->count : 1;
	char **want = calloc(n, sizeof(*want));
	uint64_t longest = 0;
	struct error err;
	if (want == NULL)
		return;
	for (size_t i = 0; i < n; i++) {
		const char *str;
		size_t len;
		if (imap_parser_arg_astring(&v[i], &str, &len) && (want[i] = strdup(str)) != NULL)
			entry_valid(want[i], false); /* checked before: lowers it */
		if (want[i] == NULL) {
			names_free(want, i);
			return;
		}
	}
	/* RFC 9590 3: errors reading a mailbox's entries are not reported */
	send_metadata(s, name, want, n, 0, UINT64_MAX, &longest, &err);
	names_free(want, n);
}

static const struct imap_cmd_def rows[] = {
	{ { "GETMETADATA", IMAP_IN_AUTH }, cmd_getmetadata, 0 },
	{ { "SETMETADATA", IMAP_IN_AUTH }, cmd_setmetadata, 0 },
};
const struct imap_cmd_family imap_cmd_metadata = { rows, sizeof(rows) / sizeof(rows[0]) };
