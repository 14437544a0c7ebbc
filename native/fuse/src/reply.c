/*
 * Answers: reply(id, result, values...) from JS becomes the request's fuse_reply_*. result < 0 is -errno;
 * otherwise the values depend on the operation (see reply_ok). A value set JS got wrong (missing, or of the
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
static int reply_xattr_data(ff_req_t *r, const char *data, size_t len) {
  if (r->size == 0) return fuse_reply_xattr(r->fr, len);
  if (len > r->size) return fuse_reply_err(r->fr, ERANGE);
  return fuse_reply_buf(r->fr, data, len);
}

static int entry_of(napi_env env, ff_mnt_t *m, napi_value v, struct fuse_entry_param *e) {
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
  fi->keep_cache = (f & FF_OPEN_KEEP_CACHE) ? 1 : 0;
  fi->direct_io = (f & FF_OPEN_DIRECT_IO) ? 1 : 0;
  fi->nonseekable = (f & FF_OPEN_NONSEEKABLE) ? 1 : 0;
}

/* Sends a successful answer with JS's values; a malformed value set is answered EIO. */
static void reply_ok(napi_env env, ff_req_t *r, int res, size_t nvals, napi_value *vals) {
  fuse_req_t fr = r->fr;
  ff_mnt_t *m = r->m;
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
      if ((size_t) res >= FF_ASYNC_READ_MIN && ff_reply_read_async(env, m, fr, vals[0], (const char *) data, (size_t) res) == 0)
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
