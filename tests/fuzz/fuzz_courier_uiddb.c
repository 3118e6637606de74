/* fuzz_courier_uiddb.c: the parsers of the Courier import driver
 * (import_courier_int.h) on files an old server or a user left behind:
 * courierimapuiddb, courierimapkeywords/:list and its update files,
 * courierpop3dsizelist, and folder names. The first byte picks the parser.
 * Properties checked:
 *  - every UID the uiddb yields is non-zero and found again by its name;
 *  - every keyword index points into the name table, none twice in one
 *    message, at most COURIER_KW_MAX_PER_MSG of them;
 *  - a POP3 UIDL is printable ASCII without a space, fits, and is found
 *    again by its name;
 *  - a decoded folder name is non-empty, has no empty level and no control
 *    character. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "import/import_courier_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *copy(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (s == NULL)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

static void fuzz_uiddb(const uint8_t *data, size_t size)
{
	struct courier_uiddb db;
	struct error err;
	if (import_courier_uiddb_parse(&db, copy(data, size), size, &err) == 0) {
		if (db.uidvalidity == 0)
			abort();
		for (size_t i = 0; i < db.n; i++) {
			const struct courier_uident *e = &db.v[i];
			if (e->uid == 0 || e->base[0] == '\0' || strchr(e->base, ':') != NULL)
				abort();
			if (import_courier_uiddb_find(&db, e->base, strlen(e->base)) == 0)
				abort();
		}
	} else if (db.n != 0) {
		abort();
	}
	import_courier_uiddb_free(&db);
}

static void check_kw(struct courier_kw *kw)
{
	for (size_t i = 0; i < kw->nmsgs; i++) {
		const struct courier_kwmsg *m = &kw->msgs[i];
		if (m->n > COURIER_KW_MAX_PER_MSG)
			abort();
		for (size_t j = 0; j < m->n; j++) {
			if (m->idx[j] >= kw->nnames)
				abort();
			for (size_t k = 0; k < j; k++)
				if (m->idx[k] == m->idx[j])
					abort();
		}
		if (import_courier_kw_find(kw, m->base, strlen(m->base)) == NULL)
			abort();
	}
}

/* The input up to the first NUL is ":list", the rest one update file for
 * the message named by its first line. */
static void fuzz_keywords(const uint8_t *data, size_t size)
{
	struct courier_kw kw;
	struct error err;
	memset(&kw, 0, sizeof(kw));
	const uint8_t *nul = memchr(data, '\0', size);
	size_t n1 = nul ? (size_t)(nul - data) : size;
	if (import_courier_kw_parse_list(&kw, copy(data, n1), n1, &err) < 0)
		abort();
	if (nul != NULL) {
		size_t n2 = size - n1 - 1;
		char *upd = copy(nul + 1, n2);
		char *nl = strchr(upd, '\n');
		char base[64] = "m";
		if (nl != NULL && (size_t)(nl - upd) < sizeof(base) && nl != upd) {
			memcpy(base, upd, (size_t)(nl - upd));
			base[nl - upd] = '\0';
		}
		if (import_courier_kw_update(&kw, base, upd, n2, &err) < 0)
			abort();
		if (import_courier_kw_find(&kw, base, strlen(base)) == NULL)
			abort();
	}
	check_kw(&kw);
	import_courier_kw_free(&kw);
}

static void fuzz_pop3(const uint8_t *data, size_t size)
{
	struct courier_pop3 p;
	struct error err;
	char uidl[72];
	if (import_courier_pop3_parse(&p, copy(data, size), size, &err) == 0) {
		for (size_t i = 0; i < p.n; i++) {
			const struct courier_pop3ent *e = &p.v[i];
			if (import_courier_pop3_find(&p, e->base, strlen(e->base)) == NULL)
				abort();
			if (import_courier_pop3_uidl(e, uidl, sizeof(uidl)) < 0)
				continue;
			if (uidl[0] == '\0' || strlen(uidl) >= sizeof(uidl))
				abort();
			for (const unsigned char *c = (const unsigned char *)uidl; *c; c++)
				if (*c < 0x21 || *c > 0x7e)
					abort();
		}
	}
	import_courier_pop3_free(&p);
}

static void fuzz_name(const uint8_t *data, size_t size)
{
	struct error err;
	char *s = copy(data, size);
	char *name = import_courier_name(s, size, &err);
	if (name != NULL) {
		size_t n = strlen(name);
		if (n == 0 || name[0] == '/' || name[n - 1] == '/' || strstr(name, "//") != NULL)
			abort();
		for (const unsigned char *c = (const unsigned char *)name; *c; c++)
			if (*c < 0x20 || *c == 0x7f)
				abort();
	}
	free(name);
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	switch (data[0] % 4) {
	case 0: fuzz_uiddb(data + 1, size - 1); break;
	case 1: fuzz_keywords(data + 1, size - 1); break;
	case 2: fuzz_pop3(data + 1, size - 1); break;
	default: fuzz_name(data + 1, size - 1); break;
	}
	return 0;
}
