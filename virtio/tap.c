#include "tap.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static uint16_t read_mtu(const char *ifname)
{
	struct ifreq ifr;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	uint16_t mtu = TAP_DEFAULT_MTU;

	if (s < 0)
		return mtu;
	memset(&ifr, 0, sizeof(ifr));
	memcpy(ifr.ifr_name, ifname, strnlen(ifname, IFNAMSIZ - 1));
	/* virtio-net's mtu field is 16 bits and at least 68 (the IPv4 minimum). */
	if (ioctl(s, SIOCGIFMTU, &ifr) == 0 && ifr.ifr_mtu >= 68 && ifr.ifr_mtu <= 65535)
		mtu = (uint16_t)ifr.ifr_mtu;
	close(s);
	return mtu;
}

int tap_open(const char *ifname, uint16_t *mtu, struct error *err)
{
	struct ifreq ifr;
	int fd, hdr = TAP_VNET_HDR_BYTES;
	size_t len = strlen(ifname);

	if (len == 0 || len >= IFNAMSIZ)
		return err_set(err, "TAP '%s': an interface name has 1..%d characters", ifname,
		               IFNAMSIZ - 1);
	/* TUNSETIFF would create a missing interface: the user names an existing one. */
	if (if_nametoindex(ifname) == 0)
		return err_set(err,
		               "TAP '%s': no such network interface (create it first, e.g. "
		               "ip tuntap add dev %s mode tap)",
		               ifname, ifname);
	fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return err_set(err, "TAP '%s': cannot open /dev/net/tun: %s", ifname,
		               strerror(errno));
	memset(&ifr, 0, sizeof(ifr));
	memcpy(ifr.ifr_name, ifname, len);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		int e = errno;
		const char *why = e == EBUSY    ? " (another process has it open)"
		                  : e == EPERM  ? " (not its owner or group, and no CAP_NET_ADMIN)"
		                  : e == EINVAL ? " (not a TAP: a TUN device, a multi-queue TAP, "
		                                  "or another kind of interface)"
		                                : "";

		close(fd);
		return err_set(err, "TAP '%s': cannot attach: %s%s", ifname, strerror(e), why);
	}
	if (ioctl(fd, TUNSETVNETHDRSZ, &hdr) < 0 || tap_set_offload(fd, 0) < 0) {
		int e = errno;

		close(fd);
		return err_set(err, "TAP '%s': cannot set up the virtio-net header: %s", ifname,
		               strerror(e));
	}
	*mtu = read_mtu(ifname);
	return fd;
}

int tap_set_offload(int fd, unsigned flags)
{
	return ioctl(fd, TUNSETOFFLOAD, (unsigned long)flags);
}
