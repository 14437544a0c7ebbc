/*
 * The session, served on Node's event loop by the JS thread: no thread of our own reads /dev/fuse.
 *
 *   ff_session_start --> watching (uv_poll on the non-blocking descriptor)
 *   watching --readable--> batch: up to BATCH_MAX requests, each read (our channel) and processed by libfuse
 *                          in its own callback scope, so the ll_* callbacks call JS directly and the answers
 *                          JS gives in nextTicks and promise jobs go out before the next read
 *   batch --every request answered--> spinning: the loop polls without sleeping for FF_SPIN_US
 *   batch --ENODEV (unmounted, aborted) | read error | exit asked | descriptor in error--> end_session
 *   end_session: stop watching, teardown (pending answered EIO, read answers waited for, unmount unless
 *                detached, session destroyed), then JS gets the "done" event
 *
 * Everything here runs on the JS thread, so no reply can race the session's end. unmount/exit from JS only
 * mark the session exited; that is noticed at the next wake-up, as fuse_session_loop notices it at its next
 * request.
 */

#include "ferry_fuse.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* At most this many requests per wake-up of the poll handle, so other I/O of the event loop gets its turn. */
#define BATCH_MAX 64
/* A request this soon (in spins) after the loop went idle means the caller works back to back again. */
#define SPIN_RESUME_FACTOR 4
#define SPIN_NS ((long) FF_SPIN_US * 1000L)

/*
 * The poll handle on Node's event loop, and what calling into JS from it needs. Allocated apart from the
 * mount: the handles' last close callback frees it, whenever that comes.
 */
struct ff_jsloop {
  uv_poll_t poll;
  uv_idle_t spin;    /* started while the loop spins (see spin_arm); unreferenced */
  int handles;       /* of poll and spin, not yet closed: the last close callback frees this */
  long spin_until;   /* when the current spin ends (CLOCK_MONOTONIC ns) */
  napi_env env;
  napi_ref fn;       /* the dispatch function */
  napi_ref resource; /* the async resource of the callback scopes */
  napi_async_context ctx;
  napi_value cur_fn; /* the dispatch function while a batch is served (valid in its handle scope) */
};

static long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* Close callback of the poll and spin handles: the last one frees the loop's state. */
static void on_poll_closed(uv_handle_t *h) {
  ff_jsloop_t *j = (ff_jsloop_t *) h->data;
  if (--j->handles > 0) return;
  napi_handle_scope scope;
  int scoped = napi_open_handle_scope(j->env, &scope) == napi_ok;
  if (j->fn != NULL) napi_delete_reference(j->env, j->fn);
  if (j->resource != NULL) napi_delete_reference(j->env, j->resource);
  if (j->ctx != NULL) napi_async_destroy(j->env, j->ctx);
  if (scoped) napi_close_handle_scope(j->env, scope);
  free(j);
}

static void close_handles(ff_jsloop_t *j) {
  j->poll.data = j;
  j->spin.data = j;
  uv_close((uv_handle_t *) &j->poll, on_poll_closed);
  uv_close((uv_handle_t *) &j->spin, on_poll_closed);
}

void ff_session_dispatch(ff_mnt_t *m, ff_req_t *r) {
  ff_jsloop_t *j = m->js;
  ff_dispatch(j == NULL ? NULL : j->env, j == NULL ? NULL : j->cur_fn, r);
}

void ff_session_event(ff_mnt_t *m, int op, const uint32_t *ev, int n) {
  ff_req_t *r = calloc(1, sizeof(ff_req_t));
  if (r == NULL) return;
  r->op = op;
  r->m = m;
  for (int i = 0; i < n && i < 6; i++) r->ev[i] = ev[i];
  ff_session_dispatch(m, r);
}

void ff_session_teardown(ff_mnt_t *m) {
  if (m->se == NULL) return;
  for (ff_req_t *r; (r = ff_pending_take_of(m)) != NULL;) {
    if (!r->answered) fuse_reply_err(r->fr, EIO);
    ff_req_free(r);
  }
  /* Read answers still being written by the reply threads need the descriptor and the session. */
  ff_wait_read_replies(m);
  /* fuse_unmount closes the descriptor and destroys libfuse's channel; the session destroys ours. */
  if (!m->detached) fuse_unmount(m->mountpoint, m->kch);
  else fuse_chan_destroy(m->kch);
  fuse_session_destroy(m->se);
  m->se = NULL;
  m->ch = NULL;
  m->kch = NULL;
}

/*
 * The session ended, inside a batch: stop watching the descriptor before teardown closes it, tear down and
 * tell JS "done". res is what the last receive returned: < 0 is an error (done's status 1), as
 * fuse_session_loop's result.
 */
static void end_session(ff_mnt_t *m, int res) {
  ff_jsloop_t *j = m->js;
  uv_poll_stop(&j->poll);
  uv_idle_stop(&j->spin);
  close_handles(j);
  m->loop_ended = 1;
  free(m->buf);
  m->buf = NULL;
  ff_session_teardown(m);
  uint32_t ev[1] = { res < 0 ? 1 : 0 };
  ff_session_event(m, OP_DONE, ev, 1);
  m->js = NULL;
}

/*
 * Opens what a call into JS from a libuv callback needs: a handle scope, then a callback scope, whose close
 * runs JS's nextTicks and promise jobs (a plain call from a libuv callback would not run them, and answers
 * given in promise jobs would never go out). 0 on success.
 */
static int enter_js(ff_jsloop_t *j, napi_handle_scope *hs, napi_callback_scope *cs) {
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

static void leave_js(ff_jsloop_t *j, napi_handle_scope hs, napi_callback_scope cs) {
  napi_env env = j->env; /* j may be closed (not freed: its close callback comes later) */
  j->cur_fn = NULL;
  napi_close_callback_scope(env, cs);
  napi_close_handle_scope(env, hs);
}

static void on_spin(uv_idle_t *h);

/*
 * Spinning: once every request is answered, the event loop keeps polling (an idle handle makes libuv's
 * epoll_wait return at once) for up to FF_SPIN_US instead of sleeping. A caller that works one request at a
 * time (open, write, close, stat...) sends its next request a few microseconds after our answer; a sleep and
 * a wake-up of the JS thread per request cost more than that on a virtual machine (tens of microseconds).
 * The loop goes on serving timers and I/O meanwhile. Armed after each answer that leaves nothing pending; a
 * spin that ends without a request turns spinning off until a request arrives within SPIN_RESUME_FACTOR spins
 * of the loop going idle, so sparse requests cost no CPU (test/fuse/addon.test.ts checks an idle mount).
 */
static void spin_arm(ff_mnt_t *m) {
  ff_jsloop_t *j = m->js;
  if (j == NULL || !ff_pending_none()) return;
  long now = now_ns();
  if (m->spin_off) {
    m->idle_at = now; /* the next request's delay from here decides whether spinning resumes */
    return;
  }
  j->spin_until = now + SPIN_NS;
  if (!uv_is_active((uv_handle_t *) &j->spin)) uv_idle_start(&j->spin, on_spin);
}

static void on_spin(uv_idle_t *h) {
  ff_mnt_t *m = (ff_mnt_t *) h->data;
  ff_jsloop_t *j = m->js;
  if (j == NULL) return;
  long now = now_ns();
  if (now < j->spin_until) return;
  uv_idle_stop(h);
  m->spin_off = 1;
  m->idle_at = now;
}

void ff_session_answered(ff_mnt_t *m) {
  spin_arm(m);
}

/*
 * /dev/fuse is readable (or in error: the connection is gone): read and process requests until none is
 * waiting (EAGAIN: the descriptor is non-blocking) or BATCH_MAX, as fuse_session_loop does one at a time.
 * The ll_* callbacks call the dispatch function directly, each request in its own callback scope: JS's
 * promise jobs run (and answers go out) before the next read.
 */
static void on_readable(uv_poll_t *h, int status, int events) {
  (void) events;
  ff_mnt_t *m = (ff_mnt_t *) h->data;
  ff_jsloop_t *j = m->js;
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
      /* No way into JS: the ll_* callbacks answer EIO (ff_dispatch without a function). */
      fuse_session_process_buf(m->se, &fbuf, ch);
      m->plus_next = 0;
      continue;
    }
    fuse_session_process_buf(m->se, &fbuf, ch);
    m->plus_next = 0; /* consumed by ll_readdir, or the request never got there */
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

const char *ff_session_start(napi_env env, ff_mnt_t *m, napi_value fn) {
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == NULL) return "no event loop";
  int fd = fuse_chan_fd(m->ch);
  int fl = fcntl(fd, F_GETFL);
  if (fl == -1 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) == -1) return "cannot make /dev/fuse non-blocking";
  m->bufsize = fuse_chan_bufsize(m->ch);
  m->buf = malloc(m->bufsize);
  ff_jsloop_t *j = calloc(1, sizeof *j);
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
    close_handles(j);
    free(m->buf);
    m->buf = NULL;
    return "cannot poll /dev/fuse";
  }
  m->js = j;
  return NULL;
}
