/* SPDX-License-Identifier: MIT */
/* options.c - the command line. Options that GNU cp has mean what they mean in GNU cp
 * (coreutils 9): -i and -n override each other (the last wins) and -f changes neither; without
 * -r symbolic links in SRC are followed, with -r they are copied as links unless -L or -H. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mproc/process.h"
#include "mpcp.h"

static bool parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!*s || *s == '-') return false;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s) return false;
    int shift = 0;
    switch (*end) {
    case 'k':
    case 'K':
        shift = 10;
        break;
    case 'm':
    case 'M':
        shift = 20;
        break;
    case 'g':
    case 'G':
        shift = 30;
        break;
    case 't':
    case 'T':
        shift = 40;
        break;
    default:
        break;
    }
    if (shift) end++;
    if (shift && (*end == 'i' || *end == 'I')) end++;
    if (*end == 'b' || *end == 'B') end++;
    if (*end || v == 0 || v > (UINT64_MAX >> shift)) return false;
    *out = (uint64_t)v << shift;
    return true;
}

/* WHEN arguments: one of the names (an unambiguous prefix is accepted, as GNU's argmatch). */
static int parse_when(const char *opt_name, const char *arg, const char *const *names, int n)
{
    int found = -1;
    size_t len = strlen(arg);
    for (int i = 0; i < n; i++) {
        if (!strcmp(arg, names[i])) return i;
        if (len && !strncmp(arg, names[i], len)) found = found == -1 ? i : -2;
    }
    if (found >= 0) return found;
    usage_error("invalid argument '%s' for '--%s' (valid: %s, %s, %s)", arg, opt_name, names[0],
                names[1], names[2]);
}

static void parse_preserve(const char *list)
{
    char *copy = strdup(list), *save = NULL;
    if (!copy) usage_error("out of memory");
    for (char *w = strtok_r(copy, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
        if (!strcmp(w, "mode"))
            opt.keep_mode = true;
        else if (!strcmp(w, "ownership"))
            opt.keep_owner = true;
        else if (!strcmp(w, "timestamps"))
            opt.keep_times = true;
        else if (!strcmp(w, "all"))
            opt.keep_mode = opt.keep_owner = opt.keep_times = true;
        else if (!strcmp(w, "links") || !strcmp(w, "context") || !strcmp(w, "xattr"))
            usage_error("--preserve=%s is not supported by mpcp (mode, ownership, timestamps, "
                        "all are)",
                        w);
        else
            usage_error("invalid argument '%s' for '--preserve'", w);
    }
    free(copy);
}

static void preserve_default(void)
{
    opt.keep_mode = opt.keep_owner = opt.keep_times = true;
}

void parse_options(int argc, char **argv)
{
    enum {
        O_CHUNK = 256,
        O_VERIFY,
        O_FSYNC,
        O_PROGRESS,
        O_NO_PROGRESS,
        O_PRESERVE,
        O_REFLINK,
        O_SPARSE
    };
    static const struct option longopts[] = {{"jobs", required_argument, NULL, 'j'},
                                             {"chunk", required_argument, NULL, O_CHUNK},
                                             {"archive", no_argument, NULL, 'a'},
                                             {"preserve", optional_argument, NULL, O_PRESERVE},
                                             {"force", no_argument, NULL, 'f'},
                                             {"interactive", no_argument, NULL, 'i'},
                                             {"no-clobber", no_argument, NULL, 'n'},
                                             {"dereference", no_argument, NULL, 'L'},
                                             {"no-dereference", no_argument, NULL, 'P'},
                                             {"update", no_argument, NULL, 'u'},
                                             {"target-directory", required_argument, NULL, 't'},
                                             {"no-target-directory", no_argument, NULL, 'T'},
                                             {"reflink", optional_argument, NULL, O_REFLINK},
                                             {"sparse", required_argument, NULL, O_SPARSE},
                                             {"verbose", no_argument, NULL, 'v'},
                                             {"quiet", no_argument, NULL, 'q'},
                                             {"verify", no_argument, NULL, O_VERIFY},
                                             {"fsync", no_argument, NULL, O_FSYNC},
                                             {"progress", no_argument, NULL, O_PROGRESS},
                                             {"no-progress", no_argument, NULL, O_NO_PROGRESS},
                                             {"recursive", no_argument, NULL, 'r'},
                                             {"help", no_argument, NULL, 'h'},
                                             {"version", no_argument, NULL, 'V'},
                                             {NULL, 0, NULL, 0}};
    static const char *const reflinks[] = {"never", "auto", "always"};
    static const char *const sparses[] = {"auto", "always", "never"};
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":j:adfinHLPprRt:TuvqhV", longopts, NULL)) != -1) {
        switch (c) {
        case 'j': {
            char *end;
            errno = 0;
            long v = strtol(optarg, &end, 10);
            if (errno || *end || end == optarg || v < 1 || v > MAX_JOBS)
                usage_error("invalid number of jobs '%s' (1..%d)", optarg, MAX_JOBS);
            opt.jobs = (int)v;
            break;
        }
        case O_CHUNK:
            if (!parse_size(optarg, &opt.chunk))
                usage_error("invalid chunk size '%s' (a positive number, K/M/G/T suffix)", optarg);
            break;
        case 'a':
            opt.deref = DEREF_NEVER;
            opt.recursive = true;
            preserve_default();
            break;
        case 'd':
        case 'P':
            opt.deref = DEREF_NEVER;
            break;
        case 'H':
            opt.deref = DEREF_CMDLINE;
            break;
        case 'L':
            opt.deref = DEREF_ALWAYS;
            break;
        case 'p':
            preserve_default();
            break;
        case O_PRESERVE:
            if (optarg) {
                parse_preserve(optarg);
                opt.require_preserve = true;
            } else {
                preserve_default();
            }
            break;
        case 'f':
            opt.force = true;
            break;
        case 'i':
            opt.interactive = ASK_USER;
            break;
        case 'n':
            opt.interactive = ASK_ALWAYS_NO;
            break;
        case 'u':
            opt.update = true;
            break;
        case 't':
            if (opt.target_dir) usage_error("multiple target directories specified");
            opt.target_dir = optarg;
            break;
        case 'T':
            opt.no_target_dir = true;
            break;
        case O_REFLINK:
            opt.reflink = optarg ? parse_when("reflink", optarg, reflinks, 3) : REFLINK_ALWAYS;
            break;
        case O_SPARSE:
            opt.sparse = parse_when("sparse", optarg, sparses, 3);
            break;
        case 'v':
            opt.verbose = true;
            break;
        case 'q':
            opt.quiet = true;
            break;
        case O_VERIFY:
            opt.verify = true;
            break;
        case O_FSYNC:
            opt.fsync = true;
            break;
        case O_PROGRESS:
            opt.progress = 1;
            break;
        case O_NO_PROGRESS:
            opt.progress = 0;
            break;
        case 'r':
        case 'R':
            opt.recursive = true;
            break;
        case 'h':
            usage(stdout);
            exit(EXIT_OK);
        case 'V':
            printf("mpcp (mproc) %s\n", MPROC_TOOL_VERSION);
            exit(EXIT_OK);
        case ':':
            usage_error("option '%s' needs an argument", argv[optind - 1]);
        default:
            if (optopt) usage_error("invalid option -- '%c'", optopt);
            usage_error("unrecognized option '%s'", argv[optind - 1]);
        }
    }
    int nops = argc - optind;
    if (opt.target_dir && opt.no_target_dir)
        usage_error("cannot combine --target-directory (-t) and --no-target-directory (-T)");
    if (nops < 1) usage_error("missing file operand");
    if (!opt.target_dir && nops < 2)
        usage_error("missing destination file operand after '%s'", argv[optind]);
    if (opt.no_target_dir && nops > 2) usage_error("extra operand '%s'", argv[optind + 2]);
    /* As GNU cp: a clone has the source's layout, so only --sparse=auto goes with it. */
    if (opt.reflink == REFLINK_ALWAYS && opt.sparse != SPARSE_AUTO)
        usage_error("--reflink can be used only with --sparse=auto");
    if (opt.deref == DEREF_UNSET) opt.deref = opt.recursive ? DEREF_NEVER : DEREF_ALWAYS;
    if (!opt.jobs) opt.jobs = mp_cpu_count();
    if (opt.jobs < 1) opt.jobs = 1;
    if (opt.jobs > MAX_JOBS) opt.jobs = MAX_JOBS;
    /* The bar is drawn on stderr, but only for a person watching: none when either stream is
     * redirected, so a pipeline or a log never gets one. */
    if (opt.progress < 0)
        opt.progress = !opt.quiet && isatty(STDOUT_FILENO) && isatty(STDERR_FILENO);
    if (opt.quiet) opt.verbose = false;
    progress_on = opt.progress;
}
