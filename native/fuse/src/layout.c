/*
 * The boundary, C side: the op codes' names, and how a request becomes the call of the JS dispatch function,
 * (op, id, uid, gid, pid, args...), whose args depend on the operation (src/fuse/native.ts reads them).
 */

#include "ferry_fuse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

const char *const ff_op_names[OP_COUNT] = {
  "init", "done", "lookup", "getattr", "setattr", "readlink", "mknod", "mkdir", "unlink", "rmdir",
  "symlink", "rename", "link", "open", "read", "write", "flush", "release", "fsync", "opendir",
  "readdir", "releasedir", "fsyncdir", "statfs", "setxattr", "getxattr", "listxattr", "removexattr",
  "access", "create", "getlk", "setlk", "flock", "fallocate",
};

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

static double fh_of(ff_req_t *r) {
  return r->has_fh ? (double) r->fh : FF_NO_FH;
}

static double ts_ms(const struct timespec *t) {
  return (double) t->tv_sec * 1000.0 + (double) t->tv_nsec / 1e6;
}

void ff_dispatch(napi_env env, napi_value fn, ff_req_t *r) {
  int event = r->op == OP_INIT || r->op == OP_DONE;
  if (env == NULL || fn == NULL) {
    if (event) free(r);
    else ff_pending_fail(r->id, EIO);
    return;
  }
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value argv[18];
  size_t argc = 0;
  argv[argc++] = ff_num(env, r->op);
  argv[argc++] = ff_num(env, (double) r->id);
  argv[argc++] = ff_num(env, r->uid);
  argv[argc++] = ff_num(env, r->gid);
  argv[argc++] = ff_num(env, r->pid);
  switch (r->op) {
    case OP_INIT:
      for (int i = 0; i < 5; i++) argv[argc++] = ff_num(env, r->ev[i]);
      break;
    case OP_DONE:
      argv[argc++] = ff_num(env, r->ev[0]);
      break;
    case OP_LOOKUP:
    case OP_UNLINK:
    case OP_RMDIR:
    case OP_REMOVEXATTR:
      argv[argc++] = ff_num(env, (double) r->ino);
      argv[argc++] = ff_str(env, r->name);
      break;
    case OP_GETATTR:
      argv[argc++] = ff_num(env, (double) r->ino);
      argv[argc++] = ff_num(env, fh_of(r));
      break;
    case OP_SETATTR:
      argv[argc++] = ff_num(env, (double) r->ino);
      argv[argc++] = ff_num(env, fh_of(r));
      argv[argc++] = ff_num(env, r->flags);
      argv[argc++] = ff_num(env, r->st.st_mode);
      argv[argc++] = ff_num(env, r->st.st_uid);
      argv[argc++] = ff_num(env, r->st.st_gid);
      argv[argc++] = ff_num(env, (double) r->st.st_size);
      argv[argc++] = ff_num(env, ts_ms(&r->st.st_atim));
      argv[argc++] = ff_num(env, ts_ms(&r->st.st_mtim));
      break;
    case OP_READLINK:
    case OP_STATFS:
      argv[argc++] = ff_num(env, (double) r->ino);
      break;
    case OP_MKNOD:
      argv[argc++] = ff_num(env, (double) r->ino);
      argv[argc++] = ff_str(env, r->name);
      argv[argc++] = ff_num(env, r->mode);
      argv[argc++] = ff_num(env, (double) r->rdev);
      break;
    case OP_MKDIR:
      argv[argc++] = ff_num(env, (double) r->ino);
      argv[argc++] = ff_str(env, r->name);
      argv[argc++] = ff_num(env, r->mode);
      break;
    case OP_SYMLINK:
      argv[argc++] = ff_num(env, (double) r->ino);
      argv[argc++] = ff_str(env, r->name);
      argv[argc++] = ff_str(env, r->name2);
      break;
    case OP_RENAME:
      argv[argc++] = ff_num(env, (double) r->ino);
      argv[argc++] = ff_str(env, r->name);
      argv[argc++] = ff_num(env, (double) r->ino2);
      argv[argc++] = ff_str(env, r->name2);
      break;
    case OP_LINK:
      argv[argc++] = ff_num(env, (double) r->ino);
      argv[argc++] = ff_num(env, (double) r->ino2);
      argv[argc++] = ff_str(env, r->name);
      break;
    case OP_OPEN:
    case OP_OPENDIR:
    case OP_ACCESS:
      argv[argc++] = ff_num(env, (double) r->ino);
      argv[argc++] = ff_num(env, r->flags);
      break;
    case OP_CREATE:
      argv[argc++] = ff_num(env, (double) r->ino);
      argv[argc++] = ff_str(env, r->name);
      argv[argc++] = ff_num(env, r->mode);
      argv[argc++] = ff_num(env, r->flags);
      break;
    case OP_READ: {
      argv[argc++] = ff_num(env, (double) r->ino);
      argv[argc++] = ff_num(env, fh_of(r));
      /* No buffer: JS answers with its own (at least result bytes long). */
      napi_value undef;
      napi_get_undefined(env, &undef);
      argv[argc++] = undef;
      argv[argc++] = ff_num(env, (double) r->size);
      argv[argc++] = ff_num(env, (double) r->off);
      break;
    }
    case OP_WRITE:
      argv[argc++] = ff_num(env, (double) r->ino);
      argv[argc++] = ff_num(env, fh_of(r));
      argv[argc++] = owned_buffer(env, &r->data, r->size);
      argv[argc++] = ff_num(env, (double) r->size);
      argv[argc++] = ff_num(env, (double) r->off);
      break;
    case OP_FLUSH:
      argv[argc++] = ff_num(env, (double) r->ino);
      argv[argc++] = ff_num(env, fh_of(r));
      argv[argc++] = big(env, r->lock_owner);
      break;
    case OP_RELEASE:
      argv[argc++] = ff_num(env, (double) r->ino);
      argv[argc++] = ff_num(env, fh_of(r));
      argv[argc++] = ff_num(env, r->flags);
      argv[argc++] = big(env, r->lock_owner);
      argv[argc++] = ff_num(env, r->flock_release);
      break;
    case OP_FSYNC:
    case OP_FSYNCDIR:
      argv[argc++] = ff_num(env, (double) r->ino);
      argv[argc++] = ff_num(env, r->flags);
      argv[argc++] = ff_num(env, fh_of(r));
      break;
    case OP_READDIR:
      argv[argc++] = ff_num(env, (double) r->ino);
      argv[argc++] = ff_num(env, fh_of(r));
      argv[argc++] = ff_num(env, (double) r->size);
      argv[argc++] = ff_num(env, (double) r->off);
      break;
    case OP_RELEASEDIR:
      argv[argc++] = ff_num(env, (double) r->ino);
      argv[argc++] = ff_num(env, fh_of(r));
      break;
    case OP_SETXATTR:
      argv[argc++] = ff_num(env, (double) r->ino);
      argv[argc++] = ff_str(env, r->name);
      argv[argc++] = owned_buffer(env, &r->data, r->size);
      argv[argc++] = ff_num(env, r->flags);
      break;
    case OP_GETXATTR:
      argv[argc++] = ff_num(env, (double) r->ino);
      argv[argc++] = ff_str(env, r->name);
      argv[argc++] = ff_num(env, (double) r->size);
      break;
    case OP_LISTXATTR:
      argv[argc++] = ff_num(env, (double) r->ino);
      argv[argc++] = ff_num(env, (double) r->size);
      break;
    case OP_GETLK:
    case OP_SETLK:
      argv[argc++] = ff_num(env, (double) r->ino);
      argv[argc++] = ff_num(env, fh_of(r));
      argv[argc++] = ff_num(env, r->op == OP_SETLK ? r->sleep : 0);
      argv[argc++] = ff_num(env, r->lk.l_type);
      argv[argc++] = ff_num(env, (double) r->lk.l_start);
      argv[argc++] = ff_num(env, (double) r->lk.l_len);
      argv[argc++] = ff_num(env, r->lk.l_pid);
      argv[argc++] = big(env, r->lock_owner);
      break;
    case OP_FLOCK:
      argv[argc++] = ff_num(env, (double) r->ino);
      argv[argc++] = ff_num(env, fh_of(r));
      argv[argc++] = ff_num(env, r->flags);
      argv[argc++] = big(env, r->lock_owner);
      break;
    case OP_FALLOCATE:
      argv[argc++] = ff_num(env, (double) r->ino);
      argv[argc++] = ff_num(env, fh_of(r));
      argv[argc++] = ff_num(env, r->flags);
      argv[argc++] = ff_num(env, (double) r->off);
      argv[argc++] = ff_num(env, (double) r->len);
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
      fprintf(stderr, "ferry-fuse: the dispatch function threw on %s; answered EIO\n", ff_op_names[op]);
    }
    if (!event) ff_pending_fail(id, EIO);
  }
  if (event) free(r);
  napi_close_handle_scope(env, scope);
}
