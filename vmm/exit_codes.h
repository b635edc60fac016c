/* hearth's process exit status. Documented in `hearth --help` and README.md. */
#ifndef HEARTH_EXIT_CODES_H
#define HEARTH_EXIT_CODES_H

/* 0..239: the guest's own status (guest-exit port); reset and power-off also give 0. A guest
 * status of 240 or more is reported as EXIT_GUEST_MAX so that it cannot pose as a VMM code. */
#define EXIT_GUEST_MAX    239
#define EXIT_USAGE        240 /* bad command line or configuration */
#define EXIT_BAD_IMAGE    241 /* kernel or initrd missing, unreadable or malformed */
#define EXIT_VMM_ERROR    242 /* KVM unavailable, or a host error while setting up or running */
#define EXIT_TRIPLE_FAULT 243 /* the guest crashed: triple fault (KVM shutdown exit) */
#define EXIT_CPU_ERROR                                                                             \
	244 /* the backend could not run the guest (KVM internal error, emulation failure) */
#define EXIT_TIMEOUT 245 /* --timeout expired */
#define EXIT_SECCOMP 246 /* a seccomp filter trapped a forbidden system call */

#endif
