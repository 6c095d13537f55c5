/*
 * Unit tests of the frame header and error payload codec (common/frame.c).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "cell/frame.h"

/* A header survives pack + unpack unchanged. */
static void test_frame_hdr_roundtrip_same(void **state)
{
	struct cell_frame_hdr in = {CELL_FRAME_VERSION, CELL_FRAME_REPLY, 513,
				    0xdeadbeef, 4096},
			      out;
	uint8_t buf[CELL_FRAME_HDR_LEN];

	(void)state;
	cell_frame_hdr_pack(&in, buf);
	assert_int_equal(buf[0], 0xCE);
	assert_int_equal(buf[1], 0x11);
	assert_int_equal(cell_frame_hdr_unpack(buf, 1 << 20, &out), 0);
	assert_int_equal(out.type, 513);
	assert_int_equal(out.id, 0xdeadbeef);
	assert_int_equal(out.len, 4096);
	assert_int_equal(out.flags, CELL_FRAME_REPLY);
}

/* Every kind of bad header is refused with its own error. */
static void test_frame_hdr_bad_refused(void **state)
{
	struct cell_frame_hdr h = {CELL_FRAME_VERSION, 0, 10, 1, 100}, out;
	uint8_t buf[CELL_FRAME_HDR_LEN];

	(void)state;
	cell_frame_hdr_pack(&h, buf);
	buf[0] = 'G';
	assert_int_equal(cell_frame_hdr_unpack(buf, 1 << 20, &out), -EBADMSG);

	cell_frame_hdr_pack(&h, buf);
	buf[2] = 2;
	assert_int_equal(cell_frame_hdr_unpack(buf, 1 << 20, &out),
			 -EPROTONOSUPPORT);
	assert_int_equal(out.id, 1); /* still answerable */

	h.len = 101;
	cell_frame_hdr_pack(&h, buf);
	assert_int_equal(cell_frame_hdr_unpack(buf, 100, &out), -EMSGSIZE);
	h.len = 100;
	cell_frame_hdr_pack(&h, buf);
	assert_int_equal(cell_frame_hdr_unpack(buf, 100, &out), 0);

	buf[3] = 0x80; /* unknown flag */
	assert_int_equal(cell_frame_hdr_unpack(buf, 100, &out), -EBADMSG);
	buf[3] = CELL_FRAME_ERROR; /* error without reply */
	assert_int_equal(cell_frame_hdr_unpack(buf, 100, &out), -EBADMSG);
	buf[3] = 0;
	buf[7] = 1; /* reserved */
	assert_int_equal(cell_frame_hdr_unpack(buf, 100, &out), -EBADMSG);
}

/* Error payloads keep the code and message; control bytes are masked and
 * short or zero-code payloads read as EPROTO/0. */
static void test_frame_error_payload_sanitized(void **state)
{
	uint8_t buf[4 + CELL_FRAME_ERRMSG_MAX];
	char msg[64];
	size_t n;

	(void)state;
	n = cell_frame_error_pack(-ENOENT, "no node\n'x'\x1b", buf);
	assert_int_equal(cell_frame_error_unpack(buf, n, msg, sizeof(msg)),
			 ENOENT);
	assert_string_equal(msg, "no node?'x'?");
	assert_int_equal(cell_frame_error_unpack(buf, 3, msg, sizeof(msg)), 0);
	memset(buf, 0, 4);
	assert_int_equal(cell_frame_error_unpack(buf, 4, msg, sizeof(msg)),
			 EPROTO);
	n = cell_frame_error_pack(EINVAL, "a long message", buf);
	assert_int_equal(cell_frame_error_unpack(buf, n, msg, 5), EINVAL);
	assert_string_equal(msg, "a lo");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frame_hdr_roundtrip_same),
		cmocka_unit_test(test_frame_hdr_bad_refused),
		cmocka_unit_test(test_frame_error_payload_sanitized),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
