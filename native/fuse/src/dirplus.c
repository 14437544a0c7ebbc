/*
 * READDIRPLUS answers. libfuse 2.9 has no fuse_add_direntry_plus: the entries are written here in the
 * kernel's format (<linux/fuse.h>, protocol 7.21+), one after another, each 8-byte aligned:
 *
 *   struct fuse_direntplus
 *     entry_out   nodeid, generation, entry and attribute timeouts, fuse_attr   (what a LOOKUP answers)
 *     dirent      ino, off (where the next listing request starts), namelen, type, name
 *
 * The kernel instantiates each entry (a LOOKUP it need not send) and caches it for the timeouts, except "."
 * and "..", which it never looks up this way, and entries whose record has mode 0 (JS has no attributes for
 * them): those go out with nodeid 0, which tells the kernel "no attributes" (it looks the name up when it
 * needs it). JS answers with the
 * names (NUL-ended, one buffer) and a flat array of stat records (layout.h's FF_STAT_FIELDS per entry), and
 * how old those attributes are: the timeouts here are what is left of the mount's, so a listing JS kept for a
 * while is not cached longer in all than a fresh one would be.
 */

#include "ferry_fuse.h"

#include <errno.h>
#include <linux/fuse.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Longest name the kernel takes in a listing (FUSE_NAME_MAX); Ferry's are at most 255 bytes. */
#define DIRENT_NAME_MAX 1024

static void split_timeout(double sec, uint64_t *s, uint32_t *ns) {
  if (!(sec > 0)) {
    *s = 0;
    *ns = 0;
    return;
  }
  if (sec >= 1e18) sec = 1e18;
  *s = (uint64_t) sec;
  double frac = sec - (double) *s;
  uint32_t n = (uint32_t) (frac * 1e9);
  *ns = n > 999999999u ? 999999999u : n;
}

/* ms since the epoch (fractional) as seconds and nanoseconds; times before 1970 floor. */
static void split_ms(double ms, uint64_t *s, uint32_t *ns) {
  double sec = ms / 1000;
  int64_t whole = (int64_t) sec;
  if ((double) whole > sec) whole--;
  int64_t n = (int64_t) ((ms - (double) whole * 1000) * 1000000.0 + 0.5);
  if (n >= 1000000000) {
    whole++;
    n -= 1000000000;
  }
  if (n < 0) n = 0;
  *s = (uint64_t) whole;
  *ns = (uint32_t) n;
}

static void fill_attr(struct fuse_attr *a, const double *f) {
  memset(a, 0, sizeof *a);
  a->ino = (uint64_t) f[ST_INO];
  a->size = (uint64_t) f[ST_SIZE];
  a->blocks = (uint64_t) f[ST_BLOCKS];
  split_ms(f[ST_ATIME], &a->atime, &a->atimensec);
  split_ms(f[ST_MTIME], &a->mtime, &a->mtimensec);
  split_ms(f[ST_CTIME], &a->ctime, &a->ctimensec);
  a->mode = (uint32_t) f[ST_MODE];
  a->nlink = (uint32_t) f[ST_NLINK];
  a->uid = (uint32_t) f[ST_UID];
  a->gid = (uint32_t) f[ST_GID];
  a->rdev = (uint32_t) f[ST_RDEV];
  a->blksize = (uint32_t) f[ST_BLKSIZE];
}

static int is_dot(const char *name, size_t len) {
  return name[0] == '.' && (len == 1 || (len == 2 && name[1] == '.'));
}

void ff_reply_dirplus(ff_req_t *r, const char *names, size_t names_len, const double *attrs, size_t n, double age_ms) {
  ff_mnt_t *m = r->m;
  char *buf = malloc(r->size > 0 ? r->size : 1);
  if (buf == NULL) {
    fuse_reply_err(r->fr, ENOMEM);
    return;
  }
  double age = age_ms > 0 ? age_ms / 1000 : 0;
  uint64_t entry_s, attr_s;
  uint32_t entry_ns, attr_ns;
  split_timeout(m->entry_timeout - age, &entry_s, &entry_ns);
  split_timeout(m->attr_timeout - age, &attr_s, &attr_ns);
  size_t used = 0, at = 0;
  for (size_t i = 0; i < n && at < names_len; i++) {
    const char *name = names + at;
    const char *end = memchr(name, '\0', names_len - at);
    if (end == NULL) break;
    size_t len = (size_t) (end - name);
    at += len + 1;
    if (len == 0 || len > DIRENT_NAME_MAX) continue;
    size_t reclen = FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET_DIRENTPLUS + len);
    if (reclen > r->size - used) break;
    const double *f = attrs + i * ST_COUNT;
    struct fuse_direntplus *d = (struct fuse_direntplus *) (buf + used);
    memset(d, 0, reclen);
    if (!is_dot(name, len) && f[ST_MODE] != 0) {
      d->entry_out.nodeid = (uint64_t) f[ST_INO];
      d->entry_out.generation = 1;
      d->entry_out.entry_valid = entry_s;
      d->entry_out.entry_valid_nsec = entry_ns;
      d->entry_out.attr_valid = attr_s;
      d->entry_out.attr_valid_nsec = attr_ns;
      fill_attr(&d->entry_out.attr, f);
    }
    d->dirent.ino = (uint64_t) f[ST_INO];
    d->dirent.off = (uint64_t) r->off + i + 1;
    d->dirent.namelen = (uint32_t) len;
    d->dirent.type = ((uint32_t) f[ST_MODE] & S_IFMT) >> 12;
    memcpy(d->dirent.name, name, len);
    used += reclen;
  }
  fuse_reply_buf(r->fr, buf, used);
  free(buf);
}
