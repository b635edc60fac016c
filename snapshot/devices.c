/* Every device's state in a snapshot (devices.h). */
#include "devices.h"

#include <linux/virtio_ids.h>

#include "virtio/blk.h"
#include "virtio/console.h"
#include "virtio/mmio.h"
#include "virtio/net.h"
#include "vmm/vm.h"

#define TAG_DEVS SNAP_TAG('D', 'E', 'V', 'S')

static const char *kind_name(uint32_t device_id)
{
	switch (device_id) {
	case VIRTIO_ID_BLOCK:
		return "block device";
	case VIRTIO_ID_NET:
		return "network interface";
	case VIRTIO_ID_CONSOLE:
		return "virtio console";
	default:
		return "device of an unknown type";
	}
}

static int save_virtio(const struct virtio_mmio *t, struct snap_w *w)
{
	if (virtio_mmio_save(t, w))
		return -1;
	switch (t->device_id) {
	case VIRTIO_ID_BLOCK:
		return virtio_blk_save(t->dev, w);
	case VIRTIO_ID_NET:
		return virtio_net_save(t->dev, w);
	case VIRTIO_ID_CONSOLE:
		return virtio_console_save(t->dev, w);
	default:
		return -1;
	}
}

int devices_save(struct vm *vm, struct snap_w *w)
{
	size_t at = snap_begin(w, TAG_DEVS);

	snap_u32(w, vm->nvirtio);
	for (unsigned i = 0; i < vm->nvirtio; i++)
		snap_u32(w, vm->virtio[i]->device_id);
	snap_end(w, at);
	if (serial_save(&vm->uart, w) || rtc_cmos_save(&vm->cmos, w) || i8042_save(&vm->i8042, w))
		return -1;
	for (unsigned i = 0; i < vm->nvirtio; i++)
		if (save_virtio(vm->virtio[i], w))
			return -1;
	return w->failed ? -1 : 0;
}

/* The state's virtio devices are this VM's, slot for slot. */
static int check_devices(const struct vm *vm, struct snap_r *r, struct error *err)
{
	struct snap_r sec;
	uint32_t n, id;

	if (snap_section(r, TAG_DEVS, &sec, err))
		return -1;
	if (!snap_get_u32(&sec, &n) || n > VM_MAX_VIRTIO)
		return snap_bad(&sec, err, "virtio device count");
	for (uint32_t i = 0; i < n; i++) {
		if (!snap_get_u32(&sec, &id))
			return snap_bad(&sec, err, "virtio device type");
		if (i >= vm->nvirtio)
			return err_set(
			    err,
			    "snapshot: the state has a %s in virtio slot %u, this VM has "
			    "only %u virtio devices",
			    kind_name(id), i, vm->nvirtio);
		if (id != vm->virtio[i]->device_id)
			return err_set(
			    err,
			    "snapshot: virtio slot %u holds %s, a %s, in this VM, but a %s "
			    "in the state",
			    i, vm->virtio[i]->name ? vm->virtio[i]->name : "?",
			    kind_name(vm->virtio[i]->device_id), kind_name(id));
	}
	if (n < vm->nvirtio)
		return err_set(
		    err,
		    "snapshot: this VM has %u virtio devices (%s, a %s, in slot %u), the "
		    "state %u",
		    vm->nvirtio, vm->virtio[n]->name ? vm->virtio[n]->name : "?",
		    kind_name(vm->virtio[n]->device_id), n, n);
	return snap_section_done(&sec, err);
}

static int restore_virtio(struct virtio_mmio *t, struct snap_r *r, struct error *err)
{
	if (virtio_mmio_restore(t, r, err))
		return -1;
	switch (t->device_id) {
	case VIRTIO_ID_BLOCK:
		return virtio_blk_restore(t->dev, r, err);
	case VIRTIO_ID_NET:
		return virtio_net_restore(t->dev, r, err);
	case VIRTIO_ID_CONSOLE:
		return virtio_console_restore(t->dev, r, err);
	default:
		return err_set(err, "snapshot: %s: cannot restore a %s", t->name,
		               kind_name(t->device_id));
	}
}

int devices_restore(struct vm *vm, struct snap_r *r, struct error *err)
{
	if (check_devices(vm, r, err) || serial_restore(&vm->uart, r, err) ||
	    rtc_cmos_restore(&vm->cmos, r, err) || i8042_restore(&vm->i8042, r, err))
		return -1;
	for (unsigned i = 0; i < vm->nvirtio; i++)
		if (restore_virtio(vm->virtio[i], r, err))
			return -1;
	return 0;
}
