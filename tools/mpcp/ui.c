/* SPDX-License-Identifier: MIT */
/* ui.c - what mpcp says: error messages, the -i question, --help and the progress bar.
 *
 * The progress bar is one line on stderr, redrawn in place. It never reaches the terminal's last
 * column (a character there makes many terminals wrap, and the next "\r" would then redraw on a
 * new line every time), so its layout is chosen for the width: the full bar with bytes, rate
 * and ETA where it fits, fewer fields on a narrower terminal, down to a bare percentage. The
 * width comes from TIOCGWINSZ on stderr and is asked again after SIGWINCH; when stderr is not a
 * terminal (--progress into a file), from $COLUMNS, else 80.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "mpcp.h"

static bool progress_visible;
bool progress_on;
static uint64_t progress_total;
static int64_t progress_start_ns;
static int columns; /* 0: not asked yet */

void progress_clear(void)
{
    if (progress_visible) {
        fputs("\r\033[K", stderr);
        progress_visible = false;
    }
}

void say_error(const char *fmt, ...)
{
    progress_clear();
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nTry '%s --help' for more information.\n", prog);
    va_end(ap);
    exit(EXIT_USAGE);
}

const char *type_name(mode_t m)
{
    if (S_ISDIR(m)) return "a directory";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISSOCK(m)) return "a socket";
    if (S_ISLNK(m)) return "a symbolic link";
    return "not a regular file";
}

/* -i: asks on stderr, reads one line from stdin; yes is an answer starting with y or Y (as GNU
 * cp in the C locale). End of input is no. */
bool ask_overwrite(const char *dst)
{
    progress_clear();
    fprintf(stderr, "%s: overwrite '%s'? ", prog, dst);
    fflush(stderr);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);
    bool yes = n > 0 && (line[0] == 'y' || line[0] == 'Y');
    free(line);
    return yes;
}

void usage(FILE *f)
{
    fprintf(f,
            "Usage: %s [OPTION]... [-T] SRC DST\n"
            "  or:  %s [OPTION]... SRC... DIRECTORY\n"
            "  or:  %s [OPTION]... -t DIRECTORY SRC...\n"
            "Copy files like cp, with several worker processes. One file is split by size\n"
            "across the workers; several files are copied side by side. Each file is written\n"
            "to a temporary file beside its destination and renamed into place only when the\n"
            "whole copy succeeded, so a failed or interrupted copy never leaves a partial\n"
            "file and never harms an existing destination.\n"
            "\n"
            "Options shared with GNU cp (same meaning):\n"
            "  -a, --archive        same as -dR --preserve=all\n"
            "  -d                   same as -P (hard links are not kept)\n"
            "  -f, --force          replace a destination even when it is not writable\n"
            "  -i, --interactive    ask before replacing a destination (cancels -n)\n"
            "  -n, --no-clobber     never replace an existing destination (cancels -i)\n"
            "  -H                   follow symbolic links given on the command line\n"
            "  -L, --dereference    always follow symbolic links in SRC\n"
            "  -P, --no-dereference never follow symbolic links in SRC: copy them as links\n"
            "                       (the default with -r; without -r links are followed)\n"
            "  -p                   same as --preserve=mode,ownership,timestamps\n"
            "      --preserve[=LIST]  keep these attributes: mode, ownership, timestamps,\n"
            "                       all (the three; also the default)\n"
            "  -r, -R, --recursive  copy directories and all they hold\n"
            "      --reflink[=WHEN] clone the data (FICLONE): auto (the default: clone where\n"
            "                       the filesystem can, else copy), always (fail where it\n"
            "                       cannot; the bare --reflink), never (copy the bytes)\n"
            "      --sparse=WHEN    holes: auto (the default: keep the holes of a sparse\n"
            "                       source), always (zero blocks become holes), never\n"
            "  -t, --target-directory=DIRECTORY  copy every SRC into DIRECTORY\n"
            "  -T, --no-target-directory         treat DST as a file name, even a directory\n"
            "  -u, --update         copy only when SRC is newer than DST or DST is missing\n"
            "  -v, --verbose        print 'SRC' -> 'DST' for each file copied\n"
            "\n"
            "Options of mpcp:\n"
            "  -j, --jobs=N         worker processes (default: the number of usable CPUs)\n"
            "      --chunk=SIZE     bytes per work item, with K, M, G or T suffix (binary);\n"
            "                       default: file size / (4 N), at least 1M\n"
            "      --fsync          flush each copy and its directory to the storage device\n"
            "                       before calling it done\n"
            "      --verify         before renaming a copy into place, read it back from the\n"
            "                       storage, past the page cache, and compare it byte for\n"
            "                       byte with the source (what it proves: see mpcp(1))\n"
            "  -q, --quiet          print errors only (no progress bar unless --progress)\n"
            "      --progress       always draw the progress bar on stderr; it fits the\n"
            "                       terminal (or $COLUMNS when stderr is not a terminal)\n"
            "      --no-progress    never draw it (default: only when stdout and stderr\n"
            "                       are terminals)\n"
            "  -h, --help           show this help and exit\n"
            "  -V, --version        show the version and exit\n"
            "\n"
            "FIFOs, devices and sockets are refused, as is copying a file onto itself. A\n"
            "destination that is a symlink to a file is written through. mpcp(1) lists the\n"
            "differences from cp.\n"
            "\n"
            "Exit status:\n"
            "  0    every file was copied (or skipped by -n, -u or a 'no' to -i)\n"
            "  1    at least one file failed (its message names the path and the cause)\n"
            "  2    usage error (bad option or argument; GNU cp says 1)\n"
            "  130  interrupted by SIGINT (143 SIGTERM, 129 SIGHUP); no partial file is left\n",
            prog, prog, prog);
}

/* ---- progress -------------------------------------------------------------------------------- */

static void human(char *out, size_t len, double v)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    snprintf(out, len, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

static int query_columns(void)
{
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    const char *c = getenv("COLUMNS");
    long v = c ? strtol(c, NULL, 10) : 0;
    return v > 0 && v < 10000 ? (int)v : 80;
}

void progress_start(uint64_t total)
{
    progress_total = total;
    progress_start_ns = now_ns();
}

void progress_draw(const char *label)
{
    if (!columns || got_winch) {
        got_winch = 0;
        columns = query_columns();
    }
    uint64_t done = atomic_load_explicit(&sh->bytes, memory_order_relaxed);
    if (done > progress_total) done = progress_total;
    double secs = (double)(now_ns() - progress_start_ns) / 1e9;
    double rate = secs > 0 ? (double)done / secs : 0;
    char d[32], t[32], r[32], eta[32] = "--:--";
    human(d, sizeof d, (double)done);
    human(t, sizeof t, (double)progress_total);
    human(r, sizeof r, rate);
    if (rate > 0) {
        uint64_t left = (uint64_t)((double)(progress_total - done) / rate + 0.5);
        snprintf(eta, sizeof eta, "%" PRIu64 ":%02" PRIu64, left / 60, left % 60);
    }
    int pct = progress_total ? (int)(done * 100 / progress_total) : 100;
    int room = columns - 1; /* never the last column */
    char tail[160], line[512];
    /* Widest first: a bar (at least 10 wide) with everything, a bar without the rate, no bar,
     * then the bare percentage. */
    line[0] = 0;
    for (int with_rate = 1; with_rate >= 0 && !line[0]; with_rate--) {
        if (with_rate)
            snprintf(tail, sizeof tail, " %3d%%  %s / %s  %s/s  ETA %s", pct, d, t, r, eta);
        else
            snprintf(tail, sizeof tail, " %3d%%  %s / %s  ETA %s", pct, d, t, eta);
        int fixed = (int)strlen(label) + 3 + (int)strlen(tail); /* "label [" "]" */
        if (room - fixed < 10) continue;
        int width = room - fixed > 50 ? 50 : room - fixed;
        char bar[51];
        int fill = pct * width / 100;
        for (int i = 0; i < width; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[width] = 0;
        snprintf(line, sizeof line, "%s [%s]%s", label, bar, tail);
    }
    if (!line[0]) {
        snprintf(line, sizeof line, "%s %3d%%  %s / %s  ETA %s", label, pct, d, t, eta);
        if ((int)strlen(line) > room) snprintf(line, sizeof line, "%s %d%%", label, pct);
        if ((int)strlen(line) > room) snprintf(line, sizeof line, "%d%%", pct);
        if (room > 0 && (int)strlen(line) > room) line[room] = 0;
    }
    fprintf(stderr, "\r%s\033[K", line);
    fflush(stderr);
    progress_visible = true;
}

void progress_end(const char *label)
{
    progress_draw(label);
    fputc('\n', stderr);
    progress_visible = false;
}
