/* The console target: where guest output goes (stdout, a file, nowhere) and input comes from. */
#ifndef HEARTH_CONSOLE_H
#define HEARTH_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>
#include <termios.h>

#include "config/vm_config.h"
#include "error.h"

struct console {
	int out_fd; /* -1: output discarded */
	int in_fd;  /* -1: no input */
	bool owns_out;
	bool tty_saved;
	struct termios saved;
};

int console_open(struct console *c, enum console_kind kind, const char *path, struct error *err);
/* Write all of buf (guest output); errors drop the output, they never stop the VM. */
void console_write(struct console *c, const void *buf, size_t len);
void console_close(struct console *c);

#endif
