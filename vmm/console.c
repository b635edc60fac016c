#include "console.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

int console_open(struct console *c, enum console_kind kind, const char *path, struct error *err)
{
	memset(c, 0, sizeof(*c));
	c->out_fd = c->in_fd = -1;
	switch (kind) {
	case CONSOLE_NONE:
		return 0;
	case CONSOLE_FILE:
		c->out_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (c->out_fd < 0)
			return err_set(err, "console file %s: %s", path, strerror(errno));
		c->owns_out = true;
		return 0;
	case CONSOLE_STDIO:
		c->out_fd = STDOUT_FILENO;
		c->in_fd = STDIN_FILENO;
		if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &c->saved) == 0) {
			/* Raw input so the guest sees every key; keep ^C for hearth. */
			struct termios t = c->saved;

			cfmakeraw(&t);
			t.c_lflag |= ISIG;
			t.c_oflag |= OPOST | ONLCR;
			if (tcsetattr(STDIN_FILENO, TCSANOW, &t) == 0)
				c->tty_saved = true;
		}
		return 0;
	}
	return err_set(err, "unknown console kind");
}

void console_write(struct console *c, const void *buf, size_t len)
{
	const char *p = buf;

	while (c->out_fd >= 0 && len) {
		ssize_t n = write(c->out_fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		p += n;
		len -= (size_t)n;
	}
}

void console_close(struct console *c)
{
	if (c->tty_saved)
		tcsetattr(STDIN_FILENO, TCSANOW, &c->saved);
	c->tty_saved = false;
	if (c->owns_out && c->out_fd >= 0)
		close(c->out_fd);
	c->out_fd = c->in_fd = -1;
}
