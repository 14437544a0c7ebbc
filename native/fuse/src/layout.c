/*
 * The boundary table: which of layout.h's names each operation passes to JS, and in which order, and which
 * values its reply carries. This and layout.h are the C side's only statement of it: ff_dispatch builds
 * every call from OP_ARGS, ff_reply_value reads every reply value through OP_REPLY, and ff_layout_export
 * shows both to JS (`layout`), where test/fuse/boundary.test.ts compares them with src/fuse/boundary.ts.
 * Keep one `[OP_...] = { ... },` row per line: the test parses them too.
 */

#include "ferry_fuse.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
  const char *name;
  int type;
} desc_t;

#define FF_ENUM_NAME(id, name, ...) [id] = name,
#define FF_ENUM_DESC(id, name, type) [id] = { name, type },

const char *const ff_op_names[OP_COUNT] = { FF_OPS(FF_ENUM_NAME) };
static const char *const TYPE_NAMES[T_COUNT] = { FF_TYPES(FF_ENUM_NAME) };
static const desc_t ARG_DESC[A_COUNT] = { FF_ARGS(FF_ENUM_DESC) };
static const desc_t VALUE_DESC[V_COUNT] = { FF_VALUES(FF_ENUM_DESC) };
static const char *const STAT_NAMES[ST_COUNT] = { FF_STAT_FIELDS(FF_ENUM_NAME) };
static const char *const STATFS_NAMES[SF_COUNT] = { FF_STATFS_FIELDS(FF_ENUM_NAME) };
static const char *const LOCK_NAMES[LK_COUNT] = { FF_LOCK_FIELDS(FF_ENUM_NAME) };

/* Every call starts with these, events included. */
static const unsigned char HEADER[] = { A_OP, A_ID, A_UID, A_GID, A_PID };
#define HEADER_COUNT (sizeof HEADER / sizeof HEADER[0])

/* Each operation's arguments after the header, in order. */
static const unsigned char OP_ARGS[OP_COUNT][FF_ARGS_MAX + 1] = {
  [OP_INIT] = { A_PROTO_MAJOR, A_PROTO_MINOR, A_CAPABLE, A_WANT, A_MAX_WRITE },
  [OP_DONE] = { A_STATUS },
  [OP_LOOKUP] = { A_PARENT, A_NAME },
  [OP_GETATTR] = { A_INO, A_FH },
  [OP_SETATTR] = { A_INO, A_FH, A_TO_SET, A_SET_MODE, A_SET_UID, A_SET_GID, A_SET_SIZE, A_SET_ATIME_MS, A_SET_MTIME_MS },
  [OP_READLINK] = { A_INO },
  [OP_MKNOD] = { A_PARENT, A_NAME, A_MODE, A_RDEV },
  [OP_MKDIR] = { A_PARENT, A_NAME, A_MODE },
  [OP_UNLINK] = { A_PARENT, A_NAME },
  [OP_RMDIR] = { A_PARENT, A_NAME },
  [OP_SYMLINK] = { A_PARENT, A_NAME, A_TARGET },
  [OP_RENAME] = { A_PARENT, A_NAME, A_NEW_PARENT, A_NEW_NAME },
  [OP_LINK] = { A_INO, A_NEW_PARENT, A_NEW_NAME },
  [OP_OPEN] = { A_INO, A_FLAGS },
  [OP_READ] = { A_INO, A_FH, A_SIZE, A_OFFSET },
  [OP_WRITE] = { A_INO, A_FH, A_DATA, A_SIZE, A_OFFSET },
  [OP_FLUSH] = { A_INO, A_FH, A_LOCK_OWNER },
  [OP_RELEASE] = { A_INO, A_FH, A_FLAGS, A_LOCK_OWNER, A_FLOCK_RELEASE },
  [OP_FSYNC] = { A_INO, A_DATASYNC, A_FH },
  [OP_OPENDIR] = { A_INO, A_FLAGS },
  [OP_READDIR] = { A_INO, A_FH, A_SIZE, A_OFFSET },
  [OP_RELEASEDIR] = { A_INO, A_FH },
  [OP_FSYNCDIR] = { A_INO, A_DATASYNC, A_FH },
  [OP_STATFS] = { A_INO },
  [OP_SETXATTR] = { A_INO, A_NAME, A_DATA, A_FLAGS },
  [OP_GETXATTR] = { A_INO, A_NAME, A_SIZE },
  [OP_LISTXATTR] = { A_INO, A_SIZE },
  [OP_REMOVEXATTR] = { A_INO, A_NAME },
  [OP_ACCESS] = { A_INO, A_MASK },
  [OP_CREATE] = { A_PARENT, A_NAME, A_MODE, A_FLAGS },
  [OP_GETLK] = { A_INO, A_FH, A_LOCK_TYPE, A_LOCK_START, A_LOCK_LENGTH, A_LOCK_PID, A_LOCK_OWNER },
  [OP_SETLK] = { A_INO, A_FH, A_SLEEP, A_LOCK_TYPE, A_LOCK_START, A_LOCK_LENGTH, A_LOCK_PID, A_LOCK_OWNER },
  [OP_FLOCK] = { A_INO, A_FH, A_FLOCK_OP, A_LOCK_OWNER },
  [OP_FALLOCATE] = { A_INO, A_FH, A_FALLOCATE_MODE, A_OFFSET, A_LENGTH },
  [OP_READDIRPLUS] = { A_INO, A_FH, A_SIZE, A_OFFSET },
};

/*
 * Each operation's reply values after the result, in order; an operation not listed answers with the result
 * alone (0, or write's byte count). Events get no reply.
 */
static const unsigned char OP_REPLY[OP_COUNT][FF_VALUES_MAX + 1] = {
  [OP_LOOKUP] = { V_ATTR },
  [OP_GETATTR] = { V_ATTR },
  [OP_SETATTR] = { V_ATTR },
  [OP_READLINK] = { V_TARGET },
  [OP_MKNOD] = { V_ATTR },
  [OP_MKDIR] = { V_ATTR },
  [OP_SYMLINK] = { V_ATTR },
  [OP_LINK] = { V_ATTR },
  [OP_OPEN] = { V_FH, V_OPEN_FLAGS },
  [OP_READ] = { V_DATA },
  [OP_OPENDIR] = { V_FH, V_OPEN_FLAGS },
  [OP_READDIR] = { V_NAMES, V_INOS, V_MODES },
  [OP_STATFS] = { V_STATFS },
  [OP_GETXATTR] = { V_VALUE },
  [OP_LISTXATTR] = { V_NAMES },
  [OP_CREATE] = { V_ATTR, V_FH, V_OPEN_FLAGS },
  [OP_GETLK] = { V_LOCK },
  [OP_READDIRPLUS] = { V_NAME_BYTES, V_ATTRS, V_AGE_MS },
};

/* ------------------------------------------------------------------------------------ request -> JS */

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

static double ts_ms(const struct timespec *t) {
  return (double) t->tv_sec * 1000.0 + (double) t->tv_nsec / 1e6;
}

/* Where each argument comes from. Its JS type is ARG_DESC's: keep the two in step. */
static napi_value arg_value(napi_env env, ff_req_t *r, int a) {
  switch (a) {
    case A_OP: return ff_num(env, r->op);
    case A_ID: return ff_num(env, (double) r->id);
    case A_UID: return ff_num(env, r->uid);
    case A_GID: return ff_num(env, r->gid);
    case A_PID: return ff_num(env, r->pid);
    case A_INO:
    case A_PARENT: return ff_num(env, (double) r->ino);
    case A_NAME: return ff_str(env, r->name);
    case A_NEW_PARENT: return ff_num(env, (double) r->ino2);
    case A_NEW_NAME:
    case A_TARGET: return ff_str(env, r->name2);
    case A_FH: return ff_num(env, r->has_fh ? (double) r->fh : FF_NO_FH);
    case A_FLAGS:
    case A_MASK:
    case A_DATASYNC:
    case A_FLOCK_OP:
    case A_FALLOCATE_MODE:
    case A_TO_SET: return ff_num(env, r->flags);
    case A_MODE: return ff_num(env, r->mode);
    case A_RDEV: return ff_num(env, (double) r->rdev);
    case A_SIZE: return ff_num(env, (double) r->size);
    case A_OFFSET: return ff_num(env, (double) r->off);
    case A_LENGTH: return ff_num(env, (double) r->len);
    case A_DATA: return owned_buffer(env, &r->data, r->size);
    case A_LOCK_OWNER: return big(env, r->lock_owner);
    case A_FLOCK_RELEASE: return ff_num(env, r->flock_release);
    case A_SLEEP: return ff_num(env, r->sleep);
    case A_LOCK_TYPE: return ff_num(env, r->lk.l_type);
    case A_LOCK_START: return ff_num(env, (double) r->lk.l_start);
    case A_LOCK_LENGTH: return ff_num(env, (double) r->lk.l_len);
    case A_LOCK_PID: return ff_num(env, r->lk.l_pid);
    case A_SET_MODE: return ff_num(env, r->st.st_mode);
    case A_SET_UID: return ff_num(env, r->st.st_uid);
    case A_SET_GID: return ff_num(env, r->st.st_gid);
    case A_SET_SIZE: return ff_num(env, (double) r->st.st_size);
    case A_SET_ATIME_MS: return ff_num(env, ts_ms(&r->st.st_atim));
    case A_SET_MTIME_MS: return ff_num(env, ts_ms(&r->st.st_mtim));
    case A_PROTO_MAJOR:
    case A_STATUS: return ff_num(env, r->ev[0]);
    case A_PROTO_MINOR: return ff_num(env, r->ev[1]);
    case A_CAPABLE: return ff_num(env, r->ev[2]);
    case A_WANT: return ff_num(env, r->ev[3]);
    case A_MAX_WRITE: return ff_num(env, r->ev[4]);
  }
  napi_value undef;
  napi_get_undefined(env, &undef);
  return undef;
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
  napi_value argv[HEADER_COUNT + FF_ARGS_MAX];
  size_t argc = 0;
  for (size_t i = 0; i < HEADER_COUNT; i++) argv[argc++] = arg_value(env, r, HEADER[i]);
  const unsigned char *args = OP_ARGS[r->op];
  for (int i = 0; i < FF_ARGS_MAX && args[i] != A_END; i++) argv[argc++] = arg_value(env, r, args[i]);
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

/* ------------------------------------------------------------------------------------ JS -> reply */

napi_value ff_reply_value(int op, int v, size_t nvals, napi_value *vals) {
  const unsigned char *want = OP_REPLY[op];
  for (size_t i = 0; i < FF_VALUES_MAX && want[i] != V_END; i++)
    if (want[i] == v) return i < nvals ? vals[i] : NULL;
  return NULL;
}

/* ------------------------------------------------------------------------------------ the table for JS */

/* [[name, type], ...] of a list ended by 0 (or by max entries). */
static napi_value pairs(napi_env env, const unsigned char *list, size_t max, const desc_t *desc) {
  napi_value out;
  napi_create_array(env, &out);
  for (uint32_t i = 0; i < max && list[i] != 0; i++) {
    napi_value pair;
    napi_create_array_with_length(env, 2, &pair);
    napi_set_element(env, pair, 0, ff_str(env, desc[list[i]].name));
    napi_set_element(env, pair, 1, ff_str(env, TYPE_NAMES[desc[list[i]].type]));
    napi_set_element(env, out, i, pair);
  }
  return out;
}

static napi_value names(napi_env env, const char *const *list, size_t n) {
  napi_value out;
  napi_create_array_with_length(env, n, &out);
  for (uint32_t i = 0; i < n; i++) napi_set_element(env, out, i, ff_str(env, list[i]));
  return out;
}

napi_value ff_layout_export(napi_env env) {
  napi_value out, args, reply, records;
  napi_create_object(env, &out);
  napi_create_object(env, &args);
  napi_create_object(env, &reply);
  napi_create_object(env, &records);
  napi_set_named_property(env, out, "header", pairs(env, HEADER, HEADER_COUNT, ARG_DESC));
  for (int op = 0; op < OP_COUNT; op++) {
    napi_set_named_property(env, args, ff_op_names[op], pairs(env, OP_ARGS[op], FF_ARGS_MAX, ARG_DESC));
    if (op != OP_INIT && op != OP_DONE)
      napi_set_named_property(env, reply, ff_op_names[op], pairs(env, OP_REPLY[op], FF_VALUES_MAX, VALUE_DESC));
  }
  napi_set_named_property(env, records, "stat", names(env, STAT_NAMES, ST_COUNT));
  napi_set_named_property(env, records, "statfs", names(env, STATFS_NAMES, SF_COUNT));
  napi_set_named_property(env, records, "lock", names(env, LOCK_NAMES, LK_COUNT));
  napi_set_named_property(env, out, "args", args);
  napi_set_named_property(env, out, "reply", reply);
  napi_set_named_property(env, out, "records", records);
  return out;
}
