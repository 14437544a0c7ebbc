/*
 * ferry_fuse: a FUSE 2.9 LOW-LEVEL (inode-based) binding for Node (N-API), written for Ferry. This header is
 * the addon's internal contract between its files; nothing here is seen by JS except through module.c.
 *
 *   layout.h, layout.c  the boundary table: each operation's arguments to the JS dispatch function and the
 *                       values of its reply, by name, in order, with their JS types (src/fuse/boundary.ts
 *                       declares the same table; test/fuse/boundary.test.ts checks one against the other)
 *   registry.c          requests in flight: ids, the pending list, interrupted lock waits
 *   ll_ops.c            libfuse's low-level callbacks: copy the kernel's request and hand it to JS
 *   reply.c             reply(id, result, values...) and interrupted(id): JS's values to fuse_reply_*
 *   reply_threads.c     long read answers written to /dev/fuse off the JS thread
 *   channel.c           our channel on /dev/fuse: 1 MiB requests (FUSE_MAX_PAGES), READDIRPLUS
 *   dirplus.c           READDIRPLUS answers: entries with their attributes, in the kernel's format
 *   session.c           the session served on Node's event loop: reads, batches, spinning, the session's end
 *   module.c            the N-API module: mount, unmount, exit, close, invalidate; the exports
 *
 * Threads: none of our own but the reply threads. The JS thread serves /dev/fuse itself:
 *   - the descriptor is non-blocking and watched by a poll handle (uv_poll_t) on Node's event loop. When it
 *     is readable, the session reads requests through our channel until none is waiting (EAGAIN) or a batch
 *     is full, and has libfuse process each one, as fuse_session_loop would (session.c);
 *   - the ll_* callbacks copy what they need out of the kernel's request (names, write data: the receive
 *     buffer is reused for the next request), register the request under a fresh id and call the dispatch
 *     function right away with the arguments layout.c lists for the operation (ll_ops.c, layout.c). Each
 *     request is processed in its own callback scope, whose close runs JS's nextTicks and promise jobs, so
 *     answers given there go out before the next read;
 *   - JS answers with reply(id, result, values...), at once or later, which sends the kernel its answer
 *     (fuse_reply_*; writes to /dev/fuse never return EAGAIN, non-blocking or not) on the JS thread, except
 *     read answers of at least FF_ASYNC_READ_MIN bytes: those are written by the reply threads while JS goes on
 *     (reply_threads.c). libfuse's replies are thread-safe;
 *   - once every request is answered, the event loop polls without sleeping for FF_SPIN_US: a caller working
 *     one request at a time sends the next one within microseconds, and a sleep and wake-up per request cost
 *     more than that (session.c; it backs off when requests are sparse).
 * Requests that arrive while JS is busy wait in the kernel's queue, and reach JS in the kernel's order.
 *
 * Exactly one answer per request: a request is answered by whoever takes it out of the pending list (a
 * reply, the session's end, or a thrown dispatch), except that an interrupted lock wait is answered EINTR at
 * once when the kernel's INTERRUPT is processed and only marked; its later reply from JS frees it and returns
 * false. A reply for an id no longer pending returns false and changes nothing.
 *
 * Kernel inodes are Ferry's inode numbers (64 bits; FUSE_ROOT_ID = 1 = Ferry's root). Ferry keeps no lookup
 * counts: any inode can be read by number from the metadata engine at any time, so forget is answered here
 * without a trip to JS. Entry and attribute timeouts are per reply (the mount's attrTimeout/entryTimeout).
 */

#ifndef FERRY_FUSE_H
#define FERRY_FUSE_H

#define FUSE_USE_VERSION 29
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <fuse_lowlevel.h>
#include <node_api.h>
#include <uv.h>

#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "layout.h"

/* Open reply flags (a bit set that JS passes as the reply value openFlags). */
#define FF_OPEN_KEEP_CACHE 1
#define FF_OPEN_DIRECT_IO 2
#define FF_OPEN_NONSEEKABLE 4

/* The fh argument of a request that carries no open file (e.g. setattr by name, getattr without a handle). */
#define FF_NO_FH (-1.0)

/* Read answers at least this long are written by the reply threads (the kernel's copy into the reader's
 * pages, during the write to /dev/fuse, is the bulk of their cost); shorter ones at once, on the JS thread. */
#define FF_ASYNC_READ_MIN (64 * 1024)

/* How long the event loop keeps polling for the next request once every request is answered (see session.c). */
#define FF_SPIN_US 50

typedef struct ff_mnt ff_mnt_t;
typedef struct ff_jsloop ff_jsloop_t; /* session.c's: the poll handle and what calling into JS needs */

/*
 * One request (or event: init, done) on its way to JS. Everything JS is given is copied out of the kernel's
 * request here, because libfuse reuses the receive buffer for the next request. Owned by the pending list
 * from ff_pending_add until taken out (ff_pending_take); events are never pending and are freed once
 * dispatched.
 */
typedef struct ff_req {
  struct ff_req *prev, *next; /* in the pending list */
  uint64_t id;
  int op;
  ff_mnt_t *m;
  fuse_req_t fr;
  /* An interrupted lock wait answered EINTR already (registry.c's on_interrupt); JS's reply only frees it. */
  int answered;
  uid_t uid;
  gid_t gid;
  pid_t pid;
  /* inputs, copied out of the kernel's request */
  uint64_t ino;  /* the inode, or the parent directory */
  uint64_t ino2; /* rename's and link's new parent */
  char *name;    /* the entry's name */
  char *name2;   /* rename's and link's new name, symlink's target */
  int has_fh;
  uint64_t fh;
  uint64_t lock_owner;
  int flags; /* open flags, datasync, setattr's to_set, xattr flags, fallocate mode, access mask, flock op */
  int flock_release;
  mode_t mode;
  dev_t rdev;
  struct stat st; /* setattr's values */
  off_t off;
  off_t len;
  size_t size;
  char *data; /* write data, setxattr value (owned until handed to JS) */
  struct flock lk;
  int sleep;
  /* events (init, done) carry these */
  uint32_t ev[6];
} ff_req_t;

struct ff_mnt {
  ff_jsloop_t *js; /* serving on the JS thread, until the session ended (NULL from then on) */
  char *buf;       /* the JS thread's receive buffer */
  size_t bufsize;
  struct fuse_session *se; /* alive while set; destroyed on the JS thread only (ff_session_teardown) */
  struct fuse_chan *kch;   /* libfuse's channel on /dev/fuse (owns the descriptor; used to unmount) */
  struct fuse_chan *ch;    /* ours, on the same descriptor: the one the session reads and answers through */
  uint64_t init_unique;    /* the kernel's INIT request, until its answer went out (channel.c) */
  uint32_t kernel_flags;   /* what the kernel offered in INIT (channel.c) */
  /*
   * The request just received was a READDIRPLUS that channel.c handed libfuse as a READDIR (libfuse 2.9
   * knows no READDIRPLUS): ll_readdir takes it as OP_READDIRPLUS. Set by the receive, cleared once the
   * request was processed (session.c), so it never outlives its request.
   */
  int plus_next;
  /*
   * getxattr of these names is answered with their errno here, without a trip to JS (the mount's xattr
   * policy: names it keeps no values for; module.c's mount takes the list from JS).
   */
  char **xattr_names;
  int *xattr_errnos;
  int xattr_count;
  char *mountpoint;
  double attr_timeout;
  double entry_timeout;
  int loop_ended;
  int detached; /* unmounted already (lazily, from outside): the session's end must not unmount again */
  int closed;
  int spin_off; /* the last spin timed out: no spinning until requests come back to back again */
  long idle_at; /* when the JS thread last went back to epoll with every request answered */
  /*
   * Read answers being sent from the reply threads (reply_threads.c). works_sending counts those whose
   * write may not have happened yet (queued or running; decremented by the reply thread once fuse_reply_buf
   * returned, under works_lock, signalling works_done): teardown waits for 0 before it closes the descriptor
   * and destroys the session. works_queued counts those whose after-work callback has not run yet (JS thread
   * only): the mount is freed only once it is 0 (module.c's finalizer, or the last after-work callback).
   */
  pthread_mutex_t works_lock;
  pthread_cond_t works_done;
  int works_sending;
  int works_queued;
  int finalized; /* its handle was collected while works_queued > 0: the last after-work callback frees it */
};

/* ---- registry.c: requests in flight (every mount of the process; any JS thread of it) */

/* A request for fr, with the caller's identity; NULL after answering ENOMEM. */
ff_req_t *ff_req_new(fuse_req_t fr, int op);
void ff_req_free(ff_req_t *r);
/* Registers r under a fresh id; a lock wait that may block is answered EINTR if the kernel interrupts it. */
void ff_pending_add(ff_req_t *r);
/* Takes the request out of the pending list; NULL if it is not there. The taker answers it. */
ff_req_t *ff_pending_take(uint64_t id);
/* Takes any pending request of m out of the list; NULL once there is none. */
ff_req_t *ff_pending_take_of(ff_mnt_t *m);
/* Whether the request still waits for its answer (pending and not answered EINTR). */
int ff_pending_open(uint64_t id);
/* Whether every request of every mount has been answered. */
int ff_pending_none(void);
/* Answers a pending request with -err (unless it was answered EINTR already) and frees it; no-op if gone. */
void ff_pending_fail(uint64_t id, int err);

/* ---- ll_ops.c */

extern const struct fuse_lowlevel_ops ff_ll_ops;

/* ---- layout.c: the boundary table, both directions */

/*
 * Calls the dispatch function with the request's header and arguments (layout.c's table), on the JS thread.
 * A request JS cannot take (fn NULL: no way into JS; or a throw) is answered EIO; an event is freed here.
 */
void ff_dispatch(napi_env env, napi_value fn, ff_req_t *r);
/* JS's reply value v (a V_* of layout.h) for op, or NULL if JS gave fewer values than the table lists. */
napi_value ff_reply_value(int op, int v, size_t nvals, napi_value *vals);
/* The table as JS sees it: { header, args: {op: [[name, type]...]}, reply: {...}, records: {...} }. */
napi_value ff_layout_export(napi_env env);

/* ---- reply.c */

napi_value ff_js_reply(napi_env env, napi_callback_info info);
napi_value ff_js_interrupted(napi_env env, napi_callback_info info);

/* ---- dirplus.c */

/*
 * Answers a READDIRPLUS request r (entries from offset r->off on, at most r->size bytes) with the names (each
 * ended by a NUL) and n stat records of ST_COUNT numbers, whose attributes are age_ms old. Always answers.
 */
void ff_reply_dirplus(ff_req_t *r, const char *names, size_t names_len, const double *attrs, size_t n, double age_ms);

/* ---- reply_threads.c */

/*
 * Queues a read answer (data: len bytes of JS's Buffer buf) to the reply threads. 0 if queued (the work
 * answers the request: the caller took it out of the pending list already), else -1 (answer it yourself).
 */
int ff_reply_read_async(napi_env env, ff_mnt_t *m, fuse_req_t fr, napi_value buf, const char *data, size_t len);
/* Teardown: waits until no read answer of m is being written (each is one write to /dev/fuse). */
void ff_wait_read_replies(ff_mnt_t *m);

/* ---- channel.c */

/* Our channel on libfuse's descriptor fd (libfuse's channel keeps owning it); NULL on failure. */
struct fuse_chan *ff_chan_new(ff_mnt_t *m, int fd);

/* ---- session.c */

/* Serves the session's descriptor on the JS thread's event loop, dispatching to fn; an error message or NULL. */
const char *ff_session_start(napi_env env, ff_mnt_t *m, napi_value fn);
/* Hands a request or event to JS now: only while a batch is served (inside the ll_* callbacks). */
void ff_session_dispatch(ff_mnt_t *m, ff_req_t *r);
/* Hands JS an event (init, done: no answer awaited) with up to 6 numbers. */
void ff_session_event(ff_mnt_t *m, int op, const uint32_t *ev, int n);
/* An answer went out outside a batch (after I/O): spin for the caller's next request from here. */
void ff_session_answered(ff_mnt_t *m);
/* The session ended: answer what is pending EIO, unmount (unless detached), destroy the session. Idempotent. */
void ff_session_teardown(ff_mnt_t *m);

/* ---- module.c */

/* Frees a mount whose session is over and whose read answers are all done. */
void ff_mnt_free(ff_mnt_t *m);

/* ---- small N-API helpers */

static inline napi_value ff_num(napi_env env, double v) {
  napi_value out;
  napi_create_double(env, v, &out);
  return out;
}

/* A JS string, or null for a NULL pointer. */
static inline napi_value ff_str(napi_env env, const char *s) {
  napi_value out;
  if (s == NULL) napi_get_null(env, &out);
  else napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &out);
  return out;
}

#endif
