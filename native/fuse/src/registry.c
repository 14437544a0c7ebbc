/*
 * Requests in flight. Every request the addon hands to JS waits in one pending list (all mounts of the
 * process) under an id from one counter, until exactly one party takes it out and answers it: JS's reply,
 * the session's end (EIO), or a dispatch that failed (EIO). The list is guarded by a mutex because the
 * process may serve mounts from several JS threads (worker threads); on one JS thread it is never contended.
 *
 * An interrupted lock wait is the one exception to "the taker answers": the kernel's INTERRUPT is answered
 * EINTR at once (on_interrupt) and the request only marked, so JS, which polls interrupted(id) while it
 * waits, stops; its late reply takes the request, frees it and changes nothing.
 *
 *   ff_pending_add --> pending --(reply | session end | failed dispatch: take)--> answered, freed
 *                         |
 *                         +--(INTERRUPT of a lock wait)--> answered EINTR, marked --(reply: take)--> freed
 */

#include "ferry_fuse.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/file.h>

static pthread_mutex_t pending_lock = PTHREAD_MUTEX_INITIALIZER;
/* A list with a sentinel: newest at pending.prev. */
static ff_req_t pending = { .prev = &pending, .next = &pending };
static uint64_t next_id = 0;

static void unlink_req(ff_req_t *r) {
  r->prev->next = r->next;
  r->next->prev = r->prev;
  r->next = r->prev = NULL;
}

/* Under pending_lock. Newest first: answers mostly come for recent requests. */
static ff_req_t *find(uint64_t id) {
  for (ff_req_t *r = pending.prev; r != &pending; r = r->prev)
    if (r->id == id) return r;
  return NULL;
}

ff_req_t *ff_req_new(fuse_req_t fr, int op) {
  ff_req_t *r = calloc(1, sizeof(ff_req_t));
  if (r == NULL) {
    fuse_reply_err(fr, ENOMEM);
    return NULL;
  }
  const struct fuse_ctx *c = fuse_req_ctx(fr);
  r->op = op;
  r->fr = fr;
  r->m = (ff_mnt_t *) fuse_req_userdata(fr);
  r->uid = c->uid;
  r->gid = c->gid;
  r->pid = c->pid;
  return r;
}

void ff_req_free(ff_req_t *r) {
  free(r->name);
  free(r->name2);
  free(r->data);
  free(r);
}

/* The kernel interrupted a lock wait: answer EINTR now; JS sees interrupted(id) and stops waiting. */
static void on_interrupt(fuse_req_t fr, void *data) {
  uint64_t id = (uint64_t) (uintptr_t) data;
  int answer = 0;
  pthread_mutex_lock(&pending_lock);
  ff_req_t *r = find(id);
  if (r != NULL && !r->answered) {
    r->answered = 1;
    answer = 1;
  }
  pthread_mutex_unlock(&pending_lock);
  if (answer) fuse_reply_err(fr, EINTR);
}

void ff_pending_add(ff_req_t *r) {
  pthread_mutex_lock(&pending_lock);
  r->id = ++next_id;
  r->next = &pending;
  r->prev = pending.prev;
  pending.prev->next = r;
  pending.prev = r;
  pthread_mutex_unlock(&pending_lock);
  /* Only waits that may block for long can be interrupted: SETLKW, and flock without LOCK_NB. */
  int waits = r->op == OP_SETLK ? r->sleep : r->op == OP_FLOCK && (r->flags & LOCK_NB) == 0 && (r->flags & LOCK_UN) == 0;
  if (waits) fuse_req_interrupt_func(r->fr, on_interrupt, (void *) (uintptr_t) r->id);
}

ff_req_t *ff_pending_take(uint64_t id) {
  pthread_mutex_lock(&pending_lock);
  ff_req_t *r = find(id);
  if (r != NULL) unlink_req(r);
  pthread_mutex_unlock(&pending_lock);
  return r;
}

ff_req_t *ff_pending_take_of(ff_mnt_t *m) {
  ff_req_t *r = NULL;
  pthread_mutex_lock(&pending_lock);
  for (ff_req_t *p = pending.next; p != &pending; p = p->next) {
    if (p->m == m) {
      r = p;
      break;
    }
  }
  if (r != NULL) unlink_req(r);
  pthread_mutex_unlock(&pending_lock);
  return r;
}

int ff_pending_open(uint64_t id) {
  pthread_mutex_lock(&pending_lock);
  ff_req_t *r = find(id);
  int open = r != NULL && !r->answered;
  pthread_mutex_unlock(&pending_lock);
  return open;
}

int ff_pending_none(void) {
  pthread_mutex_lock(&pending_lock);
  int empty = pending.next == &pending;
  pthread_mutex_unlock(&pending_lock);
  return empty;
}

void ff_pending_fail(uint64_t id, int err) {
  ff_req_t *r = ff_pending_take(id);
  if (r == NULL) return;
  if (!r->answered) fuse_reply_err(r->fr, err);
  ff_req_free(r);
}
