# hearth — build, run, test.  `make run` boots the bundled guest; `make test` runs every suite.
CC      ?= gcc
BUILD   ?= build
VERSION := 0.1.0

CFLAGS  ?= -O2 -g
CFLAGS  += -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE -I. -MMD -MP \
           -DHEARTH_VERSION='"$(VERSION)"'
LDLIBS  += -lcjson -ldl -lpthread

ifeq ($(SAN),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif

LIB_SRCS  := $(filter-out vmm/main.c api/server.c seccomp/rules.c seccomp/gen_bpf.c backend/process/stub.c,\
               $(wildcard vmm/*.c virtio/*.c api/*.c config/*.c seccomp/*.c backend/*.c backend/kvm/*.c backend/process/*.c cpu/*.c boot/*.c devices/*.c snapshot/*.c))
LIB_SRCS  += $(wildcard irqchip/*.c)
LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/%.o) $(BUILD)/backend/process/stub_blob.o
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
JAILER_LIB_SRCS := $(filter-out jailer/main.c,$(wildcard jailer/*.c))
JAILER_LIB_OBJS := $(JAILER_LIB_SRCS:%.c=$(BUILD)/%.o)
HEARTH    := $(BUILD)/hearth
JAILER    := $(BUILD)/hearth-jailer
GUESTS    := $(BUILD)/guests
PYTEST    := /usr/bin/python3 -m pytest

.PHONY: ensure-deps all run test unit integration test-nested asan guests clean deps format format-check bench fuzz fuzz-smoke
API_MODULE := $(BUILD)/hearth-api.so
all: $(HEARTH) $(API_MODULE) $(JAILER) guests

# -rdynamic: the API module calls back into hearth (routes, channel, JSON model).
$(HEARTH): $(BUILD)/vmm/main.o $(BUILD)/libhearth.a
	$(CC) $(LDFLAGS) -rdynamic -o $@ $^ $(LDLIBS)

# The process engine's stub: freestanding, linked at its fixed place in the guest process,
# carried in hearth as data (backend/process/stub_blob.S) twice: a stripped static ELF that
# hearth executes as the guest process, and flattened for the fallback that maps it into a
# copy of hearth. Never sanitized.
STUB_CFLAGS := -std=gnu11 -O2 -Wall -Wextra -Werror -I. -ffreestanding -fno-builtin -fpie \
               -fno-stack-protector -fno-asynchronous-unwind-tables -fno-unwind-tables \
               -fcf-protection=none -mgeneral-regs-only -fno-tree-loop-distribute-patterns
$(BUILD)/stub/stub.o: backend/process/stub.c backend/process/stub.h
	@mkdir -p $(dir $@)
	$(CC) $(STUB_CFLAGS) -c -o $@ $<
$(BUILD)/stub/stub.bin: $(BUILD)/stub/stub.o backend/process/stub.ld
	$(CC) -nostdlib -static -no-pie -Wl,-T,backend/process/stub.ld -Wl,--build-id=none \
	  -o $(BUILD)/stub/stub.elf $<
	objcopy -O binary $(BUILD)/stub/stub.elf $@
	objcopy --strip-all $(BUILD)/stub/stub.elf $(BUILD)/stub/stub.exe
$(BUILD)/backend/process/stub_blob.o: backend/process/stub_blob.S $(BUILD)/stub/stub.bin
	@mkdir -p $(dir $@)
	$(CC) -c -DSTUB_BIN='"$(BUILD)/stub/stub.bin"' -DSTUB_ELF='"$(BUILD)/stub/stub.exe"' \
	  -o $@ $<

# The HTTP server, loaded only with --api-sock (api/server_loader.c).
$(API_MODULE): api/server.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fPIC -shared $(LDFLAGS) -o $@ $< -lmicrohttpd

# The jailer: a separate binary that shares no code with hearth at run time.
$(JAILER): $(BUILD)/jailer/main.o $(BUILD)/libjailer.a
	$(CC) $(LDFLAGS) -o $@ $^

$(BUILD)/libjailer.a: $(JAILER_LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libhearth.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

# Test-only build: HEARTH_SECCOMP_TEST=vmm|api|vcpu makes that thread kind call a forbidden
# system call right after its filter is loaded (seccomp/filters.c). Never installed or shipped.
SECCOMP_TEST := $(BUILD)/hearth-seccomp-test
$(SECCOMP_TEST): $(BUILD)/vmm/main.o $(BUILD)/seccomp-test/filters.o $(BUILD)/libhearth.a
	$(CC) $(LDFLAGS) -rdynamic -o $@ $^ $(LDLIBS)

$(BUILD)/seccomp-test/filters.o: seccomp/filters.c $(BUILD)/seccomp/filters_bpf.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -I$(BUILD)/seccomp -DHEARTH_SECCOMP_TEST -c -o $@ $<

# The allowlists are compiled to BPF at build time, with libseccomp (seccomp/rules.c); hearth
# loads the programs from the generated header and does not link libseccomp.
$(BUILD)/seccomp/gen_bpf: seccomp/gen_bpf.c seccomp/rules.c vmm/error.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ -lseccomp

$(BUILD)/seccomp/filters_bpf.h: $(BUILD)/seccomp/gen_bpf
	$< > $@.tmp && mv $@.tmp $@
$(BUILD)/seccomp/filters.o: $(BUILD)/seccomp/filters_bpf.h
$(BUILD)/seccomp/filters.o: CFLAGS += -I$(BUILD)/seccomp

# System call names for the SIGSYS report, from the kernel headers (seccomp/sigsys.c).
$(BUILD)/seccomp/syscall_names.h:
	@mkdir -p $(dir $@)
	echo '#include <asm/unistd_64.h>' | $(CC) -E -dM -x c - | \
	  sed -n 's/^#define __NR_\([a-z0-9_]*\) \([0-9]*\)$$/[\2] = "\1",/p' > $@
$(BUILD)/seccomp/sigsys.o: $(BUILD)/seccomp/syscall_names.h
$(BUILD)/seccomp/sigsys.o: CFLAGS += -I$(BUILD)/seccomp

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libhearth.a $(BUILD)/libjailer.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libhearth.a $(BUILD)/libjailer.a -lcmocka $(LDLIBS)

guests:
	$(MAKE) -C resources/guests OUT=$(abspath $(GUESTS))

# Install missing Debian packages (as root; a no-op when everything is there).
ensure-deps:
	@if [ "$$(id -u)" = 0 ]; then .ci/install-deps; fi

# Build hearth and the bundled guest, then boot it.
run: ensure-deps
	$(MAKE) all
	$(HEARTH) --kernel $(GUESTS)/hello.elf --cmdline "hello from make run"

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; $$t; done
	$(MAKE) -C resources/guests OUT=$(abspath $(GUESTS)) check

integration: all $(SECCOMP_TEST)
	HEARTH_BUILD=$(abspath $(BUILD)) HEARTH_SAN=$(SAN) $(PYTEST) -q -rs tests/integration

# The integration suite inside a nested VM with a real /dev/kvm, for machines without one
# (tests/nested/README.md). NESTED_TESTS: pytest's selection; NESTED_NPT=0: L1's KVM uses its
# own shadow paging. The cloud kernel the Linux tests boot is fetched here: L1 has no network.
NESTED_TESTS ?= tests/integration
NESTED_NPT   ?= 1
test-nested: all $(SECCOMP_TEST)
	tests/integration/fetch_debian_kernel.sh >/dev/null || test $$? = 2
	tests/integration/fetch_memtest.sh >/dev/null || test $$? = 2
	HEARTH_BUILD=$(abspath $(BUILD)) HEARTH_SAN=$(SAN) tests/nested/run.sh --npt=$(NESTED_NPT) -- \
	  $(PYTEST) -v -rs -p no:cacheprovider $(NESTED_TESTS)

test: ensure-deps
	$(MAKE) unit integration

# The same suites under AddressSanitizer and UndefinedBehaviorSanitizer.
asan:
	$(MAKE) BUILD=build/asan SAN=1 test

# libFuzzer targets (clang); fuzz-smoke runs each for a short bounded time.
FUZZ_CFLAGS := -std=gnu11 -g -O1 -D_GNU_SOURCE -I. -fsanitize=fuzzer,address,undefined
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_LIB_SRCS := $(wildcard virtio/*.c) vmm/guest_memory.c cpu/pagewalk.c backend/kvm/shadow_mmu.c backend/kvm/shadow_monitor.c cpu/decode.c cpu/guest_cpu.c cpu/interp32.c vmm/layout.c vmm/error.c vmm/bus.c vmm/console.c vmm/log.c api/routes.c api/config_json.c api/channel.c config/vm_config.c config/validate.c \
                 snapshot/stream.c snapshot/devices.c devices/serial.c devices/rtc_cmos.c devices/i8042.c
FUZZ_SECONDS ?= 20

build/fuzz/%: tests/fuzz/%.c $(FUZZ_LIB_SRCS)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_LIB_SRCS) -lcjson -lpthread

# The chip-set restore target links the userspace irqchip and the snapshot stream only.
FUZZ_UIRQ_SRCS := $(wildcard irqchip/*.c) snapshot/stream.c vmm/error.c
build/fuzz/fuzz_uirq_restore: tests/fuzz/fuzz_uirq_restore.c $(FUZZ_UIRQ_SRCS)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_UIRQ_SRCS) -lpthread

# The kernel-image target links the loaders and the boot structures.
FUZZ_BOOT_SRCS := $(wildcard boot/*.c) vmm/guest_memory.c vmm/layout.c vmm/error.c
build/fuzz/fuzz_kernel_load: tests/fuzz/fuzz_kernel_load.c $(FUZZ_BOOT_SRCS)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_BOOT_SRCS) -lpthread

fuzz: $(FUZZ_TARGETS)

# A finding (crash, leak, timeout) fails the target: the full log is printed then.
fuzz-smoke: fuzz
	@set -e; for f in $(FUZZ_TARGETS); do echo "== $$f ($(FUZZ_SECONDS) s)"; \
	  mkdir -p build/fuzz/corpus/$$(basename $$f); \
	  if $$f -max_total_time=$(FUZZ_SECONDS) -timeout=5 -print_final_stats=0 \
	      -artifact_prefix=build/fuzz/ build/fuzz/corpus/$$(basename $$f) \
	      > build/fuzz/$$(basename $$f).log 2>&1; then tail -1 build/fuzz/$$(basename $$f).log; \
	  else cat build/fuzz/$$(basename $$f).log; echo "$$f: FINDING"; exit 1; fi; done

bench: all
	bench/boot.sh

# Debian packages needed to build and test (run as root).
deps:
	@if [ "$$(id -u)" != 0 ]; then echo "make deps: run as root"; exit 1; fi
	.ci/install-deps

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

# CI: every C file as .clang-format has it.
format-check:
	clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
