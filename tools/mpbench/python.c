/* SPDX-License-Identifier: MIT */
/* python.c - --compare python: runs mpbench_peer.py, which measures the same figures with
 * Python's multiprocessing, and stores its medians beside ours.
 *
 * The peer is found at $MPBENCH_PEER, else next to this source file (build tree), else in
 * <prefix>/share/mproc/ relative to the installed binary. It gets the figure names mpbench
 * measured and prints one "name median min max" line per figure it knows.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mpbench.h"

static bool find_peer(char *out, size_t len)
{
    const char *env = getenv("MPBENCH_PEER");
    if (env && *env) {
        snprintf(out, len, "%s", env);
        return access(out, R_OK) == 0;
    }
    char src[4096];
    snprintf(src, sizeof src, "%s", __FILE__);
    snprintf(out, len, "%s/mpbench_peer.py", dirname(src));
    if (out[0] == '/' && access(out, R_OK) == 0) return true;
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        const char *rel[] = {"mpbench_peer.py", "../share/mproc/mpbench_peer.py"};
        char *dir = dirname(exe);
        for (int i = 0; i < 2; i++) {
            snprintf(out, len, "%s/%s", dir, rel[i]);
            if (access(out, R_OK) == 0) return true;
        }
    }
    return false;
}

int mpb_python(char *why, size_t len)
{
    const char *py = mpb_find_program("MPBENCH_PYTHON", "python3");
    char peer[4200];
    if (!py) {
        snprintf(why, len, "python3 is not installed");
        return -1;
    }
    if (!find_peer(peer, sizeof peer)) {
        snprintf(why, len, "mpbench_peer.py not found (set MPBENCH_PEER to its path)");
        return -1;
    }
    char reps[16];
    snprintf(reps, sizeof reps, "%d", mpb->reps);
    char **argv = calloc((size_t)mpb->nfigs + 10, sizeof *argv);
    int a = 0;
    argv[a++] = (char *)py;
    argv[a++] = peer;
    argv[a++] = "--reps";
    argv[a++] = reps;
    if (mpb->quick) argv[a++] = "--quick";
    if (mpb->tiny) argv[a++] = "--tiny";
    for (int i = 0; i < mpb->nfigs; i++)
        if (!mpb_is_aux(mpb->figs[i].name) && strncmp(mpb->figs[i].name, "peers.", 6) != 0)
            argv[a++] = mpb->figs[i].name; /* the .p99 comes along */
    argv[a] = NULL;
    if (a == 4 + mpb->quick + mpb->tiny) {
        free(argv);
        snprintf(why, len, "nothing was measured to compare");
        return -1;
    }
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) {
        free(argv);
        snprintf(why, len, "pipe: %s", strerror(errno));
        return -1;
    }
    fflush(stdout);
    fflush(stderr);
    mpb_note("running Python's multiprocessing: %s", peer);
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0); /* one group: Ctrl-C kills the peer and every process it forked */
        signal(SIGPIPE, SIG_DFL);
        sigset_t mask;
        sigprocmask(SIG_SETMASK, NULL, &mask);
        mpb_unblock_stop_signals(&mask);
        sigprocmask(SIG_SETMASK, &mask, NULL);
        dup2(fds[1], 1);
        execv(py, argv);
        _exit(127);
    }
    free(argv);
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        snprintf(why, len, "fork: %s", strerror(errno));
        return -1;
    }
    setpgid(pid, pid);
    mpb_track_group(pid);
    FILE *in = fdopen(fds[0], "r");
    char line[512];
    int got = 0;
    while (in && fgets(line, sizeof line, in)) {
        char name[128];
        double med, lo, hi;
        if (sscanf(line, "%127s %lf %lf %lf", name, &med, &lo, &hi) != 4) continue;
        mpb_fig *f = mpb_find(name);
        if (f) {
            f->python = med;
            got++;
        }
    }
    if (in) fclose(in);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    kill(-pid, SIGKILL); /* anything the peer left behind */
    mpb_track_group(0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        snprintf(why, len, "the Python peer failed (%s %d)",
                 WIFEXITED(st) ? "exit status" : "signal",
                 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        return -1;
    }
    if (got == 0) fprintf(stderr, "mpbench: Python has no counterpart for these figures\n");
    return 0;
}
