/*
 * ferry_fuse: a FUSE 2.9 high-level binding for Node (N-API), written for Ferry.
 *
 * Threads:
 *   - the loop thread runs fuse_loop_mt; libfuse's worker threads call the fs_* operations below;
 *   - each operation fills a request (on the worker's stack), registers it under a fresh id, queues it to
 *     the JS thread through a napi_threadsafe_function and waits on the request's semaphore;
 *   - on the JS thread, call_js hands (op, id, uid, gid, pid, args...) to the dispatch function; JS answers
 *     later with reply(id, result, values...), which copies the values into the kernel's buffers and posts
 *     the semaphore.
 *
 * Exactly one answer per request: a request leaves the pending list exactly once (reply, teardown of the
 * threadsafe function, or an interrupted lock wait), and only the one that took it out writes its result.
 * A reply for an id no longer pending returns false and changes nothing.
 *
 * What it passes beyond a minimal binding: the caller's uid/gid/pid (fuse_get_context) with every request,
 * utimens with both times in seconds and nanoseconds (UTIME_NOW/UTIME_OMIT kept), lock (F_GETLK/F_SETLK/
 * F_SETLKW) and flock with the kernel's lock owner, fallocate, keep_cache/direct_io/nonseekable from
 * open/create, create's open flags, st_ino as 64 bits (with -o use_ino), and all mount options as given.
 */

#define FUSE_USE_VERSION 29
#define _GNU_SOURCE

#include <fuse.h>
#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>

enum {
  OP_INIT, OP_DONE, OP_GETATTR, OP_FGETATTR, OP_READLINK, OP_MKNOD, OP_MKDIR, OP_UNLINK, OP_RMDIR,
  OP_SYMLINK, OP_RENAME, OP_LINK, OP_CHMOD, OP_CHOWN, OP_TRUNCATE, OP_FTRUNCATE, OP_UTIMENS, OP_OPEN,
  OP_CREATE, OP_READ, OP_WRITE, OP_STATFS, OP_FLUSH, OP_RELEASE, OP_FSYNC, OP_SETXATTR, OP_GETXATTR,
  OP_LISTXATTR, OP_REMOVEXATTR, OP_READDIR, OP_FSYNCDIR, OP_LOCK, OP_FLOCK, OP_FALLOCATE, OP_RELEASEDIR,
  OP_COUNT
};

static const char *OP_NAMES[OP_COUNT] = {
  "init", "done", "getattr", "fgetattr", "readlink", "mknod", "mkdir", "unlink", "rmdir",
  "symlink", "rename", "link", "chmod", "chown", "truncate", "ftruncate", "utimens", "open",
  "create", "read", "write", "statfs", "flush", "release", "fsync", "setxattr", "getxattr",
  "listxattr", "removexattr", "readdir", "fsyncdir", "lock", "flock", "fallocate", "releasedir",
};

/* Open reply flags (bit set passed by JS). */
#define OPEN_KEEP_CACHE 1
#define OPEN_DIRECT_IO 2
#define OPEN_NONSEEKABLE 4

typedef struct mnt mnt_t;

typedef struct req {
  struct req *prev, *next;
  uint64_t id;
  int op;
  mnt_t *m;
  uid_t uid;
  gid_t gid;
  pid_t pid;
  /* inputs */
  const char *path;
  const char *path2;
  struct fuse_file_info *fi;
  mode_t mode;
  dev_t rdev;
  uid_t a_uid;
  gid_t a_gid;
  off_t off;
  off_t len;
  size_t size;
  int flags;
  int cmd;
  const struct timespec *tv;
  char *buf; /* read destination, write source, readlink/getxattr/listxattr destination */
  const char *name;
  const char *value;
  struct flock *lk;
  /* outputs */
  struct stat *st;
  struct statvfs *sv;
  void *dirbuf;
  fuse_fill_dir_t filler;
  /* events (init, done) carry these */
  uint32_t ev[6];
  int res;
  sem_t sem;
} req_t;

struct mnt {
  napi_threadsafe_function tsfn;
  struct fuse *fuse;
  struct fuse_chan *ch;
  char *mountpoint;
  pthread_t thread;
  int single_thread;
  pthread_mutex_t lock; /* guards fuse against fuse_exit racing the loop thread's fuse_destroy */
  int loop_ended;
  int detached; /* unmounted already (lazily, from outside): the loop's end must not unmount again */
  int closed;
};

/* Pending requests of every mount of the process: a list with a sentinel, and the id counter. */
static pthread_mutex_t pending_lock = PTHREAD_MUTEX_INITIALIZER;
static req_t pending = { .prev = &pending, .next = &pending };
static uint64_t next_id = 0;

static void pending_add(req_t *r) {
  pthread_mutex_lock(&pending_lock);
  r->id = ++next_id;
  r->next = &pending;
  r->prev = pending.prev;
  pending.prev->next = r;
  pending.prev = r;
  pthread_mutex_unlock(&pending_lock);
}

/* Takes the request out of the pending list; NULL if it is not there (answered or abandoned). */
static req_t *pending_take(uint64_t id) {
  req_t *found = NULL;
  pthread_mutex_lock(&pending_lock);
  for (req_t *r = pending.next; r != &pending; r = r->next) {
    if (r->id == id) {
      r->prev->next = r->next;
      r->next->prev = r->prev;
      r->next = r->prev = NULL;
      found = r;
      break;
    }
  }
  pthread_mutex_unlock(&pending_lock);
  return found;
}

static int pending_has(uint64_t id) {
  int found = 0;
  pthread_mutex_lock(&pending_lock);
  for (req_t *r = pending.next; r != &pending; r = r->next) {
    if (r->id == id) {
      found = 1;
      break;
    }
  }
  pthread_mutex_unlock(&pending_lock);
  return found;
}

static void sem_wait_all(sem_t *s) {
  while (sem_wait(s) != 0 && errno == EINTR) {
  }
}

/* Waits for the answer; lock waits give up (EINTR) when the kernel interrupts the request. */
static int wait_answer(req_t *r) {
  if (r->op != OP_LOCK && r->op != OP_FLOCK) {
    sem_wait_all(&r->sem);
    return r->res;
  }
  for (;;) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    if (sem_timedwait(&r->sem, &ts) == 0) return r->res;
    if (errno != ETIMEDOUT && errno != EINTR) continue;
    if (fuse_interrupted()) {
      if (pending_take(r->id) != NULL) return -EINTR;
      /* A reply is being written: wait for it. */
      sem_wait_all(&r->sem);
      return r->res;
    }
  }
}

/* Runs one request through JS and returns its result (0, a count, or -errno). */
static int call(req_t *r) {
  struct fuse_context *c = fuse_get_context();
  mnt_t *m = (mnt_t *) c->private_data;
  r->m = m;
  r->uid = c->uid;
  r->gid = c->gid;
  r->pid = c->pid;
  r->res = -EIO;
  sem_init(&r->sem, 0, 0);
  pending_add(r);
  napi_status s = napi_call_threadsafe_function(m->tsfn, r, napi_tsfn_blocking);
  int res;
  if (s != napi_ok) {
    if (pending_take(r->id) != NULL) res = -EIO;
    else res = wait_answer(r);
  } else {
    res = wait_answer(r);
  }
  sem_destroy(&r->sem);
  return res;
}

#define REQ(o) \
  req_t r; \
  memset(&r, 0, sizeof r); \
  r.op = (o)

static int fs_getattr(const char *path, struct stat *st) {
  REQ(OP_GETATTR);
  r.path = path;
  r.st = st;
  return call(&r);
}

static int fs_fgetattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
  REQ(OP_FGETATTR);
  r.path = path;
  r.st = st;
  r.fi = fi;
  return call(&r);
}

static int fs_readlink(const char *path, char *buf, size_t size) {
  REQ(OP_READLINK);
  r.path = path;
  r.buf = buf;
  r.size = size;
  int res = call(&r);
  return res < 0 ? res : 0;
}

static int fs_mknod(const char *path, mode_t mode, dev_t rdev) {
  REQ(OP_MKNOD);
  r.path = path;
  r.mode = mode;
  r.rdev = rdev;
  return call(&r);
}

static int fs_mkdir(const char *path, mode_t mode) {
  REQ(OP_MKDIR);
  r.path = path;
  r.mode = mode;
  return call(&r);
}

static int fs_unlink(const char *path) {
  REQ(OP_UNLINK);
  r.path = path;
  return call(&r);
}

static int fs_rmdir(const char *path) {
  REQ(OP_RMDIR);
  r.path = path;
  return call(&r);
}

static int fs_symlink(const char *target, const char *path) {
  REQ(OP_SYMLINK);
  r.path = target;
  r.path2 = path;
  return call(&r);
}

static int fs_rename(const char *from, const char *to) {
  REQ(OP_RENAME);
  r.path = from;
  r.path2 = to;
  return call(&r);
}

static int fs_link(const char *from, const char *to) {
  REQ(OP_LINK);
  r.path = from;
  r.path2 = to;
  return call(&r);
}

static int fs_chmod(const char *path, mode_t mode) {
  REQ(OP_CHMOD);
  r.path = path;
  r.mode = mode;
  return call(&r);
}

static int fs_chown(const char *path, uid_t uid, gid_t gid) {
  REQ(OP_CHOWN);
  r.path = path;
  r.a_uid = uid;
  r.a_gid = gid;
  return call(&r);
}

static int fs_truncate(const char *path, off_t size) {
  REQ(OP_TRUNCATE);
  r.path = path;
  r.off = size;
  return call(&r);
}

static int fs_ftruncate(const char *path, off_t size, struct fuse_file_info *fi) {
  REQ(OP_FTRUNCATE);
  r.path = path;
  r.off = size;
  r.fi = fi;
  return call(&r);
}

static int fs_utimens(const char *path, const struct timespec tv[2]) {
  REQ(OP_UTIMENS);
  r.path = path;
  r.tv = tv;
  return call(&r);
}

static int fs_open(const char *path, struct fuse_file_info *fi) {
  REQ(OP_OPEN);
  r.path = path;
  r.fi = fi;
  r.flags = fi->flags;
  return call(&r);
}

static int fs_create(const char *path, mode_t mode, struct fuse_file_info *fi) {
  REQ(OP_CREATE);
  r.path = path;
  r.mode = mode;
  r.fi = fi;
  r.flags = fi->flags;
  return call(&r);
}

static int fs_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
  REQ(OP_READ);
  r.path = path;
  r.buf = buf;
  r.size = size;
  r.off = off;
  r.fi = fi;
  return call(&r);
}

static int fs_write(const char *path, const char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
  REQ(OP_WRITE);
  r.path = path;
  r.buf = (char *) buf;
  r.size = size;
  r.off = off;
  r.fi = fi;
  return call(&r);
}

static int fs_statfs(const char *path, struct statvfs *sv) {
  REQ(OP_STATFS);
  r.path = path;
  r.sv = sv;
  return call(&r);
}

static int fs_flush(const char *path, struct fuse_file_info *fi) {
  REQ(OP_FLUSH);
  r.path = path;
  r.fi = fi;
  return call(&r);
}

static int fs_release(const char *path, struct fuse_file_info *fi) {
  REQ(OP_RELEASE);
  r.path = path;
  r.fi = fi;
  r.flags = fi->flags;
  return call(&r);
}

static int fs_releasedir(const char *path, struct fuse_file_info *fi) {
  REQ(OP_RELEASEDIR);
  r.path = path;
  r.fi = fi;
  return call(&r);
}

static int fs_fsync(const char *path, int datasync, struct fuse_file_info *fi) {
  REQ(OP_FSYNC);
  r.path = path;
  r.flags = datasync;
  r.fi = fi;
  return call(&r);
}

static int fs_fsyncdir(const char *path, int datasync, struct fuse_file_info *fi) {
  REQ(OP_FSYNCDIR);
  r.path = path;
  r.flags = datasync;
  r.fi = fi;
  return call(&r);
}

static int fs_setxattr(const char *path, const char *name, const char *value, size_t size, int flags) {
  REQ(OP_SETXATTR);
  r.path = path;
  r.name = name;
  r.value = value;
  r.size = size;
  r.flags = flags;
  return call(&r);
}

static int fs_getxattr(const char *path, const char *name, char *value, size_t size) {
  REQ(OP_GETXATTR);
  r.path = path;
  r.name = name;
  r.buf = value;
  r.size = size;
  return call(&r);
}

static int fs_listxattr(const char *path, char *list, size_t size) {
  REQ(OP_LISTXATTR);
  r.path = path;
  r.buf = list;
  r.size = size;
  return call(&r);
}

static int fs_removexattr(const char *path, const char *name) {
  REQ(OP_REMOVEXATTR);
  r.path = path;
  r.name = name;
  return call(&r);
}

static int fs_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t off, struct fuse_file_info *fi) {
  (void) off;
  REQ(OP_READDIR);
  r.path = path;
  r.dirbuf = buf;
  r.filler = filler;
  r.fi = fi;
  return call(&r);
}

static int fs_lock(const char *path, struct fuse_file_info *fi, int cmd, struct flock *lk) {
  REQ(OP_LOCK);
  r.path = path;
  r.fi = fi;
  r.cmd = cmd;
  r.lk = lk;
  return call(&r);
}

static int fs_flock(const char *path, struct fuse_file_info *fi, int op) {
  REQ(OP_FLOCK);
  r.path = path;
  r.fi = fi;
  r.cmd = op;
  return call(&r);
}

static int fs_fallocate(const char *path, int mode, off_t off, off_t len, struct fuse_file_info *fi) {
  REQ(OP_FALLOCATE);
  r.path = path;
  r.flags = mode;
  r.off = off;
  r.len = len;
  r.fi = fi;
  return call(&r);
}

/* Queues an event (no answer awaited); call_js frees it. */
static void send_event(mnt_t *m, int op, const uint32_t *ev, int n) {
  req_t *r = calloc(1, sizeof(req_t));
  if (r == NULL) return;
  r->op = op;
  r->m = m;
  for (int i = 0; i < n && i < 6; i++) r->ev[i] = ev[i];
  if (napi_call_threadsafe_function(m->tsfn, r, napi_tsfn_blocking) != napi_ok) free(r);
}

static void *fs_init(struct fuse_conn_info *conn) {
  mnt_t *m = (mnt_t *) fuse_get_context()->private_data;
  uint32_t ev[5] = { conn->proto_major, conn->proto_minor, conn->capable, conn->want, conn->max_write };
  send_event(m, OP_INIT, ev, 5);
  return m;
}

/* ------------------------------------------------------------------------------------------ JS side */

#define NAPI_OK(call) \
  do { \
    if ((call) != napi_ok) goto fail; \
  } while (0)

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

static napi_value ext_buffer(napi_env env, char *p, size_t len) {
  napi_value out;
  if (len == 0 || p == NULL) {
    void *data;
    napi_create_buffer(env, 0, &data, &out);
  } else if (napi_create_external_buffer(env, len, p, NULL, NULL, &out) != napi_ok) {
    /* Node has external buffers; a runtime without them gets an empty buffer and the request fails. */
    void *data;
    napi_create_buffer(env, 0, &data, &out);
  }
  return out;
}

static double fh_of(struct fuse_file_info *fi) {
  return fi == NULL ? 0 : (double) fi->fh;
}

static void call_js(napi_env env, napi_value fn, void *context, void *data) {
  (void) context;
  req_t *r = (req_t *) data;
  if (r == NULL) return;
  int event = r->op == OP_INIT || r->op == OP_DONE;
  if (env == NULL || fn == NULL) {
    /* The threadsafe function is being torn down: answer what is still queued. */
    if (event) free(r);
    else if (pending_take(r->id) != NULL) {
      r->res = -EIO;
      sem_post(&r->sem);
    }
    return;
  }
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value argv[14];
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
    case OP_GETATTR:
    case OP_READLINK:
    case OP_UNLINK:
    case OP_RMDIR:
    case OP_STATFS:
      argv[argc++] = str(env, r->path);
      break;
    case OP_FGETATTR:
    case OP_READDIR:
    case OP_RELEASEDIR:
      argv[argc++] = str(env, r->path);
      argv[argc++] = num(env, fh_of(r->fi));
      break;
    case OP_MKNOD:
      argv[argc++] = str(env, r->path);
      argv[argc++] = num(env, r->mode);
      argv[argc++] = num(env, (double) r->rdev);
      break;
    case OP_MKDIR:
    case OP_CHMOD:
      argv[argc++] = str(env, r->path);
      argv[argc++] = num(env, r->mode);
      break;
    case OP_SYMLINK:
    case OP_RENAME:
    case OP_LINK:
      argv[argc++] = str(env, r->path);
      argv[argc++] = str(env, r->path2);
      break;
    case OP_CHOWN:
      argv[argc++] = str(env, r->path);
      argv[argc++] = num(env, r->a_uid);
      argv[argc++] = num(env, r->a_gid);
      break;
    case OP_TRUNCATE:
      argv[argc++] = str(env, r->path);
      argv[argc++] = num(env, (double) r->off);
      break;
    case OP_FTRUNCATE:
      argv[argc++] = str(env, r->path);
      argv[argc++] = num(env, fh_of(r->fi));
      argv[argc++] = num(env, (double) r->off);
      break;
    case OP_UTIMENS:
      argv[argc++] = str(env, r->path);
      argv[argc++] = num(env, (double) r->tv[0].tv_sec);
      argv[argc++] = num(env, (double) r->tv[0].tv_nsec);
      argv[argc++] = num(env, (double) r->tv[1].tv_sec);
      argv[argc++] = num(env, (double) r->tv[1].tv_nsec);
      break;
    case OP_OPEN:
      argv[argc++] = str(env, r->path);
      argv[argc++] = num(env, r->flags);
      break;
    case OP_CREATE:
      argv[argc++] = str(env, r->path);
      argv[argc++] = num(env, r->mode);
      argv[argc++] = num(env, r->flags);
      break;
    case OP_READ:
    case OP_WRITE:
      argv[argc++] = str(env, r->path);
      argv[argc++] = num(env, fh_of(r->fi));
      argv[argc++] = ext_buffer(env, r->buf, r->size);
      argv[argc++] = num(env, (double) r->size);
      argv[argc++] = num(env, (double) r->off);
      break;
    case OP_FLUSH:
      argv[argc++] = str(env, r->path);
      argv[argc++] = num(env, fh_of(r->fi));
      argv[argc++] = big(env, r->fi->lock_owner);
      break;
    case OP_RELEASE:
      argv[argc++] = str(env, r->path);
      argv[argc++] = num(env, fh_of(r->fi));
      argv[argc++] = num(env, r->flags);
      argv[argc++] = big(env, r->fi->lock_owner);
      argv[argc++] = num(env, r->fi->flock_release);
      break;
    case OP_FSYNC:
    case OP_FSYNCDIR:
      argv[argc++] = str(env, r->path);
      argv[argc++] = num(env, r->flags);
      argv[argc++] = num(env, fh_of(r->fi));
      break;
    case OP_SETXATTR: {
      argv[argc++] = str(env, r->path);
      argv[argc++] = str(env, r->name);
      void *data;
      napi_value b;
      napi_create_buffer_copy(env, r->size, r->size > 0 ? r->value : "", &data, &b);
      argv[argc++] = b;
      argv[argc++] = num(env, r->flags);
      break;
    }
    case OP_GETXATTR:
      argv[argc++] = str(env, r->path);
      argv[argc++] = str(env, r->name);
      argv[argc++] = num(env, (double) r->size);
      break;
    case OP_LISTXATTR:
      argv[argc++] = str(env, r->path);
      argv[argc++] = num(env, (double) r->size);
      break;
    case OP_REMOVEXATTR:
      argv[argc++] = str(env, r->path);
      argv[argc++] = str(env, r->name);
      break;
    case OP_LOCK:
      argv[argc++] = str(env, r->path);
      argv[argc++] = num(env, fh_of(r->fi));
      argv[argc++] = num(env, r->cmd);
      argv[argc++] = num(env, r->lk->l_type);
      argv[argc++] = num(env, (double) r->lk->l_start);
      argv[argc++] = num(env, (double) r->lk->l_len);
      argv[argc++] = num(env, r->lk->l_pid);
      argv[argc++] = big(env, r->fi->lock_owner);
      break;
    case OP_FLOCK:
      argv[argc++] = str(env, r->path);
      argv[argc++] = num(env, fh_of(r->fi));
      argv[argc++] = num(env, r->cmd);
      argv[argc++] = big(env, r->fi->lock_owner);
      break;
    case OP_FALLOCATE:
      argv[argc++] = str(env, r->path);
      argv[argc++] = num(env, r->flags);
      argv[argc++] = num(env, (double) r->off);
      argv[argc++] = num(env, (double) r->len);
      argv[argc++] = num(env, fh_of(r->fi));
      break;
  }
  napi_value undef;
  napi_get_undefined(env, &undef);
  napi_status s = napi_call_function(env, undef, fn, argc, argv, NULL);
  if (s != napi_ok) {
    napi_value exc;
    if (napi_get_and_clear_last_exception(env, &exc) == napi_ok) {
      fprintf(stderr, "ferry-fuse: the dispatch function threw on %s; answered EIO\n", OP_NAMES[r->op]);
    }
    if (!event && pending_take(r->id) != NULL) {
      r->res = -EIO;
      sem_post(&r->sem);
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

/* Copies value into the kernel's buffer per the xattr size protocol: size 0 asks for the length. */
static int xattr_out(req_t *r, const char *data, size_t len) {
  if (r->size == 0) return (int) len;
  if (len > r->size) return -ERANGE;
  if (len > 0) memcpy(r->buf, data, len);
  return (int) len;
}

/* The values of a successful reply, copied into the request's outputs; returns the final result. */
static int apply_reply(napi_env env, req_t *r, int res, size_t nvals, napi_value *vals) {
  switch (r->op) {
    case OP_GETATTR:
    case OP_FGETATTR:
      if (nvals < 1 || fill_stat(env, vals[0], r->st) != 0) return -EIO;
      return 0;
    case OP_STATFS:
      if (nvals < 1 || fill_statvfs(env, vals[0], r->sv) != 0) return -EIO;
      return 0;
    case OP_READLINK: {
      if (nvals < 1 || r->size == 0) return -EIO;
      size_t len = 0;
      if (napi_get_value_string_utf8(env, vals[0], r->buf, r->size, &len) != napi_ok) return -EIO;
      return 0;
    }
    case OP_OPEN:
    case OP_CREATE: {
      double fh = 0, flags = 0;
      if (nvals >= 1) napi_get_value_double(env, vals[0], &fh);
      if (nvals >= 2) napi_get_value_double(env, vals[1], &flags);
      r->fi->fh = (uint64_t) fh;
      int f = (int) flags;
      r->fi->keep_cache = (f & OPEN_KEEP_CACHE) ? 1 : 0;
      r->fi->direct_io = (f & OPEN_DIRECT_IO) ? 1 : 0;
      r->fi->nonseekable = (f & OPEN_NONSEEKABLE) ? 1 : 0;
      return 0;
    }
    case OP_READ:
      if (res > (int) r->size) return -EIO;
      return res;
    case OP_GETXATTR: {
      if (nvals < 1) return -EIO;
      void *data;
      size_t len;
      if (napi_get_buffer_info(env, vals[0], &data, &len) != napi_ok) return -EIO;
      return xattr_out(r, (const char *) data, len);
    }
    case OP_LISTXATTR: {
      if (nvals < 1) return -EIO;
      uint32_t n;
      if (napi_get_array_length(env, vals[0], &n) != napi_ok) return -EIO;
      size_t total = 0;
      char *tmp = NULL;
      for (uint32_t i = 0; i < n; i++) {
        napi_value v;
        size_t len;
        napi_get_element(env, vals[0], i, &v);
        if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
          free(tmp);
          return -EIO;
        }
        char *grown = realloc(tmp, total + len + 1);
        if (grown == NULL) {
          free(tmp);
          return -ENOMEM;
        }
        tmp = grown;
        napi_get_value_string_utf8(env, v, tmp + total, len + 1, &len);
        total += len + 1;
      }
      int out = xattr_out(r, tmp, total);
      free(tmp);
      return out;
    }
    case OP_READDIR: {
      /* names, inos, modes */
      if (nvals < 3) return -EIO;
      uint32_t n;
      if (napi_get_array_length(env, vals[0], &n) != napi_ok) return -EIO;
      char name[1024];
      for (uint32_t i = 0; i < n; i++) {
        napi_value v;
        size_t len;
        double ino = 0, mode = 0;
        napi_get_element(env, vals[0], i, &v);
        if (napi_get_value_string_utf8(env, v, name, sizeof name, &len) != napi_ok) return -EIO;
        get_f64(env, vals[1], i, &ino);
        get_f64(env, vals[2], i, &mode);
        struct stat st;
        memset(&st, 0, sizeof st);
        st.st_ino = (ino_t) (uint64_t) ino;
        st.st_mode = (mode_t) mode;
        if (r->filler(r->dirbuf, name, &st, 0) != 0) break;
      }
      return 0;
    }
    case OP_LOCK:
      /* F_GETLK: [type, start, len, pid] of a conflicting lock, or [F_UNLCK]. */
      if (r->cmd == F_GETLK && nvals >= 1) {
        double f[4] = { F_UNLCK, 0, 0, 0 };
        uint32_t n = 0;
        napi_get_array_length(env, vals[0], &n);
        for (uint32_t i = 0; i < n && i < 4; i++) get_f64(env, vals[0], i, &f[i]);
        r->lk->l_type = (short) f[0];
        if (f[0] != F_UNLCK) {
          r->lk->l_whence = SEEK_SET;
          r->lk->l_start = (off_t) f[1];
          r->lk->l_len = (off_t) f[2];
          r->lk->l_pid = (pid_t) f[3];
        }
      }
      return 0;
    default:
      return res;
  }
}

/* reply(id, result, ...values): true if the request was pending (answered now), false otherwise. */
static napi_value js_reply(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  napi_value out;
  double idd = 0, resd = 0;
  NAPI_OK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) {
    napi_throw_type_error(env, NULL, "reply(id, result, ...values)");
    return NULL;
  }
  NAPI_OK(napi_get_value_double(env, argv[0], &idd));
  NAPI_OK(napi_get_value_double(env, argv[1], &resd));
  req_t *r = pending_take((uint64_t) idd);
  if (r == NULL) {
    napi_get_boolean(env, false, &out);
    return out;
  }
  int res = (int) resd;
  if (res > 0 && r->op != OP_READ && r->op != OP_WRITE) res = 0;
  if (res >= 0) res = apply_reply(env, r, res, argc - 2, argv + 2);
  r->res = res;
  sem_post(&r->sem);
  napi_get_boolean(env, true, &out);
  return out;
fail:
  napi_throw_error(env, NULL, "reply: bad arguments");
  return NULL;
}

/* interrupted(id): whether a request is no longer pending (answered, or given up by the kernel). */
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
  napi_get_boolean(env, !pending_has((uint64_t) idd), &out);
  return out;
}

static void *loop_thread(void *arg) {
  mnt_t *m = (mnt_t *) arg;
  int res = m->single_thread ? fuse_loop(m->fuse) : fuse_loop_mt(m->fuse);
  pthread_mutex_lock(&m->lock);
  struct fuse *f = m->fuse;
  m->fuse = NULL;
  pthread_mutex_unlock(&m->lock);
  pthread_mutex_lock(&m->lock);
  int detached = m->detached;
  pthread_mutex_unlock(&m->lock);
  /* fuse_destroy closes the channel (and so the connection) either way. */
  if (!detached) fuse_unmount(m->mountpoint, m->ch);
  fuse_destroy(f);
  m->ch = NULL;
  m->loop_ended = 1;
  uint32_t ev[1] = { (uint32_t) (res < 0 ? -res : res) };
  send_event(m, OP_DONE, ev, 1);
  return NULL;
}

static struct fuse_operations OPS = {
  .getattr = fs_getattr,
  .fgetattr = fs_fgetattr,
  .readlink = fs_readlink,
  .mknod = fs_mknod,
  .mkdir = fs_mkdir,
  .unlink = fs_unlink,
  .rmdir = fs_rmdir,
  .symlink = fs_symlink,
  .rename = fs_rename,
  .link = fs_link,
  .chmod = fs_chmod,
  .chown = fs_chown,
  .truncate = fs_truncate,
  .ftruncate = fs_ftruncate,
  .utimens = fs_utimens,
  .open = fs_open,
  .create = fs_create,
  .read = fs_read,
  .write = fs_write,
  .statfs = fs_statfs,
  .flush = fs_flush,
  .release = fs_release,
  .releasedir = fs_releasedir,
  .fsync = fs_fsync,
  .fsyncdir = fs_fsyncdir,
  .setxattr = fs_setxattr,
  .getxattr = fs_getxattr,
  .listxattr = fs_listxattr,
  .removexattr = fs_removexattr,
  .readdir = fs_readdir,
  .lock = fs_lock,
  .flock = fs_flock,
  .fallocate = fs_fallocate,
  .init = fs_init,
  .flag_utime_omit_ok = 1,
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
  /* Freed only once closed (the loop thread no longer uses it); a mount never closed is leaked. */
  if (m->closed) {
    free(m->mountpoint);
    free(m);
  }
}

/*
 * mount(mountpoint, args[], dispatch, singleThread?) -> handle. args are libfuse's command line without
 * the program name (e.g. ["-o", "fsname=x,big_writes,..."]). Throws if the mount fails (libfuse writes the
 * reason to stderr).
 */
static napi_value js_mount(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3) {
    napi_throw_type_error(env, NULL, "mount(mountpoint, args, dispatch, singleThread)");
    return NULL;
  }
  mnt_t *m = calloc(1, sizeof(mnt_t));
  pthread_mutex_init(&m->lock, NULL);
  m->mountpoint = dup_string(env, argv[0]);
  if (m->mountpoint == NULL) {
    free(m);
    napi_throw_type_error(env, NULL, "mountpoint must be a string");
    return NULL;
  }
  bool single = false;
  if (argc >= 4) napi_get_value_bool(env, argv[3], &single);
  m->single_thread = single;

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
  m->ch = fuse_mount(m->mountpoint, &fa);
  if (m->ch == NULL) err = "fuse_mount failed";
  else {
    m->fuse = fuse_new(m->ch, &fa, &OPS, sizeof OPS, m);
    if (m->fuse == NULL) {
      fuse_unmount(m->mountpoint, m->ch);
      m->ch = NULL;
      err = "fuse_new failed (bad mount options?)";
    }
  }
  fuse_opt_free_args(&fa);
  for (uint32_t i = 0; i <= nargs; i++) free(fargv[i]);
  free(fargv);
  if (err != NULL) {
    free(m->mountpoint);
    free(m);
    napi_throw_error(env, "EFUSEMOUNT", err);
    return NULL;
  }

  napi_value name;
  napi_create_string_utf8(env, "ferry-fuse", NAPI_AUTO_LENGTH, &name);
  if (napi_create_threadsafe_function(env, argv[2], NULL, name, 0, 1, NULL, NULL, m, call_js, &m->tsfn) != napi_ok) {
    fuse_destroy(m->fuse);
    fuse_unmount(m->mountpoint, m->ch);
    free(m->mountpoint);
    free(m);
    napi_throw_error(env, NULL, "cannot create the threadsafe function");
    return NULL;
  }

  /* The loop thread and libfuse's workers take no signals: Node's threads handle them. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);
  int rc = pthread_create(&m->thread, NULL, loop_thread, m);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    napi_release_threadsafe_function(m->tsfn, napi_tsfn_abort);
    fuse_destroy(m->fuse);
    fuse_unmount(m->mountpoint, m->ch);
    free(m->mountpoint);
    free(m);
    napi_throw_error(env, NULL, "cannot start the FUSE thread");
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
 * unmount(handle): asks the loop to stop and detaches the mount (lazily). The loop thread ends once the
 * kernel has let go; then the dispatch function gets the "done" event and close(handle) finishes.
 */
static napi_value js_unmount(napi_env env, napi_callback_info info) {
  mnt_t *m = get_mnt(env, info);
  if (m == NULL) return NULL;
  pthread_mutex_lock(&m->lock);
  int running = m->fuse != NULL;
  if (running) fuse_exit(m->fuse);
  pthread_mutex_unlock(&m->lock);
  if (running) fuse_unmount(m->mountpoint, NULL);
  return NULL;
}

/* exit(handle): for a mount already detached (lazily): asks the loop to stop at its next request. */
static napi_value js_exit(napi_env env, napi_callback_info info) {
  mnt_t *m = get_mnt(env, info);
  if (m == NULL) return NULL;
  pthread_mutex_lock(&m->lock);
  m->detached = 1;
  if (m->fuse != NULL) fuse_exit(m->fuse);
  pthread_mutex_unlock(&m->lock);
  return NULL;
}

/* close(handle): after "done", joins the loop thread and lets the event loop exit. */
static napi_value js_close(napi_env env, napi_callback_info info) {
  mnt_t *m = get_mnt(env, info);
  if (m == NULL || m->closed) return NULL;
  if (!m->loop_ended) {
    napi_throw_error(env, NULL, "close before the FUSE loop ended");
    return NULL;
  }
  pthread_join(m->thread, NULL);
  napi_release_threadsafe_function(m->tsfn, napi_tsfn_release);
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
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  napi_value names;
  napi_create_array_with_length(env, OP_COUNT, &names);
  for (uint32_t i = 0; i < OP_COUNT; i++) napi_set_element(env, names, i, str(env, OP_NAMES[i]));
  napi_set_named_property(env, exports, "ops", names);
  napi_value consts;
  napi_create_object(env, &consts);
  napi_set_named_property(env, consts, "OPEN_KEEP_CACHE", num(env, OPEN_KEEP_CACHE));
  napi_set_named_property(env, consts, "OPEN_DIRECT_IO", num(env, OPEN_DIRECT_IO));
  napi_set_named_property(env, consts, "OPEN_NONSEEKABLE", num(env, OPEN_NONSEEKABLE));
  napi_set_named_property(env, consts, "F_GETLK", num(env, F_GETLK));
  napi_set_named_property(env, consts, "F_SETLK", num(env, F_SETLK));
  napi_set_named_property(env, consts, "F_SETLKW", num(env, F_SETLKW));
  napi_set_named_property(env, consts, "F_RDLCK", num(env, F_RDLCK));
  napi_set_named_property(env, consts, "F_WRLCK", num(env, F_WRLCK));
  napi_set_named_property(env, consts, "F_UNLCK", num(env, F_UNLCK));
  napi_set_named_property(env, consts, "LOCK_SH", num(env, LOCK_SH));
  napi_set_named_property(env, consts, "LOCK_EX", num(env, LOCK_EX));
  napi_set_named_property(env, consts, "LOCK_NB", num(env, LOCK_NB));
  napi_set_named_property(env, consts, "LOCK_UN", num(env, LOCK_UN));
  napi_set_named_property(env, consts, "UTIME_NOW", num(env, UTIME_NOW));
  napi_set_named_property(env, consts, "UTIME_OMIT", num(env, UTIME_OMIT));
  napi_set_named_property(env, exports, "constants", consts);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init_module)
