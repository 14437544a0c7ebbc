/*
 * Answers: reply(id, result, values...) from JS becomes the request's fuse_reply_*. result < 0 is -errno;
 * otherwise the values are read by name, as layout.c's OP_REPLY lists them for the operation, and records
 * (stat, statfs, lock) field by field in layout.h's order. A value set JS got wrong (missing, or of the
 * wrong type) is answered EIO: the request is answered either way.
 */

#include "ferry_fuse.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

static int get_f64(napi_env env, napi_value arr, uint32_t i, double *out) {
  napi_value v;
  if (napi_get_element(env, arr, i, &v) != napi_ok) return -1;
  return napi_get_value_double(env, v, out) == napi_ok ? 0 : -1;
}

/* Reads a record of n numbers; -1 unless every one is there. */
static int get_record(napi_env env, napi_value arr, double *f, uint32_t n) {
  for (uint32_t i = 0; i < n; i++)
    if (get_f64(env, arr, i, &f[i]) != 0) return -1;
  return 0;
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

static int fill_stat(napi_env env, napi_value arr, struct stat *st) {
  double f[ST_COUNT];
  if (arr == NULL || get_record(env, arr, f, ST_COUNT) != 0) return -1;
  memset(st, 0, sizeof *st);
  st->st_mode = (mode_t) f[ST_MODE];
  st->st_uid = (uid_t) f[ST_UID];
  st->st_gid = (gid_t) f[ST_GID];
  st->st_size = (off_t) f[ST_SIZE];
  st->st_nlink = (nlink_t) f[ST_NLINK];
  st->st_ino = (ino_t) (uint64_t) f[ST_INO];
  st->st_rdev = (dev_t) f[ST_RDEV];
  st->st_blksize = (blksize_t) f[ST_BLKSIZE];
  st->st_blocks = (blkcnt_t) f[ST_BLOCKS];
  ms_to_timespec(f[ST_ATIME], &st->st_atim);
  ms_to_timespec(f[ST_MTIME], &st->st_mtim);
  ms_to_timespec(f[ST_CTIME], &st->st_ctim);
  return 0;
}

static int fill_statvfs(napi_env env, napi_value arr, struct statvfs *sv) {
  double f[SF_COUNT];
  if (arr == NULL || get_record(env, arr, f, SF_COUNT) != 0) return -1;
  memset(sv, 0, sizeof *sv);
  sv->f_bsize = (unsigned long) f[SF_BSIZE];
  sv->f_frsize = (unsigned long) f[SF_FRSIZE];
  sv->f_blocks = (fsblkcnt_t) f[SF_BLOCKS];
  sv->f_bfree = (fsblkcnt_t) f[SF_BFREE];
  sv->f_bavail = (fsblkcnt_t) f[SF_BAVAIL];
  sv->f_files = (fsfilcnt_t) f[SF_FILES];
  sv->f_ffree = (fsfilcnt_t) f[SF_FFREE];
  sv->f_favail = (fsfilcnt_t) f[SF_FAVAIL];
  sv->f_fsid = (unsigned long) f[SF_FSID];
  sv->f_flag = (unsigned long) f[SF_FLAG];
  sv->f_namemax = (unsigned long) f[SF_NAMEMAX];
  return 0;
}

/* Answers an xattr value per the size protocol: size 0 asks for the length. */
static int reply_xattr_data(ff_req_t *r, const char *data, size_t len) {
  if (r->size == 0) return fuse_reply_xattr(r->fr, len);
  if (len > r->size) return fuse_reply_err(r->fr, ERANGE);
  return fuse_reply_buf(r->fr, data, len);
}

static int entry_of(napi_env env, ff_mnt_t *m, napi_value attr, struct fuse_entry_param *e) {
  memset(e, 0, sizeof *e);
  if (fill_stat(env, attr, &e->attr) != 0) return -1;
  e->ino = e->attr.st_ino;
  e->generation = 1;
  e->attr_timeout = m->attr_timeout;
  e->entry_timeout = m->entry_timeout;
  return 0;
}

/* The handle and FF_OPEN_* flags of an open or create answer (0 where JS gave none). */
static void open_reply(napi_env env, napi_value fh_v, napi_value flags_v, struct fuse_file_info *fi) {
  double fh = 0, flags = 0;
  if (fh_v != NULL) napi_get_value_double(env, fh_v, &fh);
  if (flags_v != NULL) napi_get_value_double(env, flags_v, &flags);
  fi->fh = (uint64_t) fh;
  int f = (int) flags;
  fi->keep_cache = (f & FF_OPEN_KEEP_CACHE) ? 1 : 0;
  fi->direct_io = (f & FF_OPEN_DIRECT_IO) ? 1 : 0;
  fi->nonseekable = (f & FF_OPEN_NONSEEKABLE) ? 1 : 0;
}

/* Sends a successful answer with JS's values; a malformed value set is answered EIO. */
static void reply_ok(napi_env env, ff_req_t *r, int res, size_t nvals, napi_value *vals) {
  fuse_req_t fr = r->fr;
  ff_mnt_t *m = r->m;
#define VAL(v) ff_reply_value(r->op, (v), nvals, vals)
  switch (r->op) {
    case OP_LOOKUP:
    case OP_MKNOD:
    case OP_MKDIR:
    case OP_SYMLINK:
    case OP_LINK: {
      struct fuse_entry_param e;
      if (entry_of(env, m, VAL(V_ATTR), &e) != 0) break;
      fuse_reply_entry(fr, &e);
      return;
    }
    case OP_CREATE: {
      struct fuse_entry_param e;
      struct fuse_file_info fi;
      memset(&fi, 0, sizeof fi);
      fi.flags = r->flags;
      napi_value fh = VAL(V_FH), flags = VAL(V_OPEN_FLAGS);
      if (fh == NULL || flags == NULL || entry_of(env, m, VAL(V_ATTR), &e) != 0) break;
      open_reply(env, fh, flags, &fi);
      fuse_reply_create(fr, &e, &fi);
      return;
    }
    case OP_GETATTR:
    case OP_SETATTR: {
      struct stat st;
      if (fill_stat(env, VAL(V_ATTR), &st) != 0) break;
      fuse_reply_attr(fr, &st, m->attr_timeout);
      return;
    }
    case OP_READLINK: {
      napi_value target = VAL(V_TARGET);
      size_t len = 0;
      if (target == NULL || napi_get_value_string_utf8(env, target, NULL, 0, &len) != napi_ok) break;
      char *s = malloc(len + 1);
      if (s == NULL) {
        fuse_reply_err(fr, ENOMEM);
        return;
      }
      napi_get_value_string_utf8(env, target, s, len + 1, &len);
      fuse_reply_readlink(fr, s);
      free(s);
      return;
    }
    case OP_OPEN:
    case OP_OPENDIR: {
      struct fuse_file_info fi;
      memset(&fi, 0, sizeof fi);
      fi.flags = r->flags;
      open_reply(env, VAL(V_FH), VAL(V_OPEN_FLAGS), &fi);
      fuse_reply_open(fr, &fi);
      return;
    }
    case OP_READ: {
      napi_value buf = VAL(V_DATA);
      void *data = NULL;
      size_t len = 0;
      if (buf == NULL || napi_get_buffer_info(env, buf, &data, &len) != napi_ok) break;
      if ((size_t) res > len || (size_t) res > r->size) break;
      /* A long answer goes out from a reply thread (the request is out of the pending list already). */
      if ((size_t) res >= FF_ASYNC_READ_MIN && ff_reply_read_async(env, m, fr, buf, (const char *) data, (size_t) res) == 0)
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
      if (fill_statvfs(env, VAL(V_STATFS), &sv) != 0) break;
      fuse_reply_statfs(fr, &sv);
      return;
    }
    case OP_GETXATTR: {
      napi_value value = VAL(V_VALUE);
      void *data;
      size_t len;
      if (value == NULL || napi_get_buffer_info(env, value, &data, &len) != napi_ok) break;
      reply_xattr_data(r, (const char *) data, len);
      return;
    }
    case OP_LISTXATTR: {
      napi_value names = VAL(V_NAMES);
      uint32_t n;
      if (names == NULL || napi_get_array_length(env, names, &n) != napi_ok) break;
      size_t total = 0;
      char *tmp = NULL;
      for (uint32_t i = 0; i < n; i++) {
        napi_value v;
        size_t len;
        napi_get_element(env, names, i, &v);
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
      /* The entries from offset r->off on; each entry's offset is its index + 1. */
      napi_value names = VAL(V_NAMES), inos = VAL(V_INOS), modes = VAL(V_MODES);
      uint32_t n;
      if (names == NULL || inos == NULL || modes == NULL || napi_get_array_length(env, names, &n) != napi_ok) break;
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
        napi_get_element(env, names, i, &v);
        if (napi_get_value_string_utf8(env, v, name, sizeof name, &len) != napi_ok) continue;
        get_f64(env, inos, i, &ino);
        get_f64(env, modes, i, &mode);
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
    case OP_READDIRPLUS: {
      /* The entries from offset r->off on, with their attributes (dirplus.c). */
      napi_value names = VAL(V_NAME_BYTES), attrs = VAL(V_ATTRS), age = VAL(V_AGE_MS);
      void *nb = NULL, *ab = NULL;
      size_t nlen = 0, alen = 0, aoff = 0;
      double age_ms = 0;
      napi_typedarray_type t;
      napi_value abuf;
      if (names == NULL || attrs == NULL || age == NULL || napi_get_buffer_info(env, names, &nb, &nlen) != napi_ok ||
          napi_get_typedarray_info(env, attrs, &t, &alen, &ab, &abuf, &aoff) != napi_ok || t != napi_float64_array ||
          napi_get_value_double(env, age, &age_ms) != napi_ok || alen % ST_COUNT != 0)
        break;
      ff_reply_dirplus(r, (const char *) nb, nlen, (const double *) ab, alen / ST_COUNT, age_ms);
      return;
    }
    case OP_GETLK: {
      /* The conflicting lock, or [F_UNLCK] (also when JS gave none). */
      napi_value lock = VAL(V_LOCK);
      struct flock lk = r->lk;
      double f[LK_COUNT] = { [LK_TYPE] = F_UNLCK };
      uint32_t n = 0;
      if (lock != NULL) napi_get_array_length(env, lock, &n);
      for (uint32_t i = 0; i < n && i < LK_COUNT; i++) get_f64(env, lock, i, &f[i]);
      lk.l_type = (short) f[LK_TYPE];
      if (f[LK_TYPE] != F_UNLCK) {
        lk.l_whence = SEEK_SET;
        lk.l_start = (off_t) f[LK_START];
        lk.l_len = (off_t) f[LK_LENGTH];
        lk.l_pid = (pid_t) f[LK_PID];
      }
      fuse_reply_lock(fr, &lk);
      return;
    }
    default:
      fuse_reply_err(fr, 0);
      return;
  }
#undef VAL
  fuse_reply_err(fr, EIO);
}

/* reply(id, result, ...values): true if the request was waiting for this answer (sent now), else false. */
napi_value ff_js_reply(napi_env env, napi_callback_info info) {
  size_t argc = 2 + FF_VALUES_MAX;
  napi_value argv[2 + FF_VALUES_MAX];
  napi_value out;
  double idd = 0, resd = 0;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_double(env, argv[0], &idd) != napi_ok || napi_get_value_double(env, argv[1], &resd) != napi_ok) {
    napi_throw_type_error(env, NULL, "reply(id, result, ...values)");
    return NULL;
  }
  ff_req_t *r = ff_pending_take((uint64_t) idd);
  if (r == NULL || r->answered) {
    if (r != NULL) ff_req_free(r);
    napi_get_boolean(env, false, &out);
    return out;
  }
  int res = (int) resd;
  ff_mnt_t *m = r->m;
  if (res < 0) fuse_reply_err(r->fr, -res);
  else reply_ok(env, r, res, argc > 2 + FF_VALUES_MAX ? FF_VALUES_MAX : argc - 2, argv + 2);
  ff_req_free(r);
  ff_session_answered(m);
  napi_get_boolean(env, true, &out);
  return out;
}

/* interrupted(id): whether a request no longer waits for an answer (answered, or given up by the kernel). */
napi_value ff_js_interrupted(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  double idd = 0;
  napi_value out;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_double(env, argv[0], &idd) != napi_ok) {
    napi_throw_type_error(env, NULL, "interrupted(id)");
    return NULL;
  }
  napi_get_boolean(env, !ff_pending_open((uint64_t) idd), &out);
  return out;
}
