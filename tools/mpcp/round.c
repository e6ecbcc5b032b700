/* SPDX-License-Identifier: MIT */
/* round.c - the parent's side of a round (copy or verify): it starts up to -j workers with
 * mp_process, draws the progress bar while it waits on their sentinels, and turns a worker's
 * death into a failure of the file it was working on. Signal handlers only raise flags; all
 * clean-up runs in the normal flow of the parent. */
#include <errno.h>
#include <poll.h>
#include <string.h>

#include "mproc/process.h"
#include "mpcp.h"

static void on_signal(int sig)
{
    got_signal = sig;
    if (sh) atomic_store(&sh->stop, 1); /* lock-free atomic: async-signal-safe */
}

static void on_winch(int sig)
{
    (void)sig;
    got_winch = 1;
}

void install_signals(void)
{
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    if (progress_on) { /* a resized terminal: the bar is laid out again at the next draw */
        /* SA_RESTART: a resize during the -i question must not read as an answer. */
        struct sigaction wa = {.sa_handler = on_winch, .sa_flags = SA_RESTART};
        sigemptyset(&wa.sa_mask);
        sigaction(SIGWINCH, &wa, NULL);
    }
    /* A file size limit must surface as EFBIG with a message, not kill us (workers inherit it). */
    signal(SIGXFSZ, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
}

static void report_worker_death(int w, pid_t pid, int code)
{
    int64_t f = atomic_load(&sh->current[w]);
    if (f >= 0 && f < nbatch) {
        file_slot *s = &sh->files[f];
        int zero = 0;
        if (atomic_compare_exchange_strong(&s->err, &zero, ERR_WORKER_DIED)) {
            s->op = OP_COPY;
            s->worker = (int)pid;
            s->worker_sig = code;
        }
    } else if (!got_signal) {
        /* It died between chunks; any chunk it had claimed stays uncounted, so its file fails. */
        if (code < 0)
            say_error("worker %d (pid %d) was killed by signal %d (%s)", w, (int)pid, -code,
                      strsignal(-code));
        else
            say_error("worker %d (pid %d) exited with status %d", w, (int)pid, code);
    }
}

/* Runs one round (copy or verify) over the active files of the batch with up to opt.jobs
 * workers, drawing progress while it waits. Files cloned by FICLONE sit out the copy round. */
void run_round(int phase)
{
    uint64_t chunks = 0, bytes = 0;
    for (int i = 0; i < nbatch; i++) {
        job *j = &batch[i];
        j->base = chunks;
        if (!j->active) continue;
        if (phase == PHASE_COPY && j->cloned) {
            atomic_store(&sh->files[i].chunks_done, j->nchunks);
            continue;
        }
        chunks += j->nchunks;
        bytes += j->size;
        atomic_store(&sh->files[i].chunks_done, 0);
    }
    if (chunks == 0) return;
    round_chunks = chunks;
    sh->phase = (uint32_t)phase;
    atomic_store(&sh->next_chunk, 0);
    atomic_store(&sh->bytes, 0);
    for (int w = 0; w < MAX_JOBS; w++)
        atomic_store(&sh->current[w], -1);
    progress_start(bytes);

    int n = opt.jobs < (int64_t)chunks ? opt.jobs : (int)chunks;
    mp_process *procs[MAX_JOBS] = {0};
    int args[MAX_JOBS];
    bool alive[MAX_JOBS] = {0};
    int running = 0;
    fflush(NULL);
    for (int w = 0; w < n && !got_signal; w++) {
        args[w] = w;
        char name[32];
        snprintf(name, sizeof name, "mpcp-worker-%d", w);
        int r = mp_process_new(&procs[w], name, worker_main, &args[w]);
        if (r == 0) r = mp_process_start(procs[w]);
        if (r < 0) {
            say_error("cannot start worker %d: %s", w, strerror(-r));
            mp_process_free(&procs[w]);
            if (w == 0) { /* nobody to do the work: fail every file of the round */
                for (int i = 0; i < nbatch; i++) {
                    file_slot *s = &sh->files[i];
                    int zero = 0;
                    if (batch[i].active && atomic_compare_exchange_strong(&s->err, &zero, -r))
                        s->op = OP_COPY;
                }
            }
            break;
        }
        alive[w] = true;
        running++;
    }

    const char *label = phase == PHASE_COPY ? "copy" : "verify";
    int64_t kill_at = -1;
    while (running > 0) {
        struct pollfd pfd[MAX_JOBS];
        int map[MAX_JOBS], np = 0;
        for (int w = 0; w < n; w++) {
            if (!alive[w]) continue;
            pfd[np].fd = mp_process_sentinel(procs[w]);
            pfd[np].events = POLLIN;
            map[np++] = w;
        }
        if (progress_on) progress_draw(label);
        /* On EINTR (a signal) or another failure revents are not filled in: check nothing this
         * round, and go round again after looking at got_signal. */
        int ready = poll(pfd, (nfds_t)np, progress_on ? 200 : 1000);
        for (int k = 0; k < np && ready > 0; k++) {
            if (!(pfd[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            int w = map[k], code = 0;
            mp_process_join(procs[w], MP_FOREVER);
            if (mp_process_exitcode(procs[w], &code) == 0 && code != 0)
                report_worker_death(w, mp_process_pid(procs[w]), code);
            alive[w] = false;
            running--;
        }
        if (got_signal) {
            atomic_store(&sh->stop, 1);
            if (kill_at < 0)
                kill_at = now_ns() + 3000000000LL;
            else if (now_ns() > kill_at) /* a worker stuck in a syscall: don't wait forever */
                for (int w = 0; w < n; w++)
                    if (alive[w]) mp_process_kill(procs[w]);
        }
    }
    for (int w = 0; w < n; w++)
        mp_process_free(&procs[w]);
    if (progress_on) progress_end(label);
}
