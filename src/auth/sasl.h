/*
 * sasl.h: the SASL mechanisms PLAIN (RFC 4616) and LOGIN
 * (draft-murchison-sasl-login), shared by IMAP AUTHENTICATE, POP3 AUTH and
 * (later) ManageSieve. Only decoding lives here: the credentials it yields go
 * to the auth process (auth_client.h) to be checked.
 *
 * A struct sasl is driven by the protocol: sasl_start() with the initial
 * response if the client gave one (SASL-IR, RFC 4959; "=" means an empty
 * one), then sasl_step() with each line the client answers, until DONE or
 * FAIL. Challenges and responses are base64 text as they travel.
 */
#ifndef MAILROOM_SASL_H
#define MAILROOM_SASL_H

#include <stddef.h>

#include "lib/error.h"

#define SASL_MAX_USER 256
#define SASL_MAX_PASS 1024

enum sasl_result { SASL_CONTINUE, SASL_DONE, SASL_FAIL, SASL_CANCEL };

struct sasl {
	int mech; /* private */
	int step; /* private */
	char user[SASL_MAX_USER];
	char pass[SASL_MAX_PASS];
};

/* The mechanisms we offer, for CAPABILITY / CAPA: "PLAIN LOGIN". */
const char *sasl_mechanisms(void);
/* Begin with mechanism name (case-insensitive); ir is the initial response
 * or NULL. On CONTINUE, *challenge_r (static base64 text, may be "") is what
 * to send; on DONE, s->user and s->pass are set; FAIL (and CANCEL) set err:
 * ERR_INVALID, text why (e.g. "invalid base64"). */
enum sasl_result sasl_start(struct sasl *s, const char *mech, const char *ir,
			    const char **challenge_r, struct error *err);
/* One client response line (base64, or "*" to cancel). */
enum sasl_result sasl_step(struct sasl *s, const char *response, size_t len,
			   const char **challenge_r, struct error *err);
/* Wipe the password. */
void sasl_clear(struct sasl *s);

#endif
