/*
 * The flasher stub (loader.h, PROTOCOL.md 9): the JSON file esptool and
 * esptool-js ship, its upload into RAM with MEM_BEGIN/MEM_DATA/MEM_END,
 * its "OHAI" hello, and FLASH_DEFL_END(1) when the writing is over.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>
#include <nettle/base64.h>

#include "chip.h"
#include "loader.h"
#include "loader-private.h"
#include "proto.h"
#include "transport.h"
#include "util.h"

#define LOADER_OHAI_MS		3000	/* the stub's hello */
#define LOADER_RAM_BLOCK	0x1800	/* MEM_DATA block (ESP_RAM_BLOCK) */

/* Decode base64 text into a new buffer; 0 or -EINVAL. */
static int
loader_stub_b64(const char *src, size_t len, uint8_t **out, size_t *outlen)
{
	struct base64_decode_ctx	 ctx;
	uint8_t				*buf;
	size_t				 n;

	buf = xmalloc(BASE64_DECODE_LENGTH(len) + 1);
	base64_decode_init(&ctx);
	n = BASE64_DECODE_LENGTH(len) + 1;
	if (!base64_decode_update(&ctx, &n, buf, len, src) ||
	    !base64_decode_final(&ctx)) {
		free(buf);
		return (-EINVAL);
	}
	*out = buf;
	*outlen = n;
	return (0);
}

/* An unsigned 32-bit member of the stub object, or -1 with *cause. */
static int
loader_stub_u32(struct json_object *o, const char *key, const char *name,
    uint32_t *v, char **cause)
{
	struct json_object	*m;
	int64_t			 n;

	if (!json_object_object_get_ex(o, key, &m) ||
	    !json_object_is_type(m, json_type_int) ||
	    (n = json_object_get_int64(m)) < 0 || n > 0xffffffffLL) {
		*cause = xasprintf("%s: \"%s\" is missing or not an address; "
		    "use a stub JSON from esptool or esptool-js", name, key);
		return (-1);
	}
	*v = (uint32_t)n;
	return (0);
}

/* A base64 member of the stub object; absent is fine when optional. */
static int
loader_stub_blob(struct json_object *o, const char *key, const char *name,
    int optional, uint8_t **out, size_t *len, char **cause)
{
	struct json_object	*m;

	*out = NULL;
	*len = 0;
	if (!json_object_object_get_ex(o, key, &m)) {
		if (optional)
			return (0);
		*cause = xasprintf("%s: no \"%s\"; use a stub JSON from "
		    "esptool or esptool-js", name, key);
		return (-1);
	}
	if (!json_object_is_type(m, json_type_string) ||
	    loader_stub_b64(json_object_get_string(m),
	    (size_t)json_object_get_string_len(m), out, len) != 0) {
		*cause = xasprintf("%s: \"%s\" is not base64 text", name, key);
		return (-1);
	}
	return (0);
}

/* Parse a stub JSON text. */
int
loader_stub_parse(const char *json, size_t len, const char *name,
    struct loader_stub *st, char **cause)
{
	struct json_tokener	*tok;
	struct json_object	*o;
	int			 error = -EINVAL;

	memset(st, 0, sizeof(*st));
	tok = json_tokener_new();
	o = json_tokener_parse_ex(tok, json, (int)MINIMUM(len, 0x7fffffff));
	if (o == NULL || !json_object_is_type(o, json_type_object)) {
		*cause = xasprintf("%s: not a JSON object (%s); use a stub "
		    "JSON from esptool or esptool-js", name,
		    json_tokener_error_desc(json_tokener_get_error(tok)));
		goto out;
	}
	if (loader_stub_blob(o, "text", name, 0, &st->text, &st->text_len,
	    cause) != 0 ||
	    loader_stub_u32(o, "text_start", name, &st->text_start,
	    cause) != 0 ||
	    loader_stub_u32(o, "entry", name, &st->entry, cause) != 0 ||
	    loader_stub_blob(o, "data", name, 1, &st->data, &st->data_len,
	    cause) != 0)
		goto out;
	if (st->data != NULL && loader_stub_u32(o, "data_start", name,
	    &st->data_start, cause) != 0)
		goto out;
	if (st->text_len == 0) {
		*cause = xasprintf("%s: \"text\" is empty", name);
		goto out;
	}
	error = 0;
out:
	if (o != NULL)
		json_object_put(o);
	json_tokener_free(tok);
	if (error != 0)
		loader_stub_free(st);
	return (error);
}

/* Read and parse a stub file (at most 1 MiB: stubs are a few KiB). */
int
loader_stub_load(const char *path, struct loader_stub *st, char **cause)
{
	FILE	*f;
	char	*buf;
	size_t	 n;
	int	 error;

	memset(st, 0, sizeof(*st));
	if ((f = fopen(path, "r")) == NULL) {
		error = -errno;
		*cause = xasprintf("--stub %s: %s", path, strerror(errno));
		return (error);
	}
	buf = xmalloc(1024 * 1024 + 1);
	n = fread(buf, 1, 1024 * 1024 + 1, f);
	fclose(f);
	if (n > 1024 * 1024) {
		free(buf);
		*cause = xasprintf("--stub %s: larger than 1 MiB: not a stub",
		    path);
		return (-EINVAL);
	}
	error = loader_stub_parse(buf, n, path, st, cause);
	free(buf);
	return (error);
}

/* Free the decoded segments. */
void
loader_stub_free(struct loader_stub *st)
{
	free(st->text);
	free(st->data);
	memset(st, 0, sizeof(*st));
}

/* MEM_BEGIN then MEM_DATA blocks for one segment. */
static int
loader_stub_segment(struct loader *l, const uint8_t *p, size_t plen,
    uint32_t addr, const char *seg)
{
	struct proto_resp	resp;
	char			what[96];
	size_t			len, off, n, bsize;
	uint32_t		seq, nblocks;
	int			error;

	bsize = l->usb_otg ? LOADER_USB_BLOCK : LOADER_RAM_BLOCK;
	nblocks = (uint32_t)((plen + bsize - 1) / bsize);
	len = proto_build_begin(l->tx, sizeof(l->tx), PROTO_MEM_BEGIN,
	    (uint32_t)plen, nblocks, (uint32_t)bsize, addr, 0);
	snprintf(what, sizeof(what), "MEM_BEGIN for the stub's %s at 0x%08x",
	    seg, addr);
	if ((error = loader_command(l, len, l->default_ms, what, &resp)) != 0)
		return (error);
	for (seq = 0, off = 0; off < plen; seq++, off += n) {
		n = MINIMUM(bsize, plen - off);
		len = proto_build_data(l->tx, sizeof(l->tx), PROTO_MEM_DATA,
		    seq, p + off, n);
		snprintf(what, sizeof(what), "MEM_DATA block %u/%u of the "
		    "stub's %s", seq + 1, nblocks, seg);
		if ((error = loader_command(l, len, l->default_ms, what,
		    &resp)) != 0)
			return (error);
	}
	return (0);
}

/* Upload the stub, start it, and wait for its OHAI. */
int
loader_stub_run(struct loader *l, const struct loader_stub *st)
{
	struct proto_resp	resp;
	uint64_t		deadline;
	size_t			len;
	int			error, n;

	if (l->stub)
		return (0);	/* already running (SYNC value 0) */
	if ((error = loader_stub_segment(l, st->text, st->text_len,
	    st->text_start, "text")) != 0)
		return (error);
	if (st->data != NULL && st->data_len > 0 &&
	    (error = loader_stub_segment(l, st->data, st->data_len,
	    st->data_start, "data")) != 0)
		return (error);
	/*
	 * MEM_END(0, entry).  The ROM may jump before its reply leaves, so
	 * the reply is optional; the stub's "OHAI" is what counts.
	 */
	loader_clear(l);
	len = proto_build_mem_end(l->tx, sizeof(l->tx), 0, st->entry);
	deadline = util_now_ms() + LOADER_OHAI_MS;
	if ((error = loader_send(l, len, deadline)) != 0) {
		loader_io_fail(l, error, LOADER_OHAI_MS);
		return (loader_prefix(l, error, "MEM_END (starting the stub)"));
	}
	for (;;) {
		if ((n = loader_recv(l, deadline)) < 0) {
			loader_io_fail(l, n, LOADER_OHAI_MS);
			return (loader_prefix(l, n, "starting the flasher stub "
			    "(no \"OHAI\"; is it the stub for this chip?)"));
		}
		if (n == 4 && memcmp(l->frame, "OHAI", 4) == 0)
			break;
		if (n >= PROTO_HDR_LEN && l->frame[0] == 0x01 &&
		    l->frame[1] == PROTO_MEM_END &&
		    proto_parse_resp(l->frame, (size_t)n, l->status_len,
		    &resp) == 0 && resp.status != 0)
			return (loader_fail(l, -EPROTO, "MEM_END (starting "
			    "the stub at 0x%08x): ROM status 0x%02x %s",
			    st->entry, resp.error, proto_err_text(resp.error)));
	}
	l->stub = 1;
	l->status_len = PROTO_STUB_STATUS_LEN;
	return (0);
}

/* FLASH_DEFL_END(1): the stub answers after its last write, and stays. */
int
loader_stub_end(struct loader *l)
{
	struct proto_resp	resp;
	size_t			len;

	if (!l->stub)
		return (0);
	len = proto_build_end(l->tx, sizeof(l->tx), PROTO_FLASH_DEFL_END, 1);
	return (loader_command(l, len, l->default_ms, NULL, &resp));
}
