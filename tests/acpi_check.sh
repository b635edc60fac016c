#!/bin/sh
# Optional check of hearth's ACPI tables with ACPICA's iasl (Debian: acpica-tools).
# Builds a tiny program against build/libhearth.a that writes the tables of a few platforms
# to files, disassembles every table with `iasl -d`, recompiles the DSDT, and fails on any
# error or warning.  Usage: tests/acpi_check.sh [-v]   (-v prints the disassembled DSDTs)
set -eu

cd "$(dirname "$0")/.."
verbose=${1:-}
if ! command -v iasl >/dev/null 2>&1; then
	echo "acpi_check: iasl not found (apt-get install acpica-tools); skipped"
	exit 0
fi
make -s build/libhearth.a

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cat >"$work/dump.c" <<'EOF'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "boot/acpi.h"
#include "vmm/guest_memory.h"
#include "vmm/layout.h"

static uint8_t *mem;

static uint32_t rd32(uint64_t a)
{
	uint32_t v;

	memcpy(&v, mem + a, 4);
	return v;
}

static uint64_t rd64(uint64_t a)
{
	uint64_t v;

	memcpy(&v, mem + a, 8);
	return v;
}

static void dump(const char *dir, const char *name, uint64_t a, uint32_t len)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s.dat", dir, name);
	f = fopen(path, "wb");
	if (!f || fwrite(mem + a, 1, len, f) != len || fclose(f)) {
		perror(path);
		exit(1);
	}
}

int main(int argc, char **argv)
{
	struct acpi_mmio_device devs[ACPI_MAX_MMIO_DEVICES];
	struct guest_memory gm;
	struct error err = {{0}};
	uint64_t rsdp, xsdt, fadt = 0, madt = 0, dsdt;
	unsigned nvcpus, ndevs;

	if (argc != 4)
		return 2;
	nvcpus = (unsigned)atoi(argv[1]);
	ndevs = (unsigned)atoi(argv[2]);
	mem = calloc(1, 2 * MIB);
	if (!mem || ndevs > ACPI_MAX_MMIO_DEVICES)
		return 2;
	gm_wrap(&gm, mem, 2 * MIB);
	for (unsigned i = 0; i < ndevs; i++) {
		devs[i].base = LAYOUT_MMIO_SLOTS_START + i * LAYOUT_MMIO_SLOT_SIZE;
		devs[i].size = (uint32_t)LAYOUT_MMIO_SLOT_SIZE;
		devs[i].gsi = i < 19 ? 5 + i : i - 19;
	}
	if (acpi_write(&gm, LAYOUT_ACPI_START, LAYOUT_ACPI_END - LAYOUT_ACPI_START, nvcpus, devs,
		       ndevs, &rsdp, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	dump(argv[3], "rsdp", rsdp, 36);
	xsdt = rd64(rsdp + 24);
	dump(argv[3], "xsdt", xsdt, rd32(xsdt + 4));
	for (uint32_t off = 36; off < rd32(xsdt + 4); off += 8) {
		uint64_t t = rd64(xsdt + off);

		if (!memcmp(mem + t, "FACP", 4))
			fadt = t;
		if (!memcmp(mem + t, "APIC", 4))
			madt = t;
	}
	dump(argv[3], "facp", fadt, rd32(fadt + 4));
	dump(argv[3], "apic", madt, rd32(madt + 4));
	dsdt = rd64(fadt + 140);
	dump(argv[3], "dsdt", dsdt, rd32(dsdt + 4));
	return 0;
}
EOF
${CC:-cc} -std=gnu11 -Wall -Wextra -Werror -D_GNU_SOURCE -I. -o "$work/dump" "$work/dump.c" \
	build/libhearth.a -lpthread

status=0
for platform in "1 0" "1 1" "4 3" "254 22"; do
	set -- $platform
	dir="$work/cpus$1-devs$2"
	bad=0
	mkdir -p "$dir"
	"$work/dump" "$1" "$2" "$dir"
	for t in xsdt facp apic dsdt; do
		log="$dir/$t.log"
		if ! (cd "$dir" && iasl -d "$t.dat") >"$log" 2>&1 ||
			grep -qiE '(error|warning)[^s]|[1-9][0-9]* (errors|warnings)' "$log" ||
			grep -qiE 'invalid|incorrect|mismatch' "$dir/$t.dsl"; then
			echo "acpi_check: $1 vCPUs, $2 devices: iasl -d $t.dat complained:"
			cat "$log"
			bad=1
		fi
	done
	# iasl -d does not take a bare RSDP: compile the expected one from its data table
	# language (iasl computes both checksums) and compare the bytes.
	xsdt=$(od -An -tx8 -j24 -N8 "$dir/rsdp.dat" | tr -d ' ')
	cat >"$dir/rsdp-ref.asl" <<EOF2
[0008]                          Signature : "RSD PTR "
[0001]                           Checksum : 00
[0006]                             Oem ID : "HEARTH"
[0001]                           Revision : 02
[0004]                       RSDT Address : 00000000
[0004]                             Length : 00000024
[0008]                       XSDT Address : $xsdt
[0001]                  Extended Checksum : 00
[0003]                           Reserved : 000000
EOF2
	if ! (cd "$dir" && iasl rsdp-ref.asl) >"$dir/rsdp.log" 2>&1 ||
		! cmp -s "$dir/rsdp-ref.aml" "$dir/rsdp.dat"; then
		echo "acpi_check: $1 vCPUs, $2 devices: the RSDP differs from iasl's:"
		cat "$dir/rsdp.log"
		od -Ax -tx1 "$dir/rsdp.dat"
		bad=1
	fi
	# Recompile the disassembled DSDT: the AML must round-trip through the ASL compiler.
	if ! (cd "$dir" && iasl -p dsdt-re dsdt.dsl) >"$dir/recompile.log" 2>&1 ||
		! grep -q ' 0 Errors, 0 Warnings' "$dir/recompile.log"; then
		echo "acpi_check: $1 vCPUs, $2 devices: the DSDT does not recompile cleanly:"
		cat "$dir/recompile.log"
		bad=1
	fi
	ndev=$(grep -c 'Name (_HID, "LNRO0005")' "$dir/dsdt.dsl" || true)
	if [ "$ndev" != "$2" ]; then
		echo "acpi_check: $1 vCPUs, $2 devices: the DSDT shows $ndev virtio-mmio devices"
		bad=1
	fi
	if [ $bad = 0 ]; then
		summary=$(grep -E 'Compilation (successful|complete)' "$dir/recompile.log" || true)
		echo "acpi_check: $1 vCPUs, $2 devices: XSDT FACP APIC DSDT disassemble" \
			"without errors or warnings, RSDP matches iasl's, $ndev LNRO0005 devices;" \
			"DSDT recompiles: $summary"
	fi
	if [ "$verbose" = -v ]; then
		for t in xsdt facp apic dsdt; do
			sed -n '/^\[000\|DefinitionBlock/,$p' "$dir/$t.dsl"
		done
	fi
	[ $bad = 0 ] || status=1
done
if [ $status = 0 ]; then
	echo "acpi_check: all tables pass"
fi
exit $status
