/*
 * civil.h: calendar arithmetic for the date parsers (IMAP SEARCH dates,
 * SORT's Date: field, the IMAP import's INTERNALDATE), without timegm(3)'s
 * dependence on the process's time zone state or its range limits.
 */
#ifndef MAILROOM_CIVIL_H
#define MAILROOM_CIVIL_H

#include <stdint.h>

/* Days from 1970-01-01 to the civil date y-m-d (proleptic Gregorian; m 1..12,
 * d 1..31, not checked against the month's length): negative before 1970. */
int64_t civil_days_from_date(int64_t y, unsigned m, unsigned d);

#endif
