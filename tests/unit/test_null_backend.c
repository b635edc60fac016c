/*
 * A test-only backend that runs nothing: the neutral VMM (vmm/vm.c) builds a VM with it, loads
 * a real guest image, starts the vCPU threads, and the "guest" (a script on the vCPU thread)
 * drives port I/O and MMIO through the neutral dispatch (vm_pio, vm_mmio), with no /dev/kvm.
 * Its interrupt controller is hearth's userspace chip set, which binds no eventfds: the
 * device interrupts take the VMM loop's polled path, and a queue notify the MMIO trap path.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <unistd.h>

#include <cmocka.h>

#include <linux/virtio_mmio.h>

#include "irqchip/userspace.h"
#include "seccomp/filters.h"
#include "virtio/mmio.h"
#include "vmm/layout.h"
#include "vmm/vm.h"

struct script {
	unsigned runs, kicks, pauses, resumes, destroys;
	bool created;
	uint8_t uart_lsr;      /* what the guest read back */
	uint32_t magic;        /* the virtio-mmio MagicValue it read */
	uint32_t unclaimed_rd; /* a read nobody claims */
};

static struct script sc;

static void null_probe(struct host_probe *p)
{
	memset(p, 0, sizeof(*p));
	p->usable = true;
	snprintf(p->state, sizeof(p->state), "available");
	snprintf(p->summary, sizeof(p->summary), "null (test)");
}

static int null_open(struct vm *vm, struct error *err)
{
	(void)vm;
	(void)err;
	return 0;
}

static int null_create(struct vm *vm, struct error *err)
{
	struct uirq_config cfg = {.ncpus = vm->nvcpus};
	struct uirq *u;

	irqchip_host_clock(&cfg.clock, 1000000000ULL);
	u = uirq_create(&cfg);

	if (!u)
		return err_set(err, "uirq_create failed");
	vm->irqchip = uirq_irqchip(u);
	sc.created = true;
	return 0;
}

static void out8(struct vm *vm, uint16_t port, uint8_t v)
{
	vm_pio(vm, port, true, &v, 1, 1);
}

/* The "guest": on vCPU 0, print through the UART, probe a virtio device, notify a queue,
 * then exit with status 7 through the exit port. Other vCPUs wait. */
static void null_vcpu_run(struct vcpu *v)
{
	struct vm *vm = v->vm;
	const char *msg = "null guest\n";
	uint32_t q = 0;
	uint8_t b;

	sc.runs++;
	if (v->id == 0 && vm_vcpu_checkpoint(v)) {
		for (const char *p = msg; *p; p++)
			out8(vm, PORT_COM1, (uint8_t)*p);
		vm_pio(vm, PORT_COM1 + 5, false, &sc.uart_lsr, 1, 1);
		vm_mmio(vm, LAYOUT_MMIO_SLOTS_START + VIRTIO_MMIO_MAGIC_VALUE, false,
		        (uint8_t *)&sc.magic, 4);
		vm_mmio(vm, LAYOUT_MMIO_SLOTS_START + VIRTIO_MMIO_QUEUE_NOTIFY, true, (uint8_t *)&q,
		        4);
		vm_pio(vm, 0x0fed, false, &b, 1, 1);
		sc.unclaimed_rd = b;
		out8(vm, PORT_GUEST_EXIT, 7);
	}
	while (vm_vcpu_checkpoint(v))
		usleep(1000);
}

static void null_kick(struct vcpu *v)
{
	(void)v;
	__atomic_add_fetch(&sc.kicks, 1, __ATOMIC_SEQ_CST);
}

static int null_filter(const struct vm *vm)
{
	(void)vm;
	return THREAD_VCPU_KVM;
}

static void null_pause(struct vm *vm)
{
	(void)vm;
	sc.pauses++;
}

static void null_resume(struct vm *vm)
{
	(void)vm;
	sc.resumes++;
}

static void null_info(const struct vm *vm, cJSON *o)
{
	(void)vm;
	cJSON_AddStringToObject(o, "backend", "null");
}

static void null_log_stats(const struct vm *vm)
{
	(void)vm;
}

static void null_destroy(struct vm *vm)
{
	(void)vm;
	sc.destroys++;
}

static const struct backend null_backend = {
    .name = "null",
    .probe = null_probe,
    .open = null_open,
    .create = null_create,
    .vcpu_run = null_vcpu_run,
    .vcpu_kick = null_kick,
    .vcpu_filter = null_filter,
    .pause = null_pause,
    .resume = null_resume,
    .info = null_info,
    .log_stats = null_log_stats,
    .destroy = null_destroy,
    .detach = vm_destroy,
};

/* A minimal ELF64 kernel: one PT_LOAD of a `hlt` at 1 MiB, entered through the Linux 64-bit
 * boot protocol (no PVH note). */
static void write_kernel(const char *path)
{
	uint8_t img[0x1001] = {0};
	FILE *f = fopen(path, "wb");
	uint16_t h16[] = {2, 62}; /* e_type EXEC, e_machine x86-64 */
	uint64_t entry = 0x100000, phoff = 64;

	memcpy(img, "\177ELF\2\1\1", 7);
	memcpy(img + 16, h16, 4);
	img[20] = 1; /* e_version */
	memcpy(img + 24, &entry, 8);
	memcpy(img + 32, &phoff, 8);
	img[52] = 64; /* e_ehsize */
	img[54] = 56; /* e_phentsize */
	img[56] = 1;  /* e_phnum */
	{
		uint32_t type = 1, flags = 5;
		uint64_t off = 0x1000, va = 0x100000, sz = 1, align = 0x1000;

		memcpy(img + 64, &type, 4);
		memcpy(img + 68, &flags, 4);
		memcpy(img + 72, &off, 8);
		memcpy(img + 80, &va, 8);
		memcpy(img + 88, &va, 8);
		memcpy(img + 96, &sz, 8);
		memcpy(img + 104, &sz, 8);
		memcpy(img + 112, &align, 8);
	}
	img[0x1000] = 0xf4;
	assert_non_null(f);
	assert_int_equal(fwrite(img, 1, sizeof(img), f), sizeof(img));
	fclose(f);
}

static void test_null_backend_runs_the_neutral_vmm(void **state)
{
	char dir[] = "/tmp/hearth-null-XXXXXX", kernel[64], console[64], out[128] = "";
	static struct vm vm = {.stop_fd = -1};
	struct vm_config cfg;
	struct error err = {""};
	uint64_t notified = 0;
	int code = 0;
	FILE *f;

	(void)state;
	assert_int_equal(seccomp_setup(false, &err), 0);
	assert_non_null(mkdtemp(dir));
	snprintf(kernel, sizeof(kernel), "%s/k.elf", dir);
	snprintf(console, sizeof(console), "%s/console", dir);
	write_kernel(kernel);
	vm_config_defaults(&cfg);
	assert_int_equal(config_set_str(&cfg.kernel_path, kernel), 0);
	assert_int_equal(config_set_str(&cfg.console_path, console), 0);
	cfg.console = CONSOLE_FILE;
	cfg.vcpus = 2;
	cfg.mem_mib = 16;
	cfg.virtio_console = true;

	vm.backend = &null_backend;
	assert_int_equal(vm_build(&vm, &cfg, &err, &code), 0);
	assert_true(sc.created);
	/* No irqfds in this backend: the VMM loop polls the device's interrupt eventfd. */
	assert_int_equal(vm.nvirtio, 1);
	assert_int_equal(vm.irq_polled, 1u);
	assert_int_equal(vm_start(&vm), 0);
	vm_release_vcpus(&vm);
	/* The guest's exit reaches the VMM thread through the stop eventfd. */
	{
		struct pollfd p = {.fd = vm.stop_fd, .events = POLLIN};
		uint64_t v;

		assert_int_equal(poll(&p, 1, 10000), 1);
		assert_int_equal(read(vm.stop_fd, &v, sizeof(v)), (ssize_t)sizeof(v));
	}
	vm_pause(&vm);
	vm_resume(&vm);
	vm_stop_vcpus(&vm);
	assert_int_equal(vm.stop.reason, STOP_GUEST_EXIT);
	assert_int_equal(vm_exit_code(&vm.stop), 7);
	assert_true(sc.runs >= 1); /* vCPU 1 may see the stop before it runs */
	assert_true(sc.kicks >= 2);
	/* A stopped VM does not pause: the backend's clocks were left alone or frozen once. */
	assert_true(sc.pauses <= 1 && sc.pauses == sc.resumes);
	/* What the guest saw through the neutral dispatch. */
	assert_true(sc.uart_lsr & 0x20);        /* UART: transmitter empty */
	assert_int_equal(sc.magic, 0x74726976); /* "virt" */
	assert_int_equal(sc.unclaimed_rd, 0xff);
	/* The QueueNotify write took the trap path and signalled the queue's eventfd. */
	assert_int_equal(read(vm.virtio[0]->notify_fd[0], &notified, 8), 8);
	assert_int_equal(notified, 1);
	vm_destroy(&vm);
	assert_int_equal(sc.destroys, 1);
	f = fopen(console, "r");
	assert_non_null(f);
	assert_non_null(fgets(out, sizeof(out), f));
	fclose(f);
	assert_string_equal(out, "null guest\n");
	unlink(console);
	unlink(kernel);
	rmdir(dir);
	vm_config_free(&cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_null_backend_runs_the_neutral_vmm),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
