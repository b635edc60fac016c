/*
 * One validator per kind of configuration value, shared by the command line (vmm/cli.c), the
 * config file and the REST API (api/routes.c), so the same bad value is refused by the same
 * rule, in the same words, whichever way it came in.
 *
 * Each validator returns NULL when the value is good, else the rule it breaks: a static
 * string phrased to follow the field and its value, as in
 *     --vcpus '0' must be between 1 and 32
 *     network-interfaces[0].guest_mac '01:00:5e:00:00:01' must be a unicast address
 * Callers name the field their own way (a flag, a JSON field, a config path); the rule text
 * is the part the three have in common.
 */
#ifndef HEARTH_CONFIG_VALIDATE_H
#define HEARTH_CONFIG_VALIDATE_H

#include <stdint.h>

#include "vm_config.h"

/* A drive or network interface id (Firecracker's rule): 1..DRIVE_ID_MAX of [A-Za-z0-9_]. */
const char *validate_id(const char *s);
/* The VM (instance) id: 1..VM_ID_MAX of [A-Za-z0-9_-]. */
const char *validate_vm_id(const char *s);
/* A host network interface name (the TAP): 1..IFACE_NAME_MAX bytes, no '/', ':' or
 * whitespace, not "." or "..". */
const char *validate_ifname(const char *s);
/* A guest MAC address: six hex bytes "06:00:ac:10:00:02" (either case), and unicast (a
 * multicast address cannot be a station's own). The bytes go to mac (when not NULL) only when
 * the address is good. */
const char *validate_mac(const char *s, uint8_t mac[6]);
/* The number of vCPUs: 1..VM_MAX_VCPUS. */
const char *validate_vcpus(uint64_t n);
/* Guest RAM in MiB: VM_MIN_MEM_MIB..VM_MAX_MEM_MIB. */
const char *validate_mem_mib(uint64_t mib);
/* A host file path (kernel, initrd, drive image, log, ...): not empty, shorter than
 * PATH_MAX. Whether the file is there is checked where it is opened. */
const char *validate_path(const char *s);

/*
 * A count written as text (the command line): decimal digits only. Saturates so the range
 * validators above report what is out of range: a negative number ("-5") gives 0, one too
 * large for 64 bits gives UINT64_MAX. Anything else ("two", "1.5", "+4", "", "8M") is
 * VALIDATE_NOT_INTEGER.
 */
const char *validate_uint_text(const char *s, uint64_t *out);

/* The rule for a count that is not a whole number (also the JSON type error). */
#define VALIDATE_NOT_INTEGER "must be an integer"

#endif
