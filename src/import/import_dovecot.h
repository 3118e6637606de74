/*
 * import_dovecot.h: the parts of the Dovecot maildir driver that the unit
 * tests and the fuzz target reach directly (import.h declares the driver
 * itself, import_dovecot()).
 */
#ifndef MAILROOM_IMPORT_DOVECOT_H
#define MAILROOM_IMPORT_DOVECOT_H

#include <stddef.h>
#include <stdint.h>

#include "lib/error.h"

/* One line of dovecot-uidlist. */
struct import_dovecot_rec {
	uint32_t uid;
	uint64_t vsize;	 /* W<vsize> (v3), 0 if absent */
	char *base;	 /* the file's base name: the recorded name up to ':' */
	char *pop3_uidl; /* P<uidl> (v3): NULL absent, "" = the base name (Dovecot's
			  * shorthand, maildir-mail.c MAIL_FETCH_UIDL_BACKEND) */
};

#define IMPORT_DOVECOT_BAD_KEPT 8

struct import_dovecot_uidlist {
	unsigned version;		 /* 1, 2 or 3 */
	uint32_t uidvalidity;		 /* 0 if the header had none */
	uint32_t nextuid;		 /* as the header says (may be stale: Dovecot appends
					  * lines without rewriting it); 0 if none */
	struct import_dovecot_rec *recs; /* in file order, UIDs strictly ascending */
	size_t nrecs;
	size_t nbad;				    /* lines skipped as malformed or out of order */
	unsigned bad_line[IMPORT_DOVECOT_BAD_KEPT]; /* the first ones' numbers (1-based) */
};

/*
 * Parses the dovecot-uidlist text data[0..len) (it need not be
 * NUL-terminated) into ul, which the caller zeroes first. Versions: 1
 * ("1 UIDVALIDITY NEXTUID", entries "UID FILENAME"), 2 (entries "UID FLAGS
 * FILENAME") and 3 ("3 V<uidvalidity> N<nextuid> G<guid> ...", entries
 * "UID [<key><value> ...] :FILENAME"). A malformed entry, one whose UID is
 * not above the previous one, or one naming no usable file is skipped and
 * counted in nbad; the rest is kept. Returns 0, or -1 with err set:
 * ERR_INVALID when the header is not one of these (ul holds nothing),
 * ERR_TEMP when out of memory. Free with import_dovecot_uidlist_free().
 */
int import_dovecot_uidlist_parse(const char *data, size_t len, struct import_dovecot_uidlist *ul,
				 struct error *err);
void import_dovecot_uidlist_free(struct import_dovecot_uidlist *ul);

#endif
