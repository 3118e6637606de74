/* sasl.c: PLAIN and LOGIN decoding; see sasl.h. */
#include "auth/sasl.h"

#include <string.h>
#include <strings.h>

#include "lib/base64.h"

enum { MECH_PLAIN = 1, MECH_LOGIN = 2 };

const char *sasl_mechanisms(void)
{
	return "PLAIN LOGIN";
}

void sasl_clear(struct sasl *s)
{
	explicit_bzero(s, sizeof(*s));
}

/* Decode base64 into buf (size bytes); -1 if invalid or too long. */
static long decode(const char *in, size_t len, unsigned char *buf, size_t size)
{
	if ((len / 4) * 3 + 1 > size)
		return -1;
	return base64_decode(in, len, buf);
}

static enum sasl_result plain(struct sasl *s, const char *in, size_t len, struct error *err)
{
	unsigned char buf[SASL_MAX_USER * 2 + SASL_MAX_PASS + 4];
	long n = decode(in, len, buf, sizeof(buf));
	if (n < 0) {
		error_set(err, ERR_INVALID, "invalid base64");
		return SASL_FAIL;
	}
	/* authzid NUL authcid NUL passwd (RFC 4616 2) */
	const unsigned char *z = buf, *end = buf + n;
	const unsigned char *n1 = memchr(z, '\0', (size_t)n);
	const unsigned char *n2 = n1 ? memchr(n1 + 1, '\0', (size_t)(end - n1 - 1)) : NULL;
	if (n1 == NULL || n2 == NULL) {
		error_set(err, ERR_INVALID, "malformed PLAIN response");
		return SASL_FAIL;
	}
	size_t zlen = (size_t)(n1 - z), ulen = (size_t)(n2 - n1 - 1), plen = (size_t)(end - n2 - 1);
	/* RFC 4616 2: passwd = 1*SAFE, no NUL; a third NUL is malformed (and
	 * would otherwise cut the password short). */
	if (memchr(n2 + 1, '\0', plen) != NULL) {
		error_set(err, ERR_INVALID, "malformed PLAIN response");
		explicit_bzero(buf, sizeof(buf));
		return SASL_FAIL;
	}
	if (ulen == 0 || ulen >= sizeof(s->user) || plen >= sizeof(s->pass)) {
		error_set(err, ERR_INVALID, "bad user name or password length");
		explicit_bzero(buf, sizeof(buf));
		return SASL_FAIL;
	}
	/* Acting as another user is not offered: authzid empty or the same. */
	if (zlen != 0 && (zlen != ulen || memcmp(z, n1 + 1, ulen) != 0)) {
		error_set(err, ERR_INVALID, "authorization identity not allowed");
		explicit_bzero(buf, sizeof(buf));
		return SASL_FAIL;
	}
	memcpy(s->user, n1 + 1, ulen);
	s->user[ulen] = '\0';
	memcpy(s->pass, n2 + 1, plen);
	s->pass[plen] = '\0';
	explicit_bzero(buf, sizeof(buf));
	return SASL_DONE;
}

static enum sasl_result login_field(char *out, size_t outsize, const char *in, size_t len,
				    struct error *err)
{
	unsigned char buf[SASL_MAX_PASS + 4];
	long n = decode(in, len, buf, sizeof(buf));
	if (n < 0 || (size_t)n >= outsize || memchr(buf, '\0', (size_t)n) != NULL) {
		error_set(err, ERR_INVALID, "invalid LOGIN response");
		explicit_bzero(buf, sizeof(buf));
		return SASL_FAIL;
	}
	memcpy(out, buf, (size_t)n + 1);
	explicit_bzero(buf, sizeof(buf));
	return SASL_CONTINUE;
}

enum sasl_result sasl_step(struct sasl *s, const char *response, size_t len,
			   const char **challenge_r, struct error *err)
{
	*challenge_r = "";
	if (len == 1 && response[0] == '*') {
		error_set(err, ERR_INVALID, "authentication cancelled");
		return SASL_CANCEL;
	}
	if (s->mech == MECH_PLAIN)
		return plain(s, response, len, err);
	if (s->mech == MECH_LOGIN && s->step == 0) {
		if (login_field(s->user, sizeof(s->user), response, len, err) == SASL_FAIL)
			return SASL_FAIL;
		if (s->user[0] == '\0') {
			error_set(err, ERR_INVALID, "empty user name");
			return SASL_FAIL;
		}
		s->step = 1;
		*challenge_r = "UGFzc3dvcmQ6"; /* "Password:" */
		return SASL_CONTINUE;
	}
	if (s->mech == MECH_LOGIN && s->step == 1) {
		if (login_field(s->pass, sizeof(s->pass), response, len, err) == SASL_FAIL)
			return SASL_FAIL;
		return SASL_DONE;
	}
	error_set(err, ERR_INVALID, "unexpected SASL response");
	return SASL_FAIL;
}

enum sasl_result sasl_start(struct sasl *s, const char *mech, const char *ir,
			    const char **challenge_r, struct error *err)
{
	memset(s, 0, sizeof(*s));
	*challenge_r = "";
	if (strcasecmp(mech, "PLAIN") == 0)
		s->mech = MECH_PLAIN;
	else if (strcasecmp(mech, "LOGIN") == 0)
		s->mech = MECH_LOGIN;
	else {
		error_set(err, ERR_INVALID, "unsupported mechanism");
		return SASL_FAIL;
	}
	if (ir == NULL) {
		if (s->mech == MECH_LOGIN)
			*challenge_r = "VXNlcm5hbWU6"; /* "Username:" */
		return SASL_CONTINUE;
	}
	/* RFC 4959: "=" is an empty initial response. */
	if (strcmp(ir, "=") == 0)
		ir = "";
	return sasl_step(s, ir, strlen(ir), challenge_r, err);
}
