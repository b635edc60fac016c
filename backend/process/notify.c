/*
 * Queue notifies without an exit: this engine's ioeventfd.
 *
 * The guest process gets a pool of eventfds at its start (guest_proc.c: STUB_NOTIFY_FD0...),
 * before the devices exist; when the VM binds each queue's notify (the backend's
 * attach_notify), the device's own notify eventfd is replaced by a pool eventfd (dup3 over
 * its descriptor), so the VMM thread polls the very eventfd the guest process can write.
 *
 * A notify is a 4-byte store to a QueueNotify register, which is never mapped: the first one
 * by a given instruction faults and is emulated by hearth as usual (vcpu.c), which then
 * teaches the vCPU's stub that instruction (struct stub_fast_notify in its record): from
 * then on the stub writes the queue's eventfd itself and steps over the store. The entry is
 * only as good as the translation of its address: the table goes whenever the pmmu
 * generation moves on (any page-table store, invlpg, CR3 or paging-control write, flush),
 * which hearth checks before every resume of the vCPU.
 */
#include "process.h"
#include "cpu/x86.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

int proc_attach_notify(struct vm *vm, int fd, uint64_t addr, uint32_t len, uint64_t datamatch)
{
	struct proc_vm *p = proc_of(vm);
	unsigned k = p->nnotify;

	/* Out of pool eventfds, or a notify the stub cannot take: the trap path. */
	if (len != 4 || datamatch >= STUB_FAST_QUEUES || k >= p->npool || p->notify_pool[k] < 0)
		return -ENOTSUP;
	/* The device's descriptor now names the pool eventfd (flags as its own had). */
	if (dup3(p->notify_pool[k], fd, O_CLOEXEC) < 0)
		return -ENOTSUP;
	close(p->notify_pool[k]);
	p->notify_pool[k] = -1;
	p->notify[k] = (struct proc_notify){addr, (uint32_t)datamatch};
	p->nnotify++;
	return 0;
}

bool proc_fast_entry(const struct sh_insn *in, bool code64, uint64_t rip, uint64_t va, uint64_t gpa,
                     const struct proc_notify *binds, unsigned nbinds, struct stub_fast_notify *e)
{
	memset(e, 0, sizeof(*e));
	if (!code64 || !rip || in->lock || in->rep || in->access_size != 4 || !in->mem ||
	    in->len < 1 || in->len > 15)
		return false;
	if (in->op == SH_OP_MOV_STORE && in->reg < 16)
		e->src = proc_sg_of[in->reg];
	else if (in->op == SH_OP_MOV_STORE_IMM)
		e->src = STUB_FAST_IMM, e->imm = (uint32_t)in->imm;
	else
		return false;
	for (unsigned i = 0; i < nbinds && i < STUB_NOTIFY_FDS; i++) {
		uint32_t q = binds[i].queue;

		if (binds[i].addr != gpa || q >= STUB_FAST_QUEUES)
			continue;
		e->fd[q] = (uint8_t)(STUB_NOTIFY_FD0 + i);
		if (q >= e->nq)
			e->nq = (uint8_t)(q + 1);
	}
	if (!e->nq)
		return false;
	e->rip = rip;
	e->addr = va;
	e->len = in->len;
	return true;
}

bool proc_notify_bound(const struct proc_vm *p, uint64_t gpa)
{
	for (unsigned i = 0; i < p->nnotify; i++)
		if (p->notify[i].addr == gpa)
			return true;
	return false;
}

bool proc_fast_candidate(struct proc_vcpu *pv, uint64_t va, uint64_t gpa, uint64_t gen,
                         struct stub_fast_notify *e)
{
	const struct proc_vm *p = proc_of(pv->v->vm);
	struct guest_cpu *c = &pv->cpu;
	struct sh_insn in;
	uint8_t bytes[15];
	size_t n;

	if (gen != pmmu_gen(p->mmu) || (c->r.rflags & RF_TF))
		return false;
	return cpu_fetch_decode(c, &in, bytes, &n) == 0 &&
	       proc_fast_entry(&in, cpu_code64(c), c->r.rip, va, gpa, p->notify, p->nnotify, e);
}

static void fast_clear(struct proc_vcpu *pv)
{
	memset(pv->fast, 0, sizeof(pv->fast));
	memset(pv->rec->fast, 0, sizeof(pv->rec->fast));
	pv->fast_next = 0;
}

void proc_fast_install(struct proc_vcpu *pv, const struct stub_fast_notify *e, uint64_t gen)
{
	const struct proc_vm *p = proc_of(pv->v->vm);
	unsigned slot = STUB_FAST_MAX;

	/* A translation older than the table's, or than what the pmmu knows now: not this. */
	if (gen != pmmu_gen(p->mmu))
		return;
	if (gen != pv->fast_gen) {
		fast_clear(pv);
		pv->fast_gen = gen;
	}
	/* The same instruction again (the guest wrote over its entry, or stored a value no
	 * queue has): its entry is written again. Else a free entry, else the oldest. */
	for (unsigned i = 0; i < STUB_FAST_MAX && slot == STUB_FAST_MAX; i++)
		if (pv->fast[i].rip == e->rip && pv->fast[i].addr == e->addr)
			slot = i;
	for (unsigned i = 0; i < STUB_FAST_MAX && slot == STUB_FAST_MAX; i++)
		if (!pv->fast[i].rip)
			slot = i;
	if (slot == STUB_FAST_MAX) {
		slot = pv->fast_next;
		pv->fast_next = (pv->fast_next + 1) % STUB_FAST_MAX;
	}
	pv->fast[slot] = *e;
	/* The guest thread waits for the reply: its stub reads the table only at a fault. */
	memcpy(&pv->rec->fast[slot], e, sizeof(*e));
}

void proc_fast_sync(struct proc_vcpu *pv)
{
	uint64_t gen = pmmu_gen(proc_of(pv->v->vm)->mmu);

	if (gen == pv->fast_gen)
		return;
	fast_clear(pv);
	pv->fast_gen = gen;
}

uint64_t proc_fast_count(const struct vm *vm)
{
	const struct proc_vm *p = proc_of(vm);
	uint64_t n = 0;

	if (!p || !p->shared)
		return 0;
	for (unsigned i = 0; i < vm->nvcpus && i < STUB_MAX_VCPUS; i++)
		n += __atomic_load_n(&stub_vcpus(p->shared)[i].fast_notifies, __ATOMIC_RELAXED);
	return n;
}
