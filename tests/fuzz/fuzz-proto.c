/*
 * libFuzzer target for the request and reply parsers (proto.c).  The
 * input is one frame with SLIP already removed, in a heap block of exactly
 * its size, so any read past it is an ASan report.  Each parser's verdict
 * is checked both ways against the frame layout of PROTOCOL.md 1.2/1.3:
 * an accepted frame's fields and data lie inside it and match its bytes,
 * a refused one really breaks a rule; and an accepted reply is rebuilt
 * byte for byte by proto_build_resp().  The same bytes then serve as the
 * payload of requests built into exact-size buffers and parsed back.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "util.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* Report a broken property and abort, so that libFuzzer keeps the input. */
static void
fuzz_fail(const char *what, unsigned arg)
{
	fprintf(stderr, "fuzz-proto: %s (%u)\n", what, arg);
	abort();
}

/* malloc that never returns NULL and never gets 0 (a fuzzer cannot OOM). */
static void *
fuzz_alloc(size_t n)
{
	void	*p;

	if ((p = malloc(n == 0 ? 1 : n)) == NULL)
		abort();
	return (p);
}

/* Parse p as a reply with status_len status bytes and judge the verdict. */
static void
fuzz_proto_resp(const uint8_t *p, size_t len, unsigned status_len)
{
	struct proto_resp	 r;
	const uint8_t		*st;
	uint8_t			*out;
	size_t			 olen;
	int			 well, error;

	/* The layout rules, written out independently of proto.c. */
	well = status_len >= 2 && len >= PROTO_HDR_LEN && p[0] == 0x01 &&
	    le16_get(p + 2) == len - PROTO_HDR_LEN &&
	    le16_get(p + 2) >= status_len;
	memset(&r, 0xa5, sizeof r);
	error = proto_parse_resp(p, len, status_len, &r);
	if (error != 0 && error != -EBADMSG)
		fuzz_fail("proto_parse_resp returned an unknown value",
		    status_len);
	if ((error == 0) != well)
		fuzz_fail(well ? "well-formed reply refused" :
		    "malformed reply accepted", status_len);
	if (error != 0)
		return;

	if (r.data != p + PROTO_HDR_LEN || r.data_len > len - PROTO_HDR_LEN ||
	    r.data_len + status_len != len - PROTO_HDR_LEN)
		fuzz_fail("reply data outside the frame", status_len);
	st = r.data + r.data_len;
	if (r.op != p[1] || r.value != le32_get(p + 4) || r.status != st[0])
		fuzz_fail("reply header fields do not match the frame",
		    status_len);
	if (r.error != (st[0] > 1 ? st[0] : st[1]))
		fuzz_fail("reply error code is neither status byte",
		    status_len);

	/* Rebuild it into an exact-size buffer: same bytes up to status. */
	out = fuzz_alloc(len);
	olen = proto_build_resp(out, len, r.op, r.value, r.data, r.data_len,
	    status_len, st[0], st[1]);
	if (olen != len || memcmp(out, p, PROTO_HDR_LEN + r.data_len + 2) != 0)
		fuzz_fail("proto_build_resp does not rebuild the reply",
		    status_len);
	if (proto_build_resp(out, len - 1, r.op, r.value, r.data, r.data_len,
	    status_len, st[0], st[1]) != 0)
		fuzz_fail("proto_build_resp overran a short buffer",
		    status_len);
	free(out);
	(void)proto_op_name(r.op);
	if (proto_err_name(r.error) == NULL || proto_err_text(r.error) == NULL)
		fuzz_fail("no name or text for an error code", r.error);
}

/* Parse p as a request and judge the verdict. */
static void
fuzz_proto_req(const uint8_t *p, size_t len)
{
	struct proto_req	req;
	int			well, error;

	well = len >= PROTO_HDR_LEN && p[0] == 0x00 &&
	    le16_get(p + 2) == len - PROTO_HDR_LEN;
	memset(&req, 0xa5, sizeof req);
	error = proto_parse_req(p, len, &req);
	if (error != 0 && error != -EBADMSG)
		fuzz_fail("proto_parse_req returned an unknown value", 0);
	if ((error == 0) != well)
		fuzz_fail(well ? "well-formed request refused" :
		    "malformed request accepted", 0);
	if (error != 0)
		return;
	if (req.data != p + PROTO_HDR_LEN ||
	    req.size != len - PROTO_HDR_LEN || req.op != p[1] ||
	    req.checksum != le32_get(p + 4))
		fuzz_fail("request fields do not match the frame", req.size);
	if (proto_op_name(req.op) == NULL)
		fuzz_fail("no name for an opcode", req.op);
}

/*
 * Use the bytes as a payload: a generic request and a _DATA request built
 * into buffers of exactly their size must parse back to the same payload
 * and checksum, and one byte less must be refused without an overrun.
 */
static void
fuzz_proto_build(const uint8_t *d, size_t n, uint8_t op)
{
	struct proto_req	 req;
	uint8_t			*out;
	size_t			 total, got;

	if (n > 0xffff - PROTO_DATA_HDR_LEN)
		return;
	total = PROTO_HDR_LEN + n;
	out = fuzz_alloc(total);
	got = proto_build(out, total, op, d, n, 0);
	if (got != total || proto_parse_req(out, got, &req) != 0 ||
	    req.op != op || req.size != n || memcmp(req.data, d, n) != 0)
		fuzz_fail("proto_build did not round-trip", (unsigned)n);
	if (proto_build(out, total - 1, op, d, n, 0) != 0)
		fuzz_fail("proto_build overran a short buffer", (unsigned)n);
	free(out);

	total = PROTO_HDR_LEN + PROTO_DATA_HDR_LEN + n;
	out = fuzz_alloc(total);
	got = proto_build_data(out, total, op, (uint32_t)n, d, n);
	if (got != total || proto_parse_req(out, got, &req) != 0 ||
	    req.size != PROTO_DATA_HDR_LEN + n ||
	    le32_get(req.data) != n ||
	    memcmp(req.data + PROTO_DATA_HDR_LEN, d, n) != 0 ||
	    req.checksum != proto_checksum(d, n) || req.checksum > 0xff)
		fuzz_fail("proto_build_data did not round-trip", (unsigned)n);
	if (proto_build_data(out, total - 1, op, 0, d, n) != 0)
		fuzz_fail("proto_build_data overran a short buffer",
		    (unsigned)n);
	free(out);
}

/* libFuzzer entry point. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_proto_resp(data, size, PROTO_ROM_STATUS_LEN);
	fuzz_proto_resp(data, size, PROTO_STUB_STATUS_LEN);
	fuzz_proto_resp(data, size, 0);
	fuzz_proto_resp(data, size, 1);
	fuzz_proto_req(data, size);
	fuzz_proto_build(data, size, size > 1 ? data[1] : PROTO_SYNC);
	return (0);
}
