/* rep outs batching: the decoder, and finishing a string against fake guest memory and bus. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "backend/kvm/string_io.h"

/* ---- decoding ---- */

static void test_decode_forms(void **state)
{
	struct rep_outs o;

	(void)state;
	assert_true(rep_outs_decode((const uint8_t[]){0xf3, 0x6e}, 2, true, false, &o));
	assert_int_equal(o.len, 2);
	assert_int_equal(o.size, 1);
	assert_int_equal(o.addrsize, 8);
	assert_int_equal(o.seg, 3);
	/* rep outsd, rep outsw (66), 32-bit addressing (67), REX, FS override */
	assert_true(rep_outs_decode((const uint8_t[]){0xf3, 0x6f}, 2, true, false, &o));
	assert_int_equal(o.size, 4);
	assert_true(rep_outs_decode((const uint8_t[]){0x66, 0xf3, 0x6f}, 3, true, false, &o));
	assert_int_equal(o.size, 2);
	assert_int_equal(o.len, 3);
	assert_true(rep_outs_decode((const uint8_t[]){0x67, 0xf3, 0x48, 0x6e}, 4, true, false, &o));
	assert_int_equal(o.addrsize, 4);
	assert_int_equal(o.len, 4);
	assert_true(rep_outs_decode((const uint8_t[]){0x64, 0xf3, 0x6e}, 3, true, false, &o));
	assert_int_equal(o.seg, 4);
	/* An ES override means nothing in 64-bit mode: DS (base 0). */
	assert_true(rep_outs_decode((const uint8_t[]){0x26, 0xf3, 0x6e}, 3, true, false, &o));
	assert_int_equal(o.seg, 3);
	/* 32-bit and 16-bit code segments */
	assert_true(rep_outs_decode((const uint8_t[]){0xf3, 0x6f}, 2, false, true, &o));
	assert_int_equal(o.size, 4);
	assert_int_equal(o.addrsize, 4);
	assert_true(rep_outs_decode((const uint8_t[]){0x26, 0xf3, 0x6f}, 3, false, false, &o));
	assert_int_equal(o.size, 2);
	assert_int_equal(o.addrsize, 2);
	assert_int_equal(o.seg, 0);
	/* REX is an opcode (inc/dec) outside 64-bit mode */
	assert_false(rep_outs_decode((const uint8_t[]){0xf3, 0x48, 0x6e}, 3, false, true, &o));
}

static void test_decode_refuses(void **state)
{
	struct rep_outs o;
	uint8_t fifteen[16];

	(void)state;
	assert_false(rep_outs_decode((const uint8_t[]){0x6e}, 1, true, false, &o)); /* no rep */
	assert_false(rep_outs_decode((const uint8_t[]){0xf3, 0x6c}, 2, true, false, &o)); /* ins */
	assert_false(
	    rep_outs_decode((const uint8_t[]){0xf3, 0xee}, 2, true, false, &o)); /* out dx */
	assert_false(rep_outs_decode((const uint8_t[]){0xf0, 0xf3, 0x6e}, 3, true, false, &o));
	assert_false(rep_outs_decode((const uint8_t[]){0xf3}, 1, true, false, &o)); /* truncated */
	assert_false(rep_outs_decode(NULL, 0, true, false, &o));
	memset(fifteen, 0x66, sizeof(fifteen));
	fifteen[0] = 0xf3;
	fifteen[15] = 0x6e; /* more than 15 bytes of instruction */
	assert_false(rep_outs_decode(fifteen, sizeof(fifteen), true, false, &o));
}

/* ---- finishing a string ---- */

static uint8_t mem[4 * 4096];
static uint64_t unmapped_from = UINT64_MAX;
static uint8_t written[4096];
static size_t nwritten;

static bool fake_vread(void *ctx, uint64_t va, void *buf, size_t len)
{
	(void)ctx;
	if (va >= sizeof(mem) || len > sizeof(mem) - va || va + len > unmapped_from)
		return false;
	memcpy(buf, mem + va, len);
	return true;
}

static void dev_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t size)
{
	(void)opaque;
	(void)off;
	memcpy(written + nwritten, data, size);
	nwritten += size;
}

static const struct bus_ops dev_ops = {.write = dev_write};

static void setup_bus(struct bus *b)
{
	memset(b, 0, sizeof(*b));
	assert_int_equal(bus_add(b, 0x3f8, 8, &dev_ops, NULL, "uart"), 0);
	nwritten = 0;
	unmapped_from = UINT64_MAX;
}

/* A fresh bus, 64-bit code, and `rep outsb` at 0x100. */
static void setup_long_mode(struct bus *b, struct kvm_sregs *s)
{
	setup_bus(b);
	memset(s, 0, sizeof(*s));
	s->efer = 1ULL << 10;
	s->cs.l = 1;
	mem[0x100] = 0xf3;
	mem[0x101] = 0x6e;
}

static void test_finish_forward(void **state)
{
	struct bus b;
	struct kvm_sregs s;
	struct kvm_regs r = {0};

	(void)state;
	setup_long_mode(&b, &s);
	memcpy(mem + 0x2000, "hello, world\n", 13);
	/* KVM retired 'h': RSI past it, RCX one less, RIP still at the instruction. */
	r.rip = 0x100;
	r.rsi = 0x2001;
	r.rcx = 12;
	r.rdx = 0x3f8;
	assert_int_equal(rep_outs_finish(&r, &s, 0x3f8, 1, &b, fake_vread, NULL, 65536), 12);
	assert_int_equal(nwritten, 12);
	assert_memory_equal(written, "ello, world\n", 12);
	assert_int_equal(r.rcx, 0);
	assert_int_equal(r.rsi, 0x200d);
	assert_int_equal(r.rip, 0x102);
}

static void test_finish_limits(void **state)
{
	struct bus b;
	struct kvm_sregs s;
	struct kvm_regs r = {0};

	(void)state;
	setup_long_mode(&b, &s);
	/* At most `max` elements: RIP stays, the guest re-executes for the rest. */
	r = (struct kvm_regs){.rip = 0x100, .rsi = 0x2000, .rcx = 100, .rdx = 0x3f8};
	assert_int_equal(rep_outs_finish(&r, &s, 0x3f8, 1, &b, fake_vread, NULL, 10), 10);
	assert_int_equal(r.rcx, 90);
	assert_int_equal(r.rip, 0x100);
	/* Memory that ends: stop there, exactly. */
	setup_bus(&b);
	unmapped_from = 0x2000 + 600;
	r = (struct kvm_regs){.rip = 0x100, .rsi = 0x2000, .rcx = 1000, .rdx = 0x3f8};
	assert_int_equal(rep_outs_finish(&r, &s, 0x3f8, 1, &b, fake_vread, NULL, 65536), 512);
	assert_int_equal(r.rcx, 1000 - 512);
	assert_int_equal(r.rsi, 0x2000 + 512);
	assert_int_equal(r.rip, 0x100);
	/* Another port in DX, another element size, or another instruction: nothing. */
	setup_bus(&b);
	r = (struct kvm_regs){.rip = 0x100, .rsi = 0x2000, .rcx = 5, .rdx = 0x2f8};
	assert_int_equal(rep_outs_finish(&r, &s, 0x3f8, 1, &b, fake_vread, NULL, 65536), 0);
	r.rdx = 0x3f8;
	assert_int_equal(rep_outs_finish(&r, &s, 0x3f8, 2, &b, fake_vread, NULL, 65536), 0);
	mem[0x101] = 0xee;
	assert_int_equal(rep_outs_finish(&r, &s, 0x3f8, 1, &b, fake_vread, NULL, 65536), 0);
	assert_int_equal(nwritten, 0);
	assert_int_equal(r.rcx, 5);
	/* Instruction bytes that cannot be read. */
	unmapped_from = 0;
	mem[0x101] = 0x6e;
	assert_int_equal(rep_outs_finish(&r, &s, 0x3f8, 1, &b, fake_vread, NULL, 65536), 0);
}

static void test_finish_backward_and_32bit(void **state)
{
	struct bus b;
	struct kvm_sregs s;
	struct kvm_regs r = {0};

	(void)state;
	setup_long_mode(&b, &s);
	memcpy(mem + 0x3000, "abcd", 4);
	/* DF set: bytes from high to low. */
	r = (struct kvm_regs){
	    .rip = 0x100, .rsi = 0x3002, .rcx = 3, .rdx = 0x3f8, .rflags = 2 | (1 << 10)};
	assert_int_equal(rep_outs_finish(&r, &s, 0x3f8, 1, &b, fake_vread, NULL, 65536), 3);
	assert_memory_equal(written, "cba", 3);
	assert_int_equal(r.rsi, 0x2fff);
	/* 32-bit code with 16-bit addressing (67): SI wraps, upper RSI bits stay. */
	setup_bus(&b);
	memset(&s, 0, sizeof(s));
	s.cs.db = 1;
	mem[0x200] = 0x67;
	mem[0x201] = 0xf3;
	mem[0x202] = 0x6e;
	memcpy(mem + 0x1000, "xyz", 3);
	r = (struct kvm_regs){
	    .rip = 0x200, .rsi = 0xabcd00000fff, .rcx = 0x10000 | 2, .rdx = 0x3f8};
	s.ds.base = 0x1000 - 0xfff;
	assert_int_equal(rep_outs_finish(&r, &s, 0x3f8, 1, &b, fake_vread, NULL, 65536), 2);
	assert_memory_equal(written, "xy", 2);
	assert_int_equal(r.rsi, 0xabcd00000000 | 0x1001);
	assert_int_equal(r.rcx, 0x10000);
	assert_int_equal(r.rip, 0x203);
}

static void test_trigger(void **state)
{
	struct string_io_state st = {0};

	(void)state;
	assert_false(string_io_repeats(&st, 0x100, 0x3f8));
	assert_true(string_io_repeats(&st, 0x100, 0x3f8));
	assert_false(string_io_repeats(&st, 0x100, 0x2f8)); /* another port */
	assert_false(string_io_repeats(&st, 0x104, 0x2f8));
	string_io_not_outs(&st, 0x104);
	assert_false(string_io_repeats(&st, 0x104, 0x2f8)); /* known not to be one */
	assert_false(string_io_repeats(&st, 0x108, 0x2f8));
	assert_true(string_io_repeats(&st, 0x108, 0x2f8));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_decode_forms),
	    cmocka_unit_test(test_decode_refuses),
	    cmocka_unit_test(test_finish_forward),
	    cmocka_unit_test(test_finish_limits),
	    cmocka_unit_test(test_finish_backward_and_32bit),
	    cmocka_unit_test(test_trigger),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
