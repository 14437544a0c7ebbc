/*
 * Our channel on /dev/fuse, on libfuse's own descriptor: it reads and writes as libfuse's does, plus what
 * libfuse 2.9 predates:
 *   - FUSE_MAX_PAGES (kernel protocol 7.28): without it the kernel cuts every read and write request to 32
 *     pages (128 KiB) whatever max_read/max_write say. max_pages is added to the INIT answer when the kernel
 *     offers it, so requests reach max_write/max_read (1 MiB); the receive buffer is sized for that.
 *   - READDIRPLUS (7.21): a directory listing whose entries carry their attributes, so `ls -l` of a big
 *     directory costs a few requests instead of a LOOKUP per name. FUSE_DO_READDIRPLUS is added to the INIT
 *     answer when the kernel offers it (without FUSE_READDIRPLUS_AUTO: every listing is a plus one, or the
 *     kernel would fall back to plain listings after the first buffer and look up each name `ls -l` stats).
 *     libfuse 2.9 answers an opcode it does not know ENOSYS, so a READDIRPLUS request is handed to it as the
 *     READDIR it resembles (the same fuse_read_in) with plus_next set; ll_readdir then makes it an
 *     OP_READDIRPLUS, answered in the kernel's direntplus format (dirplus.c).
 * The session reads and answers through this channel only; libfuse's channel (kch) keeps the descriptor and
 * unmounts.
 */

#include "ferry_fuse.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define FUSE_INIT_OPCODE 26
#define FUSE_READDIR_OPCODE 28
#define FUSE_READDIRPLUS_OPCODE 44
#define FUSE_DO_READDIRPLUS_FLAG (1u << 13)
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
  ff_mnt_t *m = (ff_mnt_t *) fuse_chan_data(ch);
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
    } else if (opcode == FUSE_READDIRPLUS_OPCODE) {
      uint32_t readdir = FUSE_READDIR_OPCODE;
      memcpy(buf + 4, &readdir, 4);
      m->plus_next = 1;
    }
    return (int) res;
  }
}

static int chan_send(struct fuse_chan *ch, const struct iovec iov[], size_t count) {
  ff_mnt_t *m = (ff_mnt_t *) fuse_chan_data(ch);
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
      uint32_t extra = m->kernel_flags & (FUSE_MAX_PAGES_FLAG | FUSE_DO_READDIRPLUS_FLAG);
      if (error == 0 && extra != 0) {
        memset(init, 0, sizeof init);
        memcpy(init, iov[1].iov_base, iov[1].iov_len);
        uint32_t flags;
        memcpy(&flags, init + INIT_OUT_FLAGS_AT, 4);
        flags |= extra;
        memcpy(init + INIT_OUT_FLAGS_AT, &flags, 4);
        uint16_t pages = (extra & FUSE_MAX_PAGES_FLAG) != 0 ? CHAN_MAX_PAGES : 0;
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

struct fuse_chan *ff_chan_new(ff_mnt_t *m, int fd) {
  return fuse_chan_new(&CHAN_OPS, fd, CHAN_BUFSIZE, m);
}
