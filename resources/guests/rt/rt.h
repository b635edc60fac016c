/*
 * hearth guest runtime: a tiny freestanding C runtime for the bundled test guests.
 *
 * The guests boot through PVH (rt/entry.S), run identity-mapped in long mode below 4 GiB and
 * talk to the outside world only through legacy I/O ports: COM1 for the console and hearth's
 * guest-exit port. See resources/guests/README.md.
 *
 * Performance note: on the development hosts KVM emulates guest ring-0 code at only ~1-2
 * million instructions per second, so this runtime avoids loops wherever a string instruction
 * (rep movsb/stosq/outsb, repne scasb) does the job in one instruction.
 */
#ifndef HEARTH_GUEST_RT_H
#define HEARTH_GUEST_RT_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Ports (vmm/layout.h has the host's view of the same numbers). */
#define RT_PORT_COM1       0x3f8
#define RT_PORT_COM1_LSR   0x3fd
#define RT_PORT_I8042_CMD  0x64
#define RT_PORT_GUEST_EXIT 0xf4

/* Exit status the runtime uses when it cannot trust what it was booted with. */
#define RT_EXIT_BAD_BOOT 3

/* ---- PVH boot information (Xen public/arch-x86/hvm/start_info.h) ---- */

#define HVM_START_MAGIC 0x336ec578u

struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	/* version >= 1 only */
	uint64_t memmap_paddr;
	uint32_t memmap_entries;
	uint32_t reserved;
};

struct hvm_memmap_table_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};

#define HVM_MEMMAP_TYPE_RAM 1

/* ---- entry points ---- */

/* Provided by each guest program; returning from it exits with status 0. */
void guest_main(struct hvm_start_info *si);

/* Flush the console, write `status` to the guest-exit port, then cli; hlt forever. */
_Noreturn void guest_exit(int status);

/* cli; hlt forever (the VM idles). */
_Noreturn void guest_halt(void);

/* ---- port I/O ---- */

static inline void outb(uint16_t port, uint8_t v)
{
	__asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	__asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}

/* One string port write: KVM turns it into a single exit. */
static inline void outsb(uint16_t port, const void *buf, size_t n)
{
	__asm__ volatile("rep outsb" : "+S"(buf), "+c"(n) : "d"(port) : "memory");
}

/* ---- string helpers (rt/string.c); all built on string instructions ---- */

/* memcpy without the call (rep movsb). */
static inline void rt_copy(void *dst, const void *src, size_t n)
{
	__asm__ volatile("rep movsb" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
}

void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
/* Length of `s`, at most `max` (repne scasb). */
size_t rt_strnlen(const char *s, size_t max);
/* First `c` in s[0, n), or NULL (repne scasb). */
const char *rt_memchr(const char *s, int c, size_t n);

/* ---- console (rt/console.c): buffered COM1 output, flushed with one rep outsb ---- */

void con_write(const char *s, size_t n);
/* Append to the buffer without the newline check (flushes only when the buffer fills). */
void con_append_raw(const char *s, size_t n);
void con_flush(void);
/* Append `v` in decimal (no newline check). */
void con_put_u64(uint64_t v);
/* Write `s` and a newline. */
void con_puts(const char *s);
/*
 * A small printf: %s %.*s %c %d %i %u %x %p %% with the length modifiers l and ll (and z),
 * a '0' flag and a field width. Output is flushed when a call's output ends with a newline
 * or the buffer fills.
 */
void con_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void con_vprintf(const char *fmt, va_list ap);

/* ---- command line (rt/cmdline.c) ---- */

/* Largest command line the runtime looks at (vmm/layout.h: LAYOUT_CMDLINE_MAX). */
#define RT_CMDLINE_MAX 0x10000

/* The NUL-terminated command line, or "" when there is none. Its length is
 * rt_strnlen(cmdline, RT_CMDLINE_MAX). */
const char *rt_cmdline(const struct hvm_start_info *si);

struct token {
	const char *s; /* not NUL-terminated */
	size_t len;
};

/*
 * Find the next token (separated by spaces, tabs or newlines) in [*pos, end) that ends at a
 * NUL or at `end`; on success store it in *tok, advance *pos past it and return true.
 */
bool rt_next_token(const char **pos, const char *end, struct token *tok);
/* Whether the token is exactly `word`. */
bool rt_token_is(const struct token *tok, const char *word);
/* If the token is "key=value", store the value and return true. */
bool rt_token_value(const struct token *tok, const char *key, struct token *value);
/* Parse a whole token as an unsigned number: decimal, or hex with a 0x prefix. */
bool rt_parse_u64(const struct token *tok, uint64_t *out);

/* ---- machine information (rt/sysinfo.c, rt/mptable.c) ---- */

struct mem_summary {
	uint64_t ram_bytes; /* sum of the type-1 (RAM) entries */
	uint32_t entries;   /* memory map entries */
};

/* Summarise the PVH memory map (0 entries for a version-0 start_info). */
void rt_mem_summary(const struct hvm_start_info *si, struct mem_summary *out);

/* Whether [addr, addr + len) lies inside one RAM entry of the memory map. */
bool rt_in_ram(const struct hvm_start_info *si, uint64_t addr, uint64_t len);

/*
 * Enabled processors in the Intel MultiProcessor table, or -1 when there is no valid table.
 * Searches [0x9fc00, 0xa0000) then [0xf0000, 0x100000) for the floating pointer.
 */
int rt_mp_cpu_count(const struct hvm_start_info *si);

/*
 * The same count; also stores the APIC IDs of the first `max` enabled processors in table
 * order (the default configurations: 0 and 1) in apic_ids[].
 */
int rt_mp_cpus(const struct hvm_start_info *si, uint8_t *apic_ids, int max);

/*
 * Print one line:
 * `<prefix><mem> MiB RAM (<n> map entries), <cpus> CPU(s), cmdline "<cmdline>"`
 * where <cpus> is "?" when there is no MP table.
 */
void rt_print_banner(const char *prefix, const struct hvm_start_info *si);

#endif
