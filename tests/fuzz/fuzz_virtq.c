/*
 * libFuzzer target: random rings and descriptor tables for the shared virtqueue layer.
 * The input is a small header (queue size and ring placement) followed by the bytes that
 * fill guest memory. Every chain popped is read and written in full; the sanitizers catch
 * any access outside guest RAM, and the loop bound catches a pop that never ends.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/queue.h"

#define GUEST_RAM (64 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t ram[GUEST_RAM];
	static struct virtq_chain chain;
	static uint8_t buf[GUEST_RAM];
	struct guest_memory gm;
	struct virtq q;

	if (size < 8)
		return 0;
	memset(ram, 0, sizeof(ram));
	memcpy(ram, data + 8, size - 8 < sizeof(ram) ? size - 8 : sizeof(ram));
	gm_wrap(&gm, ram, sizeof(ram));

	virtq_reset(&q);
	q.size = (uint16_t)(1u << (data[0] % 10)); /* 1 .. 512: sizes above 256 must be refused */
	q.desc_gpa = (uint64_t)(data[1] | data[2] << 8) << 4;
	q.avail_gpa = (uint64_t)(data[3] | data[4] << 8) << 1;
	q.used_gpa = (uint64_t)(data[5] | data[6] << 8) << 2;
	q.last_avail = data[7];
	q.used_idx = data[7];
	if (data[0] & 0x80) {
		/* Also exercise addresses beyond RAM and odd alignments. */
		q.desc_gpa ^= 0xfffffffffff0000ULL;
	}
	if (!virtq_layout_ok(&q, &gm))
		return 0;
	q.ready = true;

	for (int i = 0; i < 1024; i++) {
		enum virtq_pop_result r = virtq_pop(&q, &gm, &chain);

		if (r == VIRTQ_EMPTY || r == VIRTQ_BAD_RING)
			break;
		if (r == VIRTQ_CHAIN) {
			uint64_t n = chain.readable < sizeof(buf) ? chain.readable : sizeof(buf);
			uint64_t got = virtq_chain_read(&chain, &gm, 0, buf, n);

			if (got > n)
				abort();
			n = chain.writable < sizeof(buf) ? chain.writable : sizeof(buf);
			virtq_chain_write(&chain, &gm, 0, buf, n);
			if (chain.head >= q.size || chain.nsegs > VIRTQ_MAX_SEGS)
				abort();
		}
		virtq_push(&q, &gm, chain.head, 0);
	}
	return 0;
}
