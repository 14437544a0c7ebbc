/*
 * Read answers off the JS thread. The write of a long read answer to /dev/fuse is where the kernel copies
 * the data into the reader's pages, most of the answer's cost; reply.c hands answers of at least
 * FF_ASYNC_READ_MIN bytes to REPLY_THREADS threads of the process, which write them in the order queued while
 * JS goes on, so several go out in parallel. JS's Buffer is held by a reference until the answer went out
 * and the after-work callback (JS thread) dropped it. Such a request is out of the pending list before its
 * work is queued: the work answers it, nothing else does.
 *
 * The session's end waits for answers still queued or being written (works_sending, see ff_mnt_t) before
 * the descriptor is closed and the session destroyed; the mount's memory is freed only after the last of
 * their after-work callbacks ran (works_queued, finalized).
 */

#include "ferry_fuse.h"

#include <stdlib.h>

typedef struct rwork {
  struct rwork *next; /* in the reply queue */
  napi_env env;
  ff_mnt_t *m;
  fuse_req_t fr;
  napi_ref ref; /* keeps JS's Buffer (data) alive until the answer went out */
  const char *data;
  size_t len;
} rwork_t;

/* Reply thread: sends a read answer, then lets teardown go on if it waits for this one. */
static void read_reply_send(rwork_t *w) {
  fuse_reply_buf(w->fr, w->data, w->len);
  ff_mnt_t *m = w->m;
  pthread_mutex_lock(&m->works_lock);
  if (--m->works_sending == 0) pthread_cond_broadcast(&m->works_done);
  pthread_mutex_unlock(&m->works_lock);
}

/* JS thread: the answer went out; drop the Buffer. */
static void read_reply_after(rwork_t *w) {
  napi_handle_scope scope;
  int scoped = napi_open_handle_scope(w->env, &scope) == napi_ok;
  napi_delete_reference(w->env, w->ref);
  if (scoped) napi_close_handle_scope(w->env, scope);
  ff_mnt_t *m = w->m;
  free(w);
  if (--m->works_queued == 0 && m->finalized) ff_mnt_free(m);
}

/*
 * The reply threads: REPLY_THREADS threads of the process write long read answers, in the order queued. Not
 * libuv's thread pool: there an answer waited behind the block reads that read-ahead queued (FIFO, four
 * threads), and the reader with it. Each answer written goes back to the JS thread of its env through
 * reply_done (a thread-safe function of that env, unreferenced: it keeps nothing alive), which drops the
 * Buffer. Created at the first long answer; they live as long as the process. Only one env uses them (the
 * first one's); answers of mounts in other envs (worker threads) are written on their JS thread.
 */
#define REPLY_THREADS 2
static pthread_mutex_t replyq_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t replyq_ready = PTHREAD_COND_INITIALIZER;
static rwork_t *replyq_head, *replyq_tail;
static napi_env reply_env;
static napi_threadsafe_function reply_done;

static void reply_done_js(napi_env env, napi_value js_cb, void *context, void *data) {
  (void) env;
  (void) js_cb;
  (void) context;
  read_reply_after((rwork_t *) data);
}

static void *reply_thread(void *arg) {
  (void) arg;
  for (;;) {
    pthread_mutex_lock(&replyq_lock);
    while (replyq_head == NULL) pthread_cond_wait(&replyq_ready, &replyq_lock);
    rwork_t *w = replyq_head;
    replyq_head = w->next;
    if (replyq_head == NULL) replyq_tail = NULL;
    pthread_mutex_unlock(&replyq_lock);
    read_reply_send(w);
    /* Fails only while the env shuts down: the Buffer then goes with it. */
    napi_call_threadsafe_function(reply_done, w, napi_tsfn_blocking);
  }
  return NULL;
}

/* The reply threads for env, started at the first call; 0 if this env may use them. JS thread. */
static int reply_threads_for(napi_env env) {
  if (reply_done != NULL) return reply_env == env ? 0 : -1;
  napi_value name;
  if (napi_create_string_utf8(env, "ferry-fuse-reply", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_threadsafe_function(env, NULL, NULL, name, 0, 1, NULL, NULL, NULL, reply_done_js, &reply_done) != napi_ok) {
    reply_done = NULL;
    return -1;
  }
  napi_unref_threadsafe_function(env, reply_done);
  reply_env = env;
  int started = 0;
  for (int i = 0; i < REPLY_THREADS; i++) {
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, reply_thread, NULL) == 0) started++;
    pthread_attr_destroy(&attr);
  }
  if (started == 0) {
    /* Nothing would ever write what is queued: answer on the JS thread for good. */
    reply_env = NULL;
    return -1;
  }
  return 0;
}

int ff_reply_read_async(napi_env env, ff_mnt_t *m, fuse_req_t fr, napi_value buf, const char *data, size_t len) {
  if (reply_threads_for(env) != 0) return -1;
  rwork_t *w = calloc(1, sizeof *w);
  if (w == NULL) return -1;
  if (napi_create_reference(env, buf, 1, &w->ref) != napi_ok) {
    free(w);
    return -1;
  }
  w->env = env;
  w->m = m;
  w->fr = fr;
  w->data = data;
  w->len = len;
  pthread_mutex_lock(&m->works_lock);
  m->works_sending++;
  pthread_mutex_unlock(&m->works_lock);
  m->works_queued++;
  pthread_mutex_lock(&replyq_lock);
  if (replyq_tail == NULL) replyq_head = w;
  else replyq_tail->next = w;
  replyq_tail = w;
  pthread_cond_signal(&replyq_ready);
  pthread_mutex_unlock(&replyq_lock);
  return 0;
}

void ff_wait_read_replies(ff_mnt_t *m) {
  pthread_mutex_lock(&m->works_lock);
  while (m->works_sending > 0) pthread_cond_wait(&m->works_done, &m->works_lock);
  pthread_mutex_unlock(&m->works_lock);
}
