/*
 * netguest: a guest for hearth's virtio-net tests. It starts every virtio-net device that
 * virtio_mmio.device= tokens announce (NIC 0, 1, ... in command-line order), prints one line
 * per NIC and "netguest: ready", then polls the NICs forever and answers, on each NIC with
 * an address:
 *
 *   ARP requests for its address;
 *   ICMP echo requests (ping): the same packet back as an echo reply;
 *   UDP datagrams to port 7 (echo): the same datagram back to its sender;
 *   UDP datagrams to port 9 (control), one ASCII command each, answered with one datagram:
 *     "stall K"   stop taking frames from NIC K ("ok stall K"): its receive buffers fill up
 *     "resume K"  take frames from NIC K again ("ok resume K")
 *     "tx K N"    send N broadcast UDP datagrams (to port 9) on NIC K ("ok tx K N")
 *     "stats"     "ok" and, per NIC, " nicK rx R tx T" (frames taken and sent)
 *   Every command is also printed on the UART: "netguest: <command>".
 *
 * Replies are built in place, in the receive buffer, and sent from there: the addresses and
 * ports are swapped, which leaves the IPv4 and UDP checksums valid (a one's-complement sum
 * does not depend on the order of its words), and an ICMP echo reply only changes the type,
 * so its checksum is updated incrementally (RFC 1624). Per packet the guest does a few
 * hundred instructions, whatever the size: KVM may be emulating it one instruction at a time.
 * With offloads (csum), a datagram that arrives with a partial checksum (NEEDS_CSUM) goes
 * back with the same virtio-net header, so the host completes it.
 *
 * Tokens: ip=A.B.C.D (NIC 0), ipK=A.B.C.D (NIC K); rxbuf=N (receive buffer bytes, header
 * included; default header + 14 + MTU + 4); mrg (negotiate MRG_RXBUF); csum (negotiate CSUM
 * and GUEST_CSUM). Tokens whose key contains a '.' are not for netguest.
 *
 * Exit statuses: 14 no virtio-net device or one failed to start; 20 and 21 from the runtime
 * (a device did not complete a chain / broke the protocol); 98 unknown or malformed token.
 */
#include "virtio.h"

#include <linux/virtio_net.h>

#define MAX_NICS 4

#define EXIT_NO_DEVICE      14
#define EXIT_UNKNOWN_ACTION 98

#define ETH_HLEN      14
#define ETH_P_IP      0x0800
#define ETH_P_ARP     0x0806
#define PORT_ECHO     7
#define PORT_CTL      9
#define CTL_REPLY_MAX 200

struct nic {
	struct rt_vnet v;
	uint8_t ip[4];
	bool has_ip;
	bool stalled;
};

static struct rt_virtio_dev devs[RT_VIRTIO_MAX_DEVS];
static struct nic nics[MAX_NICS];
static unsigned nnics;
static uint8_t rxmem[MAX_NICS][RT_VQ_SIZE * RT_VNET_BUF_MAX]
    __attribute__((section(".noinit"), aligned(64)));
/* Control replies and tx K N frames: header + Ethernet + IPv4 + UDP + text. */
static uint8_t out[RT_VNET_HDR + ETH_HLEN + 20 + 8 + CTL_REPLY_MAX] __attribute__((aligned(8)));

static const uint8_t broadcast[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

/* ---- byte order and checksums ---- */

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void swap_bytes(uint8_t *a, uint8_t *b, size_t n)
{
	uint8_t t[6];

	rt_copy(t, a, n);
	rt_copy(a, b, n);
	rt_copy(b, t, n);
}

/* RFC 1624, eqn. 3: the checksum after a 16-bit word of the data changed from old to new. */
static uint16_t csum_update(uint16_t sum, uint16_t old, uint16_t new)
{
	uint32_t s = (uint32_t)(uint16_t)~sum + (uint16_t)~old + new;

	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

/* The IPv4 header checksum of a 20-byte header whose checksum field is 0. */
static uint16_t ip_csum(const uint8_t *ip)
{
	uint32_t s = 0;

	for (unsigned i = 0; i < 20; i += 2)
		s += get16(ip + i);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

/* ---- sending ---- */

/* A UDP datagram built in `out`: from the NIC's address and port `sport` to dst:dport. */
static void send_udp(struct nic *n, const uint8_t dst_mac[6], const uint8_t dst_ip[4],
                     uint16_t sport, uint16_t dport, const char *text, size_t len)
{
	uint8_t *eth = out + RT_VNET_HDR, *ip = eth + ETH_HLEN, *udp = ip + 20;

	if (len > CTL_REPLY_MAX)
		len = CTL_REPLY_MAX;
	memset(out, 0, RT_VNET_HDR); /* no offloads */
	rt_copy(eth, dst_mac, 6);
	rt_copy(eth + 6, n->v.mac, 6);
	put16(eth + 12, ETH_P_IP);
	ip[0] = 0x45;
	ip[1] = 0;
	put16(ip + 2, (uint16_t)(20 + 8 + len));
	put16(ip + 4, 0);
	put16(ip + 6, 0x4000); /* DF */
	ip[8] = 64;
	ip[9] = 17;
	put16(ip + 10, 0);
	rt_copy(ip + 12, n->ip, 4);
	rt_copy(ip + 16, dst_ip, 4);
	put16(ip + 10, ip_csum(ip));
	put16(udp, sport);
	put16(udp + 2, dport);
	put16(udp + 4, (uint16_t)(8 + len));
	put16(udp + 6, 0); /* no UDP checksum (allowed over IPv4) */
	rt_copy(udp + 8, text, len);
	rt_vnet_tx(&n->v, out, (uint32_t)(RT_VNET_HDR + ETH_HLEN + 20 + 8 + len));
}

/* A reply sent from the receive buffer: Ethernet addresses swapped (we are the source). */
static void reply_in_place(struct nic *n, uint8_t *frame, uint32_t eth_len)
{
	uint8_t *eth = frame + RT_VNET_HDR;

	rt_copy(eth, eth + 6, 6);
	rt_copy(eth + 6, n->v.mac, 6);
	rt_vnet_tx(&n->v, frame, RT_VNET_HDR + eth_len);
}

/* ---- control commands ---- */

static size_t put_text(char *buf, size_t at, const char *s)
{
	size_t n = rt_strnlen(s, CTL_REPLY_MAX);

	if (at + n > CTL_REPLY_MAX)
		n = CTL_REPLY_MAX - at;
	rt_copy(buf + at, s, n);
	return at + n;
}

static size_t put_num(char *buf, size_t at, uint64_t v)
{
	char tmp[24];
	size_t n = 0;

	do
		tmp[sizeof(tmp) - ++n] = (char)('0' + v % 10);
	while ((v /= 10) && n < sizeof(tmp));
	if (at + n > CTL_REPLY_MAX)
		n = CTL_REPLY_MAX - at;
	rt_copy(buf + at, tmp + sizeof(tmp) - n, n);
	return at + n;
}

/* "word" or "word K" or "word K N": numbers are decimal; returns how many were found. */
static int parse_cmd(const char *s, size_t len, struct token *word, uint64_t num[2])
{
	const char *pos = s, *end = s + len;
	struct token t;
	int k = 0;

	if (!rt_next_token(&pos, end, word))
		return -1;
	while (rt_next_token(&pos, end, &t)) {
		if (k == 2 || !rt_parse_u64(&t, &num[k]))
			return -1;
		k++;
	}
	return k;
}

static void control(struct nic *n, const uint8_t *eth, const uint8_t *ip, const uint8_t *udp,
                    uint32_t payload_len)
{
	static char reply[CTL_REPLY_MAX];
	const char *text = (const char *)udp + 8;
	uint8_t mac[6], dst_ip[4];
	uint16_t sport = get16(udp);
	struct token word;
	uint64_t num[2] = {0, 0};
	int args = parse_cmd(text, payload_len, &word, num);
	size_t r = 0;

	/* The frame is about to be overwritten only if we reply from `out`: copy what we need. */
	rt_copy(mac, eth + 6, 6);
	rt_copy(dst_ip, ip + 12, 4);
	con_printf("netguest: %.*s\n", (int)payload_len, text);
	if (args == 1 && (rt_token_is(&word, "stall") || rt_token_is(&word, "resume")) &&
	    num[0] < nnics) {
		nics[num[0]].stalled = rt_token_is(&word, "stall");
		r = put_text(reply, r, "ok ");
		r = put_text(reply, r, nics[num[0]].stalled ? "stall " : "resume ");
		r = put_num(reply, r, num[0]);
	} else if (args == 2 && rt_token_is(&word, "tx") && num[0] < nnics && num[1] <= 100000) {
		static const uint8_t everyone[4] = {255, 255, 255, 255};

		for (uint64_t i = 0; i < num[1]; i++)
			send_udp(&nics[num[0]], broadcast, everyone, PORT_CTL, PORT_CTL, "hearth",
			         6);
		r = put_text(reply, r, "ok tx ");
		r = put_num(reply, r, num[0]);
		r = put_text(reply, r, " ");
		r = put_num(reply, r, num[1]);
	} else if (args == 0 && rt_token_is(&word, "stats")) {
		r = put_text(reply, r, "ok");
		for (unsigned k = 0; k < nnics; k++) {
			r = put_text(reply, r, " nic");
			r = put_num(reply, r, k);
			r = put_text(reply, r, " rx ");
			r = put_num(reply, r, nics[k].v.rx_frames);
			r = put_text(reply, r, " tx ");
			r = put_num(reply, r, nics[k].v.tx_frames);
		}
	} else {
		r = put_text(reply, r, "error: unknown command");
	}
	send_udp(n, mac, dst_ip, PORT_CTL, sport, reply, r);
}

/* ---- protocols ---- */

static void arp(struct nic *n, uint8_t *frame, uint32_t eth_len)
{
	uint8_t *a = frame + RT_VNET_HDR + ETH_HLEN;

	/* Ethernet/IPv4 request (op 1) for our address. */
	if (eth_len < ETH_HLEN + 28 || get16(a) != 1 || get16(a + 2) != ETH_P_IP || a[4] != 6 ||
	    a[5] != 4 || get16(a + 6) != 1 || memcmp(a + 24, n->ip, 4) != 0)
		return;
	put16(a + 6, 2);
	rt_copy(a + 18, a + 8, 10);  /* target <- sender (MAC and address) */
	rt_copy(a + 8, n->v.mac, 6); /* sender <- us */
	rt_copy(a + 14, n->ip, 4);
	memset(frame, 0, RT_VNET_HDR);
	reply_in_place(n, frame, eth_len);
}

static void ipv4(struct nic *n, uint8_t *frame, uint32_t eth_len)
{
	struct virtio_net_hdr_v1 *h = (struct virtio_net_hdr_v1 *)frame;
	uint8_t *eth = frame + RT_VNET_HDR, *ip = eth + ETH_HLEN, *l4;
	uint32_t ihl, total;

	if (eth_len < ETH_HLEN + 20 || (ip[0] >> 4) != 4)
		return;
	ihl = (ip[0] & 15) * 4u;
	total = get16(ip + 2);
	if (ihl < 20 || total < ihl + 8 || ETH_HLEN + total > eth_len)
		return;
	if ((get16(ip + 6) & 0x3fff) || memcmp(ip + 16, n->ip, 4) != 0)
		return; /* a fragment, or not for us */
	if (memcmp(eth, n->v.mac, 6) != 0 && memcmp(eth, broadcast, 6) != 0)
		return;
	l4 = ip + ihl;
	if (ip[9] == 1) {
		/* ICMP echo request (type 8, code 0) -> echo reply (type 0). */
		if (l4[0] != 8 || l4[1] != 0)
			return;
		l4[0] = 0;
		put16(l4 + 2, csum_update(get16(l4 + 2), 0x0800, 0x0000));
	} else if (ip[9] == 17) {
		uint16_t dport = get16(l4 + 2);

		if (dport == PORT_CTL) {
			control(n, eth, ip, l4, total - ihl - 8);
			return;
		}
		if (dport != PORT_ECHO)
			return;
		swap_bytes(l4, l4 + 2, 2);
	} else {
		return;
	}
	swap_bytes(ip + 12, ip + 16, 4);
	/* Keep a partial checksum for the host to complete; nothing else of the header. */
	h->flags &= VIRTIO_NET_HDR_F_NEEDS_CSUM;
	h->gso_type = VIRTIO_NET_HDR_GSO_NONE;
	h->hdr_len = h->gso_size = 0;
	h->num_buffers = 0;
	if (!n->v.csum)
		h->flags = 0;
	reply_in_place(n, frame, ETH_HLEN + total);
}

static void handle(struct nic *n, uint8_t *frame, uint32_t len)
{
	uint32_t eth_len;

	if (!n->has_ip || len < RT_VNET_HDR + ETH_HLEN)
		return;
	eth_len = len - RT_VNET_HDR;
	switch (get16(frame + RT_VNET_HDR + 12)) {
	case ETH_P_ARP:
		arp(n, frame, eth_len);
		break;
	case ETH_P_IP:
		ipv4(n, frame, eth_len);
		break;
	}
}

/* ---- command line ---- */

static bool parse_ip(const struct token *t, uint8_t ip[4])
{
	const char *p = t->s, *end = t->s + t->len;

	for (int i = 0; i < 4; i++) {
		unsigned v = 0, digits = 0;

		while (p < end && *p >= '0' && *p <= '9' && digits < 4) {
			v = v * 10 + (unsigned)(*p++ - '0');
			digits++;
		}
		if (!digits || v > 255)
			return false;
		ip[i] = (uint8_t)v;
		if (i < 3 && (p == end || *p++ != '.'))
			return false;
	}
	return p == end;
}

static _Noreturn void unknown(const struct token *tok)
{
	con_printf("netguest: unknown action %.*s\n", (int)tok->len, tok->s);
	guest_exit(EXIT_UNKNOWN_ACTION);
}

static bool is_foreign_param(const struct token *tok)
{
	const char *eq = rt_memchr(tok->s, '=', tok->len);
	size_t key_len = eq ? (size_t)(eq - tok->s) : tok->len;

	return rt_memchr(tok->s, '.', key_len) != NULL;
}

void guest_main(struct hvm_start_info *si)
{
	const char *cmdline = rt_cmdline(si);
	const char *pos = cmdline, *end = cmdline + rt_strnlen(cmdline, RT_CMDLINE_MAX);
	struct {
		uint8_t ip[4];
		bool has_ip;
	} want[MAX_NICS] = {0};
	bool mrg = false, csum = false;
	uint64_t rxbuf = 0;
	unsigned ndevs;
	struct token tok, val;

	while (rt_next_token(&pos, end, &tok)) {
		static const char *const keys[] = {"ip", "ip0", "ip1", "ip2", "ip3"};
		bool done = false;

		for (unsigned i = 0; i < sizeof(keys) / sizeof(keys[0]) && !done; i++) {
			unsigned k = i ? i - 1 : 0;

			if (!rt_token_value(&tok, keys[i], &val))
				continue;
			if (!parse_ip(&val, want[k].ip))
				unknown(&tok);
			want[k].has_ip = done = true;
		}
		if (done)
			continue;
		if (rt_token_value(&tok, "rxbuf", &val)) {
			if (!rt_parse_u64(&val, &rxbuf) || rxbuf < RT_VNET_HDR ||
			    rxbuf > RT_VNET_BUF_MAX)
				unknown(&tok);
		} else if (rt_token_is(&tok, "mrg")) {
			mrg = true;
		} else if (rt_token_is(&tok, "csum")) {
			csum = true;
		} else if (!is_foreign_param(&tok)) {
			unknown(&tok);
		}
	}
	ndevs = rt_virtio_discover(si, devs, RT_VIRTIO_MAX_DEVS);
	for (unsigned i = 0; i < ndevs && nnics < MAX_NICS; i++) {
		struct nic *n = &nics[nnics];
		const uint8_t *m;

		if (devs[i].device_id != VIRTIO_ID_NET)
			continue;
		if (!rt_vnet_init(&n->v, &devs[i], mrg, csum, (uint32_t)rxbuf, rxmem[nnics])) {
			con_printf("netguest: nic %u failed to start\n", nnics);
			guest_exit(EXIT_NO_DEVICE);
		}
		rt_copy(n->ip, want[nnics].ip, 4);
		n->has_ip = want[nnics].has_ip;
		m = n->v.mac;
		con_printf(
		    "netguest: nic %u mac %02x:%02x:%02x:%02x:%02x:%02x mtu %u ip %u.%u.%u.%u "
		    "buf %u mrg %u csum %u\n",
		    nnics, m[0], m[1], m[2], m[3], m[4], m[5], n->v.mtu, n->ip[0], n->ip[1],
		    n->ip[2], n->ip[3], n->v.buf_size, n->v.mrg, n->v.csum);
		nnics++;
	}
	if (nnics == 0) {
		con_puts("netguest: no virtio-net device");
		guest_exit(EXIT_NO_DEVICE);
	}
	con_puts("netguest: ready");
	for (;;) {
		bool busy = false;

		for (unsigned k = 0; k < nnics; k++) {
			uint8_t *frame;
			uint32_t len;

			if (nics[k].stalled || !(frame = rt_vnet_rx(&nics[k].v, &len)))
				continue;
			busy = true;
			handle(&nics[k], frame, len);
			rt_vnet_rx_done(&nics[k].v);
		}
		if (!busy)
			__asm__ volatile("pause");
	}
}
