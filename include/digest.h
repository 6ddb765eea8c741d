/* MD5 (the ROM's verify digest) and SHA-256 (image identity) through nettle. */
#ifndef ESPF_DIGEST_H
#define ESPF_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#include <nettle/md5.h>

struct digest_md5_ctx {
	struct md5_ctx	ctx;
};

void	digest_md5_init(struct digest_md5_ctx *);
void	digest_md5_update(struct digest_md5_ctx *, const void *, size_t);
void	digest_md5_final(struct digest_md5_ctx *, uint8_t out[16]);
void	digest_md5(const void *, size_t, uint8_t out[16]);
/* Lowercase hex, as the ROM sends it. */
void	digest_md5_hex(const void *, size_t, char out[33]);
void	digest_sha256(const void *, size_t, uint8_t out[32]);
void	digest_sha256_hex(const void *, size_t, char out[65]);
/* Lowercase hex of n bytes into out (2n+1 bytes). */
void	digest_hex(const uint8_t *, size_t n, char *out);

#endif
