/*
 * MD5 (what the ROM's SPI_FLASH_MD5 returns) and SHA-256 (image identity),
 * both computed by nettle; this file only adapts the calling convention.
 */
#include "config.h"

#include <nettle/md5.h>
#include <nettle/sha2.h>

#include "digest.h"

/* Start a streaming MD5. */
void
digest_md5_init(struct digest_md5_ctx *c)
{
	md5_init(&c->ctx);
}

/* Add bytes to a streaming MD5. */
void
digest_md5_update(struct digest_md5_ctx *c, const void *p, size_t len)
{
	md5_update(&c->ctx, len, p);
}

/* Finish a streaming MD5 into 16 raw bytes. */
void
digest_md5_final(struct digest_md5_ctx *c, uint8_t out[16])
{
	md5_digest(&c->ctx, MD5_DIGEST_SIZE, out);
}

/* MD5 of one buffer. */
void
digest_md5(const void *p, size_t len, uint8_t out[16])
{
	struct digest_md5_ctx	c;

	digest_md5_init(&c);
	digest_md5_update(&c, p, len);
	digest_md5_final(&c, out);
}

/* MD5 of one buffer as 32 lowercase hex digits, like the ROM sends. */
void
digest_md5_hex(const void *p, size_t len, char out[33])
{
	uint8_t	md[MD5_DIGEST_SIZE];

	digest_md5(p, len, md);
	digest_hex(md, sizeof(md), out);
}

/* SHA-256 of one buffer. */
void
digest_sha256(const void *p, size_t len, uint8_t out[32])
{
	struct sha256_ctx	c;

	sha256_init(&c);
	sha256_update(&c, len, p);
	sha256_digest(&c, SHA256_DIGEST_SIZE, out);
}

/* SHA-256 of one buffer as 64 lowercase hex digits. */
void
digest_sha256_hex(const void *p, size_t len, char out[65])
{
	uint8_t	md[SHA256_DIGEST_SIZE];

	digest_sha256(p, len, md);
	digest_hex(md, sizeof(md), out);
}

/* Lowercase hex of n bytes, NUL-terminated (out holds 2n + 1 bytes). */
void
digest_hex(const uint8_t *p, size_t n, char *out)
{
	static const char	hex[] = "0123456789abcdef";
	size_t			i;

	for (i = 0; i < n; i++) {
		out[2 * i] = hex[p[i] >> 4];
		out[2 * i + 1] = hex[p[i] & 0xf];
	}
	out[2 * n] = '\0';
}
