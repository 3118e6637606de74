/*
 * import_stubs.c: TEMPORARY stand-ins for the source drivers of import.h,
 * so that `mailroom import` links before they land.
 *
 * The lead deletes each function here when its real driver
 * (import_dovecot.c, import_courier.c, import_mbox.c, import_imap.c) is
 * merged, and this file when all four are: the library is a static archive,
 * so a stub left beside its real driver is a duplicate definition.
 */
#include "import/import.h"

int import_dovecot(const char *path, const struct import_sink *sink, struct error *err)
{
	(void)path;
	(void)sink;
	error_set(err, ERR_INVALID, "the dovecot: source is not built yet");
	return -1;
}

int import_courier(const char *path, const struct import_sink *sink, struct error *err)
{
	(void)path;
	(void)sink;
	error_set(err, ERR_INVALID, "the courier: source is not built yet");
	return -1;
}

int import_mbox(const char *path, const struct import_sink *sink, struct error *err)
{
	(void)path;
	(void)sink;
	error_set(err, ERR_INVALID, "the mbox: source is not built yet");
	return -1;
}
