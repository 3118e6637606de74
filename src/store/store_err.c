/*
 * store_err.c: filling a struct store_error (store.h's error contract):
 * with a code chosen by the caller, or from errno, where the code keeps
 * temporary and permanent failures apart.
 */
#include "store/store_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void store_err(struct store_error *err, enum store_errcode code, const char *fmt, ...)
{
	va_list ap;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->text, sizeof(err->text), fmt, ap);
	va_end(ap);
}

void store_err_errno(struct store_error *err, const char *what)
{
	int e = errno;
	enum store_errcode code = STORE_ERR_TEMP;
	if (e == ENOENT)
		code = STORE_ERR_NOTFOUND;
	else if (e == EEXIST || e == ENOTEMPTY)
		code = STORE_ERR_EXISTS;
	else if (e == ELOOP || e == EXDEV || e == ENAMETOOLONG)
		code = STORE_ERR_INVALID;
	else if (e == EDQUOT)
		code = STORE_ERR_QUOTA;
	store_err(err, code, "%s: %s", what, strerror(e));
}
