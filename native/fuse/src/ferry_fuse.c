/*
 * ferry_fuse: a FUSE 2.9 LOW-LEVEL (inode-based) binding for Node (N-API), written for Ferry.
 *
 * Threads: none of our own. The JS thread serves /dev/fuse itself:
 *   - the descriptor is non-blocking and watched by a poll handle (uv_poll_t) on Node's event loop. When it
 *     is readable, on_readable reads requests through the session (fuse_session_receive_buf, our channel)
 *     until none is waiting (EAGAIN) or BATCH_MAX of them, and has libfuse process each one
 *     (fuse_session_process_buf), as fuse_session_loop would;
 *   - the ll_* operations below copy what they need out of the kernel's request (names, write data: the
 *     receive buffer is reused for the next request), register the request under a fresh id and call the
 *     dispatch function with (op, id, uid, gid, pid, args...) right away (dispatch_js). Each request is
 *     processed in its own callback scope (napi_open_callback_scope), whose close runs JS's nextTicks and
 *     promise jobs, so answers given there go out before the next read;
 *   - JS answers with reply(id, result, values...), at once or later, which sends the kernel its answer
 *     (fuse_reply_*; writes to /dev/fuse never return EAGAIN, non-blocking or not) on the JS thread, except
 *     read answers of at least ASYNC_READ_MIN (64 KiB) bytes: the write of those (where the kernel copies the
 *     data into the reader's pages, most of their cost) is queued to Ferry's reply threads (reply_read_async),
 *     JS's Buffer held by a reference until the after-work callback (JS thread) drops it, so several go out
 *     in parallel while JS goes on. libfuse's replies are thread-safe. Such a request is
 *     out of the pending list before its work is queued: the work answers it, nothing else does;
 *   - once every request is answered, the event loop polls without sleeping for a short while (SPIN_US,
 *     50 us): a caller working one request at a time sends the next one within microseconds, and a sleep and
 *     wake-up per request cost more than that (see spin_arm; it backs off when requests are sparse).
 * Requests that arrive while JS is busy wait in the kernel's queue, and reach JS in the kernel's order.
 *
 * Exactly one answer per request: a request is answered by whoever takes it out of the pending list (a
 * reply, the session's end, or a thrown dispatch), except that an interrupted lock wait is answered EINTR at
 * once when the kernel's INTERRUPT is processed (on_interrupt) and only marked; its later reply from JS frees
 * it and returns false. A reply for an id no longer pending returns false and changes nothing.
 *
 * The session ends when a read says the kernel let go (ENODEV: unmounted, or the connection aborted; libuv
 * may report the descriptor in error instead), on a read error, or when unmount/exit asked it to (noticed at
 * the next wake-up, as fuse_session_loop notices it at its next request). Teardown happens on the JS thread
 * right then: the poll handle is stopped, pending
 * requests of the mount are answered EIO, the mount is unmounted (unless it was detached from outside) and
 * the session destroyed, so no reply can race the session's end; then JS gets the "done" event. Read answers
 * still queued or being written by the reply threads are waited for (works_sending, a condition variable:
 * each is one write to /dev/fuse, which does not wait for anything) before the descriptor is closed and the
 * session destroyed; the mount's memory is freed only after the last of their after-work callbacks ran.
 *
 * Kernel inodes are Ferry's inode numbers (64 bits; FUSE_ROOT_ID = 1 = Ferry's root). Ferry keeps no lookup
 * counts: any inode can be read by number from the metadata engine at any time, so forget is answered here
 * without a trip to JS. Entry and attribute timeouts are per reply (the mount's attrTimeout/entryTimeout).
 *
 * The session reads and answers through a channel of ours on libfuse's /dev/fuse descriptor, which adds
 * FUSE_MAX_PAGES to the INIT answer (see "channel" below): 1 MiB requests instead of 128 KiB.
 */

#define FUSE_USE_VERSION 29
#define _GNU_SOURCE

#include <fuse_lowlevel.h>
#include <node_api.h>
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <time.h>

enum {
  OP_INIT, OP_DONE, OP_LOOKUP, OP_GETATTR, OP_SETATTR, OP_READLINK, OP_MKNOD, OP_MKDIR, OP_UNLINK, OP_RMDIR,
  OP_SYMLINK, OP_RENAME, OP_LINK, OP_OPEN, OP_READ, OP_WRITE, OP_FLUSH, OP_RELEASE, OP_FSYNC, OP_OPENDIR,
  OP_READDIR, OP_RELEASEDIR, OP_FSYNCDIR, OP_STATFS, OP_SETXATTR, OP_GETXATTR, OP_LISTXATTR, OP_REMOVEXATTR,
  OP_ACCESS, OP_CREATE, OP_GETLK, OP_SETLK, OP_FLOCK, OP_FALLOCATE,
  OP_COUNT
};

static const char *OP_NAMES[OP_COUNT] = {
  "init", "done", "lookup", "getattr", "setattr", "readlink", "mknod", "mkdir", "unlink", "rmdir",
  "symlink", "rename", "link", "open", "read", "write", "flush", "release", "fsync", "opendir",
  "readdir", "releasedir", "fsyncdir", "statfs", "setxattr", "getxattr", "listxattr", "removexattr",
  "access", "create", "getlk", "setlk", "flock", "fallocate",
};

/* Open reply flags (bit set passed by JS). */
#define OPEN_KEEP_CACHE 1
#define OPEN_DIRECT_IO 2
#define OPEN_NONSEEKABLE 4

/* No setattr field given (fh of a setattr without an open file). */
#define NO_FH (-1.0)

typedef struct mnt mnt_t;

/*
 * Serving /dev/fuse on the JS thread: a poll handle on Node's event loop, and what calling into JS from it
 * needs. Allocated apart from the mount: the handle's close callback frees it, whenever that comes.
 */
typedef struct jsloop {
  uv_poll_t poll;
  uv_idle_t spin;    /* started while the loop spins (see spin_arm); unreferenced */
  int handles;       /* of poll and spin, not yet closed: the last close callback frees this */
  long spin_until;   /* when the current spin ends (CLOCK_MONOTONIC ns) */
  napi_env env;
  napi_ref fn;       /* the dispatch function */
  napi_ref resource; /* the async resource of the callback scopes */
  napi_async_context ctx;
  napi_value cur_fn; /* the dispatch function while a batch is served (valid in its handle scope) */
} jsloop_t;

typedef struct req {
  struct req *prev, *next;
  uint64_t id;
  int op;
  mnt_t *m;
  fuse_req_t fr;
  /* An interrupted lock wait answered EINTR already (by on_interrupt); JS's reply only frees it. */
  int answered;
  uid_t uid;
  gid_t gid;
  pid_t pid;
  /* inputs, copied out of the kernel's request */
  uint64_t ino;  /* the inode, or the parent directory */
  uint64_t ino2; /* rename's and link's new parent */
  char *name;
  char *name2;
  int has_fh;
  uint64_t fh;
  uint64_t lock_owner;
  int flags; /* open flags, datasync, setattr's to_set, xattr flags, fallocate mode, access mask */
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
} req_t;

struct mnt {
  jsloop_t *js; /* serving on the JS thread, until the session ended */
  char *buf;    /* the JS thread's receive buffer */
  size_t bufsize;
  struct fuse_session *se;
  struct fuse_chan *kch; /* libfuse's channel on /dev/fuse (owns the descriptor; used to unmount) */
  struct fuse_chan *ch;  /* ours, on the same descriptor: the one the session reads and answers through */
  uint64_t init_unique;  /* the kernel's INIT request, until its answer went out */
  uint32_t kernel_flags; /* what the kernel offered in INIT */
  char *mountpoint;
  double attr_timeout;
  double entry_timeout;
  int loop_ended;
  int detached; /* unmounted already (lazily, from outside): the session's end must not unmount again */
  int closed;
  int spin_off; /* the last spin timed out: no spinning until requests come back to back again */
  long idle_at; /* when the JS thread last went back to epoll with every request answered */
  /*
   * Read answers being sent from the reply threads (reply_read_async). works_sending counts those whose
   * write may not have happened yet (queued or running; decremented by the reply thread once fuse_reply_buf
   * returned, under works_lock, signalling works_done): teardown waits for 0 before it closes the descriptor
   * and destroys the session. works_queued counts those whose after-work callback has not run yet (JS thread
   * only): the mount is freed only once it is 0 (free_mnt, or the last after-work callback if finalized).
   */
  pthread_mutex_t works_lock;
  pthread_cond_t works_done;
  int works_sending;
  int works_queued;
  int finalized; /* its handle was collected while works_queued > 0: the last after-work callback frees it */
};

/* Pending requests of every mount of the process: a list with a sentinel, and the id counter. */
static pthread_mutex_t pending_lock = PTHREAD_MUTEX_INITIALIZER;
static req_t pending = { .prev = &pending, .next = &pending };
static uint64_t next_id = 0;

static void unlink_req(req_t *r) {
  r->prev->next = r->next;
  r->next->prev = r->prev;
  r->next = r->prev = NULL;
}

static void pending_add(req_t *r) {
  pthread_mutex_lock(&pending_lock);
  r->id = ++next_id;
  r->next = &pending;
  r->prev = pending.prev;
  pending.prev->next = r;
  pending.prev = r;
  pthread_mutex_unlock(&pending_lock);
}

static req_t *pending_find(uint64_t id) {
  /* Newest first: answers mostly come for recent requests. */
  for (req_t *r = pending.prev; r != &pending; r = r->prev)
    if (r->id == id) return r;
  return NULL;
}

/* Takes the request out of the pending list; NULL if it is not there. */
static req_t *pending_take(uint64_t id) {
  pthread_mutex_lock(&pending_lock);
  req_t *r = pending_find(id);
  if (r != NULL) unlink_req(r);
  pthread_mutex_unlock(&pending_lock);
  return r;
}

/* Whether the request still waits for its answer (pending and not answered EINTR). */
static int pending_open(uint64_t id) {
  pthread_mutex_lock(&pending_lock);
  req_t *r = pending_find(id);
  int open = r != NULL && !r->answered;
  pthread_mutex_unlock(&pending_lock);
  return open;
}

static void free_req(req_t *r) {
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
  req_t *r = pending_find(id);
  if (r != NULL && !r->answered) {
    r->answered = 1;
    answer = 1;
  }
  pthread_mutex_unlock(&pending_lock);
  if (answer) fuse_reply_err(fr, EINTR);
}

static req_t *new_req(fuse_req_t fr, int op) {
  req_t *r = calloc(1, sizeof(req_t));
  if (r == NULL) {
    fuse_reply_err(fr, ENOMEM);
    return NULL;
  }
  const struct fuse_ctx *c = fuse_req_ctx(fr);
  r->op = op;
  r->fr = fr;
  r->m = (mnt_t *) fuse_req_userdata(fr);
  r->uid = c->uid;
  r->gid = c->gid;
  r->pid = c->pid;
  return r;
}

static char *dup_or_null(const char *s) {
  return s == NULL ? NULL : strdup(s);
}

static void set_fi(req_t *r, struct fuse_file_info *fi) {
  if (fi == NULL) return;
  r->has_fh = 1;
  r->fh = fi->fh;
  r->lock_owner = fi->lock_owner;
  r->flock_release = fi->flock_release;
}

static void dispatch_js(napi_env env, napi_value fn, req_t *r);
static void wait_read_replies(mnt_t *m);

/* Registers the request and hands it to JS at once (it may be answered before this returns). */
static void submit(req_t *r) {
  pending_add(r);
  if (r->op == OP_SETLK || r->op == OP_FLOCK) {
    int waits = r->op == OP_SETLK ? r->sleep : (r->flags & LOCK_NB) == 0 && (r->flags & LOCK_UN) == 0;
    if (waits) fuse_req_interrupt_func(r->fr, on_interrupt, (void *) (uintptr_t) r->id);
  }
  jsloop_t *j = r->m->js;
  dispatch_js(j == NULL ? NULL : j->env, j == NULL ? NULL : j->cur_fn, r);
}

#define NEW(o) \
  req_t *r = new_req(req, (o)); \
  if (r == NULL) return

static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  NEW(OP_LOOKUP);
  r->ino = parent;
  r->name = dup_or_null(name);
  submit(r);
}

static void ll_forget(fuse_req_t req, fuse_ino_t ino, unsigned long nlookup) {
  (void) ino;
  (void) nlookup;
  fuse_reply_none(req);
}

static void ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets) {
  (void) count;
  (void) forgets;
  fuse_reply_none(req);
}

static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  NEW(OP_GETATTR);
  r->ino = ino;
  set_fi(r, fi);
  submit(r);
}

static void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi) {
  NEW(OP_SETATTR);
  r->ino = ino;
  r->st = *attr;
  r->flags = to_set;
  set_fi(r, fi);
  submit(r);
}

static void ll_readlink(fuse_req_t req, fuse_ino_t ino) {
  NEW(OP_READLINK);
  r->ino = ino;
  submit(r);
}

static void ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev) {
  NEW(OP_MKNOD);
  r->ino = parent;
  r->name = dup_or_null(name);
  r->mode = mode;
  r->rdev = rdev;
  submit(r);
}

static void ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode) {
  NEW(OP_MKDIR);
  r->ino = parent;
  r->name = dup_or_null(name);
  r->mode = mode;
  submit(r);
}

static void ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name) {
  NEW(OP_UNLINK);
  r->ino = parent;
  r->name = dup_or_null(name);
  submit(r);
}

static void ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name) {
  NEW(OP_RMDIR);
  r->ino = parent;
  r->name = dup_or_null(name);
  submit(r);
}

static void ll_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name) {
  NEW(OP_SYMLINK);
  r->ino = parent;
  r->name = dup_or_null(name);
  r->name2 = dup_or_null(link);
  submit(r);
}

static void ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent, const char *newname) {
  NEW(OP_RENAME);
  r->ino = parent;
  r->name = dup_or_null(name);
  r->ino2 = newparent;
  r->name2 = dup_or_null(newname);
  submit(r);
}

static void ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname) {
  NEW(OP_LINK);
  r->ino = ino;
  r->ino2 = newparent;
  r->name = dup_or_null(newname);
  submit(r);
}

static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  NEW(OP_OPEN);
  r->ino = ino;
  r->flags = fi->flags;
  submit(r);
}

static void ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  NEW(OP_OPENDIR);
  r->ino = ino;
  r->flags = fi->flags;
  submit(r);
}

static void ll_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi) {
  NEW(OP_CREATE);
  r->ino = parent;
  r->name = dup_or_null(name);
  r->mode = mode;
  r->flags = fi->flags;
  submit(r);
}

static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  NEW(OP_READ);
  r->ino = ino;
  r->size = size;
  r->off = off;
  set_fi(r, fi);
  submit(r);
}

static void ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
  NEW(OP_WRITE);
  r->ino = ino;
  r->size = size;
  r->off = off;
  set_fi(r, fi);
  /* The receive buffer is the next request's: the data moves to memory that JS's Buffer will own. */
  r->data = malloc(size > 0 ? size : 1);
  if (r->data == NULL) {
    fuse_reply_err(req, ENOMEM);
    free_req(r);
    return;
  }
  memcpy(r->data, buf, size);
  submit(r);
}

static void ll_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  NEW(OP_FLUSH);
  r->ino = ino;
  set_fi(r, fi);
  submit(r);
}

static void ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  NEW(OP_RELEASE);
  r->ino = ino;
  r->flags = fi->flags;
  set_fi(r, fi);
  submit(r);
}

static void ll_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  NEW(OP_FSYNC);
  r->ino = ino;
  r->flags = datasync;
  set_fi(r, fi);
  submit(r);
}

static void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  NEW(OP_READDIR);
  r->ino = ino;
  r->size = size;
  r->off = off;
  set_fi(r, fi);
  submit(r);
}

static void ll_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  NEW(OP_RELEASEDIR);
  r->ino = ino;
  set_fi(r, fi);
  submit(r);
}

static void ll_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  NEW(OP_FSYNCDIR);
  r->ino = ino;
  r->flags = datasync;
  set_fi(r, fi);
  submit(r);
}

static void ll_statfs(fuse_req_t req, fuse_ino_t ino) {
  NEW(OP_STATFS);
  r->ino = ino;
  submit(r);
}

static void ll_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size, int flags) {
  NEW(OP_SETXATTR);
  r->ino = ino;
  r->name = dup_or_null(name);
  r->size = size;
  r->flags = flags;
  r->data = malloc(size > 0 ? size : 1);
  if (r->data == NULL) {
    fuse_reply_err(req, ENOMEM);
    free_req(r);
    return;
  }
  if (size > 0) memcpy(r->data, value, size);
  submit(r);
}

/*
 * The kernel asks for security.capability before every write (to drop file capabilities on a change).
 * Ferry keeps no file capabilities (FerryOps refuses to set them), so the answer is known here, without a
 * trip to JS: ENODATA, as FerryOps would answer.
 */
#define XATTR_CAPS "security.capability"

static void ll_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
  if (strcmp(name, XATTR_CAPS) == 0) {
    fuse_reply_err(req, ENODATA);
    return;
  }
  NEW(OP_GETXATTR);
  r->ino = ino;
  r->name = dup_or_null(name);
  r->size = size;
  submit(r);
}

static void ll_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  NEW(OP_LISTXATTR);
  r->ino = ino;
  r->size = size;
  submit(r);
}

static void ll_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name) {
  NEW(OP_REMOVEXATTR);
  r->ino = ino;
  r->name = dup_or_null(name);
  submit(r);
}

static void ll_access(fuse_req_t req, fuse_ino_t ino, int mask) {
  NEW(OP_ACCESS);
  r->ino = ino;
  r->flags = mask;
  submit(r);
}

static void ll_getlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct flock *lock) {
  NEW(OP_GETLK);
  r->ino = ino;
  set_fi(r, fi);
  r->lk = *lock;
  submit(r);
}

static void ll_setlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct flock *lock, int sleep) {
  NEW(OP_SETLK);
  r->ino = ino;
  set_fi(r, fi);
  r->lk = *lock;
  r->sleep = sleep;
  submit(r);
}

static void ll_flock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, int op) {
  NEW(OP_FLOCK);
  r->ino = ino;
  set_fi(r, fi);
  r->flags = op;
  submit(r);
}

static void ll_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length, struct fuse_file_info *fi) {
  NEW(OP_FALLOCATE);
  r->ino = ino;
  r->flags = mode;
  r->off = offset;
  r->len = length;
  set_fi(r, fi);
  submit(r);
}

/* Hands JS an event (no answer awaited) at once; dispatch_js frees it. */
static void send_event(mnt_t *m, int op, const uint32_t *ev, int n) {
  req_t *r = calloc(1, sizeof(req_t));
  if (r == NULL) return;
  r->op = op;
  r->m = m;
  for (int i = 0; i < n && i < 6; i++) r->ev[i] = ev[i];
  jsloop_t *j = m->js;
  dispatch_js(j == NULL ? NULL : j->env, j == NULL ? NULL : j->cur_fn, r);
}

static void ll_init(void *userdata, struct fuse_conn_info *conn) {
  mnt_t *m = (mnt_t *) userdata;
  uint32_t ev[5] = { conn->proto_major, conn->proto_minor, conn->capable, conn->want, conn->max_write };
  send_event(m, OP_INIT, ev, 5);
}

/* ------------------------------------------------------------------------------------------ channel */

/*
 * libfuse 2.9 predates FUSE_MAX_PAGES (kernel protocol 7.28): without it the kernel cuts every read and write
 * request to 32 pages (128 KiB) whatever max_read/max_write say. Ferry's own channel on the same descriptor
 * reads and writes as libfuse's does, and adds max_pages to the INIT answer when the kernel offers it, so
 * requests reach max_write/max_read (1 MiB). The receive buffer is sized for that.
 */
#define FUSE_INIT_OPCODE 26
#define FUSE_MAX_PAGES_FLAG (1u << 22)
#define IN_HEADER_BYTES 40
#define OUT_HEADER_BYTES 16
/* fuse_init_out as of protocol 7.28+: max_pages is the uint16 at byte 28. */
#define INIT_OUT_BYTES 64
#define INIT_OUT_FLAGS_AT 12
#define INIT_OUT_MAX_PAGES_AT 28
#define CHAN_MAX_PAGES 256
#define CHAN_BUFSIZE ((size_t) CHAN_MAX_PAGES * 4096 + 2 * 4096)

static int chan_receive(struct fuse_chan **chp, char *buf, size_t size) {
  struct fuse_chan *ch = *chp;
  mnt_t *m = (mnt_t *) fuse_chan_data(ch);
  struct fuse_session *se = fuse_chan_session(ch);
  for (;;) {
    ssize_t res = read(fuse_chan_fd(ch), buf, size);
    int err = errno;
    if (se != NULL && fuse_session_exited(se)) return 0;
    if (res == -1) {
      if (err == ENOENT) continue; /* the request was interrupted before it was read */
      if (err == ENODEV) {
        if (se != NULL) fuse_session_exit(se);
        return 0;
      }
      if (err != EINTR && err != EAGAIN) perror("ferry-fuse: reading /dev/fuse");
      return -err;
    }
    if ((size_t) res < IN_HEADER_BYTES) {
      fprintf(stderr, "ferry-fuse: short read on /dev/fuse\n");
      return -EIO;
    }
    uint32_t opcode;
    memcpy(&opcode, buf + 4, 4);
    if (opcode == FUSE_INIT_OPCODE && (size_t) res >= IN_HEADER_BYTES + 16) {
      memcpy(&m->init_unique, buf + 8, 8);
      memcpy(&m->kernel_flags, buf + IN_HEADER_BYTES + 12, 4);
    }
    return (int) res;
  }
}

static int chan_send(struct fuse_chan *ch, const struct iovec iov[], size_t count) {
  mnt_t *m = (mnt_t *) fuse_chan_data(ch);
  if (iov == NULL || count == 0) return 0;
  struct iovec patched[2];
  char header[OUT_HEADER_BYTES];
  char init[INIT_OUT_BYTES];
  if (m->init_unique != 0 && count == 2 && iov[0].iov_len == OUT_HEADER_BYTES && iov[1].iov_len <= INIT_OUT_BYTES) {
    uint64_t unique;
    int32_t error;
    memcpy(&unique, (const char *) iov[0].iov_base + 8, 8);
    memcpy(&error, (const char *) iov[0].iov_base + 4, 4);
    if (unique == m->init_unique) {
      m->init_unique = 0;
      if (error == 0 && (m->kernel_flags & FUSE_MAX_PAGES_FLAG) != 0) {
        memset(init, 0, sizeof init);
        memcpy(init, iov[1].iov_base, iov[1].iov_len);
        uint32_t flags;
        memcpy(&flags, init + INIT_OUT_FLAGS_AT, 4);
        flags |= FUSE_MAX_PAGES_FLAG;
        memcpy(init + INIT_OUT_FLAGS_AT, &flags, 4);
        uint16_t pages = CHAN_MAX_PAGES;
        memcpy(init + INIT_OUT_MAX_PAGES_AT, &pages, 2);
        memcpy(header, iov[0].iov_base, OUT_HEADER_BYTES);
        uint32_t len = OUT_HEADER_BYTES + INIT_OUT_BYTES;
        memcpy(header, &len, 4);
        patched[0].iov_base = header;
        patched[0].iov_len = OUT_HEADER_BYTES;
        patched[1].iov_base = init;
        patched[1].iov_len = INIT_OUT_BYTES;
        iov = patched;
      }
    }
  }
  ssize_t res = writev(fuse_chan_fd(ch), iov, (int) count);
  int err = errno;
  if (res == -1) {
    struct fuse_session *se = fuse_chan_session(ch);
    /* ENOENT: the request was interrupted and is gone; not an error of ours. */
    if (err != ENOENT && (se == NULL || !fuse_session_exited(se))) perror("ferry-fuse: writing /dev/fuse");
    return -err;
  }
  return 0;
}

/* The descriptor is libfuse's channel's (kch): it closes it. */
static void chan_destroy(struct fuse_chan *ch) {
  (void) ch;
}

static struct fuse_chan_ops CHAN_OPS = {
  .receive = chan_receive,
  .send = chan_send,
  .destroy = chan_destroy,
};

/* ------------------------------------------------------------------------------------------ JS side */

static napi_value num(napi_env env, double v) {
  napi_value out;
  napi_create_double(env, v, &out);
  return out;
}

static napi_value str(napi_env env, const char *s) {
  napi_value out;
  if (s == NULL) napi_get_null(env, &out);
  else napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &out);
  return out;
}

static napi_value big(napi_env env, uint64_t v) {
  napi_value out;
  napi_create_bigint_uint64(env, v, &out);
  return out;
}

static void free_external(napi_env env, void *data, void *hint) {
  int64_t change;
  napi_adjust_external_memory(env, -(int64_t) (uintptr_t) hint, &change);
  free(data);
}

/* A Buffer that takes over malloc'ed memory (freed when the Buffer is collected). */
static napi_value owned_buffer(napi_env env, char **p, size_t len) {
  napi_value out;
  void *copy;
  if (*p == NULL || len == 0) {
    napi_create_buffer(env, 0, &copy, &out);
    return out;
  }
  if (napi_create_external_buffer(env, len, *p, free_external, (void *) (uintptr_t) len, &out) == napi_ok) {
    int64_t change;
    napi_adjust_external_memory(env, (int64_t) len, &change);
    *p = NULL;
    return out;
  }
  /* A runtime without external buffers: copy. */
  napi_create_buffer_copy(env, len, *p, &copy, &out);
  return out;
}

static double fh_of(req_t *r) {
  return r->has_fh ? (double) r->fh : NO_FH;
}

static double ts_ms(const struct timespec *t) {
  return (double) t->tv_sec * 1000.0 + (double) t->tv_nsec / 1e6;
}

/* The session ended: answer what is pending, unmount (unless detached) and destroy the session. */
static void teardown(mnt_t *m) {
  if (m->se == NULL) return;
  for (;;) {
    req_t *r = NULL;
    pthread_mutex_lock(&pending_lock);
    for (req_t *p = pending.next; p != &pending; p = p->next) {
      if (p->m == m) {
        r = p;
        break;
      }
    }
    if (r != NULL) unlink_req(r);
    pthread_mutex_unlock(&pending_lock);
    if (r == NULL) break;
    if (!r->answered) fuse_reply_err(r->fr, EIO);
    free_req(r);
  }
  /* Read answers still being written by the reply threads need the descriptor and the session. */
  wait_read_replies(m);
  /* fuse_unmount closes the descriptor and destroys libfuse's channel; the session destroys ours. */
  if (!m->detached) fuse_unmount(m->mountpoint, m->kch);
  else fuse_chan_destroy(m->kch);
  fuse_session_destroy(m->se);
  m->se = NULL;
  m->ch = NULL;
  m->kch = NULL;
}

/*
 * Calls the dispatch function with (op, id, uid, gid, pid, args...), on the JS thread. A request JS cannot
 * take (no JS, or a throw) is answered EIO; an event is freed here.
 */
static void dispatch_js(napi_env env, napi_value fn, req_t *r) {
  int event = r->op == OP_INIT || r->op == OP_DONE;
  if (env == NULL || fn == NULL) {
    if (event) free(r);
    else {
      req_t *t = pending_take(r->id);
      if (t != NULL) {
        if (!t->answered) fuse_reply_err(t->fr, EIO);
        free_req(t);
      }
    }
    return;
  }
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value argv[18];
  size_t argc = 0;
  argv[argc++] = num(env, r->op);
  argv[argc++] = num(env, (double) r->id);
  argv[argc++] = num(env, r->uid);
  argv[argc++] = num(env, r->gid);
  argv[argc++] = num(env, r->pid);
  switch (r->op) {
    case OP_INIT:
      for (int i = 0; i < 5; i++) argv[argc++] = num(env, r->ev[i]);
      break;
    case OP_DONE:
      argv[argc++] = num(env, r->ev[0]);
      break;
    case OP_LOOKUP:
    case OP_UNLINK:
    case OP_RMDIR:
    case OP_REMOVEXATTR:
      argv[argc++] = num(env, (double) r->ino);
      argv[argc++] = str(env, r->name);
      break;
    case OP_GETATTR:
      argv[argc++] = num(env, (double) r->ino);
      argv[argc++] = num(env, fh_of(r));
      break;
    case OP_SETATTR:
      argv[argc++] = num(env, (double) r->ino);
      argv[argc++] = num(env, fh_of(r));
      argv[argc++] = num(env, r->flags);
      argv[argc++] = num(env, r->st.st_mode);
      argv[argc++] = num(env, r->st.st_uid);
      argv[argc++] = num(env, r->st.st_gid);
      argv[argc++] = num(env, (double) r->st.st_size);
      argv[argc++] = num(env, ts_ms(&r->st.st_atim));
      argv[argc++] = num(env, ts_ms(&r->st.st_mtim));
      break;
    case OP_READLINK:
    case OP_STATFS:
      argv[argc++] = num(env, (double) r->ino);
      break;
    case OP_MKNOD:
      argv[argc++] = num(env, (double) r->ino);
      argv[argc++] = str(env, r->name);
      argv[argc++] = num(env, r->mode);
      argv[argc++] = num(env, (double) r->rdev);
      break;
    case OP_MKDIR:
      argv[argc++] = num(env, (double) r->ino);
      argv[argc++] = str(env, r->name);
      argv[argc++] = num(env, r->mode);
      break;
    case OP_SYMLINK:
      argv[argc++] = num(env, (double) r->ino);
      argv[argc++] = str(env, r->name);
      argv[argc++] = str(env, r->name2);
      break;
    case OP_RENAME:
      argv[argc++] = num(env, (double) r->ino);
      argv[argc++] = str(env, r->name);
      argv[argc++] = num(env, (double) r->ino2);
      argv[argc++] = str(env, r->name2);
      break;
    case OP_LINK:
      argv[argc++] = num(env, (double) r->ino);
      argv[argc++] = num(env, (double) r->ino2);
      argv[argc++] = str(env, r->name);
      break;
    case OP_OPEN:
    case OP_OPENDIR:
    case OP_ACCESS:
      argv[argc++] = num(env, (double) r->ino);
      argv[argc++] = num(env, r->flags);
      break;
    case OP_CREATE:
      argv[argc++] = num(env, (double) r->ino);
      argv[argc++] = str(env, r->name);
      argv[argc++] = num(env, r->mode);
      argv[argc++] = num(env, r->flags);
      break;
    case OP_READ: {
      argv[argc++] = num(env, (double) r->ino);
      argv[argc++] = num(env, fh_of(r));
      /* No buffer: JS answers with its own (at least result bytes long). */
      napi_value undef;
      napi_get_undefined(env, &undef);
      argv[argc++] = undef;
      argv[argc++] = num(env, (double) r->size);
      argv[argc++] = num(env, (double) r->off);
      break;
    }
    case OP_WRITE:
      argv[argc++] = num(env, (double) r->ino);
      argv[argc++] = num(env, fh_of(r));
      argv[argc++] = owned_buffer(env, &r->data, r->size);
      argv[argc++] = num(env, (double) r->size);
      argv[argc++] = num(env, (double) r->off);
      break;
    case OP_FLUSH:
      argv[argc++] = num(env, (double) r->ino);
      argv[argc++] = num(env, fh_of(r));
      argv[argc++] = big(env, r->lock_owner);
      break;
    case OP_RELEASE:
      argv[argc++] = num(env, (double) r->ino);
      argv[argc++] = num(env, fh_of(r));
      argv[argc++] = num(env, r->flags);
      argv[argc++] = big(env, r->lock_owner);
      argv[argc++] = num(env, r->flock_release);
      break;
    case OP_FSYNC:
    case OP_FSYNCDIR:
      argv[argc++] = num(env, (double) r->ino);
      argv[argc++] = num(env, r->flags);
      argv[argc++] = num(env, fh_of(r));
      break;
    case OP_READDIR:
      argv[argc++] = num(env, (double) r->ino);
      argv[argc++] = num(env, fh_of(r));
      argv[argc++] = num(env, (double) r->size);
      argv[argc++] = num(env, (double) r->off);
      break;
    case OP_RELEASEDIR:
      argv[argc++] = num(env, (double) r->ino);
      argv[argc++] = num(env, fh_of(r));
      break;
    case OP_SETXATTR:
      argv[argc++] = num(env, (double) r->ino);
      argv[argc++] = str(env, r->name);
      argv[argc++] = owned_buffer(env, &r->data, r->size);
      argv[argc++] = num(env, r->flags);
      break;
    case OP_GETXATTR:
      argv[argc++] = num(env, (double) r->ino);
      argv[argc++] = str(env, r->name);
      argv[argc++] = num(env, (double) r->size);
      break;
    case OP_LISTXATTR:
      argv[argc++] = num(env, (double) r->ino);
      argv[argc++] = num(env, (double) r->size);
      break;
    case OP_GETLK:
    case OP_SETLK:
      argv[argc++] = num(env, (double) r->ino);
      argv[argc++] = num(env, fh_of(r));
      argv[argc++] = num(env, r->op == OP_SETLK ? r->sleep : 0);
      argv[argc++] = num(env, r->lk.l_type);
      argv[argc++] = num(env, (double) r->lk.l_start);
      argv[argc++] = num(env, (double) r->lk.l_len);
      argv[argc++] = num(env, r->lk.l_pid);
      argv[argc++] = big(env, r->lock_owner);
      break;
    case OP_FLOCK:
      argv[argc++] = num(env, (double) r->ino);
      argv[argc++] = num(env, fh_of(r));
      argv[argc++] = num(env, r->flags);
      argv[argc++] = big(env, r->lock_owner);
      break;
    case OP_FALLOCATE:
      argv[argc++] = num(env, (double) r->ino);
      argv[argc++] = num(env, fh_of(r));
      argv[argc++] = num(env, r->flags);
      argv[argc++] = num(env, (double) r->off);
      argv[argc++] = num(env, (double) r->len);
      break;
  }
  /* What JS does not own (it may answer at once, inside the call, and free the request). */
  uint64_t id = r->id;
  int op = r->op;
  napi_value undef;
  napi_get_undefined(env, &undef);
  napi_status s = napi_call_function(env, undef, fn, argc, argv, NULL);
  if (s != napi_ok) {
    napi_value exc;
    if (napi_get_and_clear_last_exception(env, &exc) == napi_ok) {
      fprintf(stderr, "ferry-fuse: the dispatch function threw on %s; answered EIO\n", OP_NAMES[op]);
    }
    if (!event) {
      req_t *t = pending_take(id);
      if (t != NULL) {
        if (!t->answered) fuse_reply_err(t->fr, EIO);
        free_req(t);
      }
    }
  }
  if (event) free(r);
  napi_close_handle_scope(env, scope);
}

static int get_f64(napi_env env, napi_value arr, uint32_t i, double *out) {
  napi_value v;
  if (napi_get_element(env, arr, i, &v) != napi_ok) return -1;
  return napi_get_value_double(env, v, out) == napi_ok ? 0 : -1;
}

static void ms_to_timespec(double ms, struct timespec *ts) {
  double sec = ms / 1000;
  int64_t s = (int64_t) sec;
  if ((double) s > sec) s--; /* floor for times before 1970 */
  int64_t ns = (int64_t) ((ms - (double) s * 1000) * 1000000.0 + 0.5);
  if (ns >= 1000000000) {
    s++;
    ns -= 1000000000;
  }
  if (ns < 0) ns = 0;
  ts->tv_sec = s;
  ts->tv_nsec = ns;
}

/* [mode, uid, gid, size, nlink, ino, rdev, blksize, blocks, atimeMs, mtimeMs, ctimeMs] */
static int fill_stat(napi_env env, napi_value arr, struct stat *st) {
  double f[12];
  for (uint32_t i = 0; i < 12; i++)
    if (get_f64(env, arr, i, &f[i]) != 0) return -1;
  memset(st, 0, sizeof *st);
  st->st_mode = (mode_t) f[0];
  st->st_uid = (uid_t) f[1];
  st->st_gid = (gid_t) f[2];
  st->st_size = (off_t) f[3];
  st->st_nlink = (nlink_t) f[4];
  st->st_ino = (ino_t) (uint64_t) f[5];
  st->st_rdev = (dev_t) f[6];
  st->st_blksize = (blksize_t) f[7];
  st->st_blocks = (blkcnt_t) f[8];
  ms_to_timespec(f[9], &st->st_atim);
  ms_to_timespec(f[10], &st->st_mtim);
  ms_to_timespec(f[11], &st->st_ctim);
  return 0;
}

/* [bsize, frsize, blocks, bfree, bavail, files, ffree, favail, fsid, flag, namemax] */
static int fill_statvfs(napi_env env, napi_value arr, struct statvfs *sv) {
  double f[11];
  for (uint32_t i = 0; i < 11; i++)
    if (get_f64(env, arr, i, &f[i]) != 0) return -1;
  memset(sv, 0, sizeof *sv);
  sv->f_bsize = (unsigned long) f[0];
  sv->f_frsize = (unsigned long) f[1];
  sv->f_blocks = (fsblkcnt_t) f[2];
  sv->f_bfree = (fsblkcnt_t) f[3];
  sv->f_bavail = (fsblkcnt_t) f[4];
  sv->f_files = (fsfilcnt_t) f[5];
  sv->f_ffree = (fsfilcnt_t) f[6];
  sv->f_favail = (fsfilcnt_t) f[7];
  sv->f_fsid = (unsigned long) f[8];
  sv->f_flag = (unsigned long) f[9];
  sv->f_namemax = (unsigned long) f[10];
  return 0;
}

/* Answers an xattr value per the size protocol: size 0 asks for the length. */
static int reply_xattr_data(req_t *r, const char *data, size_t len) {
  if (r->size == 0) return fuse_reply_xattr(r->fr, len);
  if (len > r->size) return fuse_reply_err(r->fr, ERANGE);
  return fuse_reply_buf(r->fr, data, len);
}

static int entry_of(napi_env env, mnt_t *m, napi_value v, struct fuse_entry_param *e) {
  memset(e, 0, sizeof *e);
  if (fill_stat(env, v, &e->attr) != 0) return -1;
  e->ino = e->attr.st_ino;
  e->generation = 1;
  e->attr_timeout = m->attr_timeout;
  e->entry_timeout = m->entry_timeout;
  return 0;
}

static void open_flags(napi_env env, size_t nvals, napi_value *vals, struct fuse_file_info *fi) {
  double fh = 0, flags = 0;
  if (nvals >= 1) napi_get_value_double(env, vals[0], &fh);
  if (nvals >= 2) napi_get_value_double(env, vals[1], &flags);
  fi->fh = (uint64_t) fh;
  int f = (int) flags;
  fi->keep_cache = (f & OPEN_KEEP_CACHE) ? 1 : 0;
  fi->direct_io = (f & OPEN_DIRECT_IO) ? 1 : 0;
  fi->nonseekable = (f & OPEN_NONSEEKABLE) ? 1 : 0;
}

/* ------------------------------------------------------------------------ read answers off the JS thread */

/* Read answers at least this long are sent from the reply threads (the kernel's copy into the reader's
 * pages, during the write to /dev/fuse, is the bulk of their cost); shorter ones at once. */
#define ASYNC_READ_MIN (64 * 1024)

typedef struct rwork {
  struct rwork *next; /* in the reply queue */
  napi_env env;
  mnt_t *m;
  fuse_req_t fr;
  napi_ref ref; /* keeps JS's Buffer (data) alive until the answer went out */
  const char *data;
  size_t len;
} rwork_t;

static void free_mnt_now(mnt_t *m) {
  pthread_mutex_destroy(&m->works_lock);
  pthread_cond_destroy(&m->works_done);
  free(m->mountpoint);
  free(m);
}

/* Reply thread: sends a read answer, then lets teardown go on if it waits for this one. */
static void read_reply_send(rwork_t *w) {
  fuse_reply_buf(w->fr, w->data, w->len);
  mnt_t *m = w->m;
  pthread_mutex_lock(&m->works_lock);
  if (--m->works_sending == 0) pthread_cond_broadcast(&m->works_done);
  pthread_mutex_unlock(&m->works_lock);
}

/* JS thread: the answer went out; drop the Buffer. */
static void read_reply_after(rwork_t *w) {
  napi_handle_scope scope;
  int scoped = napi_open_handle_scope(w->env, &scope) == napi_ok;
  napi_delete_reference(w->env, w->ref);
  if (scoped) napi_close_handle_scope(w->env, scope);
  mnt_t *m = w->m;
  free(w);
  if (--m->works_queued == 0 && m->finalized) free_mnt_now(m);
}

/*
 * The reply threads: REPLY_THREADS threads of the process write long read answers, in the order queued. Not
 * libuv's thread pool: there an answer waited behind the block reads that read-ahead queued (FIFO, four
 * threads), and the reader with it. Each answer written goes back to the JS thread of its env through
 * reply_done (a thread-safe function of that env, unreferenced: it keeps nothing alive), which drops the
 * Buffer. Created at the first long answer; they live as long as the process. Only one env uses them (the
 * first one's); answers of mounts in other envs (worker threads) are written on their JS thread.
 */
#define REPLY_THREADS 2
static pthread_mutex_t replyq_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t replyq_ready = PTHREAD_COND_INITIALIZER;
static rwork_t *replyq_head, *replyq_tail;
static napi_env reply_env;
static napi_threadsafe_function reply_done;

static void reply_done_js(napi_env env, napi_value js_cb, void *context, void *data) {
  (void) env;
  (void) js_cb;
  (void) context;
  read_reply_after((rwork_t *) data);
}

static void *reply_thread(void *arg) {
  (void) arg;
  for (;;) {
    pthread_mutex_lock(&replyq_lock);
    while (replyq_head == NULL) pthread_cond_wait(&replyq_ready, &replyq_lock);
    rwork_t *w = replyq_head;
    replyq_head = w->next;
    if (replyq_head == NULL) replyq_tail = NULL;
    pthread_mutex_unlock(&replyq_lock);
    read_reply_send(w);
    /* Fails only while the env shuts down: the Buffer then goes with it. */
    napi_call_threadsafe_function(reply_done, w, napi_tsfn_blocking);
  }
  return NULL;
}

/* The reply threads for env, started at the first call; 0 if this env may use them. JS thread. */
static int reply_threads_for(napi_env env) {
  if (reply_done != NULL) return reply_env == env ? 0 : -1;
  napi_value name;
  if (napi_create_string_utf8(env, "ferry-fuse-reply", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, NULL, NULL, NULL, reply_done_js, &reply_done) != napi_ok) {
    reply_done = NULL;
    return -1;
  }
  napi_unref_threadsafe_function(env, reply_done);
  reply_env = env;
  int started = 0;
  for (int i = 0; i < REPLY_THREADS; i++) {
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, reply_thread, NULL) == 0) started++;
    pthread_attr_destroy(&attr);
  }
  if (started == 0) {
    /* Nothing would ever write what is queued: answer on the JS thread for good. */
    reply_env = NULL;
    return -1;
  }
  return 0;
}

/*
 * Queues a read answer (data: len bytes of JS's Buffer buf) to the reply threads. 0 if queued (the work
 * answers the request: the caller took it out of the pending list already), else -1 (answer it yourself).
 */
static int reply_read_async(napi_env env, mnt_t *m, fuse_req_t fr, napi_value buf, const char *data, size_t len) {
  if (reply_threads_for(env) != 0) return -1;
  rwork_t *w = calloc(1, sizeof *w);
  if (w == NULL) return -1;
  if (napi_create_reference(env, buf, 1, &w->ref) != napi_ok) {
    free(w);
    return -1;
  }
  w->env = env;
  w->m = m;
  w->fr = fr;
  w->data = data;
  w->len = len;
  pthread_mutex_lock(&m->works_lock);
  m->works_sending++;
  pthread_mutex_unlock(&m->works_lock);
  m->works_queued++;
  pthread_mutex_lock(&replyq_lock);
  if (replyq_tail == NULL) replyq_head = w;
  else replyq_tail->next = w;
  replyq_tail = w;
  pthread_cond_signal(&replyq_ready);
  pthread_mutex_unlock(&replyq_lock);
  return 0;
}

/* Teardown: waits until no read answer is being written (they are quick: one write to /dev/fuse each). */
static void wait_read_replies(mnt_t *m) {
  pthread_mutex_lock(&m->works_lock);
  while (m->works_sending > 0) pthread_cond_wait(&m->works_done, &m->works_lock);
  pthread_mutex_unlock(&m->works_lock);
}

/* Sends a successful answer with JS's values; a malformed value set is answered EIO. */
static void reply_ok(napi_env env, req_t *r, int res, size_t nvals, napi_value *vals) {
  fuse_req_t fr = r->fr;
  mnt_t *m = r->m;
  switch (r->op) {
    case OP_LOOKUP:
    case OP_MKNOD:
    case OP_MKDIR:
    case OP_SYMLINK:
    case OP_LINK: {
      struct fuse_entry_param e;
      if (nvals < 1 || entry_of(env, m, vals[0], &e) != 0) break;
      fuse_reply_entry(fr, &e);
      return;
    }
    case OP_CREATE: {
      struct fuse_entry_param e;
      struct fuse_file_info fi;
      memset(&fi, 0, sizeof fi);
      fi.flags = r->flags;
      if (nvals < 3 || entry_of(env, m, vals[0], &e) != 0) break;
      open_flags(env, nvals - 1, vals + 1, &fi);
      fuse_reply_create(fr, &e, &fi);
      return;
    }
    case OP_GETATTR:
    case OP_SETATTR: {
      struct stat st;
      if (nvals < 1 || fill_stat(env, vals[0], &st) != 0) break;
      fuse_reply_attr(fr, &st, m->attr_timeout);
      return;
    }
    case OP_READLINK: {
      if (nvals < 1) break;
      size_t len = 0;
      if (napi_get_value_string_utf8(env, vals[0], NULL, 0, &len) != napi_ok) break;
      char *s = malloc(len + 1);
      if (s == NULL) {
        fuse_reply_err(fr, ENOMEM);
        return;
      }
      napi_get_value_string_utf8(env, vals[0], s, len + 1, &len);
      fuse_reply_readlink(fr, s);
      free(s);
      return;
    }
    case OP_OPEN:
    case OP_OPENDIR: {
      struct fuse_file_info fi;
      memset(&fi, 0, sizeof fi);
      fi.flags = r->flags;
      open_flags(env, nvals, vals, &fi);
      fuse_reply_open(fr, &fi);
      return;
    }
    case OP_READ: {
      void *data = NULL;
      size_t len = 0;
      if (nvals < 1 || napi_get_buffer_info(env, vals[0], &data, &len) != napi_ok) break;
      if ((size_t) res > len || (size_t) res > r->size) break;
      /* A long answer goes out from a reply thread (the request is out of the pending list already). */
      if ((size_t) res >= ASYNC_READ_MIN && reply_read_async(env, m, fr, vals[0], (const char *) data, (size_t) res) == 0)
        return;
      fuse_reply_buf(fr, (const char *) data, (size_t) res);
      return;
    }
    case OP_WRITE:
      if ((size_t) res > r->size) break;
      fuse_reply_write(fr, (size_t) res);
      return;
    case OP_STATFS: {
      struct statvfs sv;
      if (nvals < 1 || fill_statvfs(env, vals[0], &sv) != 0) break;
      fuse_reply_statfs(fr, &sv);
      return;
    }
    case OP_GETXATTR: {
      void *data;
      size_t len;
      if (nvals < 1 || napi_get_buffer_info(env, vals[0], &data, &len) != napi_ok) break;
      reply_xattr_data(r, (const char *) data, len);
      return;
    }
    case OP_LISTXATTR: {
      uint32_t n;
      if (nvals < 1 || napi_get_array_length(env, vals[0], &n) != napi_ok) break;
      size_t total = 0;
      char *tmp = NULL;
      for (uint32_t i = 0; i < n; i++) {
        napi_value v;
        size_t len;
        napi_get_element(env, vals[0], i, &v);
        if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
          free(tmp);
          fuse_reply_err(fr, EIO);
          return;
        }
        char *grown = realloc(tmp, total + len + 1);
        if (grown == NULL) {
          free(tmp);
          fuse_reply_err(fr, ENOMEM);
          return;
        }
        tmp = grown;
        napi_get_value_string_utf8(env, v, tmp + total, len + 1, &len);
        total += len + 1;
      }
      reply_xattr_data(r, tmp, total);
      free(tmp);
      return;
    }
    case OP_READDIR: {
      /* names, inos, modes: the entries from offset r->off on; each entry's offset is its index + 1. */
      uint32_t n;
      if (nvals < 3 || napi_get_array_length(env, vals[0], &n) != napi_ok) break;
      char *buf = malloc(r->size > 0 ? r->size : 1);
      if (buf == NULL) {
        fuse_reply_err(fr, ENOMEM);
        return;
      }
      size_t used = 0;
      char name[1024];
      for (uint32_t i = 0; i < n; i++) {
        napi_value v;
        size_t len;
        double ino = 0, mode = 0;
        napi_get_element(env, vals[0], i, &v);
        if (napi_get_value_string_utf8(env, v, name, sizeof name, &len) != napi_ok) continue;
        get_f64(env, vals[1], i, &ino);
        get_f64(env, vals[2], i, &mode);
        struct stat st;
        memset(&st, 0, sizeof st);
        st.st_ino = (ino_t) (uint64_t) ino;
        st.st_mode = (mode_t) mode;
        size_t need = fuse_add_direntry(fr, buf + used, r->size - used, name, &st, r->off + (off_t) i + 1);
        if (need > r->size - used) break;
        used += need;
      }
      fuse_reply_buf(fr, buf, used);
      free(buf);
      return;
    }
    case OP_GETLK: {
      /* [type, start, len, pid] of a conflicting lock, or [F_UNLCK]. */
      struct flock lk = r->lk;
      double f[4] = { F_UNLCK, 0, 0, 0 };
      uint32_t n = 0;
      if (nvals >= 1) napi_get_array_length(env, vals[0], &n);
      for (uint32_t i = 0; i < n && i < 4; i++) get_f64(env, vals[0], i, &f[i]);
      lk.l_type = (short) f[0];
      if (f[0] != F_UNLCK) {
        lk.l_whence = SEEK_SET;
        lk.l_start = (off_t) f[1];
        lk.l_len = (off_t) f[2];
        lk.l_pid = (pid_t) f[3];
      }
      fuse_reply_lock(fr, &lk);
      return;
    }
    default:
      fuse_reply_err(fr, 0);
      return;
  }
  fuse_reply_err(fr, EIO);
}

static void spin_arm(mnt_t *m);

/* reply(id, result, ...values): true if the request was waiting for this answer (sent now), else false. */
static napi_value js_reply(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  napi_value out;
  double idd = 0, resd = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_double(env, argv[0], &idd) != napi_ok || napi_get_value_double(env, argv[1], &resd) != napi_ok) {
    napi_throw_type_error(env, NULL, "reply(id, result, ...values)");
    return NULL;
  }
  req_t *r = pending_take((uint64_t) idd);
  if (r == NULL || r->answered) {
    if (r != NULL) free_req(r);
    napi_get_boolean(env, false, &out);
    return out;
  }
  int res = (int) resd;
  mnt_t *m = r->m;
  if (res < 0) fuse_reply_err(r->fr, -res);
  else reply_ok(env, r, res, argc - 2, argv + 2);
  free_req(r);
  /* An answer given outside on_readable (after I/O): spin for the caller's next request from here. */
  if (m->js != NULL) spin_arm(m);
  napi_get_boolean(env, true, &out);
  return out;
}

/* interrupted(id): whether a request no longer waits for an answer (answered, or given up by the kernel). */
static napi_value js_interrupted(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  double idd = 0;
  napi_value out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_double(env, argv[0], &idd) != napi_ok) {
    napi_throw_type_error(env, NULL, "interrupted(id)");
    return NULL;
  }
  napi_get_boolean(env, !pending_open((uint64_t) idd), &out);
  return out;
}

/* ------------------------------------------------------------------------------------ JS thread loop */

/* At most this many requests per wake-up of the poll handle, so other I/O of the event loop gets its turn. */
#define BATCH_MAX 64
/* How long the loop spins for the next request once every request is answered (spin_arm). */
#define SPIN_US 50
#define SPIN_NS ((long) SPIN_US * 1000L)

/* Close callback of the poll and spin handles: the last one frees the loop's state. */
static void on_poll_closed(uv_handle_t *h) {
  jsloop_t *j = (jsloop_t *) h->data;
  if (--j->handles > 0) return;
  napi_handle_scope scope;
  int scoped = napi_open_handle_scope(j->env, &scope) == napi_ok;
  if (j->fn != NULL) napi_delete_reference(j->env, j->fn);
  if (j->resource != NULL) napi_delete_reference(j->env, j->resource);
  if (j->ctx != NULL) napi_async_destroy(j->env, j->ctx);
  if (scoped) napi_close_handle_scope(j->env, scope);
  free(j);
}

/*
 * The session ended, inside a batch: stop watching the descriptor before teardown closes it, tear down
 * (pending requests answered EIO, unmount, session destroyed) and tell JS "done". res is what the last
 * receive returned: < 0 is an error (done's code 1), as fuse_session_loop's result.
 */
static void end_session(mnt_t *m, int res) {
  jsloop_t *j = m->js;
  uv_poll_stop(&j->poll);
  uv_idle_stop(&j->spin);
  j->poll.data = j;
  j->spin.data = j;
  uv_close((uv_handle_t *) &j->poll, on_poll_closed);
  uv_close((uv_handle_t *) &j->spin, on_poll_closed);
  m->loop_ended = 1;
  free(m->buf);
  m->buf = NULL;
  teardown(m);
  uint32_t ev[1] = { res < 0 ? 1 : 0 };
  send_event(m, OP_DONE, ev, 1);
  m->js = NULL;
}

/*
 * Opens what a call into JS from a libuv callback needs: a handle scope, then a callback scope, whose close
 * runs JS's nextTicks and promise jobs (a plain call from a libuv callback would not run them, and answers
 * given in promise jobs would never go out). 0 on success.
 */
static int enter_js(jsloop_t *j, napi_handle_scope *hs, napi_callback_scope *cs) {
  napi_value resource = NULL, fn = NULL;
  if (napi_open_handle_scope(j->env, hs) != napi_ok) return -1;
  if (napi_get_reference_value(j->env, j->resource, &resource) != napi_ok ||
      napi_get_reference_value(j->env, j->fn, &fn) != napi_ok ||
      napi_open_callback_scope(j->env, resource, j->ctx, cs) != napi_ok) {
    napi_close_handle_scope(j->env, *hs);
    return -1;
  }
  j->cur_fn = fn;
  return 0;
}

static void leave_js(jsloop_t *j, napi_handle_scope hs, napi_callback_scope cs) {
  napi_env env = j->env; /* j may be closed (not freed: its close callback comes later) */
  j->cur_fn = NULL;
  napi_close_callback_scope(env, cs);
  napi_close_handle_scope(env, hs);
}

/* Whether every request of every mount has been answered. */
static int no_pending(void) {
  pthread_mutex_lock(&pending_lock);
  int empty = pending.next == &pending;
  pthread_mutex_unlock(&pending_lock);
  return empty;
}

static long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* A request this soon (in spins) after the loop went idle means the caller works back to back again. */
#define SPIN_RESUME_FACTOR 4

static void on_spin(uv_idle_t *h);

/*
 * Spinning: once every request is answered, the event loop keeps polling (an idle handle makes libuv's
 * epoll_wait return at once) for up to SPIN_US instead of sleeping. A caller that works one request at a time
 * (open, write, close, stat...) sends its next request a few microseconds after our answer; a sleep and a
 * wake-up of the JS thread per request cost more than that on a virtual machine (tens of microseconds). The
 * loop goes on serving timers and I/O meanwhile. Armed after each answer that leaves nothing pending; a spin
 * that ends without a request turns spinning off until a request arrives within SPIN_RESUME_FACTOR spins
 * of the loop going idle, so sparse requests cost no CPU (test/fuse/addon.test.ts checks an idle mount).
 */
static void spin_arm(mnt_t *m) {
  jsloop_t *j = m->js;
  if (j == NULL || !no_pending()) return;
  long now = now_ns();
  if (m->spin_off) {
    m->idle_at = now; /* the next request's delay from here decides whether spinning resumes */
    return;
  }
  j->spin_until = now + SPIN_NS;
  if (!uv_is_active((uv_handle_t *) &j->spin)) uv_idle_start(&j->spin, on_spin);
}

static void on_spin(uv_idle_t *h) {
  mnt_t *m = (mnt_t *) h->data;
  jsloop_t *j = m->js;
  if (j == NULL) return;
  long now = now_ns();
  if (now < j->spin_until) return;
  uv_idle_stop(h);
  m->spin_off = 1;
  m->idle_at = now;
}

/*
 * /dev/fuse is readable (or in error: the connection is gone): read and process requests until none is
 * waiting (EAGAIN: the descriptor is non-blocking) or BATCH_MAX, as fuse_session_loop does one at a time.
 * The ll_* operations call the dispatch function directly, each request in its own callback scope: JS's
 * promise jobs run (and answers go out) before the next read.
 */
static void on_readable(uv_poll_t *h, int status, int events) {
  (void) events;
  mnt_t *m = (mnt_t *) h->data;
  jsloop_t *j = m->js;
  if (j == NULL || m->se == NULL) return;
  napi_handle_scope hs;
  napi_callback_scope cs;
  int res = 0, ended = 0;
  for (int i = 0; i < BATCH_MAX; i++) {
    if (fuse_session_exited(m->se)) {
      ended = 1;
      res = 0;
      break;
    }
    struct fuse_chan *ch = m->ch;
    struct fuse_buf fbuf = { .mem = m->buf, .size = m->bufsize };
    res = fuse_session_receive_buf(m->se, &fbuf, &ch);
    if (res == -EINTR) continue;
    if (res == -EAGAIN) {
      res = 0;
      break;
    }
    if (i == 0 && m->spin_off && res > 0 && now_ns() - m->idle_at < SPIN_RESUME_FACTOR * SPIN_NS) m->spin_off = 0;
    if (res <= 0) { /* 0: the session exited (ENODEV: unmounted); < 0: an error ends it as it ends the loop */
      ended = 1;
      break;
    }
    if (enter_js(j, &hs, &cs) != 0) {
      /* No way into JS: the ll_* operations answer EIO (dispatch_js without a function). */
      fuse_session_process_buf(m->se, &fbuf, ch);
      continue;
    }
    fuse_session_process_buf(m->se, &fbuf, ch);
    leave_js(j, hs, cs);
  }
  if (!ended && (status < 0 || fuse_session_exited(m->se))) {
    /* libuv stopped watching a descriptor in error without our read telling why: the session is over. */
    ended = 1;
    if (status < 0 && !fuse_session_exited(m->se)) {
      fprintf(stderr, "ferry-fuse: polling /dev/fuse: %s\n", uv_strerror(status));
      res = -EIO;
    }
  }
  if (ended) {
    int in_js = enter_js(j, &hs, &cs) == 0;
    end_session(m, res); /* "done" is lost without JS; the teardown happens all the same */
    if (in_js) leave_js(j, hs, cs);
    return;
  }
  spin_arm(m);
}

/* Serves the session's descriptor on the JS thread's event loop; an error message or NULL. */
static const char *start_js_loop(napi_env env, mnt_t *m, napi_value fn) {
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == NULL) return "no event loop";
  int fd = fuse_chan_fd(m->ch);
  int fl = fcntl(fd, F_GETFL);
  if (fl == -1 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1) return "cannot make /dev/fuse non-blocking";
  m->bufsize = fuse_chan_bufsize(m->ch);
  m->buf = malloc(m->bufsize);
  jsloop_t *j = calloc(1, sizeof *j);
  if (m->buf == NULL || j == NULL) {
    free(m->buf);
    m->buf = NULL;
    free(j);
    return "out of memory";
  }
  j->env = env;
  napi_value resource, name;
  int ok = napi_create_object(env, &resource) == napi_ok &&
           napi_create_string_utf8(env, "ferry-fuse", NAPI_AUTO_LENGTH, &name) == napi_ok &&
           napi_create_reference(env, fn, 1, &j->fn) == napi_ok &&
           napi_create_reference(env, resource, 1, &j->resource) == napi_ok &&
           napi_async_init(env, resource, name, &j->ctx) == napi_ok;
  if (!ok || uv_poll_init(loop, &j->poll, fd) != 0) {
    j->handles = 1;
    j->poll.data = j;
    on_poll_closed((uv_handle_t *) &j->poll);
    free(m->buf);
    m->buf = NULL;
    return "cannot set up the JS thread's FUSE loop";
  }
  j->handles = 2;
  uv_idle_init(loop, &j->spin);
  uv_unref((uv_handle_t *) &j->spin); /* a spin never keeps the process alive by itself */
  j->spin.data = m;
  j->poll.data = m;
  if (uv_poll_start(&j->poll, UV_READABLE, on_readable) != 0) {
    j->poll.data = j;
    j->spin.data = j;
    uv_close((uv_handle_t *) &j->poll, on_poll_closed);
    uv_close((uv_handle_t *) &j->spin, on_poll_closed);
    free(m->buf);
    m->buf = NULL;
    return "cannot poll /dev/fuse";
  }
  m->js = j;
  return NULL;
}

static const struct fuse_lowlevel_ops OPS = {
  .init = ll_init,
  .lookup = ll_lookup,
  .forget = ll_forget,
  .getattr = ll_getattr,
  .setattr = ll_setattr,
  .readlink = ll_readlink,
  .mknod = ll_mknod,
  .mkdir = ll_mkdir,
  .unlink = ll_unlink,
  .rmdir = ll_rmdir,
  .symlink = ll_symlink,
  .rename = ll_rename,
  .link = ll_link,
  .open = ll_open,
  .read = ll_read,
  .write = ll_write,
  .flush = ll_flush,
  .release = ll_release,
  .fsync = ll_fsync,
  .opendir = ll_opendir,
  .readdir = ll_readdir,
  .releasedir = ll_releasedir,
  .fsyncdir = ll_fsyncdir,
  .statfs = ll_statfs,
  .setxattr = ll_setxattr,
  .getxattr = ll_getxattr,
  .listxattr = ll_listxattr,
  .removexattr = ll_removexattr,
  .access = ll_access,
  .create = ll_create,
  .getlk = ll_getlk,
  .setlk = ll_setlk,
  .forget_multi = ll_forget_multi,
  .flock = ll_flock,
  .fallocate = ll_fallocate,
};

static char *dup_string(napi_env env, napi_value v) {
  size_t len;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return NULL;
  char *s = malloc(len + 1);
  if (s == NULL) return NULL;
  napi_get_value_string_utf8(env, v, s, len + 1, &len);
  return s;
}

static void free_mnt(napi_env env, void *data, void *hint) {
  (void) env;
  (void) hint;
  mnt_t *m = (mnt_t *) data;
  /* Freed only once closed (the session is over); a mount never closed is leaked. */
  if (m->closed) {
    if (m->works_queued > 0) m->finalized = 1; /* the last after-work callback frees it */
    else free_mnt_now(m);
  }
}

/*
 * mount(mountpoint, args[], dispatch, attrTimeoutSec, entryTimeoutSec) -> handle. args are libfuse's
 * command line without the program name (e.g. ["-o", "fsname=x,big_writes,..."]): mount options and the
 * low-level library's. Throws if the mount fails (libfuse writes the reason to stderr).
 */
static napi_value js_mount(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3) {
    napi_throw_type_error(env, NULL, "mount(mountpoint, args, dispatch, attrTimeoutSec, entryTimeoutSec)");
    return NULL;
  }
  mnt_t *m = calloc(1, sizeof(mnt_t));
  if (m == NULL) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  m->mountpoint = dup_string(env, argv[0]);
  if (m->mountpoint == NULL) {
    free(m);
    napi_throw_type_error(env, NULL, "mountpoint must be a string");
    return NULL;
  }
  pthread_mutex_init(&m->works_lock, NULL);
  pthread_cond_init(&m->works_done, NULL);
  m->attr_timeout = 1.0;
  m->entry_timeout = 1.0;
  if (argc >= 4) napi_get_value_double(env, argv[3], &m->attr_timeout);
  if (argc >= 5) napi_get_value_double(env, argv[4], &m->entry_timeout);

  uint32_t nargs = 0;
  napi_get_array_length(env, argv[1], &nargs);
  char **fargv = calloc(nargs + 2, sizeof(char *));
  fargv[0] = strdup("ferry");
  for (uint32_t i = 0; i < nargs; i++) {
    napi_value v;
    napi_get_element(env, argv[1], i, &v);
    fargv[i + 1] = dup_string(env, v);
    if (fargv[i + 1] == NULL) fargv[i + 1] = strdup("");
  }
  struct fuse_args fa = FUSE_ARGS_INIT((int) nargs + 1, fargv);
  const char *err = NULL;
  m->kch = fuse_mount(m->mountpoint, &fa);
  if (m->kch == NULL) err = "fuse_mount failed";
  else {
    m->se = fuse_lowlevel_new(&fa, &OPS, sizeof OPS, m);
    m->ch = m->se == NULL ? NULL : fuse_chan_new(&CHAN_OPS, fuse_chan_fd(m->kch), CHAN_BUFSIZE, m);
    if (m->ch == NULL) {
      if (m->se != NULL) fuse_session_destroy(m->se);
      fuse_unmount(m->mountpoint, m->kch);
      m->kch = NULL;
      err = "fuse_lowlevel_new failed (bad mount options?)";
    } else {
      fuse_session_add_chan(m->se, m->ch);
    }
  }
  fuse_opt_free_args(&fa);
  for (uint32_t i = 0; i <= nargs; i++) free(fargv[i]);
  free(fargv);
  if (err != NULL) {
    free_mnt_now(m);
    napi_throw_error(env, "EFUSEMOUNT", err);
    return NULL;
  }

  const char *jerr = start_js_loop(env, m, argv[2]);
  if (jerr != NULL) {
    fuse_unmount(m->mountpoint, m->kch);
    fuse_session_destroy(m->se);
    free_mnt_now(m);
    napi_throw_error(env, NULL, jerr);
    return NULL;
  }
  napi_value handle;
  napi_create_external(env, m, free_mnt, NULL, &handle);
  return handle;
}

static mnt_t *get_mnt(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void *data = NULL;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_external(env, argv[0], &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, NULL, "expected a mount handle");
    return NULL;
  }
  return (mnt_t *) data;
}

/*
 * unmount(handle): asks the session to end and detaches the mount (lazily). It ends once the kernel has
 * let go; then the dispatch function gets the "done" event and close(handle) finishes.
 */
static napi_value js_unmount(napi_env env, napi_callback_info info) {
  mnt_t *m = get_mnt(env, info);
  if (m == NULL) return NULL;
  /* The session is destroyed on this (the JS) thread only, at "done": it is alive while se is set. */
  if (m->se != NULL && !m->loop_ended) {
    fuse_session_exit(m->se);
    fuse_unmount(m->mountpoint, NULL);
  }
  return NULL;
}

/* exit(handle): for a mount already detached (lazily): asks the session to end at its next request. */
static napi_value js_exit(napi_env env, napi_callback_info info) {
  mnt_t *m = get_mnt(env, info);
  if (m == NULL) return NULL;
  m->detached = 1;
  if (m->se != NULL) fuse_session_exit(m->se);
  return NULL;
}

/*
 * invalidate(handle, ino): the kernel forgets the inode's cached attributes (a change from elsewhere that
 * this mount noticed, e.g. at open). Returns 0 or -errno (-ENOENT: the kernel does not know the inode).
 */
static napi_value js_invalidate(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  void *data = NULL;
  double ino = 0;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 2 || napi_get_value_external(env, argv[0], &data) != napi_ok || data == NULL ||
      napi_get_value_double(env, argv[1], &ino) != napi_ok) {
    napi_throw_type_error(env, NULL, "invalidate(handle, ino)");
    return NULL;
  }
  mnt_t *m = (mnt_t *) data;
  int res = -ENOTCONN;
  if (m->se != NULL && !m->loop_ended) res = fuse_lowlevel_notify_inval_inode(m->ch, (fuse_ino_t) ino, -1, 0);
  return num(env, res);
}

/* close(handle): after "done"; the handle's memory then goes with it. */
static napi_value js_close(napi_env env, napi_callback_info info) {
  mnt_t *m = get_mnt(env, info);
  if (m == NULL || m->closed) return NULL;
  if (!m->loop_ended) {
    napi_throw_error(env, NULL, "close before the FUSE loop ended");
    return NULL;
  }
  teardown(m);
  m->closed = 1;
  return NULL;
}

static napi_value init_module(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "mount", NULL, js_mount, NULL, NULL, NULL, napi_default, NULL },
    { "unmount", NULL, js_unmount, NULL, NULL, NULL, napi_default, NULL },
    { "close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL },
    { "exit", NULL, js_exit, NULL, NULL, NULL, napi_default, NULL },
    { "reply", NULL, js_reply, NULL, NULL, NULL, napi_default, NULL },
    { "interrupted", NULL, js_interrupted, NULL, NULL, NULL, napi_default, NULL },
    { "invalidate", NULL, js_invalidate, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  napi_value names;
  napi_create_array_with_length(env, OP_COUNT, &names);
  for (uint32_t i = 0; i < OP_COUNT; i++) napi_set_element(env, names, i, str(env, OP_NAMES[i]));
  napi_set_named_property(env, exports, "ops", names);
  napi_value consts;
  napi_create_object(env, &consts);
#define K(name, v) napi_set_named_property(env, consts, name, num(env, v))
  K("OPEN_KEEP_CACHE", OPEN_KEEP_CACHE);
  K("OPEN_DIRECT_IO", OPEN_DIRECT_IO);
  K("OPEN_NONSEEKABLE", OPEN_NONSEEKABLE);
  K("F_RDLCK", F_RDLCK);
  K("F_WRLCK", F_WRLCK);
  K("F_UNLCK", F_UNLCK);
  K("LOCK_SH", LOCK_SH);
  K("LOCK_EX", LOCK_EX);
  K("LOCK_NB", LOCK_NB);
  K("LOCK_UN", LOCK_UN);
  K("SET_ATTR_MODE", FUSE_SET_ATTR_MODE);
  K("SET_ATTR_UID", FUSE_SET_ATTR_UID);
  K("SET_ATTR_GID", FUSE_SET_ATTR_GID);
  K("SET_ATTR_SIZE", FUSE_SET_ATTR_SIZE);
  K("SET_ATTR_ATIME", FUSE_SET_ATTR_ATIME);
  K("SET_ATTR_MTIME", FUSE_SET_ATTR_MTIME);
  K("SET_ATTR_ATIME_NOW", FUSE_SET_ATTR_ATIME_NOW);
  K("SET_ATTR_MTIME_NOW", FUSE_SET_ATTR_MTIME_NOW);
#undef K
  napi_set_named_property(env, exports, "constants", consts);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init_module)
