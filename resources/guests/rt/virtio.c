/*
 * virtio-mmio transport (register layout version 2) and split virtqueues, polled.
 * Device discovery follows Linux's virtio_mmio.device=<size>@<addr>:<irq> parameters, which is
 * how hearth (and QEMU's microvm, for Linux kernels) announces its devices.
 */
#include "virtio.h"

/* ---- command line ---- */

/* Split `s` at the first `c`: the part before goes to *head, the rest (after c) to *tail.
 * `head` may be `s` itself. */
static bool split(const struct token *s, char c, struct token *head, struct token *tail)
{
	struct token all = *s;
	const char *at = rt_memchr(all.s, c, all.len);

	if (!at)
		return false;
	head->s = all.s;
	head->len = (size_t)(at - all.s);
	tail->s = at + 1;
	tail->len = all.len - head->len - 1;
	return true;
}

/* A number with an optional K, M or G suffix (either case), as Linux's memparse. */
static bool parse_size(struct token t, uint64_t *out)
{
	unsigned shift = 0;
	uint64_t v;

	if (t.len > 1) {
		switch (t.s[t.len - 1] | 0x20) {
		case 'g':
			shift += 10;
			/* fall through */
		case 'm':
			shift += 10;
			/* fall through */
		case 'k':
			shift += 10;
			t.len--;
		}
	}
	if (!rt_parse_u64(&t, &v) || v > (UINT64_MAX >> shift))
		return false;
	*out = v << shift;
	return true;
}

bool rt_virtio_parse_param(const struct token *value, struct rt_virtio_param *p)
{
	struct token size, rest, base, irq, id;
	uint64_t n;

	if (!split(value, '@', &size, &rest) || !split(&rest, ':', &base, &irq))
		return false;
	if (split(&irq, ':', &irq, &id) && !rt_parse_u64(&id, &n))
		return false;
	if (!parse_size(size, &p->size) || !rt_parse_u64(&base, &p->base) ||
	    !rt_parse_u64(&irq, &n))
		return false;
	p->irq = (uint32_t)n;
	return n <= UINT32_MAX && p->size >= VIRTIO_MMIO_CONFIG && p->base < (1ULL << 32) &&
	       p->size <= (1ULL << 32) - p->base;
}

/* ---- registers ---- */

/* Plain 32-bit moves, so the VMM's MMIO emulation sees the simplest instructions. */
uint32_t rt_virtio_read(const struct rt_virtio_dev *d, uint32_t reg)
{
	const volatile uint32_t *p = (const volatile uint32_t *)(uintptr_t)(d->base + reg);
	uint32_t v;

	__asm__ volatile("movl %1, %0" : "=r"(v) : "m"(*p) : "memory");
	return v;
}

void rt_virtio_write(const struct rt_virtio_dev *d, uint32_t reg, uint32_t v)
{
	volatile uint32_t *p = (volatile uint32_t *)(uintptr_t)(d->base + reg);

	__asm__ volatile("movl %1, %0" : "=m"(*p) : "r"(v) : "memory");
}

static void write64(const struct rt_virtio_dev *d, uint32_t reg_low, const void *addr)
{
	uint64_t pa = (uintptr_t)addr;

	rt_virtio_write(d, reg_low, (uint32_t)pa);
	rt_virtio_write(d, reg_low + 4, (uint32_t)(pa >> 32));
}

unsigned rt_virtio_discover(const struct hvm_start_info *si, struct rt_virtio_dev *devs,
                            unsigned max)
{
	const char *cmdline = rt_cmdline(si);
	const char *pos = cmdline, *end = cmdline + rt_strnlen(cmdline, RT_CMDLINE_MAX);
	struct token tok, val;
	unsigned n = 0;

	while (rt_next_token(&pos, end, &tok)) {
		struct rt_virtio_param p;
		struct rt_virtio_dev *d = &devs[n];
		uint32_t magic, version;

		if (!rt_token_value(&tok, "virtio_mmio.device", &val))
			continue;
		if (!rt_virtio_parse_param(&val, &p)) {
			con_printf("virtio: malformed %.*s\n", (int)tok.len, tok.s);
			continue;
		}
		if (n == max) {
			con_printf("virtio: more than %u devices, %.*s ignored\n", max,
			           (int)tok.len, tok.s);
			continue;
		}
		memset(d, 0, sizeof(*d));
		d->base = p.base;
		d->size = p.size;
		d->irq = p.irq;
		magic = rt_virtio_read(d, VIRTIO_MMIO_MAGIC_VALUE);
		version = rt_virtio_read(d, VIRTIO_MMIO_VERSION);
		if (magic != RT_VIRTIO_MAGIC || version != RT_VIRTIO_VERSION) {
			con_printf("virtio: 0x%lx: magic 0x%x version %u, skipped\n", d->base,
			           magic, version);
			continue;
		}
		d->device_id = rt_virtio_read(d, VIRTIO_MMIO_DEVICE_ID);
		if (d->device_id != 0) /* 0: an empty slot */
			n++;
	}
	return n;
}

/* ---- status and features ---- */

static void set_status(struct rt_virtio_dev *d, uint32_t bits)
{
	rt_virtio_write(d, VIRTIO_MMIO_STATUS, rt_virtio_read(d, VIRTIO_MMIO_STATUS) | bits);
}

void rt_virtio_reset(struct rt_virtio_dev *d)
{
	rt_virtio_write(d, VIRTIO_MMIO_STATUS, 0);
	for (unsigned i = 0; rt_virtio_read(d, VIRTIO_MMIO_STATUS) != 0; i++) {
		if (i == 1000) {
			con_printf("virtio: 0x%lx: status not 0 after reset\n", d->base);
			break;
		}
	}
}

void rt_virtio_driver_ok(struct rt_virtio_dev *d)
{
	set_status(d, VIRTIO_CONFIG_S_DRIVER_OK);
}

void rt_virtio_fail(struct rt_virtio_dev *d)
{
	set_status(d, VIRTIO_CONFIG_S_FAILED);
}

bool rt_virtio_negotiate(struct rt_virtio_dev *d, uint64_t wanted, bool expect_refusal)
{
	const uint64_t v1 = RT_VIRTIO_FEATURE(VIRTIO_F_VERSION_1);

	rt_virtio_reset(d);
	rt_virtio_write(d, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
	set_status(d, VIRTIO_CONFIG_S_DRIVER);

	rt_virtio_write(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	d->offered = rt_virtio_read(d, VIRTIO_MMIO_DEVICE_FEATURES);
	rt_virtio_write(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	d->offered |= (uint64_t)rt_virtio_read(d, VIRTIO_MMIO_DEVICE_FEATURES) << 32;
	if ((wanted & v1) && !(d->offered & v1)) {
		con_printf("virtio: 0x%lx: device does not offer VERSION_1 (features 0x%lx)\n",
		           d->base, d->offered);
		rt_virtio_fail(d);
		return false;
	}

	d->features = d->offered & wanted;
	rt_virtio_write(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	rt_virtio_write(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)d->features);
	rt_virtio_write(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	rt_virtio_write(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(d->features >> 32));
	set_status(d, VIRTIO_CONFIG_S_FEATURES_OK);
	if (rt_virtio_read(d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK)
		return true;
	if (!expect_refusal) {
		con_printf("virtio: 0x%lx: FEATURES_OK refused for features 0x%lx\n", d->base,
		           d->features);
		rt_virtio_fail(d);
	}
	return false;
}

bool rt_virtio_setup_queue(struct rt_virtio_dev *d, unsigned q)
{
	struct rt_vq *vq = &d->vq[q];
	uint32_t max;
	uint16_t size = RT_VQ_SIZE;

	rt_virtio_write(d, VIRTIO_MMIO_QUEUE_SEL, q);
	if (rt_virtio_read(d, VIRTIO_MMIO_QUEUE_READY) != 0) {
		con_printf("virtio: 0x%lx: queue %u is ready before setup\n", d->base, q);
		return false;
	}
	max = rt_virtio_read(d, VIRTIO_MMIO_QUEUE_NUM_MAX);
	if (max == 0) {
		con_printf("virtio: 0x%lx: queue %u does not exist\n", d->base, q);
		return false;
	}
	while (size > max)
		size /= 2;
	rt_vq_init(vq, (uint16_t)q, size);
	rt_virtio_write(d, VIRTIO_MMIO_QUEUE_NUM, size);
	write64(d, VIRTIO_MMIO_QUEUE_DESC_LOW, vq->desc);
	write64(d, VIRTIO_MMIO_QUEUE_AVAIL_LOW, &vq->avail);
	write64(d, VIRTIO_MMIO_QUEUE_USED_LOW, &vq->used);
	rt_virtio_write(d, VIRTIO_MMIO_QUEUE_READY, 1);
	return true;
}

uint32_t rt_virtio_config32(const struct rt_virtio_dev *d, uint32_t offset)
{
	return rt_virtio_read(d, VIRTIO_MMIO_CONFIG + offset);
}

uint64_t rt_virtio_config64(const struct rt_virtio_dev *d, uint32_t offset)
{
	uint32_t gen, lo, hi;
	unsigned tries = 0;

	do {
		gen = rt_virtio_read(d, VIRTIO_MMIO_CONFIG_GENERATION);
		lo = rt_virtio_config32(d, offset);
		hi = rt_virtio_config32(d, offset + 4);
	} while (rt_virtio_read(d, VIRTIO_MMIO_CONFIG_GENERATION) != gen && ++tries < 100);
	return (uint64_t)hi << 32 | lo;
}

/* ---- virtqueues ---- */

void rt_vq_init(struct rt_vq *vq, uint16_t index, uint16_t size)
{
	memset(vq, 0, sizeof(*vq));
	vq->index = index;
	vq->size = size;
}

static void set_desc(struct vring_desc *desc, const struct rt_vq_buf *b, bool last, uint16_t next)
{
	desc->addr = (uintptr_t)b->addr;
	desc->len = b->len;
	desc->flags = (uint16_t)((b->device_writes ? VRING_DESC_F_WRITE : 0) |
	                         (last ? 0 : VRING_DESC_F_NEXT));
	desc->next = last ? 0 : next;
}

uint16_t rt_vq_add(struct rt_vq *vq, const struct rt_vq_buf *bufs, unsigned n,
                   struct vring_desc *indirect)
{
	uint16_t mask = (uint16_t)(vq->size - 1), head = vq->free_head, i = head;

	if (indirect) {
		for (unsigned k = 0; k < n; k++)
			set_desc(&indirect[k], &bufs[k], k + 1 == n, (uint16_t)(k + 1));
		vq->desc[head] = (struct vring_desc){
		    (uintptr_t)indirect, n * (uint32_t)sizeof(*indirect), VRING_DESC_F_INDIRECT, 0};
		i = (head + 1) & mask;
	} else {
		/* Chains start where the last one ended, so they wrap around the table. */
		for (unsigned k = 0; k < n; k++) {
			uint16_t next = (i + 1) & mask;

			set_desc(&vq->desc[i], &bufs[k], k + 1 == n, next);
			i = next;
		}
	}
	vq->free_head = i;
	vq->avail.ring[vq->avail_idx & mask] = head;
	/* The ring entry and the descriptors are visible before the new index. */
	__atomic_store_n(&vq->avail.idx, ++vq->avail_idx, __ATOMIC_RELEASE);
	return head;
}

bool rt_vq_get_used(struct rt_vq *vq, uint32_t *id, uint32_t *len)
{
	const struct vring_used_elem *e;

	/* The element is read only after the index that covers it. */
	if (__atomic_load_n(&vq->used.idx, __ATOMIC_ACQUIRE) == vq->last_used)
		return false;
	e = &vq->used.ring[vq->last_used & (vq->size - 1)];
	*id = e->id;
	*len = e->len;
	vq->last_used++;
	return true;
}

static uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

/* Called every RT_VQ_CHECK_EVERY spins: give up on a broken or silent device. */
static void check_progress(const struct rt_virtio_dev *d, unsigned q, uint32_t spin, uint64_t start)
{
	uint64_t cycles = rdtsc() - start;

	if (rt_virtio_read(d, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET) {
		con_printf("virtio: 0x%lx queue %u: device needs reset\n", d->base, q);
		guest_exit(RT_EXIT_VIRTIO_PROTOCOL);
	}
	if ((spin >= RT_VQ_SPIN_MIN && cycles >= RT_VQ_TSC_LIMIT) || spin >= RT_VQ_SPIN_MAX) {
		con_printf(
		    "virtio: 0x%lx queue %u: no completion after %u spins (%lu TSC cycles)\n",
		    d->base, q, spin, cycles);
		guest_exit(RT_EXIT_VIRTIO_TIMEOUT);
	}
}

uint32_t rt_virtio_submit(struct rt_virtio_dev *d, unsigned q, const struct rt_vq_buf *bufs,
                          unsigned n, struct vring_desc *indirect)
{
	struct rt_vq *vq = &d->vq[q];
	uint16_t head = rt_vq_add(vq, bufs, n, indirect);
	uint64_t start = rdtsc();
	uint32_t id, len, isr;

	rt_virtio_write(d, VIRTIO_MMIO_QUEUE_NOTIFY, vq->index);
	for (uint32_t spin = 1; !rt_vq_get_used(vq, &id, &len); spin++) {
		if (spin % RT_VQ_CHECK_EVERY == 0)
			check_progress(d, q, spin, start);
		__asm__ volatile("pause");
	}
	if (id != head) {
		con_printf("virtio: 0x%lx queue %u: used id %u, expected %u\n", d->base, q, id,
		           head);
		guest_exit(RT_EXIT_VIRTIO_PROTOCOL);
	}
	isr = rt_virtio_read(d, VIRTIO_MMIO_INTERRUPT_STATUS);
	if (isr)
		rt_virtio_write(d, VIRTIO_MMIO_INTERRUPT_ACK, isr);
	return len;
}
