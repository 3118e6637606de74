/*
 * error.c: filling a struct error (error.h's convention): with a code chosen
 * by the caller, or from errno, where the code keeps temporary and permanent
 * failures apart.
 */
#include "lib/error.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void error_set(struct error *err, enum error_code code, const char *fmt, ...)
{
	va_list ap;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->text, sizeof(err->text), fmt, ap);
	va_end(ap);
}

void error_errno(struct error *err, const char *what)
{
	int e = errno;
	enum error_code code = ERR_TEMP;
	if (e == ENOENT)
		code = ERR_NOTFOUND;
	else if (e == EEXIST || e == ENOTEMPTY)
		code = ERR_EXISTS;
	else if (e == ELOOP || e == EXDEV || e == ENAMETOOLONG)
		code = ERR_INVALID;
	else if (e == EDQUOT)
		code = ERR_QUOTA;
	else if (e == ENOSPC)
		code = ERR_NOSPACE;
	error_set(err, code, "%s: %s", what, strerror(e));
}
