/*
 * The N-API module: what src/fuse/native.ts (AddonFuse) calls, and the tables it reads.
 *
 *   mount(mountpoint, args, dispatch, attrTimeoutSec, entryTimeoutSec, xattrAnswers) -> handle
 *   unmount(handle), exit(handle), close(handle), invalidate(handle, ino) -> 0 | -errno
 *   reply(id, result, ...values) -> bool, interrupted(id) -> bool            (reply.c)
 *   ops: op names by op code; layout: the boundary table (layout.c); constants: flag bits JS needs
 *
 * A mount's life: mount (the session serves on the JS thread) -> "init" event once the kernel's INIT is
 * answered -> requests -> the session ends (unmounted, or unmount/exit asked) -> "done" event -> close ->
 * the handle is collected, and the memory freed once no read answer of the mount is still in flight.
 */

#include "ferry_fuse.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>

void ff_mnt_free(ff_mnt_t *m) {
  for (int i = 0; i < m->xattr_count; i++) free(m->xattr_names[i]);
  free(m->xattr_names);
  free(m->xattr_errnos);
  pthread_mutex_destroy(&m->works_lock);
  pthread_cond_destroy(&m->works_done);
  free(m->mountpoint);
  free(m);
}

static char *dup_string(napi_env env, napi_value v) {
  size_t len;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return NULL;
  char *s = malloc(len + 1);
  if (s == NULL) return NULL;
  napi_get_value_string_utf8(env, v, s, len + 1, &len);
  return s;
}

/* The handle's finalizer. A mount is freed only once closed (its session is over); one never closed is leaked. */
static void free_mnt(napi_env env, void *data, void *hint) {
  (void) env;
  (void) hint;
  ff_mnt_t *m = (ff_mnt_t *) data;
  if (m->closed) {
    if (m->works_queued > 0) m->finalized = 1; /* the last after-work callback frees it */
    else ff_mnt_free(m);
  }
}

/*
 * The mount's xattr policy: [[name, errno], ...], getxattr of each name answered with its errno in C.
 * 0 if read (or v is not an array: no names), -1 if out of memory.
 */
static int read_xattr_answers(napi_env env, napi_value v, ff_mnt_t *m) {
  bool is_array = false;
  uint32_t n = 0;
  if (napi_is_array(env, v, &is_array) != napi_ok || !is_array || napi_get_array_length(env, v, &n) != napi_ok || n == 0) return 0;
  m->xattr_names = calloc(n, sizeof(char *));
  m->xattr_errnos = calloc(n, sizeof(int));
  if (m->xattr_names == NULL || m->xattr_errnos == NULL) return -1;
  for (uint32_t i = 0; i < n; i++) {
    napi_value pair, name, err;
    double e = 0;
    if (napi_get_element(env, v, i, &pair) != napi_ok || napi_get_element(env, pair, 0, &name) != napi_ok ||
        napi_get_element(env, pair, 1, &err) != napi_ok || napi_get_value_double(env, err, &e) != napi_ok || e <= 0)
      continue;
    char *s = dup_string(env, name);
    if (s == NULL) continue;
    m->xattr_names[m->xattr_count] = s;
    m->xattr_errnos[m->xattr_count] = (int) e;
    m->xattr_count++;
  }
  return 0;
}

/*
 * mount(mountpoint, args[], dispatch, attrTimeoutSec, entryTimeoutSec, xattrAnswers) -> handle. args are
 * libfuse's command line without the program name (e.g. ["-o", "fsname=x,big_writes,..."]): mount options
 * and the low-level library's. xattrAnswers: [[name, errno], ...], getxattr of those names answered here.
 * Throws if the mount fails (libfuse writes the reason to stderr).
 */
static napi_value js_mount(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 3) {
    napi_throw_type_error(env, NULL, "mount(mountpoint, args, dispatch, attrTimeoutSec, entryTimeoutSec, xattrAnswers)");
    return NULL;
  }
  ff_mnt_t *m = calloc(1, sizeof(ff_mnt_t));
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
  if (argc >= 6 && read_xattr_answers(env, argv[5], m) != 0) {
    ff_mnt_free(m);
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }

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
    m->se = fuse_lowlevel_new(&fa, &ff_ll_ops, sizeof ff_ll_ops, m);
    m->ch = m->se == NULL ? NULL : ff_chan_new(m, fuse_chan_fd(m->kch));
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
    ff_mnt_free(m);
    napi_throw_error(env, "EFUSEMOUNT", err);
    return NULL;
  }

  const char *serr = ff_session_start(env, m, argv[2]);
  if (serr != NULL) {
    fuse_unmount(m->mountpoint, m->kch);
    fuse_session_destroy(m->se);
    ff_mnt_free(m);
    napi_throw_error(env, NULL, serr);
    return NULL;
  }
  napi_value handle;
  napi_create_external(env, m, free_mnt, NULL, &handle);
  return handle;
}

static ff_mnt_t *get_mnt(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void *data = NULL;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  if (argc < 1 || napi_get_value_external(env, argv[0], &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, NULL, "expected a mount handle");
    return NULL;
  }
  return (ff_mnt_t *) data;
}

/*
 * unmount(handle): asks the session to end and detaches the mount (lazily). It ends once the kernel has
 * let go; then the dispatch function gets the "done" event and close(handle) finishes.
 */
static napi_value js_unmount(napi_env env, napi_callback_info info) {
  ff_mnt_t *m = get_mnt(env, info);
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
  ff_mnt_t *m = get_mnt(env, info);
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
  ff_mnt_t *m = (ff_mnt_t *) data;
  int res = -ENOTCONN;
  if (m->se != NULL && !m->loop_ended) res = fuse_lowlevel_notify_inval_inode(m->ch, (fuse_ino_t) ino, -1, 0);
  return ff_num(env, res);
}

/* close(handle): after "done", lets the handle's memory go with it. */
static napi_value js_close(napi_env env, napi_callback_info info) {
  ff_mnt_t *m = get_mnt(env, info);
  if (m == NULL || m->closed) return NULL;
  if (!m->loop_ended) {
    napi_throw_error(env, NULL, "close before the FUSE loop ended");
    return NULL;
  }
  ff_session_teardown(m);
  m->closed = 1;
  return NULL;
}

static napi_value init_module(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    { "mount", NULL, js_mount, NULL, NULL, NULL, napi_default, NULL },
    { "unmount", NULL, js_unmount, NULL, NULL, NULL, napi_default, NULL },
    { "close", NULL, js_close, NULL, NULL, NULL, napi_default, NULL },
    { "exit", NULL, js_exit, NULL, NULL, NULL, napi_default, NULL },
    { "reply", NULL, ff_js_reply, NULL, NULL, NULL, napi_default, NULL },
    { "interrupted", NULL, ff_js_interrupted, NULL, NULL, NULL, napi_default, NULL },
    { "invalidate", NULL, js_invalidate, NULL, NULL, NULL, napi_default, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  napi_value names;
  napi_create_array_with_length(env, OP_COUNT, &names);
  for (uint32_t i = 0; i < OP_COUNT; i++) napi_set_element(env, names, i, ff_str(env, ff_op_names[i]));
  napi_set_named_property(env, exports, "ops", names);
  napi_set_named_property(env, exports, "layout", ff_layout_export(env));
  napi_value consts;
  napi_create_object(env, &consts);
#define K(name, v) napi_set_named_property(env, consts, name, ff_num(env, v))
  K("OPEN_KEEP_CACHE", FF_OPEN_KEEP_CACHE);
  K("OPEN_DIRECT_IO", FF_OPEN_DIRECT_IO);
  K("OPEN_NONSEEKABLE", FF_OPEN_NONSEEKABLE);
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
