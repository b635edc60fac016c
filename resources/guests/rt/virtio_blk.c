/*
 * virtio-blk (virtio 1.2 section 5.2), one request at a time on queue 0. A request is a chain
 * of a 16-byte header (device-readable), the data (if any) and a status byte (device-
 * writable): three descriptors, or one indirect descriptor pointing at a table of three.
 */
#include "virtio.h"

#define VBLK_MAX_BYTES (64u * 1024)

/* One request in flight at a time, so one header, status byte and indirect table. */
static struct virtio_blk_outhdr hdr;
static uint8_t status;
static struct vring_desc indirect_table[3] __attribute__((aligned(16)));

bool rt_vblk_init(struct rt_vblk *b, struct rt_virtio_dev *d)
{
	const uint64_t wanted =
	    RT_VIRTIO_FEATURE(VIRTIO_F_VERSION_1) | RT_VIRTIO_FEATURE(VIRTIO_BLK_F_RO) |
	    RT_VIRTIO_FEATURE(VIRTIO_BLK_F_FLUSH) | RT_VIRTIO_FEATURE(VIRTIO_BLK_F_SIZE_MAX) |
	    RT_VIRTIO_FEATURE(VIRTIO_RING_F_INDIRECT_DESC);

	memset(b, 0, sizeof(*b));
	b->dev = d;
	if (d->device_id != VIRTIO_ID_BLOCK) {
		con_printf("virtio-blk: 0x%lx: device id %u, not a block device\n", d->base,
		           d->device_id);
		return false;
	}
	if (!rt_virtio_negotiate(d, wanted, false))
		return false;
	if (!rt_virtio_setup_queue(d, 0)) {
		rt_virtio_fail(d);
		return false;
	}
	b->capacity = rt_virtio_config64(d, offsetof(struct virtio_blk_config, capacity));
	b->max_bytes = VBLK_MAX_BYTES;
	if (d->features & RT_VIRTIO_FEATURE(VIRTIO_BLK_F_SIZE_MAX)) {
		uint32_t max = rt_virtio_config32(d, offsetof(struct virtio_blk_config, size_max));

		max &= ~(RT_VBLK_SECTOR - 1);
		if (max < b->max_bytes)
			b->max_bytes = max ? max : RT_VBLK_SECTOR;
	}
	b->ro = d->offered & RT_VIRTIO_FEATURE(VIRTIO_BLK_F_RO);
	b->flush = d->features & RT_VIRTIO_FEATURE(VIRTIO_BLK_F_FLUSH);
	b->indirect = d->features & RT_VIRTIO_FEATURE(VIRTIO_RING_F_INDIRECT_DESC);
	rt_virtio_driver_ok(d);
	return true;
}

uint8_t rt_vblk_request(struct rt_vblk *b, uint32_t type, uint64_t sector, void *data, uint32_t len,
                        bool indirect)
{
	struct rt_vq_buf bufs[3];
	unsigned n = 0;

	hdr = (struct virtio_blk_outhdr){type, 0, sector};
	status = 0xff;
	bufs[n++] = (struct rt_vq_buf){&hdr, sizeof(hdr), false};
	if (len)
		bufs[n++] = (struct rt_vq_buf){data, len, type != VIRTIO_BLK_T_OUT};
	bufs[n++] = (struct rt_vq_buf){&status, 1, true};
	rt_virtio_submit(b->dev, 0, bufs, n, indirect && b->indirect ? indirect_table : NULL);
	return *(volatile uint8_t *)&status;
}

static uint8_t rw(struct rt_vblk *b, uint32_t type, uint64_t sector, uint8_t *p, uint32_t count,
                  bool indirect)
{
	uint32_t per_request = b->max_bytes / RT_VBLK_SECTOR;

	while (count) {
		uint32_t n = count < per_request ? count : per_request;
		uint8_t st = rt_vblk_request(b, type, sector, p, n * RT_VBLK_SECTOR, indirect);

		if (st != VIRTIO_BLK_S_OK)
			return st;
		sector += n;
		p += n * RT_VBLK_SECTOR;
		count -= n;
	}
	return VIRTIO_BLK_S_OK;
}

uint8_t rt_vblk_read(struct rt_vblk *b, uint64_t sector, void *buf, uint32_t count, bool indirect)
{
	return rw(b, VIRTIO_BLK_T_IN, sector, buf, count, indirect);
}

uint8_t rt_vblk_write(struct rt_vblk *b, uint64_t sector, const void *buf, uint32_t count,
                      bool indirect)
{
	return rw(b, VIRTIO_BLK_T_OUT, sector, (uint8_t *)(uintptr_t)buf, count, indirect);
}

uint8_t rt_vblk_flush(struct rt_vblk *b)
{
	return rt_vblk_request(b, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, false);
}

uint8_t rt_vblk_get_id(struct rt_vblk *b, char id[VIRTIO_BLK_ID_BYTES])
{
	return rt_vblk_request(b, VIRTIO_BLK_T_GET_ID, 0, id, VIRTIO_BLK_ID_BYTES, false);
}
