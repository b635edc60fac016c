/*
 * The one-slot mailbox between the API thread and the VMM thread, and the reply helpers.
 *
 * The API thread puts a message in the slot, bumps the eventfd and sleeps on the condition
 * variable; the VMM thread, woken by the eventfd, takes the message, applies it, fills the
 * reply and marks it done. Once the VMM thread closes the channel, every call (the pending
 * one included) is answered with 400 at once, so the API thread never waits on a VMM that
 * is gone.
 */
#include "api.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cjson/cJSON.h>

void api_msg_free(struct api_msg *m)
{
	switch (m->op) {
	case API_PUT_BOOT_SOURCE:
		free(m->u.boot.kernel);
		free(m->u.boot.initrd);
		free(m->u.boot.cmdline);
		m->u.boot.kernel = m->u.boot.initrd = m->u.boot.cmdline = NULL;
		break;
	case API_PUT_DRIVE:
	case API_PATCH_DRIVE:
		free(m->u.drive.path);
		m->u.drive.path = NULL;
		break;
	case API_PUT_LOGGER:
		free(m->u.logger.path);
		m->u.logger.path = NULL;
		break;
	case API_PUT_METRICS:
		free(m->u.metrics.path);
		m->u.metrics.path = NULL;
		break;
	case API_SNAPSHOT_CREATE:
		free(m->u.snap_create.state_path);
		free(m->u.snap_create.mem_path);
		m->u.snap_create.state_path = m->u.snap_create.mem_path = NULL;
		break;
	case API_SNAPSHOT_LOAD:
		free(m->u.snap_load.state_path);
		free(m->u.snap_load.mem_path);
		m->u.snap_load.state_path = m->u.snap_load.mem_path = NULL;
		break;
	default:
		break;
	}
	free(m->body);
	m->body = NULL;
}

void api_reply_error(struct api_msg *m, const char *fmt, ...)
{
	static const char fallback[] = "{\"fault_message\":\"out of memory\"}";
	char msg[1024];
	va_list ap;
	cJSON *o;
	char *json = NULL;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* cJSON does the escaping: messages quote paths, ids and other client input. */
	if ((o = cJSON_CreateObject()) && cJSON_AddStringToObject(o, "fault_message", msg))
		json = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	free(m->body);
	m->body = json ? json : strdup(fallback);
	m->status = 400;
}

void api_reply(struct api_msg *m, char *json)
{
	free(m->body);
	m->body = json;
	m->status = json ? 200 : 204;
}

int api_channel_init(struct api_channel *ch)
{
	memset(ch, 0, sizeof(*ch));
	ch->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (ch->wake_fd < 0)
		return -1;
	if (pthread_mutex_init(&ch->lock, NULL)) {
		close(ch->wake_fd);
		ch->wake_fd = -1;
		return -1;
	}
	if (pthread_cond_init(&ch->cond, NULL)) {
		pthread_mutex_destroy(&ch->lock);
		close(ch->wake_fd);
		ch->wake_fd = -1;
		return -1;
	}
	return 0;
}

void api_channel_destroy(struct api_channel *ch)
{
	if (ch->wake_fd >= 0)
		close(ch->wake_fd);
	ch->wake_fd = -1;
	pthread_cond_destroy(&ch->cond);
	pthread_mutex_destroy(&ch->lock);
}

static void reply_closed(struct api_msg *m)
{
	api_reply_error(m, "hearth is shutting down: the request was not processed");
}

void api_channel_call(struct api_channel *ch, struct api_msg *m)
{
	uint64_t one = 1;

	m->lock = &ch->lock;
	m->cond = &ch->cond;
	m->done = false;
	m->status = 0;
	m->body = NULL;
	pthread_mutex_lock(&ch->lock);
	/* One API thread means one message at a time, but never overwrite a pending one. */
	while (ch->pending && !ch->closed)
		pthread_cond_wait(&ch->cond, &ch->lock);
	if (ch->closed) {
		pthread_mutex_unlock(&ch->lock);
		reply_closed(m);
		return;
	}
	ch->pending = m;
	pthread_mutex_unlock(&ch->lock);
	/* Wake the VMM thread outside the lock, or it wakes only to block on the mutex. */
	while (write(ch->wake_fd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
	pthread_mutex_lock(&ch->lock);
	while (!m->done)
		pthread_cond_wait(&ch->cond, &ch->lock);
	pthread_mutex_unlock(&ch->lock);
	if (!m->status) /* the VMM marked it done without a reply */
		api_reply_error(m, "internal error: the request got no reply");
}

struct api_msg *api_channel_take(struct api_channel *ch)
{
	struct api_msg *m;
	uint64_t v;

	pthread_mutex_lock(&ch->lock);
	m = ch->pending;
	ch->pending = NULL;
	/* Drain the eventfd; the next call cannot come before this one is done. */
	while (read(ch->wake_fd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
	pthread_mutex_unlock(&ch->lock);
	return m;
}

void api_channel_done(struct api_channel *ch, struct api_msg *m)
{
	pthread_mutex_lock(&ch->lock);
	m->done = true;
	pthread_mutex_unlock(&ch->lock);
	/* m belongs to the API thread again: do not touch it after the unlock. The condition
	 * variable is the channel's; signalled after the unlock, the waiter does not wake only
	 * to block on the mutex. */
	pthread_cond_broadcast(&ch->cond);
}

void api_channel_close(struct api_channel *ch)
{
	pthread_mutex_lock(&ch->lock);
	ch->closed = true;
	if (ch->pending) {
		reply_closed(ch->pending);
		ch->pending->done = true;
		ch->pending = NULL;
	}
	pthread_cond_broadcast(&ch->cond);
	pthread_mutex_unlock(&ch->lock);
}
