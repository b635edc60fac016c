/* Snapshots of a VM: what goes into the state and memory files, and back (snapshot.h). */
#include "snapshot.h"
#include "api/api.h"
#include "devices.h"
#include "vmm/layout.h"
#include "vmm/vm.h"
#include "virtio/net.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define TAG_META SNAP_TAG('M', 'E', 'T', 'A')
#define TAG_CONF SNAP_TAG('C', 'O', 'N', 'F')
#define PAGE     4096ULL
#define MAX_CONF (1u << 20)

/* ---- the memory file -------------------------------------------------------------------- */

static bool zero_page(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;

	for (size_t i = 0; i < PAGE / 8; i++)
		if (w[i])
			return false;
	return true;
}

static int pwrite_all(int fd, const uint8_t *p, size_t n, off_t off)
{
	while (n) {
		ssize_t k = pwrite(fd, p, n, off);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
		off += k;
	}
	return 0;
}

/* Guest RAM into `path`: every page `want` selects (NULL: every page that is not all zero;
 * the rest stay holes, which read as zeros), at its offset. Runs of pages go in one write. */
static int write_memory(const struct guest_memory *gm, const char *path, const uint64_t *want,
                        struct error *err)
{
	uint64_t pages = gm_pages(gm), run = 0, start = 0;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0)
		return err_set(err, "mem_file_path '%s': %s", path, strerror(errno));
	if (ftruncate(fd, (off_t)gm->size) < 0)
		goto fail;
	for (uint64_t p = 0; p <= pages; p++) {
		bool take = p < pages && (want ? (want[p / 64] >> (p % 64)) & 1
		                               : !zero_page(gm->host + p * PAGE));

		if (take) {
			if (!run++)
				start = p;
			continue;
		}
		if (run &&
		    pwrite_all(fd, gm->host + start * PAGE, run * PAGE, (off_t)(start * PAGE)))
			goto fail;
		run = 0;
	}
	if (fsync(fd) < 0)
		goto fail;
	close(fd);
	return 0;
fail:
	err_set(err, "mem_file_path '%s': cannot write: %s", path, strerror(errno));
	close(fd);
	return -1;
}

int snapshot_map_memory(struct guest_memory *gm, const char *mem_path,
                        const struct snapshot_meta *m, bool shared, struct error *err)
{
	struct stat st;
	int fd = open(mem_path, O_RDONLY | O_CLOEXEC), r;
	off_t data = 0, hole;

	if (fd < 0)
		return err_set(err, "memory file '%s': %s", mem_path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return err_set(err, "memory file '%s': not a regular file", mem_path);
	}
	if ((uint64_t)st.st_size != m->mem_size) {
		close(fd);
		return err_set(err,
		               "memory file '%s' is %lld bytes, but the snapshot's guest RAM is "
		               "%llu bytes (%llu MiB): not this snapshot's memory",
		               mem_path, (long long)st.st_size, (unsigned long long)m->mem_size,
		               (unsigned long long)(m->mem_size >> 20));
	}
	if (!shared) {
		/* No copy: pages come in from the page cache on demand and stay shared with
		 * every other clone until written. */
		r = gm_init_file(gm, fd, m->mem_size);
		close(fd);
		if (r < 0)
			return err_set(err, "cannot map the memory file '%s': %s", mem_path,
			               strerror(-r));
		return 0;
	}
	r = gm_init_shared(gm, m->mem_size);
	if (r < 0) {
		close(fd);
		return err_set(err, "cannot make %llu MiB of guest memory: %s",
		               (unsigned long long)(m->mem_size >> 20), strerror(-r));
	}
	/* Copy what is data; holes are zeros already. */
	while ((data = lseek(fd, data, SEEK_DATA)) >= 0) {
		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0)
			hole = st.st_size;
		for (off_t o = data; o < hole;) {
			ssize_t k = pread(fd, gm->host + o, (size_t)(hole - o), o);

			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0) {
				close(fd);
				return err_set(err, "memory file '%s': cannot read it", mem_path);
			}
			o += k;
		}
		data = hole;
	}
	close(fd);
	return 0;
}

/* ---- the state file --------------------------------------------------------------------- */

static void put_meta(struct snap_w *w, const struct snapshot_meta *m)
{
	size_t at = snap_begin(w, TAG_META);

	snap_u32(w, m->engine);
	snap_u32(w, m->nvcpus);
	snap_u64(w, m->mem_size);
	snap_u64(w, m->low_size);
	snap_u64(w, m->high_size);
	snap_bool(w, m->linux_kernel);
	snap_u32(w, m->type);
	snap_end(w, at);
}

static int get_meta(struct snap_r *r, struct snapshot_meta *m, struct error *err)
{
	struct snap_r s;

	if (snap_section(r, TAG_META, &s, err))
		return -1;
	if (!snap_get_u32(&s, &m->engine) || m->engine > ENGINE_PROCESS)
		return snap_bad(&s, err, "engine");
	if (!snap_get_u32(&s, &m->nvcpus) || m->nvcpus < 1 || m->nvcpus > VM_MAX_VCPUS)
		return snap_bad(&s, err, "vCPU count");
	if (!snap_get_u64(&s, &m->mem_size) || m->mem_size < LAYOUT_MIN_RAM ||
	    m->mem_size > LAYOUT_MAX_RAM || m->mem_size % MIB)
		return snap_bad(&s, err, "memory size");
	if (!snap_get_u64(&s, &m->low_size) || m->low_size != layout_low_ram(m->mem_size) ||
	    !snap_get_u64(&s, &m->high_size) || m->high_size != layout_high_ram(m->mem_size))
		return snap_bad(&s, err, "memory layout");
	if (!snap_get_bool(&s, &m->linux_kernel))
		return snap_bad(&s, err, "kernel kind");
	if (!snap_get_u32(&s, &m->type) || m->type > SNAPSHOT_DIFF)
		return snap_bad(&s, err, "snapshot type");
	return snap_section_done(&s, err);
}

/* The configuration, as GET /vm/config shows it (parsed back with the same checks as a
 * config file), plus what that shape does not carry. */
static int put_config(struct snap_w *w, const struct vm *vm, const struct vm_config *cfg,
                      struct error *err)
{
	struct vm_config c = *cfg;
	char *json;
	size_t at;

	/* The MACs the guest knows, also where hearth picked them. */
	for (unsigned i = 0; i < c.nnets && i < vm->nnet; i++) {
		memcpy(c.nets[i].mac, vm->net[i]->mac, 6);
		c.nets[i].has_mac = true;
	}
	json = config_to_json(&c);
	if (!json)
		return err_set(err, "snapshot: out of memory");
	at = snap_begin(w, TAG_CONF);
	snap_u32(w, (uint32_t)strlen(json));
	snap_bytes(w, json, strlen(json));
	snap_bool(w, cfg->virtio_console);
	snap_u32(w, cfg->boot_protocol);
	snap_end(w, at);
	free(json);
	return 0;
}

static int get_config(struct snap_r *r, struct vm_config *cfg, struct error *err)
{
	struct snap_r s;
	uint32_t len, proto;
	char *json, msg[400];

	if (snap_section(r, TAG_CONF, &s, err))
		return -1;
	if (!snap_get_u32(&s, &len) || len > MAX_CONF || len > snap_left(&s))
		return snap_bad(&s, err, "configuration");
	json = malloc(len + 1);
	if (!json)
		return err_set(err, "out of memory");
	snap_get_bytes(&s, json, len);
	json[len] = 0;
	if (strlen(json) != len) {
		free(json);
		return snap_bad(&s, err, "configuration (a NUL byte in it)");
	}
	if (config_from_json(json, cfg, msg, sizeof(msg))) {
		free(json);
		return err_set(err, "snapshot: its configuration is not valid: %s", msg);
	}
	free(json);
	if (!snap_get_bool(&s, &cfg->virtio_console) || !snap_get_u32(&s, &proto) ||
	    proto > BOOT_PROTO_MULTIBOOT)
		return snap_bad(&s, err, "devices");
	cfg->boot_protocol = (enum boot_protocol)proto;
	return snap_section_done(&s, err);
}

int snapshot_create(struct vm *vm, const struct vm_config *cfg, enum snapshot_type type,
                    const char *state_path, const char *mem_path, struct error *err)
{
	struct snapshot_meta m = {.engine = vm->engine,
	                          .nvcpus = vm->nvcpus,
	                          .mem_size = vm->mem.size,
	                          .low_size = vm->mem.low_size,
	                          .high_size = vm->mem.high_size,
	                          .linux_kernel = vm->linux_kernel,
	                          .type = type};
	uint64_t *dirty = NULL;
	struct snap_w w;
	int r = -1;

	if (!vm->backend->save)
		return err_set(err, "the %s engine cannot save a VM", engine_name(vm->engine));
	if (type == SNAPSHOT_DIFF && !vm->dirty_tracking)
		return err_set(err, "a Diff snapshot needs dirty page tracking: set "
		                    "machine-config track_dirty_pages (or track_dirty_pages at "
		                    "snapshot load) before the VM starts");
	if (vm->dirty_tracking) {
		/* Either kind restarts the count: the next diff is relative to this one. */
		dirty = calloc((gm_pages(&vm->mem) + 63) / 64, 8);
		if (!dirty)
			return err_set(err, "out of memory");
		if (vm->backend->dirty_collect(vm, dirty, err)) {
			free(dirty);
			return -1;
		}
		gm_dirty_collect(&vm->mem, dirty);
	}
	snap_w_init(&w);
	put_meta(&w, &m);
	if (put_config(&w, vm, cfg, err) || vm->backend->save(vm, &w, err))
		goto out;
	if (devices_save(vm, &w)) {
		err_set(err, "snapshot: cannot save the devices' state");
		goto out;
	}
	if (w.failed) {
		err_set(err, "snapshot: out of memory");
		goto out;
	}
	/* Memory first: a state file on disk means its memory file is complete. */
	if (write_memory(&vm->mem, mem_path, type == SNAPSHOT_DIFF ? dirty : NULL, err) ||
	    snap_write_file(state_path, &w, err))
		goto out;
	r = 0;
out:
	snap_w_free(&w);
	free(dirty);
	return r;
}

int snapshot_open(const char *state_path, struct vm_config *cfg, struct snapshot_file *f,
                  struct error *err)
{
	memset(f, 0, sizeof(*f));
	if (snap_read_file(state_path, &f->payload, &f->len, err))
		return -1;
	snap_r_init(&f->state, f->payload, f->len);
	if (get_meta(&f->state, &f->meta, err) || get_config(&f->state, cfg, err))
		goto fail;
	if (cfg->vcpus != f->meta.nvcpus || cfg->mem_mib * MIB != f->meta.mem_size) {
		err_set(err,
		        "snapshot: its configuration (%u vCPUs, %llu MiB) does not match its "
		        "state (%u vCPUs, %llu MiB)",
		        cfg->vcpus, (unsigned long long)cfg->mem_mib, f->meta.nvcpus,
		        (unsigned long long)(f->meta.mem_size >> 20));
		goto fail;
	}
	return 0;
fail:
	snapshot_close(f);
	return -1;
}

void snapshot_close(struct snapshot_file *f)
{
	free(f->payload);
	memset(f, 0, sizeof(*f));
}

int snapshot_restore_state(struct vm *vm, struct snapshot_file *f, struct error *err)
{
	if (!vm->backend->restore)
		return err_set(err, "the %s engine cannot restore a VM", engine_name(vm->engine));
	if (vm->backend->restore(vm, &f->state, err) || devices_restore(vm, &f->state, err))
		return -1;
	if (snap_left(&f->state))
		return err_set(err, "snapshot: %zu bytes of state this hearth does not know",
		               snap_left(&f->state));
	return 0;
}
