/* log.c: stderr or syslog logging; see log.h. */
#include "lib/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>
#include <unistd.h>

static const char *log_ident = "mailroom";
static int log_syslog;
static enum log_level log_min = LOG_LVL_INFO;

void log_init(const char *ident, int use_syslog, enum log_level min_level)
{
	log_ident = ident;
	log_syslog = use_syslog;
	log_min = min_level;
	if (use_syslog)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	static const char *const names[] = { "debug", "info", "warning", "error" };
	static const int prio[] = { LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR };
	char line[2048];
	va_list ap;

	if (level < log_min)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* Never let a client-supplied string start a new log line. */
	for (char *p = line; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 && *p != '\t')
			*p = '?';
	if (log_syslog)
		syslog(prio[level], "%s", line);
	else
		fprintf(stderr, "%s[%ld]: %s: %s\n", log_ident, (long)getpid(), names[level], line);
}
