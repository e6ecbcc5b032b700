/* SPDX-License-Identifier: MIT */
/* main.c - mpcp: copy files like cp, with several worker processes.
 *
 * The parent plans the work and never copies a byte itself. Every file is cut into chunks (by
 * default four per worker, at least 1 MiB); the chunks of all files of a batch form one numbered
 * list, and the workers (forked with mp_process) take the next chunk number from a counter in
 * anonymous shared memory until the list is exhausted. So one big file is split across the
 * workers, and many small files are copied side by side.
 *
 * Nothing is lost: every file is copied into a temporary file beside its destination and
 * renamed into place only when every chunk of it was copied (and verified, with --verify). On
 * any failure - an error in a worker, a worker that died, SIGINT/SIGTERM/SIGHUP - the temporary
 * is unlinked and an existing destination is left as it was. See mpcp.h for the parts.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "mpcp.h"

options opt = {.progress = -1, .reflink = REFLINK_AUTO};
shared *sh;
job *batch;
int nbatch;
uint64_t round_chunks;
int slow_ms;
volatile sig_atomic_t got_signal;
volatile sig_atomic_t got_winch;
const char *prog = "mpcp";

int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Where the operands go: -t DIR, -T (DST is a file name even when a directory is there), or as
 * cp decides: into DST when it is a directory, else onto DST (then only one source). */
static int destination(char **ops, int nops, const char **dst, int *nsrc, bool *dst_is_dir)
{
    struct stat st;
    if (opt.target_dir) {
        *dst = opt.target_dir;
        *nsrc = nops;
        if (stat(*dst, &st) < 0 || !S_ISDIR(st.st_mode)) {
            say_error("target directory '%s': %s", *dst, strerror(errno ? errno : ENOTDIR));
            return -1;
        }
        *dst_is_dir = true;
        return 0;
    }
    *dst = ops[nops - 1];
    *nsrc = nops - 1;
    if (opt.no_target_dir) {
        *dst_is_dir = false;
        return 0;
    }
    *dst_is_dir = stat(*dst, &st) == 0 && S_ISDIR(st.st_mode);
    if (*nsrc > 1 && !*dst_is_dir) {
        say_error("target '%s' is not a directory%s", *dst,
                  access(*dst, F_OK) < 0 ? " (it does not exist)" : "");
        return -1;
    }
    if (!*dst_is_dir && (*dst)[strlen(*dst) - 1] == '/') {
        say_error("cannot create regular file '%s': %s", *dst, strerror(ENOTDIR));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    parse_options(argc, argv);
    /* Test hooks, for the test suite only: slow workers, a flipped byte before verification, a
     * stop before verification (and MPCP_TEST_NO_DIRECT in file.c). */
    const char *env = getenv("MPCP_TEST_SLOW");
    slow_ms = env ? atoi(env) : 0;
    bool corrupt = getenv("MPCP_TEST_CORRUPT") != NULL;
    bool stop_before_verify = getenv("MPCP_TEST_STOP_BEFORE_VERIFY") != NULL;

    const char *dst;
    int nsrc;
    bool dst_is_dir;
    errno = 0;
    if (destination(argv + optind, argc - optind, &dst, &nsrc, &dst_is_dir) < 0) return EXIT_FAILED;

    void *mem =
        mmap(NULL, sizeof(shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        say_error("cannot map shared memory: %s", strerror(errno));
        return EXIT_FAILED;
    }
    sh = mem;
    install_signals();
    batch = calloc(BATCH_FILES, sizeof(job));
    if (!batch) {
        say_error("out of memory");
        return EXIT_FAILED;
    }

    plan(argv + optind, nsrc, dst, dst_is_dir);
    int failed = plan_failed;
    size_t n = nitems;
    for (size_t first = 0; first < n && !got_signal; first += BATCH_FILES) {
        nbatch = n - first < BATCH_FILES ? (int)(n - first) : BATCH_FILES;
        memset(batch, 0, (size_t)nbatch * sizeof(job));
        for (int i = 0; i < nbatch; i++) {
            memset(&sh->files[i], 0, sizeof(file_slot));
            batch[i].src = items[first + i].src;
            batch[i].nofollow = items[first + i].nofollow;
            batch[i].sfd = batch[i].tfd = -1;
        }
        for (int i = 0; i < nbatch && !got_signal; i++)
            if (prepare(&batch[i], items[first + i].dst) < 0) failed++;
        if (!got_signal) run_round(PHASE_COPY);
        if (opt.verify && !got_signal) {
            for (int i = 0; i < nbatch; i++) { /* verify only the copies that are whole */
                job *j = &batch[i];
                if (!j->active) continue;
                if (atomic_load(&sh->files[i].err) ||
                    atomic_load(&sh->files[i].chunks_done) != j->nchunks) {
                    report_failure(j);
                    j->active = false;
                    failed++;
                }
            }
            if (corrupt) corrupt_for_test();
            if (stop_before_verify) raise(SIGSTOP); /* the test changes the copy on the disk */
            for (int i = 0; i < nbatch; i++)
                if (batch[i].active) prepare_verify(&batch[i]);
            run_round(PHASE_VERIFY);
        }
        for (int i = 0; i < nbatch; i++) {
            job *j = &batch[i];
            if (j->active && !got_signal && finish(j) < 0) failed++;
            job_close(j); /* unlinks the temporary of anything not renamed */
        }
    }
    plan_failed = 0;
    finish_dirs(); /* also after a signal: directories made 0700 get their mode */
    failed += plan_failed;
    plan_free();
    free(batch);
    progress_clear();
    if (got_signal) {
        say_error("interrupted by signal %d (%s): no partial file left", (int)got_signal,
                  strsignal(got_signal));
        return 128 + got_signal;
    }
    return failed ? EXIT_FAILED : EXIT_OK;
}
