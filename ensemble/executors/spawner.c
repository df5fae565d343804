/* The spawner: starts and watches the manager's local steps (see ensemble/executors/spawner.py).
 *
 * Usage: spawner PARENT_PID.  Requests come on stdin and answers go to stdout, one JSON object per
 * line each way (the protocol of ensemble/executors/wire.py plus "started" and "reap"):
 *
 *   in:  {"op":"start","id":7,"argv":[...],"cwd":"...","env":{...},"stdout":"...","stderr":"...","tag":"..."}
 *        {"op":"start","id":8,"after":7,...}       a chained start: when 7 exits 0, start 8 at once
 *        {"op":"start","id":8,"after":7,"inbox":"/d","seen":"1765100000123456789",...}
 *                                                  ... unless /d was modified since (mtime in ns)
 *        {"op":"signal","id":7,"sig":15}          to the attempt's process group, while it runs
 *                                                  (a chained start still waiting is cancelled)
 *        {"op":"cancel","id":8}                    cancel a chained start if it still waits
 *        {"op":"reap","ids":[7,8]}                 their ends are recorded: collect the zombies
 *   out: {"op":"ready","pid":4242}
 *        {"op":"started","id":7,"pid":4301,"start":1765100000.120}
 *        {"op":"exit","id":7,"code":0,"pid":4301,"end":1765100000.123}   minus N: killed by signal N
 *        {"op":"exit","id":7,"error":"[Errno 2] No such file or directory: 'x'"}
 *        {"op":"cancelled","id":8}                 a chained start that never started
 *        {"op":"warn","message":"..."}
 *
 * Each attempt runs in a new session with /dev/null as stdin and its log files as stdout and
 * stderr, its environment being the spawner's own with the request's variables on top.  An ended
 * attempt stays a zombie until the manager says "reap": if the manager dies first, this process
 * exits at end of file on stdin (or at its parent's death) without touching its children, and they
 * pass to the keeper, which records their exits; chained starts still waiting then never start.
 * A chained start waits for its predecessor (running, or itself waiting): it starts the moment the
 * predecessor exits with 0 and is cancelled, with everything chained after it, on any other end.  As a child subreaper it kills what an ended
 * attempt left running outside its group (found by ENSEMBLE_LAUNCH=<tag> in /proc/PID/environ).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 29))
#define HAVE_ADDCHDIR 1
#endif

extern char **environ;

/* -- output ------------------------------------------------------------------------------------ */
static char *out_buf;
static size_t out_len, out_cap;

static void out_bytes(const char *s, size_t n) {
    if (out_len + n > out_cap) {
        out_cap = (out_len + n) * 2 + 4096;
        out_buf = realloc(out_buf, out_cap);
        if (!out_buf) _exit(70);
    }
    memcpy(out_buf + out_len, s, n);
    out_len += n;
}

static void out_fmt(const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    out_bytes(tmp, n < (int)sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* The length of the valid UTF-8 sequence at s, or 0. */
static size_t utf8_len(const unsigned char *s) {
    size_t n = s[0] >= 0xf0 && s[0] < 0xf5 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    return n;
}

/* A JSON string: valid UTF-8 as it is, any other byte as U+FFFD. */
static void out_string(const char *s) {
    out_bytes("\"", 1);
    for (const unsigned char *c = (const unsigned char *)s; *c;) {
        size_t n = *c >= 0x80 ? utf8_len(c) : 1;
        if (*c == '"' || *c == '\\') { out_bytes("\\", 1); out_bytes((const char *)c, 1); }
        else if (*c < 0x20 || *c == 0x7f) out_fmt("\\u%04x", *c);
        else if (n) { out_bytes((const char *)c, n); c += n; continue; }
        else out_bytes("\\ufffd", 6);
        c++;
    }
    out_bytes("\"", 1);
}

static void flush_out(void) {
    size_t done = 0;
    while (done < out_len) {
        ssize_t n = write(1, out_buf + done, out_len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) _exit(0); /* the manager is gone */
        done += (size_t)n;
    }
    out_len = 0;
}

/* -- JSON in ----------------------------------------------------------------------------------- */
enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };
typedef struct jv {
    enum jtype type;
    double num;
    char *str;          /* J_STR: decoded bytes, NUL-terminated (a NUL inside is refused) */
    struct jv *items;   /* J_ARR, J_OBJ: values */
    char **keys;        /* J_OBJ */
    size_t n;
} jv;

typedef struct { const char *p, *end; int bad; } reader;

static void skip_ws(reader *r) {
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\r' || *r->p == '\n')) r->p++;
}

static int hex4(reader *r, unsigned *v) {
    if (r->end - r->p < 4) return 0;
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = *r->p++;
        *v <<= 4;
        if (c >= '0' && c <= '9') *v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') *v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') *v |= (unsigned)(c - 'A' + 10);
        else return 0;
    }
    return 1;
}

static void put_utf8(char **o, unsigned cp) {
    unsigned char *u = (unsigned char *)*o;
    if (cp < 0x80) *u++ = (unsigned char)cp;
    else if (cp < 0x800) { *u++ = 0xc0 | (cp >> 6); *u++ = 0x80 | (cp & 0x3f); }
    else if (cp < 0x10000) { *u++ = 0xe0 | (cp >> 12); *u++ = 0x80 | ((cp >> 6) & 0x3f); *u++ = 0x80 | (cp & 0x3f); }
    else { *u++ = 0xf0 | (cp >> 18); *u++ = 0x80 | ((cp >> 12) & 0x3f); *u++ = 0x80 | ((cp >> 6) & 0x3f);
           *u++ = 0x80 | (cp & 0x3f); }
    *o = (char *)u;
}

/* A string; a lone surrogate U+DC80..U+DCFF is the raw byte 0x80..0xFF (Python's surrogateescape). */
static char *parse_string(reader *r) {
    r->p++;
    char *s = malloc((size_t)(r->end - r->p) + 1), *o = s;
    if (!s) _exit(70);
    while (r->p < r->end && *r->p != '"') {
        unsigned char c = (unsigned char)*r->p++;
        if (c != '\\') { if (c < 0x20) break; *o++ = (char)c; continue; }
        if (r->p >= r->end) break;
        char e = *r->p++;
        unsigned cp;
        switch (e) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u':
            if (!hex4(r, &cp) || cp == 0) goto bad;
            if (cp >= 0xd800 && cp < 0xdc00 && r->end - r->p >= 6 && r->p[0] == '\\' && r->p[1] == 'u') {
                unsigned lo;
                const char *save = r->p;
                r->p += 2;
                if (hex4(r, &lo) && lo >= 0xdc00 && lo < 0xe000) cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                else r->p = save;
            }
            if (cp >= 0xdc80 && cp <= 0xdcff) *o++ = (char)(cp - 0xdc00);
            else if (cp >= 0xd800 && cp < 0xe000) goto bad;
            else put_utf8(&o, cp);
            break;
        default: goto bad;
        }
    }
    if (r->p < r->end && *r->p == '"') { r->p++; *o = 0; return s; }
bad:
    r->bad = 1;
    free(s);
    return NULL;
}

static void jfree(jv *v);

static void parse_value(reader *r, jv *v, int depth) {
    memset(v, 0, sizeof *v);
    skip_ws(r);
    if (r->p >= r->end || depth > 32) { r->bad = 1; return; }
    char c = *r->p;
    if (c == '"') { v->type = J_STR; v->str = parse_string(r); return; }
    if (c == '[' || c == '{') {
        int obj = c == '{';
        v->type = obj ? J_OBJ : J_ARR;
        size_t cap = 0;
        r->p++;
        skip_ws(r);
        if (r->p < r->end && *r->p == (obj ? '}' : ']')) { r->p++; return; }
        while (!r->bad) {
            if (v->n == cap) {
                cap = cap * 2 + 8;
                v->items = realloc(v->items, cap * sizeof *v->items);
                if (obj) v->keys = realloc(v->keys, cap * sizeof *v->keys);
                if (!v->items || (obj && !v->keys)) _exit(70);
            }
            if (obj) {
                skip_ws(r);
                if (r->p >= r->end || *r->p != '"') { r->bad = 1; return; }
                v->keys[v->n] = parse_string(r);
                skip_ws(r);
                if (r->bad || r->p >= r->end || *r->p++ != ':') { if (!r->bad) free(v->keys[v->n]); r->bad = 1; return; }
            }
            parse_value(r, &v->items[v->n], depth + 1);
            v->n++;
            skip_ws(r);
            if (r->p < r->end && *r->p == ',') { r->p++; continue; }
            if (r->p < r->end && *r->p == (obj ? '}' : ']')) { r->p++; return; }
            r->bad = 1;
        }
        return;
    }
    if (r->end - r->p >= 4 && !strncmp(r->p, "null", 4)) { r->p += 4; return; }
    if (r->end - r->p >= 4 && !strncmp(r->p, "true", 4)) { r->p += 4; v->type = J_BOOL; v->num = 1; return; }
    if (r->end - r->p >= 5 && !strncmp(r->p, "false", 5)) { r->p += 5; v->type = J_BOOL; return; }
    char *stop;
    v->num = strtod(r->p, &stop);
    if (stop == r->p || stop > r->end) { r->bad = 1; return; }
    v->type = J_NUM;
    r->p = stop;
}

static void jfree(jv *v) {
    free(v->str);
    for (size_t i = 0; i < v->n; i++) {
        jfree(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
}

static jv *get(jv *obj, const char *key, enum jtype type) {
    if (obj->type != J_OBJ) return NULL;
    for (size_t i = 0; i < obj->n; i++)
        if (obj->keys[i] && !strcmp(obj->keys[i], key)) return obj->items[i].type == type ? &obj->items[i] : NULL;
    return NULL;
}

/* -- attempts ---------------------------------------------------------------------------------- */
typedef struct {
    long long id;
    pid_t pid;
    int pidfd;
    int ended;
    int code;
    char *needle; /* "ENSEMBLE_LAUNCH=<tag>" */
} attempt;

static attempt *attempts;
static size_t n_attempts, cap_attempts;

/* Chained starts waiting for their predecessor's end; each owns its parsed request. */
typedef struct {
    long long id, after;
    jv msg;
} waiting_start;

static waiting_start *waiting;
static size_t n_waiting, cap_waiting;
static int epfd, devnull, subreaper;
static pid_t *doomed;
static int *doomed_fds;
static size_t n_doomed, cap_doomed;

static attempt *find(long long id) {
    for (size_t i = 0; i < n_attempts; i++)
        if (attempts[i].id == id) return &attempts[i];
    return NULL;
}

static int is_ours(pid_t pid) {
    for (size_t i = 0; i < n_attempts; i++)
        if (attempts[i].pid == pid) return 1;
    return 0;
}

static void forget(attempt *a) {
    free(a->needle);
    *a = attempts[--n_attempts];
}

static void send_error(long long id, const char *what, int err, const char *name) {
    char msg[4600];
    if (name) snprintf(msg, sizeof msg, "[Errno %d] %s: '%.4000s'", err, strerror(err), name);
    else snprintf(msg, sizeof msg, "[Errno %d] %s (%s)", err, strerror(err), what);
    out_fmt("{\"op\":\"exit\",\"id\":%lld,\"error\":", id);
    out_string(msg);
    out_bytes("}\n", 2);
}

static void warn(const char *fmt, int len, const char *arg) {
    char msg[4200];
    snprintf(msg, sizeof msg, fmt, len, arg);
    out_bytes("{\"op\":\"warn\",\"message\":", 23);
    out_string(msg);
    out_bytes("}\n", 2);
}

/* A new log file; an existing one is appended to, never truncated. */
static int open_log(const char *path) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0 || errno != EEXIST) return fd;
    fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && st.st_size > 0) warn("%.*s exists already: appending to it", 4000, path);
    return fd;
}

/* The environment: the spawner's own, each variable of the request replacing one of the same name. */
static char **build_env(jv *env) {
    size_t n_base = 0;
    while (environ[n_base]) n_base++;
    size_t n_over = env ? env->n : 0;
    char **envp = malloc((n_base + n_over + 1) * sizeof *envp);
    if (!envp) _exit(70);
    size_t k = 0;
    for (size_t i = 0; i < n_base; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t len = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        int replaced = 0;
        for (size_t j = 0; j < n_over && !replaced; j++)
            replaced = strlen(env->keys[j]) == len && !strncmp(env->keys[j], environ[i], len);
        if (!replaced) envp[k++] = environ[i];
    }
    for (size_t j = 0; j < n_over; j++) {
        if (env->items[j].type != J_STR) continue;
        size_t size = strlen(env->keys[j]) + strlen(env->items[j].str) + 2;
        char *entry = malloc(size);
        if (!entry) _exit(70);
        snprintf(entry, size, "%s=%s", env->keys[j], env->items[j].str);
        envp[k++] = entry;
    }
    envp[k] = NULL;
    return envp;
}

/* Free what build_env made (the request's variables come after the spawner's own). */
static void free_env(char **envp, jv *env) {
    size_t k = 0;
    while (envp[k]) k++;
    size_t made = 0;
    for (size_t j = 0; env && j < env->n; j++) made += env->items[j].type == J_STR;
    for (size_t i = k - made; i < k; i++) free(envp[i]);
    free(envp);
}

static const char *env_path(char **envp) {
    for (char **e = envp; *e; e++)
        if (!strncmp(*e, "PATH=", 5)) return *e + 5;
    return "/bin:/usr/bin";
}

/* Start one program file: posix_spawn (a vfork-like clone) where the C library can change the
 * child's directory, fork and exec elsewhere.  Returns 0 or an errno; retries ETXTBSY a little
 * (a script just written may still be open for writing in a child that has not reached exec). */
static int spawn_file(pid_t *pid, const char *file, char **argv, char **envp, const char *cwd, int out, int err) {
    static const long delays_us[] = {1000, 2000, 5000, 10000, 20000, 50000, 100000, 200000};
    int rc = 0;
    for (size_t attempt_no = 0; attempt_no <= sizeof delays_us / sizeof *delays_us; attempt_no++) {
#ifdef HAVE_ADDCHDIR
        posix_spawn_file_actions_t actions;
        posix_spawnattr_t attr;
        sigset_t none, all;
        sigemptyset(&none);
        sigfillset(&all);
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addchdir_np(&actions, cwd);
        posix_spawn_file_actions_adddup2(&actions, devnull, 0);
        posix_spawn_file_actions_adddup2(&actions, out, 1);
        posix_spawn_file_actions_adddup2(&actions, err, 2);
        posix_spawnattr_init(&attr);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setsigdefault(&attr, &all);
        rc = posix_spawn(pid, file, &actions, &attr, argv, envp);
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attr);
#else
        int report[2];
        if (pipe2(report, O_CLOEXEC) != 0) return errno;
        *pid = fork();
        if (*pid == 0) {
            sigset_t none;
            sigemptyset(&none);
            for (int s = 1; s < NSIG; s++) signal(s, SIG_DFL);
            sigprocmask(SIG_SETMASK, &none, NULL);
            int e = 0;
            if (setsid() < 0 || chdir(cwd) != 0 || dup2(devnull, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) e = errno;
            else { execve(file, argv, envp); e = errno; }
            if (write(report[1], &e, sizeof e) < 0) _exit(127);
            _exit(127);
        }
        close(report[1]);
        if (*pid < 0) { rc = errno; close(report[0]); }
        else {
            int e = 0;
            ssize_t got = read(report[0], &e, sizeof e);
            close(report[0]);
            rc = 0;
            if (got == sizeof e) { rc = e; waitpid(*pid, NULL, 0); }
        }
#endif
        if (rc != ETXTBSY || attempt_no == sizeof delays_us / sizeof *delays_us) break;
        struct timespec pause = {0, delays_us[attempt_no] * 1000};
        nanosleep(&pause, NULL);
    }
    return rc;
}

/* argv[0] as execvp would find it, but in the attempt's PATH (as Python's subprocess does). */
static int spawn_program(pid_t *pid, char **argv, char **envp, const char *cwd, int out, int err) {
    if (strchr(argv[0], '/')) return spawn_file(pid, argv[0], argv, envp, cwd, out, err);
    const char *path = env_path(envp);
    int first = ENOENT;
    char file[8192];
    while (1) {
        const char *colon = strchr(path, ':');
        size_t len = colon ? (size_t)(colon - path) : strlen(path);
        snprintf(file, sizeof file, "%.*s%s%s", (int)len, path, len ? "/" : "", argv[0]);
        int rc = spawn_file(pid, file, argv, envp, cwd, out, err);
        if (rc == 0) return 0;
        if (rc != ENOENT && rc != ENOTDIR && rc != EACCES) return rc;
        if (rc == EACCES) first = EACCES;
        if (!colon) return first;
        path = colon + 1;
    }
}

static int start(jv *msg) {
    jv *id = get(msg, "id", J_NUM), *argv_v = get(msg, "argv", J_ARR), *cwd = get(msg, "cwd", J_STR);
    jv *out_v = get(msg, "stdout", J_STR), *err_v = get(msg, "stderr", J_STR), *tag = get(msg, "tag", J_STR);
    jv *env = get(msg, "env", J_OBJ);
    long long key = id ? (long long)id->num : -1;
    if (!id || !argv_v || !argv_v->n || !cwd || !out_v || !err_v || !tag) {
        send_error(key, "a start request without id, argv, cwd, stdout, stderr or tag", EINVAL, NULL);
        return 0;
    }
    char **argv = calloc(argv_v->n + 1, sizeof *argv);
    if (!argv) _exit(70);
    for (size_t i = 0; i < argv_v->n; i++) {
        if (argv_v->items[i].type != J_STR) { free(argv); send_error(key, "argv holds a non-string", EINVAL, NULL); return 0; }
        argv[i] = argv_v->items[i].str;
    }
    int out = open_log(out_v->str);
    if (out < 0) { send_error(key, "stdout", errno, out_v->str); free(argv); return 0; }
    int err = strcmp(out_v->str, err_v->str) ? open_log(err_v->str) : dup(out);
    if (err < 0) { send_error(key, "stderr", errno, err_v->str); close(out); free(argv); return 0; }
    char **envp = build_env(env);
    pid_t pid = -1;
    struct timespec began;
    clock_gettime(CLOCK_REALTIME, &began);
    int rc = spawn_program(&pid, argv, envp, cwd->str, out, err);
    free_env(envp, env);
    close(out);
    close(err);
    if (rc != 0) { send_error(key, "start", rc, argv[0]); free(argv); return 0; }
    free(argv);
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (n_attempts == cap_attempts) {
        cap_attempts = cap_attempts * 2 + 16;
        attempts = realloc(attempts, cap_attempts * sizeof *attempts);
        if (!attempts) _exit(70);
    }
    attempt *a = &attempts[n_attempts++];
    a->id = key;
    a->pid = pid;
    a->pidfd = pidfd;
    a->ended = 0;
    a->code = 0;
    size_t needle_size = strlen(tag->str) + sizeof "ENSEMBLE_LAUNCH=";
    a->needle = malloc(needle_size);
    if (!a->needle) _exit(70);
    snprintf(a->needle, needle_size, "ENSEMBLE_LAUNCH=%s", tag->str);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)pid};
    if (pidfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, pidfd, &ev) != 0) _exit(71);
    out_fmt("{\"op\":\"started\",\"id\":%lld,\"pid\":%d,\"start\":%lld.%06ld}\n", key, (int)pid,
            (long long)began.tv_sec, began.tv_nsec / 1000);
    return 1;
}

/* Whether a chained start's condition holds: its "inbox" directory unchanged since the manager
 * last looked ("seen": the modification time in ns, as text; -1 where it did not exist). */
static int may_start(jv *msg) {
    jv *inbox = get(msg, "inbox", J_STR), *seen = get(msg, "seen", J_STR);
    if (!inbox) return 1;
    struct stat st;
    long long mtime = stat(inbox->str, &st) == 0 ? (long long)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec
                                                 : -1;
    return seen && strtoll(seen->str, NULL, 10) == mtime;
}

static void cancelled(long long id) {
    out_fmt("{\"op\":\"cancelled\",\"id\":%lld}\n", id);
}

/* The predecessor ``id`` ended (``ok``: with 0, or a chained start that started): start or cancel
 * what waits for it, and so on down each chain. */
static void resolve(long long id, int ok) {
    for (size_t i = 0; i < n_waiting;) {
        if (waiting[i].after != id) { i++; continue; }
        waiting_start next = waiting[i];
        waiting[i] = waiting[--n_waiting];
        int go = ok && may_start(&next.msg);
        if (go && start(&next.msg)) {
            jfree(&next.msg);
            i = 0; /* the list changed under us */
            continue;
        }
        if (!go) cancelled(next.id); /* else it could not start: it ended with its error */
        resolve(next.id, 0);
        jfree(&next.msg);
        i = 0;
    }
}

/* Cancel the chained start ``id`` (and what is chained after it) if it still waits. */
static int cancel_waiting(long long id) {
    for (size_t i = 0; i < n_waiting; i++) {
        if (waiting[i].id != id) continue;
        jfree(&waiting[i].msg);
        waiting[i] = waiting[--n_waiting];
        cancelled(id);
        resolve(id, 0);
        return 1;
    }
    return 0;
}

static int is_waiting(long long id) {
    for (size_t i = 0; i < n_waiting; i++)
        if (waiting[i].id == id) return 1;
    return 0;
}

/* A start with "after": now, later (kept, taking the request over) or never.  Returns whether it kept
 * the request. */
static int chain(jv *msg, long long after) {
    jv *id = get(msg, "id", J_NUM);
    long long key = id ? (long long)id->num : -1;
    attempt *a = find(after);
    if (a && a->ended) {
        if (a->code == 0 && may_start(msg)) start(msg);
        else cancelled(key);
        return 0;
    }
    if (!id || (!a && !is_waiting(after))) {
        cancelled(key);
        return 0;
    }
    if (n_waiting == cap_waiting) {
        cap_waiting = cap_waiting * 2 + 16;
        waiting = realloc(waiting, cap_waiting * sizeof *waiting);
        if (!waiting) _exit(70);
    }
    waiting[n_waiting++] = (waiting_start){key, after, *msg};
    return 1;
}

static void signal_attempt(jv *msg) {
    jv *id = get(msg, "id", J_NUM), *sig = get(msg, "sig", J_NUM);
    attempt *a = id ? find((long long)id->num) : NULL;
    if (a && sig && !a->ended) {
        kill(-a->pid, (int)sig->num);
    } else if (!a && id) {
        cancel_waiting((long long)id->num);
    }
}

static void reap(jv *msg) {
    jv *ids = get(msg, "ids", J_ARR);
    for (size_t i = 0; ids && i < ids->n; i++) {
        attempt *a = ids->items[i].type == J_NUM ? find((long long)ids->items[i].num) : NULL;
        if (!a || !a->ended) continue;
        waitpid(a->pid, NULL, 0);
        close(a->pidfd);
        forget(a);
    }
}

static void handle_line(const char *line, size_t len) {
    reader r = {line, line + len, 0};
    jv msg;
    parse_value(&r, &msg, 0);
    jv *op = r.bad ? NULL : get(&msg, "op", J_STR), *after = op ? get(&msg, "after", J_NUM) : NULL;
    jv *id = op ? get(&msg, "id", J_NUM) : NULL;
    if (!op) warn("spawner: skipped a line that is not a request: %.*s", len < 200 ? (int)len : 200, line);
    else if (!strcmp(op->str, "start") && after) { if (chain(&msg, (long long)after->num)) return; }
    else if (!strcmp(op->str, "start")) start(&msg);
    else if (!strcmp(op->str, "signal")) signal_attempt(&msg);
    else if (!strcmp(op->str, "cancel")) { if (id) cancel_waiting((long long)id->num); }
    else if (!strcmp(op->str, "reap")) reap(&msg);
    else warn("spawner: skipped a request of unknown op %.*s", 200, op->str);
    jfree(&msg);
}

/* -- leftovers --------------------------------------------------------------------------------- */
static int environ_has(pid_t pid, const char *needle) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/environ", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    char *data = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 65536 > cap) { cap = len + 65536; data = realloc(data, cap + 1); if (!data) _exit(70); }
        ssize_t n = read(fd, data + len, cap - len);
        if (n <= 0) break;
        len += (size_t)n;
    }
    close(fd);
    int found = 0;
    if (data) {
        data[len] = 0; /* the last entry's terminator, where the kernel left it out */
        for (size_t at = 0; at < len && !found; at += strlen(data + at) + 1)
            found = !strcmp(data + at, needle);
    }
    free(data);
    return found;
}

/* Events of a killed leftover carry this bit with its pid. */
#define DOOMED_BIT ((uint64_t)1 << 32)

/* A killed leftover is reaped when its pidfd says it has died. */
static void watch_doomed(pid_t pid) {
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = DOOMED_BIT | (uint64_t)pid};
    if (fd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        if (fd >= 0) close(fd);
        waitpid(pid, NULL, 0); /* SIGKILL was sent: it ends soon */
        return;
    }
    if (n_doomed == cap_doomed) {
        cap_doomed = cap_doomed * 2 + 16;
        doomed = realloc(doomed, cap_doomed * sizeof *doomed);
        doomed_fds = realloc(doomed_fds, cap_doomed * sizeof *doomed_fds);
        if (!doomed || !doomed_fds) _exit(70);
    }
    doomed[n_doomed] = pid;
    doomed_fds[n_doomed++] = fd;
}

static void reap_doomed(pid_t pid) {
    for (size_t i = 0; i < n_doomed; i++) {
        if (doomed[i] != pid) continue;
        if (waitpid(pid, NULL, WNOHANG) == 0) return;
        close(doomed_fds[i]);
        doomed[i] = doomed[--n_doomed];
        doomed_fds[i] = doomed_fds[n_doomed];
        return;
    }
}

static char children_path[64]; /* this process's children, set once at start */

/* Kill what the ended attempt left behind outside its group; reap dead orphans of earlier ones. */
static void sweep(const attempt *ended) {
    if (!subreaper) return;
    char buf[65536];
    int fd = open(children_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return;
    buf[n] = 0;
    for (char *p = buf, *next; *p; p = next) {
        pid_t pid = (pid_t)strtol(p, &next, 10);
        if (next == p) break;
        if (pid <= 0 || is_ours(pid)) continue;
        int known = 0;
        for (size_t i = 0; i < n_doomed && !known; i++) known = doomed[i] == pid;
        if (known) continue;
        if (!environ_has(pid, ended->needle)) {
            waitpid(pid, NULL, WNOHANG); /* reaps an orphan that has died; leaves a live one alone */
            continue;
        }
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        watch_doomed(pid);
    }
}

static void ended(pid_t pid) {
    attempt *a = NULL;
    for (size_t i = 0; i < n_attempts && !a; i++)
        if (attempts[i].pid == pid && !attempts[i].ended) a = &attempts[i];
    if (!a) return;
    siginfo_t info;
    memset(&info, 0, sizeof info);
    if (waitid(P_PID, (id_t)a->pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0) return;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    a->ended = 1;
    epoll_ctl(epfd, EPOLL_CTL_DEL, a->pidfd, NULL);
    kill(-a->pid, SIGKILL); /* what is left of its group goes with it */
    int code = info.si_code == CLD_EXITED ? info.si_status : -info.si_status;
    a->code = code;
    long long id = a->id;
    out_fmt("{\"op\":\"exit\",\"id\":%lld,\"code\":%d,\"pid\":%d,\"end\":%lld.%06ld}\n", id, code, (int)a->pid,
            (long long)now.tv_sec, now.tv_nsec / 1000);
    resolve(id, code == 0); /* first, so a chained step waits for nothing */
    a = find(id);
    if (a) sweep(a);
}

int main(int argc, char **argv) {
    pid_t parent = argc > 1 ? (pid_t)atoi(argv[1]) : getppid();
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() != parent) return 0;
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    subreaper = prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0;
    devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    fcntl(0, F_SETFD, FD_CLOEXEC);
    fcntl(1, F_SETFD, FD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0};
    if (devnull < 0 || epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev) != 0) return 71;
    snprintf(children_path, sizeof children_path, "/proc/self/task/%d/children", (int)getpid());
    out_fmt("{\"op\":\"ready\",\"pid\":%d}\n", (int)getpid());
    char *in = NULL;
    size_t in_len = 0, in_cap = 0;
    for (;;) {
        flush_out();
        struct epoll_event events[64];
        int n = epoll_wait(epfd, events, 64, -1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return 72;
        for (int i = 0; i < n; i++) {
            uint64_t data = events[i].data.u64;
            if (data & DOOMED_BIT) { reap_doomed((pid_t)(data & 0xffffffffu)); continue; }
            if (data) { ended((pid_t)data); continue; }
            if (in_len + 65536 > in_cap) { in_cap = (in_len + 65536) * 2; in = realloc(in, in_cap); if (!in) return 70; }
            ssize_t got = read(0, in + in_len, in_cap - in_len);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) { flush_out(); return 0; } /* the manager is gone: its children go to the keeper */
            in_len += (size_t)got;
            size_t used = 0;
            for (char *nl; (nl = memchr(in + used, '\n', in_len - used)); used = (size_t)(nl - in) + 1)
                if (nl > in + used) handle_line(in + used, (size_t)(nl - (in + used)));
            memmove(in, in + used, in_len - used);
            in_len -= used;
        }
    }
}
