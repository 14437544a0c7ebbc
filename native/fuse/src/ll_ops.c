/*
 * libfuse's low-level callbacks. Each copies what JS needs out of the kernel's request into an ff_req_t
 * (libfuse reuses its receive buffer for the next request), registers it and hands it to JS at once
 * (submit; layout.c's table says which of the copied fields JS gets, in which order). They run on the JS
 * thread, inside a batch of session.c's on_readable. Answered here, without a trip to JS: forget (Ferry
 * keeps no lookup counts) and getxattr of the names the mount keeps no values for (security.capability,
 * which the kernel asks for before every write, and those of the mount's policy).
 */

#include "ferry_fuse.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static char *dup_or_null(const char *s) {
  return s == NULL ? NULL : strdup(s);
}

static void set_fi(ff_req_t *r, struct fuse_file_info *fi) {
  if (fi == NULL) return;
  r->has_fh = 1;
  r->fh = fi->fh;
  r->lock_owner = fi->lock_owner;
  r->flock_release = fi->flock_release;
}

/* Registers the request and hands it to JS (which may answer it before this returns). */
static void submit(ff_req_t *r) {
  ff_pending_add(r);
  ff_session_dispatch(r->m, r);
}

/* Declares r, a new request of op o for req; returns from the callback once answered ENOMEM if out of memory. */
#define NEW(o) \
  ff_req_t *r = ff_req_new(req, (o)); \
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
  r->name2 = dup_or_null(newname);
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
    ff_req_free(r);
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

/* A READDIR, or a READDIRPLUS that channel.c handed libfuse as one (plus_next). */
static void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  ff_mnt_t *m = (ff_mnt_t *) fuse_req_userdata(req);
  int plus = m->plus_next;
  m->plus_next = 0;
  NEW(plus ? OP_READDIRPLUS : OP_READDIR);
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
    ff_req_free(r);
    return;
  }
  if (size > 0) memcpy(r->data, value, size);
  submit(r);
}

/*
 * Names the mount keeps no values for are answered here, without a trip to JS, with the errno the mount's
 * policy gave at mount (ff_mnt_t's xattr table; FerryOps states it): the kernel asks for security.capability
 * before every write, and `ls -l` for security.selinux and the POSIX ACLs of every file it lists.
 */
static void ll_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
  ff_mnt_t *m = (ff_mnt_t *) fuse_req_userdata(req);
  for (int i = 0; i < m->xattr_count; i++) {
    if (strcmp(name, m->xattr_names[i]) == 0) {
      fuse_reply_err(req, m->xattr_errnos[i]);
      return;
    }
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

static void ll_init(void *userdata, struct fuse_conn_info *conn) {
  ff_mnt_t *m = (ff_mnt_t *) userdata;
  uint32_t ev[5] = { conn->proto_major, conn->proto_minor, conn->capable, conn->want, conn->max_write };
  ff_session_event(m, OP_INIT, ev, 5);
}

const struct fuse_lowlevel_ops ff_ll_ops = {
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
