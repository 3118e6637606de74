/*
 * civil.c: days since the epoch of a civil date. The algorithm counts whole
 * 400-year eras (146,097 days each), then the year of the era and the day of
 * a year that starts on March 1, so that the leap day is the era-year's last
 * day and needs no special case.
 */
#include "lib/civil.h"

int64_t civil_days_from_date(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}
