#include "string_io.h"

#include <string.h>

#define RFLAGS_DF (1ULL << 10)

bool rep_outs_decode(const uint8_t *bytes, size_t n, bool long64, bool db, struct rep_outs *out)
{
	bool rep = false, opsize = false, adsize = false;
	int seg = 3; /* DS */
	size_t i = 0;

	for (; i < n && i < 15; i++) {
		uint8_t b = bytes[i];

		if (b == 0xf3 || b == 0xf2)
			rep = true;
		else if (b == 0x66)
			opsize = true;
		else if (b == 0x67)
			adsize = true;
		else if (b == 0x26 || b == 0x2e || b == 0x36 || b == 0x3e)
			seg = (b >> 3) & 3; /* 26 ES, 2e CS, 36 SS, 3e DS */
		else if (b == 0x64 || b == 0x65)
			seg = b - 0x60; /* FS, GS */
		else if (b == 0xf0)
			return false; /* lock: #UD on outs */
		else
			break;
	}
	if (long64 && i < n && (bytes[i] & 0xf0) == 0x40)
		i++; /* REX: no effect on outs */
	if (i >= n || i >= 15 || !rep || (bytes[i] != 0x6e && bytes[i] != 0x6f))
		return false;
	out->len = (unsigned)i + 1;
	if (bytes[i] == 0x6e)
		out->size = 1;
	else
		out->size = (long64 || db) ? (opsize ? 2 : 4) : (opsize ? 4 : 2);
	if (long64)
		out->addrsize = adsize ? 4 : 8;
	else
		out->addrsize = db ? (adsize ? 2 : 4) : (adsize ? 4 : 2);
	if (long64 && seg != 4 && seg != 5)
		seg = 3; /* only FS and GS overrides have a base in 64-bit mode */
	out->seg = seg;
	return true;
}

static uint64_t mask_of(unsigned addrsize)
{
	return addrsize == 8 ? ~0ULL : addrsize == 4 ? 0xffffffffULL : 0xffffULL;
}

/* Write v into the low `addrsize` bytes of *reg, as the CPU does for RCX/RSI updates. */
static void set_sized(__u64 *reg, uint64_t v, unsigned addrsize)
{
	if (addrsize == 8)
		*reg = v;
	else if (addrsize == 4)
		*reg = (uint32_t)v; /* a 32-bit result zero-extends */
	else
		*reg = (*reg & ~0xffffULL) | (v & 0xffff);
}

static const struct kvm_segment *segment(const struct kvm_sregs *s, int seg)
{
	static const size_t off[6] = {
	    offsetof(struct kvm_sregs, es), offsetof(struct kvm_sregs, cs),
	    offsetof(struct kvm_sregs, ss), offsetof(struct kvm_sregs, ds),
	    offsetof(struct kvm_sregs, fs), offsetof(struct kvm_sregs, gs),
	};

	return (const struct kvm_segment *)((const uint8_t *)s + off[seg]);
}

uint64_t rep_outs_finish(struct kvm_regs *r, const struct kvm_sregs *s, uint16_t port,
                         unsigned size, const struct bus *bus, vread_fn vread, void *ctx,
                         uint64_t max)
{
	bool long64 = (s->efer & (1ULL << 10)) && s->cs.l;
	uint64_t cs_base = long64 ? 0 : s->cs.base;
	uint8_t bytes[15];
	size_t n = 0;
	struct rep_outs in;
	uint64_t amask, count, done = 0, base;
	bool down = r->rflags & RFLAGS_DF;

	/* The instruction bytes: all 15 at once, else up to the first unreadable one. */
	if (vread(ctx, cs_base + r->rip, bytes, sizeof(bytes)))
		n = sizeof(bytes);
	else
		while (n < sizeof(bytes) && vread(ctx, cs_base + r->rip + n, bytes + n, 1))
			n++;
	if ((r->rdx & 0xffff) != port || !rep_outs_decode(bytes, n, long64, s->cs.db, &in) ||
	    in.size != size)
		return 0;
	amask = mask_of(in.addrsize);
	count = r->rcx & amask;
	base = long64 && in.seg != 4 && in.seg != 5 ? 0 : segment(s, in.seg)->base;
	if (count > max)
		count = max;
	while (done < count) {
		uint8_t buf[512];
		uint64_t chunk = count - done, rsi = r->rsi & amask;
		uint64_t nbytes;

		if (chunk > sizeof(buf) / in.size)
			chunk = sizeof(buf) / in.size;
		if (down) {
			/* Descending: element k is at rsi - k * size; read them one at a time. */
			chunk = 1;
		}
		nbytes = chunk * in.size;
		if (!vread(ctx, base + rsi, buf, nbytes))
			break;
		bus_write_rep(bus, port, buf, in.size, (uint32_t)chunk);
		set_sized(&r->rsi, down ? rsi - nbytes : rsi + nbytes, in.addrsize);
		set_sized(&r->rcx, (r->rcx & amask) - chunk, in.addrsize);
		done += chunk;
	}
	if (done && (r->rcx & amask) == 0) {
		uint64_t next = r->rip + in.len;

		r->rip = long64 ? next : s->cs.db ? next & 0xffffffffULL : next & 0xffff;
	}
	return done;
}

bool string_io_repeats(struct string_io_state *st, uint64_t rip, uint16_t port)
{
	bool again = st->have_last && st->last_rip == rip && st->last_port == port &&
	             !(st->have_not_outs && st->not_outs_rip == rip);

	st->last_rip = rip;
	st->last_port = port;
	st->have_last = true;
	return again;
}

void string_io_not_outs(struct string_io_state *st, uint64_t rip)
{
	st->not_outs_rip = rip;
	st->have_not_outs = true;
}

void string_io_after_exit(struct string_io_state *st, struct kvm_run *run, const struct bus *bus,
                          sregs_fn sregs, vread_fn vread, void *ctx)
{
	struct kvm_regs *r = &run->s.regs.regs;
	const struct kvm_sregs *s;

	if (run->io.direction != KVM_EXIT_IO_OUT || run->io.count != 1 ||
	    !string_io_repeats(st, r->rip, run->io.port))
		return;
	if ((s = sregs(ctx)) &&
	    rep_outs_finish(r, s, run->io.port, run->io.size, bus, vread, ctx, 65536))
		run->kvm_dirty_regs |= KVM_SYNC_X86_REGS;
	else
		string_io_not_outs(st, r->rip);
}
