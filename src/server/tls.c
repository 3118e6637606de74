/*
 * tls.c: the server's TLS context (OpenSSL 3).
 *
 * With tls_cert/tls_key unset, the certificate is DATA/tls/cert.pem and the
 * key DATA/tls/key.pem; if both are missing a self-signed certificate for
 * this host name is made (EC P-256, ten years), so that the embedded default
 * offers IMAPS/POP3S and STARTTLS out of the box. Explicitly configured files
 * must exist: a missing or unreadable one stops the server with a clear
 * message. TLS 1.2 is the minimum.
 */
#include "server/server.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "lib/config.h"

static void ssl_error(struct error *err, enum error_code code, const char *what)
{
	unsigned long e = ERR_get_error();
	char buf[256] = "";
	if (e != 0)
		ERR_error_string_n(e, buf, sizeof(buf));
	error_set(err, code, "%s%s%s", what, buf[0] ? ": " : "", buf);
	ERR_clear_error();
}

static int make_self_signed(const char *cert_path, const char *key_path, struct error *err)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	FILE *f = NULL;
	int ret = -1;
	char host[256] = "localhost";

	if (key == NULL || x == NULL) {
		ssl_error(err, ERR_TEMP, "cannot make a key");
		goto out;
	}
	gethostname(host, sizeof(host) - 1);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), (long)time(NULL));
	X509_gmtime_adj(X509_getm_notBefore(x), -3600);
	X509_gmtime_adj(X509_getm_notAfter(x), 10L * 365 * 24 * 3600);
	X509_set_pubkey(x, key);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"mailroom", -1, -1, 0);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)host, -1, -1, 0);
	X509_set_issuer_name(x, name);
	if (X509_sign(x, key, EVP_sha256()) == 0) {
		ssl_error(err, ERR_TEMP, "cannot sign the certificate");
		goto out;
	}
	mode_t old = umask(077);
	f = fopen(key_path, "w");
	umask(old);
	if (f == NULL || !PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL)) {
		error_set(err, ERR_TEMP, "cannot write %s: %s", key_path, strerror(errno));
		goto out;
	}
	fclose(f);
	f = fopen(cert_path, "w");
	if (f == NULL || !PEM_write_X509(f, x)) {
		error_set(err, ERR_TEMP, "cannot write %s: %s", cert_path, strerror(errno));
		goto out;
	}
	ret = 0;
out:
	if (f != NULL)
		fclose(f);
	X509_free(x);
	EVP_PKEY_free(key);
	return ret;
}

struct ssl_ctx_st *tls_load(const struct config *cfg, const char *data_dir, struct error *err)
{
	char cert[4096], key[4096];
	const char *c = config_str(cfg, "tls_cert"), *k = config_str(cfg, "tls_key");
	int defaults = c[0] == '\0' && k[0] == '\0';

	if ((c[0] == '\0') != (k[0] == '\0')) {
		error_set(err, ERR_INVALID, "tls_cert and tls_key must be set together");
		return NULL;
	}
	if (defaults) {
		snprintf(cert, sizeof(cert), "%s/tls", data_dir);
		mkdir(cert, 0700);
		snprintf(cert, sizeof(cert), "%s/tls/cert.pem", data_dir);
		snprintf(key, sizeof(key), "%s/tls/key.pem", data_dir);
		if (access(cert, F_OK) < 0 && access(key, F_OK) < 0 &&
		    make_self_signed(cert, key, err) < 0)
			return NULL;
	} else {
		snprintf(cert, sizeof(cert), "%s", c);
		snprintf(key, sizeof(key), "%s", k);
	}
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL) {
		ssl_error(err, ERR_TEMP, "cannot create a TLS context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS); /* kilobytes per idle TLS session */
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		char what[4200];
		snprintf(what, sizeof(what), "cannot load the certificate %s", cert);
		ssl_error(err, ERR_INVALID, what);
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		char what[4200];
		snprintf(what, sizeof(what), "cannot load the key %s", key);
		ssl_error(err, ERR_INVALID, what);
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

void tls_free(struct ssl_ctx_st *ctx)
{
	SSL_CTX_free(ctx);
}
