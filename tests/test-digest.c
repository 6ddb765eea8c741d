/* MD5 (RFC 1321 appendix A.5) and SHA-256 (FIPS 180-2) test vectors. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "digest.h"
#include "tap.h"
#include "util.h"

static const struct {
	const char	*in;
	const char	*md5;
} md5_vec[] = {
	{ "", "d41d8cd98f00b204e9800998ecf8427e" },
	{ "a", "0cc175b9c0f1b6a831c399e269772661" },
	{ "abc", "900150983cd24fb0d6963f7d28e17f72" },
	{ "message digest", "f96b697d7cb7938d525a2f31aaf161d0" },
	{ "abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b" },
	{ "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
	    "d174ab98d277d9f5a5611c2c9f419d9f" },
	{ "1234567890123456789012345678901234567890123456789012345678901234"
	    "5678901234567890", "57edf4a22be3c955ac49da2e2107b67a" },
};

/* RFC 1321 vectors, one-shot and streamed in uneven pieces. */
static void
test_md5(void)
{
	struct digest_md5_ctx	 c;
	uint8_t			 raw[16];
	char			 hex[33], hex2[33];
	const char		*s;
	size_t			 i, off, len, step;

	for (i = 0; i < nitems(md5_vec); i++) {
		s = md5_vec[i].in;
		len = strlen(s);
		digest_md5_hex(s, len, hex);
		is_str(hex, md5_vec[i].md5, "MD5(\"%.20s\")", s);

		digest_md5_init(&c);
		for (off = 0, step = 1; off < len; off += step, step += 2)
			digest_md5_update(&c, s + off, MINIMUM(step,
			    len - off));
		digest_md5_final(&c, raw);
		digest_hex(raw, sizeof(raw), hex2);
		is_str(hex2, md5_vec[i].md5, "streamed MD5(\"%.20s\")", s);
	}
	digest_md5("abc", 3, raw);
	tap_ok(raw[0] == 0x90 && raw[1] == 0x01 && raw[15] == 0x72,
	    "raw MD5 bytes match the hex");
}

/* FIPS 180-2 vectors, including one million 'a'. */
static void
test_sha256(void)
{
	char	 hex[65];
	char	*million;
	uint8_t	 raw[32];

	digest_sha256_hex("", 0, hex);
	is_str(hex, "e3b0c44298fc1c149afbf4c8996fb924"
	    "27ae41e4649b934ca495991b7852b855", "SHA-256(\"\")");
	digest_sha256_hex("abc", 3, hex);
	is_str(hex, "ba7816bf8f01cfea414140de5dae2223"
	    "b00361a396177a9cb410ff61f20015ad", "SHA-256(\"abc\")");
	digest_sha256_hex("abcdbcdecdefdefgefghfghighijhijk"
	    "ijkljklmklmnlmnomnopnopq", 56, hex);
	is_str(hex, "248d6a61d20638b8e5c026930c3e6039"
	    "a33ce45964ff2167f6ecedd419db06c1", "SHA-256 two-block vector");
	million = malloc(1000000);
	if (million == NULL) {
		tap_ok(0, "allocate 1e6 bytes");
		return;
	}
	memset(million, 'a', 1000000);
	digest_sha256_hex(million, 1000000, hex);
	is_str(hex, "cdc76e5c9914fb9281a1c7e284d73e67"
	    "f1809a48a497200e046d39ccc7112cd0", "SHA-256 of one million 'a'");
	free(million);
	digest_sha256("abc", 3, raw);
	tap_ok(raw[0] == 0xba && raw[31] == 0xad, "raw SHA-256 bytes");
}

/* digest_hex is lowercase and terminated. */
static void
test_hex(void)
{
	static const uint8_t	b[] = { 0x00, 0x0f, 0xa0, 0xff };
	char			out[9];

	memset(out, 'X', sizeof(out));
	digest_hex(b, sizeof(b), out);
	is_str(out, "000fa0ff", "hex of 00 0f a0 ff");
	digest_hex(b, 0, out);
	is_str(out, "", "hex of nothing is empty");
}

/* Run every digest test. */
int
main(void)
{
	test_md5();
	test_sha256();
	test_hex();
	return (tap_done());
}
