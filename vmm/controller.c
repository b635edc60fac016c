#include "controller.h"
#include "exit_codes.h"
#include "log.h"
#include "metrics.h"
#include "seccomp/filters.h"
#include "snapshot/snapshot.h"
#include "virtio/blk.h"
#include "virtio/console.h"
#include "virtio/mmio.h"
#include "virtio/net.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

/* epoll tags: fixed sources, or (device << 8 | queue) for virtio notifications. */
#define EV_STOP   (1ULL << 62)
#define EV_INPUT  (1ULL << 61)
#define EV_API    (1ULL << 60)
#define EV_SIGNAL (1ULL << 59)
#define EV_TAP    (1ULL << 58) /* | network interface index */
#define EV_IRQ    (1ULL << 57) /* | virtio device index: its interrupt eventfd, polled */

static double now_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

const char *vm_state_name(enum vm_state s)
{
	switch (s) {
	case VM_NOT_STARTED:
		return "Not started";
	case VM_RUNNING:
		return "Running";
	case VM_PAUSED:
		return "Paused";
	case VM_STOPPED:
		return "Stopped";
	}
	return "?";
}

static void ep_add(struct controller *c, int fd, uint64_t tag)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = tag};

	epoll_ctl(c->ep, EPOLL_CTL_ADD, fd, &ev);
}

/* ---- console input ---------------------------------------------------------------- */

/* Input goes to the virtio-console once its driver is up, else to the UART. */
static bool input_to_vcon(struct vm *vm)
{
	bool up;

	if (!vm->vcon)
		return false;
	pthread_mutex_lock(&vm->vcon->t->lock);
	up = virtio_mmio_running(vm->vcon->t);
	pthread_mutex_unlock(&vm->vcon->t->lock);
	return up;
}

static size_t input_space(struct vm *vm)
{
	return input_to_vcon(vm) ? virtio_console_rx_space(vm->vcon) : serial_rx_space(&vm->uart);
}

/* Feed console input while the device has room; stop reading while it is full, so that no
 * input is ever dropped. */
static void pump_input(struct controller *c)
{
	struct vm *vm = c->vm;
	uint8_t buf[VCON_RX_PENDING];
	size_t space = input_space(vm);
	ssize_t n;

	if (space > sizeof(buf))
		space = sizeof(buf);
	if (space) {
		n = read(vm->console.in_fd, buf, space);
		if (n > 0) {
			if (input_to_vcon(vm))
				virtio_console_receive(vm->vcon, buf, (size_t)n);
			else
				serial_receive(&vm->uart, buf, (size_t)n);
		} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			c->in_open = false; /* EOF or error: no more input */
		}
	}
	if (!c->in_open || !input_space(vm)) {
		if (c->in_polled)
			epoll_ctl(c->ep, EPOLL_CTL_DEL, vm->console.in_fd, NULL);
		c->in_polled = false;
	} else if (!c->in_polled) {
		struct epoll_event ev = {.events = EPOLLIN, .data.u64 = EV_INPUT};

		/* Regular files cannot be polled: those are read on the 10 ms tick instead. */
		c->in_polled = epoll_ctl(c->ep, EPOLL_CTL_ADD, vm->console.in_fd, &ev) == 0;
	}
}

/* ---- TAP devices ------------------------------------------------------------------ */

/* A virtio-net device changes what it waits for on its TAP (on this thread, with its
 * transport lock held: only the epoll set is touched). */
static void tap_watch(void *ctx, int fd, uint64_t tag, uint32_t old_events, uint32_t new_events)
{
	struct controller *c = ctx;
	struct epoll_event ev = {.events = new_events, .data.u64 = tag};
	int op = !old_events ? EPOLL_CTL_ADD : !new_events ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;

	if (epoll_ctl(c->ep, op, fd, &ev) < 0)
		log_warn("TAP fd %d: epoll_ctl: %s", fd, strerror(errno));
}

/* ---- starting and stopping -------------------------------------------------------- */

int controller_init(struct controller *c);

/* A built VM goes live: the loop's event sources, the vCPU threads, the VMM thread's filter.
 * `held`: the vCPUs park before their first instruction (a restored VM starts Paused). */
static int start_built_vm(struct controller *c, bool held, char *msg, size_t msglen, int *code)
{
	struct error err = {""};
	struct vm *vm = c->vm;

	ep_add(c, vm->stop_fd, EV_STOP);
	for (unsigned i = 0; i < vm->nvirtio; i++) {
		for (unsigned q = 0; q < vm->virtio[i]->nqueues; q++)
			ep_add(c, vm->virtio[i]->notify_fd[q], (uint64_t)i << 8 | q);
		if (vm->irq_polled & (1u << i))
			ep_add(c, vm->virtio[i]->irq_fd, EV_IRQ | i);
	}
	for (unsigned i = 0; i < vm->nnet; i++)
		virtio_net_set_watch(vm->net[i], tap_watch, c, EV_TAP | i);
	if (vm_start(vm)) {
		vm_stop_vcpus(vm); /* the threads already started leave their start gate */
		snprintf(msg, msglen, "cannot start the vCPU threads");
		*code = EXIT_VMM_ERROR;
		return -1;
	}
	/* The VMM thread's filter goes on before the guest runs: the vCPU threads, their own
	 * filters loaded, wait for it at their start gate. */
	if (seccomp_install(THREAD_VMM, &err)) {
		vm_request_stop(vm, STOP_VMM_ERROR, 0, "%s", err.msg);
		vm_stop_vcpus(vm);
		snprintf(msg, msglen, "%s", err.msg);
		*code = EXIT_VMM_ERROR;
		return -1;
	}
	if (held)
		vm_hold(vm);
	vm_release_vcpus(vm);
	c->state = held ? VM_PAUSED : VM_RUNNING;
	c->deadline = c->cfg->timeout_sec > 0 ? now_sec() + c->cfg->timeout_sec : 0;
	c->in_open = vm->console.in_fd >= 0;
	if (c->in_open) {
		fcntl(vm->console.in_fd, F_SETFL, fcntl(vm->console.in_fd, F_GETFL) | O_NONBLOCK);
		pump_input(c);
	}
	log_info("guest %s: %u vCPU(s), %llu MiB, %u virtio device(s)",
	         held ? "restored" : "started", vm->nvcpus, (unsigned long long)c->cfg->mem_mib,
	         vm->nvirtio);
	return 0;
}

static void log_machine(struct controller *c)
{
	struct vm *vm = c->vm;

	log_status("host mmu: %s; engine: %s (--engine %s%s); %u vCPU(s), %llu MiB",
	           vm->kvm.summary, engine_name(vm->engine), mmu_mode_name(c->cfg->mmu),
	           vm->linux_kernel && c->cfg->mmu == MMU_AUTO ? ", Linux guest" : "",
	           c->cfg->vcpus, (unsigned long long)c->cfg->mem_mib);
}

int controller_start_vm(struct controller *c, char *msg, size_t msglen, int *code)
{
	struct error err = {""};

	c->t_start = now_sec();
	if (vm_build(c->vm, c->cfg, &err, code)) {
		snprintf(msg, msglen, "%s", err.msg);
		return -1;
	}
	log_machine(c);
	return start_built_vm(c, false, msg, msglen, code);
}

/* What a restored VM keeps of this process's own settings (not the snapshot's). */
static int keep_process_settings(struct vm_config *to, const struct vm_config *from)
{
	memcpy(to->id, from->id, sizeof(to->id));
	to->console = from->console;
	to->timeout_sec = from->timeout_sec;
	to->boot_timer = from->boot_timer;
	to->no_api = from->no_api;
	return config_set_str(&to->console_path, from->console_path) ||
	       config_set_str(&to->api_sock, from->api_sock) ||
	       config_set_str(&to->config_file, from->config_file) ||
	       config_set_str(&to->log_path, from->log_path) ||
	       config_set_str(&to->metrics_path, from->metrics_path);
}

static int apply_net_overrides(struct vm_config *cfg, const struct snapshot_load_params *p,
                               struct error *err)
{
	for (unsigned i = 0; i < p->nnet_overrides; i++) {
		unsigned k;

		for (k = 0; k < cfg->nnets && strcmp(cfg->nets[k].id, p->net_overrides[i].id); k++)
			;
		if (k == cfg->nnets)
			return err_set(err,
			               "network_overrides: the snapshot has no network interface "
			               "'%s'",
			               p->net_overrides[i].id);
		strcpy(cfg->nets[k].host_dev_name, p->net_overrides[i].host_dev_name);
	}
	return 0;
}

int controller_restore_vm(struct controller *c, const struct snapshot_load_params *p, char *msg,
                          size_t msglen, int *code)
{
	struct vm_config cfg, old;
	struct snapshot_file f;
	struct error err = {""};

	*code = EXIT_VMM_ERROR;
	vm_config_defaults(&cfg);
	if (keep_process_settings(&cfg, c->cfg) || snapshot_open(p->state_path, &cfg, &f, &err)) {
		snprintf(msg, msglen, "%s", err.msg[0] ? err.msg : "out of memory");
		vm_config_free(&cfg);
		return -1;
	}
	if (apply_net_overrides(&cfg, p, &err)) {
		snprintf(msg, msglen, "%s", err.msg);
		snapshot_close(&f);
		vm_config_free(&cfg);
		return -1;
	}
	cfg.track_dirty_pages = p->track_dirty_pages;
	old = *c->cfg;
	*c->cfg = cfg;
	/* `p` may be the request the old configuration holds: it moves over with it */
	c->cfg->snapshot = old.snapshot;
	old.snapshot = NULL;
	c->t_start = now_sec();
	if (vm_build_restored(c->vm, c->cfg, &f, p->mem_path, &err, code)) {
		snprintf(msg, msglen, "%s", err.msg);
		snapshot_close(&f);
		old.snapshot = c->cfg->snapshot;
		c->cfg->snapshot = NULL;
		vm_config_free(c->cfg);
		*c->cfg = old; /* unchanged for the next try */
		return -1;
	}
	snapshot_close(&f);
	vm_config_free(&old);
	log_machine(c);
	if (start_built_vm(c, true, msg, msglen, code))
		return -1;
	if (p->resume_vm) {
		vm_resume(c->vm);
		c->state = VM_RUNNING;
	}
	return 0;
}

/* The guest stopped: join the vCPUs, record how it ended. */
static void guest_stopped(struct controller *c)
{
	vm_stop_vcpus(c->vm);
	c->state = VM_STOPPED;
	c->exit_code = vm_exit_code(&c->vm->stop);
	log_status("%s (exit status %d)", c->vm->stop.detail, c->exit_code);
	c->vm->backend->log_stats(c->vm);
	metrics_flush(c);
}

/* ---- API -------------------------------------------------------------------------- */

static bool check_file(struct api_msg *m, const char *what, const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC | O_NONBLOCK);

	if (fd < 0) {
		api_reply_error(m, "%s '%s' cannot be opened: %s", what, path, strerror(errno));
		return false;
	}
	close(fd);
	return true;
}

static char *info_json(struct controller *c)
{
	cJSON *o = cJSON_CreateObject();
	char *s;

	cJSON_AddStringToObject(o, "id", c->cfg->id);
	cJSON_AddStringToObject(o, "state", vm_state_name(c->state));
	cJSON_AddStringToObject(o, "vmm_version", HEARTH_VERSION);
	cJSON_AddStringToObject(o, "app_name", "hearth");
	/* hearth's additions: the host as the backend sees it, the engine and its counters */
	vm_info(c->vm, o);
	if (c->state != VM_NOT_STARTED)
		cJSON_AddStringToObject(o, "engine", engine_name(c->vm->engine));
	if (c->state == VM_STOPPED) {
		cJSON *e = cJSON_AddObjectToObject(o, "exit");

		cJSON_AddStringToObject(e, "reason", stop_reason_name(c->vm->stop.reason));
		cJSON_AddNumberToObject(e, "status", c->exit_code);
		cJSON_AddStringToObject(e, "detail", c->vm->stop.detail);
	}
	s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return s;
}

static const char *const not_before_boot = "this call is not allowed before InstanceStart";
static const char *const not_after_boot = "this call is not allowed after InstanceStart";

static void put_drive(struct controller *c, struct api_msg *m)
{
	struct vm_config *cfg = c->cfg;
	struct drive_config *d = &m->u.drive, *slot = NULL;

	if (!check_file(m, "path_on_host", d->path, d->read_only ? O_RDONLY : O_RDWR))
		return;
	for (unsigned i = 0; i < cfg->ndrives; i++)
		if (!strcmp(cfg->drives[i].id, d->id))
			slot = &cfg->drives[i];
	if (d->is_root_device)
		for (unsigned i = 0; i < cfg->ndrives; i++)
			if (cfg->drives[i].is_root_device && &cfg->drives[i] != slot) {
				api_reply_error(m, "drive '%s' is already the root device",
				                cfg->drives[i].id);
				return;
			}
	if (!slot) {
		if (cfg->ndrives >= VM_MAX_DRIVES) {
			api_reply_error(m, "at most %d drives", VM_MAX_DRIVES);
			return;
		}
		slot = &cfg->drives[cfg->ndrives++];
		memset(slot, 0, sizeof(*slot));
	}
	free(slot->path);
	*slot = *d;
	d->path = NULL; /* moved into the config */
	api_reply(m, NULL);
}

/* PUT /network-interfaces/{id} before boot: add or replace. The TAP is opened once here to
 * report a missing or busy interface now (it is attached for good at InstanceStart). */
static void put_net(struct controller *c, struct api_msg *m)
{
	struct vm_config *cfg = c->cfg;
	struct net_config *n = &m->u.net, *slot = NULL;
	struct error err = {""};
	uint16_t mtu;
	int fd;

	for (unsigned i = 0; i < cfg->nnets; i++) {
		struct net_config *o = &cfg->nets[i];

		if (!strcmp(o->id, n->id)) {
			slot = o;
			continue;
		}
		if (!strcmp(o->host_dev_name, n->host_dev_name)) {
			api_reply_error(m, "host_dev_name '%s' is already used by interface '%s'",
			                n->host_dev_name, o->id);
			return;
		}
		if (n->has_mac && o->has_mac && !memcmp(o->mac, n->mac, 6)) {
			api_reply_error(m, "guest_mac is already used by interface '%s'", o->id);
			return;
		}
	}
	if (!slot && cfg->nnets >= VM_MAX_NETS) {
		api_reply_error(m, "at most %d network interfaces", VM_MAX_NETS);
		return;
	}
	fd = tap_open(n->host_dev_name, &mtu, &err);
	if (fd < 0) {
		api_reply_error(m, "%s", err.msg);
		return;
	}
	close(fd);
	if (!slot)
		slot = &cfg->nets[cfg->nnets++];
	*slot = *n;
	api_reply(m, NULL);
}

static void patch_net(struct controller *c, struct api_msg *m)
{
	for (unsigned i = 0; i < c->cfg->nnets; i++)
		if (!strcmp(c->cfg->nets[i].id, m->u.net.id)) {
			api_reply(m, NULL); /* no rate limiters: nothing else can change */
			return;
		}
	api_reply_error(m, "network interface '%s' does not exist", m->u.net.id);
}

static void patch_drive(struct controller *c, struct api_msg *m)
{
	struct vm *vm = c->vm;
	struct drive_config *cd = NULL;
	struct virtio_blk *b = NULL;
	struct error err = {""};

	for (unsigned i = 0; i < c->cfg->ndrives; i++)
		if (!strcmp(c->cfg->drives[i].id, m->u.drive.id)) {
			cd = &c->cfg->drives[i];
			b = i < vm->nblk ? vm->blk[i] : NULL;
		}
	if (!cd || !b) {
		api_reply_error(m, "drive '%s' does not exist", m->u.drive.id);
		return;
	}
	if (!m->u.drive.path) {
		api_reply(m, NULL);
		return;
	}
	pthread_mutex_lock(&b->t->lock);
	if (virtio_blk_swap(b, m->u.drive.path, &err) == 0)
		virtio_mmio_config_changed(b->t); /* the guest sees the new medium */
	pthread_mutex_unlock(&b->t->lock);
	if (err.msg[0]) {
		api_reply_error(m, "drive '%s': %s", cd->id, err.msg);
		return;
	}
	config_set_str(&cd->path, m->u.drive.path);
	api_reply(m, NULL);
}

static void machine_config(struct controller *c, struct api_msg *m, bool put)
{
	struct vm_config *cfg = c->cfg;
	unsigned has = m->u.machine.has;

	if (has & MC_SMT && m->u.machine.smt) {
		api_reply_error(m, "smt is not supported by hearth (one thread per core)");
		return;
	}
	if (put) {
		cfg->vcpus = 1;
		cfg->mem_mib = VM_DEFAULT_MEM_MIB;
		cfg->smt = cfg->track_dirty_pages = false;
		cfg->mmu = MMU_AUTO;
	}
	if (has & MC_VCPUS)
		cfg->vcpus = m->u.machine.vcpus;
	if (has & MC_MEM)
		cfg->mem_mib = m->u.machine.mem_mib;
	if (has & MC_DIRTY)
		cfg->track_dirty_pages = m->u.machine.track_dirty_pages;
	if (has & MC_MMU)
		cfg->mmu = m->u.machine.mmu;
	api_reply(m, NULL);
}

/* The VM of a failed start or restore goes; the VMM is as before, ready for another try. */
static void discard_vm(struct controller *c)
{
	struct vm *vm = c->vm;
	struct host_probe kvm = vm->kvm;

	vm_destroy(vm);
	memset(vm, 0, sizeof(*vm));
	vm->kvm = kvm;
	vm->stop_fd = -1;
}

static void action(struct controller *c, struct api_msg *m)
{
	char msg[512];
	int code;

	switch (m->u.action) {
	case ACTION_INSTANCE_START:
		if (c->state != VM_NOT_STARTED) {
			api_reply_error(m, "InstanceStart: the microVM was already started");
			return;
		}
		if (!c->cfg->kernel_path) {
			api_reply_error(m,
			                "InstanceStart: no boot source (PUT /boot-source first)");
			return;
		}
		if (controller_start_vm(c, msg, sizeof(msg), &code)) {
			/* Leave a clean, unstarted VM behind so the call can be retried. */
			discard_vm(c);
			api_reply_error(m, "InstanceStart failed: %s", msg);
			return;
		}
		api_reply(m, NULL);
		return;
	case ACTION_SEND_CTRL_ALT_DEL:
		if (c->state != VM_RUNNING && c->state != VM_PAUSED) {
			api_reply_error(m, "SendCtrlAltDel: the microVM is not running");
			return;
		}
		i8042_send_ctrl_alt_del(&c->vm->i8042);
		api_reply(m, NULL);
		return;
	case ACTION_FLUSH_METRICS:
		if (!metrics_enabled()) {
			api_reply_error(m,
			                "FlushMetrics: metrics are not configured (PUT /metrics)");
			return;
		}
		metrics_flush(c);
		api_reply(m, NULL);
		return;
	}
}

static void snapshot_create_api(struct controller *c, struct api_msg *m)
{
	struct error err = {""};

	if (c->state != VM_PAUSED) {
		api_reply_error(m,
		                "snapshot/create: the microVM must be Paused (it is %s): PATCH "
		                "/vm {\"state\": \"Paused\"} first",
		                vm_state_name(c->state));
		return;
	}
	vm_wait_parked(c->vm);
	if (snapshot_create(c->vm, c->cfg, m->u.snap_create.diff ? SNAPSHOT_DIFF : SNAPSHOT_FULL,
	                    m->u.snap_create.state_path, m->u.snap_create.mem_path, &err)) {
		api_reply_error(m, "snapshot/create: %s", err.msg);
		return;
	}
	log_info("snapshot (%s) written: %s, %s", m->u.snap_create.diff ? "Diff" : "Full",
	         m->u.snap_create.state_path, m->u.snap_create.mem_path);
	api_reply(m, NULL);
}

static void snapshot_load_api(struct controller *c, struct api_msg *m)
{
	char msg[512];
	int code;

	if (c->state != VM_NOT_STARTED || c->configured) {
		api_reply_error(m,
		                "snapshot/load: only in a fresh hearth, before the microVM is "
		                "configured or started (only the logger and metrics may be set)");
		return;
	}
	if (controller_restore_vm(c, &m->u.snap_load, msg, sizeof(msg), &code)) {
		discard_vm(c);
		api_reply_error(m, "snapshot/load: %s", msg);
		return;
	}
	api_reply(m, NULL);
}

static void handle_api(struct controller *c, struct api_msg *m)
{
	bool started = c->state != VM_NOT_STARTED;
	char err[512];

	metrics_count_api(m->op);
	switch (m->op) {
	case API_GET_INFO:
		api_reply(m, info_json(c));
		return;
	case API_GET_VERSION: {
		cJSON *o = cJSON_CreateObject();

		cJSON_AddStringToObject(o, "firecracker_version", HEARTH_VERSION);
		cJSON_AddStringToObject(o, "hearth_version", HEARTH_VERSION);
		api_reply(m, cJSON_PrintUnformatted(o));
		cJSON_Delete(o);
		return;
	}
	case API_GET_VM_CONFIG:
		api_reply(m, config_to_json(c->cfg));
		return;
	case API_GET_MACHINE_CONFIG:
		api_reply(m, machine_config_to_json(c->cfg));
		return;
	case API_PUT_BOOT_SOURCE:
		if (started)
			break;
		c->configured = true;
		if (!check_file(m, "kernel_image_path", m->u.boot.kernel, O_RDONLY) ||
		    (m->u.boot.initrd && !check_file(m, "initrd_path", m->u.boot.initrd, O_RDONLY)))
			return;
		config_set_str(&c->cfg->kernel_path, m->u.boot.kernel);
		config_set_str(&c->cfg->initrd_path, m->u.boot.initrd);
		config_set_str(&c->cfg->cmdline, m->u.boot.cmdline);
		api_reply(m, NULL);
		return;
	case API_PUT_MACHINE_CONFIG:
	case API_PATCH_MACHINE_CONFIG:
		if (started)
			break;
		c->configured = true;
		machine_config(c, m, m->op == API_PUT_MACHINE_CONFIG);
		return;
	case API_PUT_DRIVE:
		if (started)
			break;
		c->configured = true;
		put_drive(c, m);
		return;
	case API_PATCH_DRIVE:
		if (!started) {
			api_reply_error(m, "PATCH /drives: %s", not_before_boot);
			return;
		}
		patch_drive(c, m);
		return;
	case API_PUT_NET:
		if (started)
			break;
		c->configured = true;
		put_net(c, m);
		return;
	case API_PATCH_NET:
		if (!started) {
			api_reply_error(m, "PATCH /network-interfaces: %s", not_before_boot);
			return;
		}
		patch_net(c, m);
		return;
	case API_ACTION:
		action(c, m);
		return;
	case API_PATCH_VM:
		if (c->state != VM_RUNNING && c->state != VM_PAUSED) {
			api_reply_error(m, "PATCH /vm: the microVM is not running");
			return;
		}
		if (m->u.pause && c->state == VM_RUNNING) {
			vm_pause(c->vm);
			/* The VM may have ended instead (the guest exited, or a vCPU did not come
			 * back): the loop reports it; the request failed. */
			if (__atomic_load_n(&c->vm->stop.reason, __ATOMIC_ACQUIRE)) {
				api_reply_error(m,
				                "PATCH /vm: the microVM stopped before it could be "
				                "paused: %s",
				                c->vm->stop.detail);
				return;
			}
			c->state = VM_PAUSED;
		} else if (!m->u.pause && c->state == VM_PAUSED) {
			vm_resume(c->vm);
			c->state = VM_RUNNING;
		}
		api_reply(m, NULL);
		return;
	case API_PUT_LOGGER:
		if (started)
			break;
		if (log_open_file(m->u.logger.path, m->u.logger.has_level, m->u.logger.level,
		                  m->u.logger.show_level, m->u.logger.show_origin, c->cfg->id, err,
		                  sizeof(err))) {
			api_reply_error(m, "%s", err);
			return;
		}
		config_set_str(&c->cfg->log_path, m->u.logger.path);
		api_reply(m, NULL);
		return;
	case API_PUT_METRICS:
		if (started)
			break;
		if (metrics_open(m->u.metrics.path, err, sizeof(err))) {
			api_reply_error(m, "%s", err);
			return;
		}
		config_set_str(&c->cfg->metrics_path, m->u.metrics.path);
		api_reply(m, NULL);
		return;
	case API_SNAPSHOT_CREATE:
		snapshot_create_api(c, m);
		return;
	case API_SNAPSHOT_LOAD:
		snapshot_load_api(c, m);
		return;
	}
	api_reply_error(m, "%s", not_after_boot);
}

/* ---- the loop ----------------------------------------------------------------------- */

int controller_init(struct controller *c)
{
	sigset_t set;

	c->ep = epoll_create1(EPOLL_CLOEXEC);
	if (c->ep < 0)
		return -1;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	c->signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (c->signal_fd >= 0)
		ep_add(c, c->signal_fd, EV_SIGNAL);
	if (c->api)
		ep_add(c, c->api->wake_fd, EV_API);
	return 0;
}

int controller_run(struct controller *c)
{
	for (;;) {
		struct epoll_event evs[16];
		int timeout_ms = -1, n;

		if (c->state == VM_RUNNING || c->state == VM_PAUSED) {
			if (__atomic_load_n(&c->vm->stop.reason, __ATOMIC_ACQUIRE))
				guest_stopped(c);
			else if (c->deadline && now_sec() >= c->deadline)
				vm_request_stop(c->vm, STOP_TIMEOUT, 0,
				                "timeout: the guest ran for %.3g s (--timeout)",
				                c->cfg->timeout_sec);
		}
		if (c->exit_requested || (c->state == VM_STOPPED && c->exit_when_stopped))
			break;
		if (c->state == VM_RUNNING || c->state == VM_PAUSED) {
			if (c->deadline) {
				timeout_ms = (int)((c->deadline - now_sec()) * 1000) + 1;
				if (timeout_ms < 0)
					timeout_ms = 0;
			}
			/* Input paused on a full device, or an unpollable file: poll every 10 ms.
			 */
			if (c->in_open && !c->in_polled && (timeout_ms < 0 || timeout_ms > 10))
				timeout_ms = 10;
		}
		n = epoll_wait(c->ep, evs, 16, timeout_ms);
		for (int i = 0; i < n; i++) {
			uint64_t tag = evs[i].data.u64;

			if (tag == EV_INPUT) {
				pump_input(c);
			} else if (tag == EV_API) {
				struct api_msg *m = api_channel_take(c->api);

				if (m) {
					handle_api(c, m);
					api_channel_done(c->api, m);
				}
			} else if (tag == EV_SIGNAL) {
				struct signalfd_siginfo si;

				if (read(c->signal_fd, &si, sizeof(si)) == sizeof(si)) {
					log_status("signal %u: stopping", si.ssi_signo);
					if (c->state == VM_RUNNING || c->state == VM_PAUSED)
						vm_request_stop(c->vm, STOP_VMM_ERROR, 0,
						                "stopped by signal %u",
						                si.ssi_signo);
					c->exit_requested = true;
				}
			} else if (tag == EV_STOP) {
				uint64_t v;

				if (read(c->vm->stop_fd, &v, sizeof(v)) < 0) {
					/* already drained */
				}
			} else if ((tag & EV_IRQ) && (tag & 0xff) < c->vm->nvirtio) {
				struct virtio_mmio *t = c->vm->virtio[tag & 0xff];
				uint64_t v;

				/* No irqfd in this backend: the device's interrupt, by hand. */
				if (read(t->irq_fd, &v, sizeof(v)) == sizeof(v))
					vm_irq_pulse(c->vm, t->gsi);
			} else if ((tag & EV_TAP) && (tag & 0xff) < c->vm->nnet) {
				virtio_net_tap_event(c->vm->net[tag & 0xff], evs[i].events);
			} else if ((tag >> 8) < c->vm->nvirtio) {
				virtio_mmio_handle_notify(c->vm->virtio[tag >> 8], tag & 0xff);
			}
		}
		if (n == 0 && c->in_open && !c->in_polled && c->state == VM_RUNNING)
			pump_input(c);
	}
	if (c->state == VM_RUNNING || c->state == VM_PAUSED)
		guest_stopped(c);
	if (c->api)
		api_channel_close(c->api);
	return c->state == VM_STOPPED ? c->exit_code : 0;
}
