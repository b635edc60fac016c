/*
 * The host side of virtio-net: an existing TAP interface (Firecracker's host_dev_name),
 * opened with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR. Frames cross the fd with a 12-byte
 * virtio_net_hdr_v1 in front (TUNSETVNETHDRSZ), the layout the guest uses, so headers pass
 * through unchanged. The fd is non-blocking and close-on-exec.
 */
#ifndef HEARTH_VIRTIO_TAP_H
#define HEARTH_VIRTIO_TAP_H

#include <stdint.h>

#include "vmm/error.h"

#define TAP_VNET_HDR_BYTES 12 /* struct virtio_net_hdr_v1 (with num_buffers) */
#define TAP_DEFAULT_MTU    1500

/*
 * Attach to the TAP named `ifname`, which must exist already (hearth never creates one).
 * Offloads start off (TUNSETOFFLOAD 0). *mtu gets the interface's MTU (SIOCGIFMTU), or
 * TAP_DEFAULT_MTU when it cannot be read. Returns the fd, or -1 with `err` filled with a
 * message that names the interface and the likely cause.
 */
int tap_open(const char *ifname, uint16_t *mtu, struct error *err);

/* TUNSETOFFLOAD: what the reader of the fd accepts (TUN_F_CSUM, TUN_F_TSO4, ...). */
int tap_set_offload(int fd, unsigned flags);

#endif
