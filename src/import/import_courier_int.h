/*
 * import_courier_int.h: the parsers of import_courier.c, for its unit test
 * and fuzz target. Nothing outside src/import/import_courier.c and its tests
 * uses these.
 *
 * Every parser takes a buffer it owns from then on (malloc'ed, len bytes,
 * NUL-terminated at data[len]), cuts it into lines in place and points into
 * it; *_free releases it. Lines are bounded only by the file, and the files
 * by the caps import_courier.c reads them with. Bad lines are counted and
 * ignored, as Courier does, never fatal.
 */
#ifndef MAILROOM_IMPORT_COURIER_INT_H
#define MAILROOM_IMPORT_COURIER_INT_H

#include <stddef.h>
#include <stdint.h>

#include "lib/error.h"

/* courierimapuiddb: "1 UIDVALIDITY NEXTUID", then "UID basename" lines.
 * Version 1 is the only one Courier has written (imapscanclient.c compares
 * with IMAPDBVERSION, 1; Dovecot's courier-dovecot-migrate.pl accepts only
 * "1 "); Courier throws away a file of any other version and starts over
 * under a new UIDVALIDITY. */
struct courier_uident {
	const char *base; /* the file name up to ':' */
	uint32_t uid;
};
struct courier_uiddb {
	char *data;
	uint32_t uidvalidity;
	uint32_t uidnext;
	struct courier_uident *v; /* sorted by base, then uid */
	size_t n;
	size_t bad; /* lines ignored */
};
/* Returns 0; -1 with err ERR_DATA for a header that is not version 1 with a
 * non-zero UIDVALIDITY (db then holds nothing), ERR_TEMP when out of memory.
 * Takes data in both cases. */
int import_courier_uiddb_parse(struct courier_uiddb *db, char *data, size_t len,
			       struct error *err);
/* The UID of basename base[0..len), or 0. */
uint32_t import_courier_uiddb_find(const struct courier_uiddb *db, const char *base, size_t len);
void import_courier_uiddb_free(struct courier_uiddb *db);

/* courierimapkeywords/: the ":list" file (keyword names one a line, an empty
 * line, then "basename:index index ..." lines) and the per-message update
 * files, each of which replaces one message's keywords by the names it
 * holds (one a line, up to an empty line or the end). */
struct courier_kwmsg {
	const char *base;
	size_t seq;	   /* later entries win */
	uint32_t *idx;	   /* into names */
	size_t n;
};
struct courier_kw {
	char **names;
	size_t nnames, capnames;
	struct courier_kwmsg *msgs;
	size_t nmsgs, capmsgs;
	char **bufs; /* the buffers given to us */
	size_t nbufs, capbufs;
	int sorted;
	size_t bad;
};
#define COURIER_KW_MAX_NAMES 4096
#define COURIER_KW_MAX_PER_MSG 256
/* Parse ":list" (data as above). Returns 0, or -1 ERR_TEMP when out of memory. */
int import_courier_kw_parse_list(struct courier_kw *kw, char *data, size_t len, struct error *err);
/* Apply one update file for message base (a copy of base is kept). */
int import_courier_kw_update(struct courier_kw *kw, const char *base, char *data, size_t len,
			     struct error *err);
/* The keywords of basename base[0..len) after everything read, or NULL. The
 * first call sorts: no parse or update after it. */
const struct courier_kwmsg *import_courier_kw_find(struct courier_kw *kw, const char *base,
						   size_t len);
void import_courier_kw_free(struct courier_kw *kw);

/* courierpop3dsizelist (pop3dserver.c, LISTVERSION 3; 2 is read too):
 * "/V NEXTUID UIDV", then "filename size uid:uidv[:utf8]" lines. */
struct courier_pop3ent {
	const char *base;
	uint64_t size;
	uint64_t uid;
	uint64_t uidv;
};
struct courier_pop3 {
	char *data;
	struct courier_pop3ent *v; /* sorted by base */
	size_t n;
	size_t bad;
};
/* Returns 0; -1 ERR_DATA for a header Courier would not read (it then gives
 * every message a new UIDL: none can be kept), ERR_TEMP out of memory. */
int import_courier_pop3_parse(struct courier_pop3 *p, char *data, size_t len, struct error *err);
const struct courier_pop3ent *import_courier_pop3_find(const struct courier_pop3 *p,
						       const char *base, size_t len);
/* The UIDL Courier's pop3d prints for e (print_uidl): "UID<n>-<uidv>",
 * "UID<n>", or for uid 0 the base name with bytes outside '!'..'~' and
 * ' " + written "+XX". Returns 0, or -1 if it does not fit in out. */
int import_courier_pop3_uidl(const struct courier_pop3ent *e, char *out, size_t outsz);
void import_courier_pop3_free(struct courier_pop3 *p);

/* A Courier folder or subscription name (the part after "INBOX.") as a
 * mailroom name: modified UTF-7 (Courier-IMAP before 5.0) or UTF-8
 * (5.0 on), '.' between levels becoming '/'. Returns a malloc'ed name, or
 * NULL with err (ERR_INVALID: empty level, not a name). */
char *import_courier_name(const char *s, size_t len, struct error *err);

#endif
