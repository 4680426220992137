/*
 * contree-init: the first program of every contree-local sandbox.
 *
 * The server never forks itself into a sandbox. It posix_spawn()s this small static
 * program (vfork-style: CLONE_VM|CLONE_VFORK, then exec at once) from a sealed memfd, so
 * a sandbox starts from a freshly executed image: no copy of the server's memory, argv
 * or environment, and spawn cost does not grow with the server's size. From inside the
 * sandbox the program can be neither overwritten nor reopened for writing: the memfd is
 * sealed against writes (the lesson of runc's CVE-2019-5736), and init is not dumpable.
 *
 * The server passes everything through inherited fds at fixed numbers (see the FD_*
 * constants) and one plan, a list of tagged records in a memfd (see the T_* tags, which
 * must match crates/contree-local/src/sandbox/plan.rs).
 *
 * Steps, as host root ("outer" init, in the server's namespaces):
 *   1. mount namespace #1 (owned by the initial user namespace), all mounts private;
 *   2. every host-owned directory of the image (base skeleton, masks, host /usr, ...) is
 *      covered by an idmapped view of itself (MOUNT_ATTR_IDMAP through the server's
 *      mapping user namespace), so that host uid 0 shows as root inside the sandbox;
 *   3. the image's overlays are mounted on the shared mount point (as host root, like a
 *      rootful runtime with user-namespace remapping);
 *   4. unshare(USER|NS|UTS|IPC|NET|PID|CGROUP): the new namespaces belong to a new user
 *      namespace, which the server maps to its unprivileged id range (the server writes
 *      uid_map/gid_map and starts the network helper, then says go);
 *   5. switch to root *of the new user namespace* and fork PID 1 of the new PID namespace;
 *      outer init only waits for it.
 * As PID 1 (root only inside the user namespace; capabilities only there):
 *   6. spawn files and the working directory are created inside the image root with the
 *      sandbox's credentials (openat2 RESOLVE_IN_ROOT: no symlink leads out);
 *   7. /dev (tmpfs + bind mounts of the host's harmless device nodes), /proc with
 *      Docker's masks and read-only paths, then pivot_root and detach the host's root;
 *   8. hostname, loopback up, not dumpable (the run's empty session keyring was joined
 *      by outer init);
 *   9. fork the command: stdio, new session, default signals, capability bounding set,
 *      the seccomp filters, groups/gid/uid, cwd, execve.
 * PID 1 then relays signals from the server, enforces the timeout, reaps, reports the
 * command's wait status and rusage, and exits (the kernel kills whatever is left).
 *
 * Extra processes (the API's subprocesses, spid >= 2) are forked by PID 1 too, on a
 * request from the server over the control socket: a small plan (argv, env, cwd, uid/gid)
 * in a memfd plus the process's stdio, error and status pipes as SCM_RIGHTS. They go
 * through the same step 9 as the command (capability bounding set, seccomp filters,
 * credentials), so they are born inside every namespace, the cgroup and the limits of the
 * run: no process of the host ever joins the sandbox (no setns, nothing of the server's
 * memory or fds), and nothing of the sandbox can address the request (only the server
 * holds the other end of the control socket). PID 1 reaps them and reports each one's
 * wait status and rusage on its own status pipe.
 *
 * Any failed step writes {stage, index, errno} to the error pipe and exits: nothing ever
 * runs with less isolation than planned.
 *
 * Mode "userns": unshare a user namespace, report 'U' on fd 3, then wait for EOF on it.
 * The server maps it and keeps /proc/<pid>/ns/user as the idmapped mounts' mapping.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <linux/filter.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Fixed fds (set up by the server's posix_spawn file actions). */
enum {
    FD_PLAN = 3,
    FD_ERR = 4,
    FD_STATUS = 5,
    FD_CTL = 6,
    FD_SYNC = 7,
    FD_STDIN = 8,
    FD_STDOUT = 9,
    FD_STDERR = 10,
    FD_USERNS = 11,
    FD_FIRST_FILE = 12,
};

/* Plan record tags (plan.rs). */
enum {
    T_IDMAP = 1,       /* string: a host-owned dir to cover with its idmapped view */
    T_OVERLAY = 2,     /* target\0upper\0work\0legacy-or-empty\0lower\0lower\0... */
    T_NEW_ROOT = 3,    /* string */
    T_HOSTNAME = 4,    /* bytes */
    T_FILE = 5,        /* u32 fd, u32 mode, u32 uid, u32 gid, dest\0 */
    T_CWD = 6,         /* string */
    T_CRED = 7,        /* u32 uid, u32 gid */
    T_ARG = 8,         /* string */
    T_ENV = 9,         /* string */
    T_CANDIDATE = 10,  /* string */
    T_NOT_FOUND = 11,  /* bytes */
    T_DENIED = 12,     /* bytes */
    T_TIMEOUT_MS = 13, /* u64 */
    T_SECCOMP = 14,    /* struct sock_filter[] */
    T_KEEP_CAPS = 15,  /* u64 bit mask */
};

/* Stages (child.rs Stage). */
enum {
    S_MAKE_PRIVATE = 1,
    S_MOUNT_OVERLAY = 2,
    S_PIVOT_ROOT = 3,
    S_MOUNT_PROC = 4,
    S_MOUNT_DEV = 5,
    S_HOSTNAME = 6,
    S_LOOPBACK = 7,
    S_PLACE_FILE = 8,
    S_CREATE_CWD = 9,
    S_SIGNALFD = 10,
    S_FORK_COMMAND = 11,
    S_STDIO = 12,
    S_CAPABILITIES = 13,
    S_CREDENTIALS = 14,
    S_CHDIR = 15,
    S_PROTECT_PROC = 16,
    S_PLAN = 18,
    S_IDMAP = 19,
    S_USERNS = 20,
    S_SYNC = 21,
    S_SECCOMP = 22,
    S_KEYRING = 23,
    S_FORK_INIT = 24,
};

struct err_record {
    uint32_t stage;
    uint32_t index;
    int32_t err;
};

struct report {
    int status;
    int timed_out;
    uint64_t elapsed_ns;
    struct rusage rusage;
};

#define MAX_ITEMS 4096

struct overlay {
    const char *target, *upper, *work, *legacy;
    const char *lowers[512];
    int nlowers;
};

struct file {
    int fd;
    uint32_t mode, uid, gid;
    const char *dest;
};

struct filter {
    const struct sock_filter *insns;
    unsigned short len;
};

static struct {
    const char *idmaps[64];
    int nidmaps;
    struct overlay overlays[16];
    int noverlays;
    const char *new_root;
    const char *hostname;
    size_t hostname_len;
    struct file files[MAX_ITEMS];
    int nfiles;
    const char *cwd;
    uint32_t uid, gid;
    char *argv[MAX_ITEMS + 1];
    int nargv;
    char *envp[MAX_ITEMS + 1];
    int nenvp;
    const char *candidates[MAX_ITEMS];
    int ncandidates;
    const char *not_found;
    size_t not_found_len;
    const char *denied;
    size_t denied_len;
    int has_timeout;
    uint64_t timeout_ms;
    struct filter filters[4];
    int nfilters;
    uint64_t keep_caps;
} plan;

/* What a command process needs: the main command's comes from the plan, an extra
 * process's from its request. */
struct cmd {
    char **argv;
    char **envp;
    const char *const *candidates;
    int ncandidates;
    uint32_t uid, gid;
    const char *cwd;
    const char *not_found;
    size_t not_found_len;
    const char *denied;
    size_t denied_len;
};

/* Control messages from the server (run.rs): a bare int is a signal for the whole
 * sandbox; these are about one extra process. */
enum { CTL_EXEC = 1, CTL_KILL = 2 };
struct ctl_msg {
    uint32_t op;
    uint32_t spid;
    int32_t sig;
};
/* The fds of a CTL_EXEC request, in order. */
enum { XFD_PLAN, XFD_STDIN, XFD_STDOUT, XFD_STDERR, XFD_ERR, XFD_STATUS, XFD_COUNT };
/* Largest request plan (the server caps argv + env well below). */
#define MAX_XPLAN (8 << 20)
#define MAX_SUBPROCS 256

struct subproc {
    pid_t pid;
    uint32_t spid;
    int status_fd;
    uint64_t start;
};
static struct subproc subprocs[MAX_SUBPROCS];
static int nsubprocs;

static _Noreturn void fail(uint32_t stage, uint32_t index, int err)
{
    struct err_record rec = {stage, index, err};
    ssize_t r = write(FD_ERR, &rec, sizeof rec);
    (void)r;
    _exit(111);
}

static void check(long r, uint32_t stage, uint32_t index)
{
    if (r < 0)
        fail(stage, index, errno);
}

static uint64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ----------------------------------------------------------------------------------- */
/* The plan                                                                            */

static int nul_terminated(const char *p, uint32_t len)
{
    return len > 0 && p[len - 1] == '\0' && memchr(p, '\0', len) == p + len - 1;
}

static uint32_t get_u32(const char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static void read_plan(void)
{
    struct stat st;
    check(fstat(FD_PLAN, &st), S_PLAN, 0);
    if (st.st_size <= 0 || st.st_size > (1 << 30))
        fail(S_PLAN, 1, EINVAL);
    char *buf = malloc((size_t)st.st_size);
    if (!buf)
        fail(S_PLAN, 2, ENOMEM);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = pread(FD_PLAN, buf + got, (size_t)st.st_size - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            fail(S_PLAN, 3, n < 0 ? errno : EIO);
        got += (size_t)n;
    }
    close(FD_PLAN);
    size_t off = 0, end = (size_t)st.st_size;
    uint32_t index = 0;
    while (off < end) {
        index++;
        if (end - off < 8)
            fail(S_PLAN, index, EINVAL);
        uint32_t tag = get_u32(buf + off), len = get_u32(buf + off + 4);
        off += 8;
        if (len > end - off)
            fail(S_PLAN, index, EINVAL);
        char *p = buf + off;
        off += len;
        switch (tag) {
        case T_IDMAP:
            if (!nul_terminated(p, len) || plan.nidmaps >= 64)
                fail(S_PLAN, index, EINVAL);
            plan.idmaps[plan.nidmaps++] = p;
            break;
        case T_OVERLAY: {
            if (plan.noverlays >= 16 || len == 0 || p[len - 1] != '\0')
                fail(S_PLAN, index, EINVAL);
            struct overlay *o = &plan.overlays[plan.noverlays++];
            const char *fields[4];
            char *q = p, *stop = p + len;
            for (int i = 0; i < 4; i++) {
                if (q >= stop)
                    fail(S_PLAN, index, EINVAL);
                fields[i] = q;
                q += strlen(q) + 1;
            }
            o->target = fields[0];
            o->upper = fields[1];
            o->work = fields[2];
            o->legacy = fields[3][0] ? fields[3] : NULL;
            while (q < stop) {
                if (o->nlowers >= 512)
                    fail(S_PLAN, index, E2BIG);
                o->lowers[o->nlowers++] = q;
                q += strlen(q) + 1;
            }
            break;
        }
        case T_NEW_ROOT:
            if (!nul_terminated(p, len))
                fail(S_PLAN, index, EINVAL);
            plan.new_root = p;
            break;
        case T_HOSTNAME:
            plan.hostname = p;
            plan.hostname_len = len;
            break;
        case T_FILE:
            if (len < 17 || !nul_terminated(p + 16, len - 16) || plan.nfiles >= MAX_ITEMS)
                fail(S_PLAN, index, EINVAL);
            if (get_u32(p) != (uint32_t)(FD_FIRST_FILE + plan.nfiles))
                fail(S_PLAN, index, EBADF);
            plan.files[plan.nfiles++] = (struct file){
                (int)get_u32(p), get_u32(p + 4), get_u32(p + 8), get_u32(p + 12), p + 16};
            break;
        case T_CWD:
            if (!nul_terminated(p, len))
                fail(S_PLAN, index, EINVAL);
            plan.cwd = p;
            break;
        case T_CRED:
            if (len != 8)
                fail(S_PLAN, index, EINVAL);
            plan.uid = get_u32(p);
            plan.gid = get_u32(p + 4);
            break;
        case T_ARG:
        case T_ENV:
        case T_CANDIDATE:
            if (!nul_terminated(p, len))
                fail(S_PLAN, index, EINVAL);
            if (tag == T_ARG && plan.nargv < MAX_ITEMS)
                plan.argv[plan.nargv++] = p;
            else if (tag == T_ENV && plan.nenvp < MAX_ITEMS)
                plan.envp[plan.nenvp++] = p;
            else if (tag == T_CANDIDATE && plan.ncandidates < MAX_ITEMS)
                plan.candidates[plan.ncandidates++] = p;
            else
                fail(S_PLAN, index, E2BIG);
            break;
        case T_NOT_FOUND:
            plan.not_found = p;
            plan.not_found_len = len;
            break;
        case T_DENIED:
            plan.denied = p;
            plan.denied_len = len;
            break;
        case T_TIMEOUT_MS:
            if (len != 8)
                fail(S_PLAN, index, EINVAL);
            memcpy(&plan.timeout_ms, p, 8);
            plan.has_timeout = 1;
            break;
        case T_SECCOMP: {
            if (len == 0 || len % sizeof(struct sock_filter) || len / sizeof(struct sock_filter) > BPF_MAXINSNS ||
                plan.nfilters >= 4)
                fail(S_PLAN, index, EINVAL);
            /* Records are not aligned: copy the program to memory that is. */
            struct sock_filter *insns = malloc(len);
            if (!insns)
                fail(S_PLAN, index, ENOMEM);
            memcpy(insns, p, len);
            plan.filters[plan.nfilters++] = (struct filter){insns, (unsigned short)(len / sizeof(struct sock_filter))};
            break;
        }
        case T_KEEP_CAPS:
            if (len != 8)
                fail(S_PLAN, index, EINVAL);
            memcpy(&plan.keep_caps, p, 8);
            break;
        default:
            fail(S_PLAN, index, ENOTSUP);
        }
    }
    if (!plan.new_root || !plan.cwd || plan.nargv == 0 || plan.ncandidates == 0 || plan.nfilters == 0)
        fail(S_PLAN, 0, EINVAL);
}

/* ----------------------------------------------------------------------------------- */
/* Mounts as host root                                                                 */

static void idmap_in_place(const char *path, uint32_t index)
{
    int fd = (int)syscall(SYS_open_tree, AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
    check(fd, S_IDMAP, index);
    struct mount_attr attr = {0};
    attr.attr_set = MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV;
    attr.userns_fd = FD_USERNS;
    check(syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &attr, sizeof attr), S_IDMAP, index);
    check(syscall(SYS_move_mount, fd, "", AT_FDCWD, path, MOVE_MOUNT_F_EMPTY_PATH), S_IDMAP, index);
    close(fd);
}

static const char *const overlay_options[][2] = {
    {"redirect_dir", "off"}, {"metacopy", "off"}, {"index", "off"}, {"volatile", NULL}};

static int mount_overlay(const struct overlay *o)
{
    if (o->legacy)
        return mount("overlay", o->target, "overlay", 0, o->legacy);
    /* The option string would not fit in a page: one lowerdir+ per layer (Linux 6.8+). */
    int fs = (int)syscall(SYS_fsopen, "overlay", FSOPEN_CLOEXEC);
    if (fs < 0)
        return -1;
    int ok = 1;
    for (int i = 0; ok && i < o->nlowers; i++)
        ok = syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "lowerdir+", o->lowers[i], 0) == 0;
    ok = ok && syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "upperdir", o->upper, 0) == 0;
    ok = ok && syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "workdir", o->work, 0) == 0;
    for (size_t i = 0; ok && i < sizeof overlay_options / sizeof overlay_options[0]; i++) {
        if (overlay_options[i][1])
            ok = syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, overlay_options[i][0], overlay_options[i][1], 0) ==
                 0;
        else
            ok = syscall(SYS_fsconfig, fs, FSCONFIG_SET_FLAG, overlay_options[i][0], NULL, 0) == 0;
    }
    ok = ok && syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0;
    int mnt = ok ? (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, 0) : -1;
    int saved = errno;
    if (mnt >= 0) {
        ok = syscall(SYS_move_mount, mnt, "", AT_FDCWD, o->target, MOVE_MOUNT_F_EMPTY_PATH) == 0;
        saved = errno;
        close(mnt);
    } else {
        ok = 0;
    }
    close(fs);
    errno = saved;
    return ok ? 0 : -1;
}

/* ----------------------------------------------------------------------------------- */
/* Setup as root of the sandbox's user namespace                                        */

static int open_in_root(int root, const char *path, int flags, mode_t mode, uint64_t resolve)
{
    struct open_how how = {0};
    how.flags = (uint64_t)flags | O_CLOEXEC;
    how.mode = (flags & O_CREAT) ? mode : 0;
    how.resolve = resolve | RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    return (int)syscall(SYS_openat2, root, path, &how, sizeof how);
}

/* Splits "/a/b/c" into a parent fd (opened inside root, created with `mkdir_mode` where
 * missing) and the final name. Returns the parent fd or -1 with errno. */
static int open_parent(int root, const char *path, char *name_out, size_t name_cap, mode_t mkdir_mode,
                       uid_t uid, gid_t gid, int chown_created)
{
    int dir = open_in_root(root, "/", O_PATH | O_DIRECTORY, 0, 0);
    if (dir < 0)
        return -1;
    const char *p = path;
    for (;;) {
        while (*p == '/')
            p++;
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 0 || len >= name_cap) {
            close(dir);
            errno = len ? ENAMETOOLONG : EINVAL;
            return -1;
        }
        memcpy(name_out, p, len);
        name_out[len] = '\0';
        const char *rest = p + len;
        while (*rest == '/')
            rest++;
        if (*rest == '\0')
            return dir;
        /* An intermediate component: make sure it exists, then descend (in root). */
        if (mkdirat(dir, name_out, mkdir_mode) == 0) {
            if (chown_created && fchownat(dir, name_out, uid, gid, AT_SYMLINK_NOFOLLOW) < 0) {
                close(dir);
                return -1;
            }
        } else if (errno != EEXIST) {
            close(dir);
            return -1;
        }
        /* Resolve the component relative to dir but still inside the sandbox root: open
         * "<prefix>" from the root so that symlinks in it stay inside. */
        char prefix[4096];
        size_t plen = (size_t)(rest - path);
        if (plen >= sizeof prefix) {
            close(dir);
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy(prefix, path, plen);
        prefix[plen] = '\0';
        int next = open_in_root(root, prefix, O_PATH | O_DIRECTORY, 0, 0);
        close(dir);
        if (next < 0)
            return -1;
        dir = next;
        p = rest;
    }
}

static int copy_fd(int src, int dst)
{
    for (;;) {
        ssize_t n = sendfile(dst, src, NULL, 1 << 30);
        if (n > 0)
            continue;
        if (n == 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno != EINVAL && errno != ENOSYS)
            return -1;
        break;
    }
    char buf[16384];
    for (;;) {
        ssize_t n = read(src, buf, sizeof buf);
        if (n == 0)
            return 0;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(dst, buf + off, (size_t)(n - off));
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                return -1;
            }
            off += w;
        }
    }
}

static void place_file(int root, const struct file *f, uint32_t index)
{
    char name[256];
    int dir = open_parent(root, f->dest, name, sizeof name, 0755, 0, 0, 0);
    check(dir, S_PLACE_FILE, index);
    /* An existing symlink (or anything but a regular file) at the destination is
     * replaced, never followed. */
    struct stat st;
    if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode)) {
        if (S_ISDIR(st.st_mode))
            fail(S_PLACE_FILE, index, EISDIR);
        check(unlinkat(dir, name, 0), S_PLACE_FILE, index);
    }
    int dst = openat(dir, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW, 0600);
    check(dst, S_PLACE_FILE, index);
    check(copy_fd(f->fd, dst), S_PLACE_FILE, index);
    /* chown before chmod: chown clears set-id bits. */
    check(fchown(dst, f->uid, f->gid), S_PLACE_FILE, index);
    check(fchmod(dst, f->mode & 07777), S_PLACE_FILE, index);
    close(dst);
    close(dir);
    close(f->fd);
}

static void create_cwd(int root)
{
    if (strcmp(plan.cwd, "/") == 0)
        return;
    char name[256];
    int dir = open_parent(root, plan.cwd, name, sizeof name, 0755, plan.uid, plan.gid, 1);
    check(dir, S_CREATE_CWD, 0);
    if (mkdirat(dir, name, 0755) == 0) {
        /* A directory we create for the run belongs to the run's user. */
        check(fchownat(dir, name, plan.uid, plan.gid, AT_SYMLINK_NOFOLLOW), S_CREATE_CWD, 1);
    } else if (errno != EEXIST) {
        fail(S_CREATE_CWD, 2, errno);
    }
    close(dir);
}

/* The image's `name` (relative to cwd, the new root) must be a real directory before
 * anything is mounted on it: a symlink there would carry the mount elsewhere. */
static void real_dir(const char *name, mode_t mode, uint32_t stage)
{
    struct stat st;
    if (fstatat(AT_FDCWD, name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISDIR(st.st_mode))
            return;
        check(unlinkat(AT_FDCWD, name, 0), stage, 90);
    } else if (errno != ENOENT) {
        fail(stage, 91, errno);
    }
    check(mkdir(name, mode), stage, 92);
}

static void setup_dev(void)
{
    const unsigned long nosuid_noexec = MS_NOSUID | MS_NOEXEC;
    real_dir("dev", 0755, S_MOUNT_DEV);
    check(mount("tmpfs", "dev", "tmpfs", nosuid_noexec, "mode=755,size=1024k"), S_MOUNT_DEV, 0);
    /* mknod is not allowed in a user namespace: bind the host's harmless nodes. */
    static const char *const nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
    char host[32], inside[32];
    for (size_t i = 0; i < sizeof nodes / sizeof nodes[0]; i++) {
        snprintf(host, sizeof host, "/dev/%s", nodes[i]);
        snprintf(inside, sizeof inside, "dev/%s", nodes[i]);
        int fd = open(inside, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0666);
        check(fd, S_MOUNT_DEV, 1 + (uint32_t)i);
        close(fd);
        check(mount(host, inside, NULL, MS_BIND, NULL), S_MOUNT_DEV, 1 + (uint32_t)i);
    }
    static const char *const links[][2] = {{"/proc/self/fd", "dev/fd"},
                                           {"/proc/self/fd/0", "dev/stdin"},
                                           {"/proc/self/fd/1", "dev/stdout"},
                                           {"/proc/self/fd/2", "dev/stderr"},
                                           {"pts/ptmx", "dev/ptmx"}};
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++)
        check(symlink(links[i][0], links[i][1]), S_MOUNT_DEV, 10 + (uint32_t)i);
    check(mkdir("dev/pts", 0755), S_MOUNT_DEV, 20);
    check(mkdir("dev/shm", 01777), S_MOUNT_DEV, 21);
    check(mount("devpts", "dev/pts", "devpts", nosuid_noexec, "newinstance,ptmxmode=0666,mode=0620"), S_MOUNT_DEV,
          22);
    check(mount("shm", "dev/shm", "tmpfs", nosuid_noexec | MS_NODEV, "mode=1777,size=65536k"), S_MOUNT_DEV, 23);
}

/* Docker's masked and read-only /proc paths, plus /proc/mtrr. */
static const char *const proc_masked_files[] = {"proc/kcore",        "proc/keys",       "proc/timer_list",
                                                "proc/sched_debug",  "proc/mtrr",       "proc/latency_stats",
                                                "proc/timer_stats",  "proc/interrupts", "proc/sysrq-trigger"};
static const char *const proc_masked_dirs[] = {"proc/acpi", "proc/scsi", "proc/asound", "proc/driver"};
static const char *const proc_read_only[] = {"proc/sys", "proc/irq", "proc/bus", "proc/fs"};

static void setup_proc(void)
{
    const unsigned long proc_flags = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    real_dir("proc", 0555, S_MOUNT_PROC);
    check(mount("proc", "proc", "proc", proc_flags, NULL), S_MOUNT_PROC, 0);
    for (size_t i = 0; i < sizeof proc_read_only / sizeof proc_read_only[0]; i++) {
        const char *p = proc_read_only[i];
        if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) < 0) {
            if (errno == ENOENT)
                continue;
            fail(S_PROTECT_PROC, (uint32_t)i, errno);
        }
        check(mount(NULL, p, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | proc_flags, NULL), S_PROTECT_PROC, (uint32_t)i);
    }
    for (size_t i = 0; i < sizeof proc_masked_files / sizeof proc_masked_files[0]; i++) {
        if (mount("dev/null", proc_masked_files[i], NULL, MS_BIND, NULL) < 0 && errno != ENOENT)
            fail(S_PROTECT_PROC, 100 + (uint32_t)i, errno);
    }
    for (size_t i = 0; i < sizeof proc_masked_dirs / sizeof proc_masked_dirs[0]; i++) {
        if (mount("tmpfs", proc_masked_dirs[i], "tmpfs", MS_RDONLY | proc_flags, "mode=0555") < 0 &&
            errno != ENOENT)
            fail(S_PROTECT_PROC, 200 + (uint32_t)i, errno);
    }
}

static int loopback_up(void)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strcpy(ifr.ifr_name, "lo");
    int r = ioctl(s, SIOCGIFFLAGS, &ifr);
    if (r == 0) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        r = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    int e = errno;
    close(s);
    errno = e;
    return r;
}

/* ----------------------------------------------------------------------------------- */
/* The command                                                                          */

static void set_sigmask_empty(void)
{
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

static void drop_capabilities(void)
{
    for (unsigned cap = 0; cap < 64; cap++) {
        if (plan.keep_caps & (1ull << cap))
            continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
            fail(S_CAPABILITIES, cap, errno);
    }
    /* Root regains (inheritable & file-inheritable) at execve regardless of the bounding
     * set, so the inheritable set must not hold anything dropped; no ambient caps. */
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    check(syscall(SYS_capget, &hdr, data), S_CAPABILITIES, 100);
    data[0].inheritable &= (uint32_t)plan.keep_caps;
    data[1].inheritable &= (uint32_t)(plan.keep_caps >> 32);
    hdr.version = _LINUX_CAPABILITY_VERSION_3;
    hdr.pid = 0;
    check(syscall(SYS_capset, &hdr, data), S_CAPABILITIES, 101);
    check(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), S_CAPABILITIES, 102);
}

/* Step 9 for any command process, its stdio already on 0/1/2 and its error pipe on
 * FD_ERR (close-on-exec, so the server sees EOF once execve succeeded). */
static _Noreturn void run_command(const struct cmd *c)
{
    /* Its own session and process group, no controlling terminal. */
    setsid();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (int sig = 1; sig < 65; sig++)
        sigaction(sig, &sa, NULL);
    drop_capabilities();
    /* Installed while still privileged in the user namespace (no no_new_privs needed, so
     * setuid programs inside keep working); everything after this point and the
     * command's own execve must be allowed by the filters. */
    for (int i = 0; i < plan.nfilters; i++) {
        struct sock_fprog prog = {plan.filters[i].len, (struct sock_filter *)plan.filters[i].insns};
        check(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0), S_SECCOMP, (uint32_t)i);
    }
    gid_t groups[1] = {c->gid};
    check(setgroups(1, groups), S_CREDENTIALS, 0);
    check(setresgid(c->gid, c->gid, c->gid), S_CREDENTIALS, 1);
    check(setresuid(c->uid, c->uid, c->uid), S_CREDENTIALS, 2);
    /* After switching user, so that permissions are checked as the command's user. */
    check(chdir(c->cwd), S_CHDIR, 0);
    umask(022);
    set_sigmask_empty();
    int denied = 0;
    for (int i = 0; i < c->ncandidates; i++) {
        execve(c->candidates[i], c->argv, c->envp);
        if (errno != ENOENT && errno != ENOTDIR && errno != ELOOP && errno != ENAMETOOLONG)
            denied = 1;
    }
    /* Like a shell: 127 when nothing was found, 126 when it could not be executed. */
    ssize_t r = denied ? write(2, c->denied, c->denied_len) : write(2, c->not_found, c->not_found_len);
    (void)r;
    _exit(denied ? 126 : 127);
}

static _Noreturn void exec_command(void)
{
    check(dup2(FD_STDIN, 0), S_STDIO, 0);
    check(dup2(FD_STDOUT, 1), S_STDIO, 1);
    check(dup2(FD_STDERR, 2), S_STDIO, 2);
    plan.argv[plan.nargv] = NULL;
    plan.envp[plan.nenvp] = NULL;
    struct cmd c = {.argv = plan.argv,
                    .envp = plan.envp,
                    .candidates = plan.candidates,
                    .ncandidates = plan.ncandidates,
                    .uid = plan.uid,
                    .gid = plan.gid,
                    .cwd = plan.cwd,
                    .not_found = plan.not_found,
                    .not_found_len = plan.not_found_len,
                    .denied = plan.denied,
                    .denied_len = plan.denied_len};
    run_command(&c);
}

/* ----------------------------------------------------------------------------------- */
/* Extra processes                                                                      */

/* A request's plan: cwd, credentials, argv, env, candidates and messages (the tags of
 * the main plan). The strings point into `buf`. */
struct xplan {
    char *buf;
    struct cmd cmd;
    char **argv, **envp;
    const char **candidates;
    int nargv, nenvp;
};

static void free_xplan(struct xplan *x)
{
    free(x->buf);
    free(x->argv);
    free(x->envp);
    free(x->candidates);
}

/* Reads and checks a request plan; 0, or an errno with nothing left allocated. */
static int read_xplan(int fd, struct xplan *x)
{
    memset(x, 0, sizeof *x);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return errno;
    if (st.st_size <= 0 || st.st_size > MAX_XPLAN)
        return E2BIG;
    size_t size = (size_t)st.st_size;
    x->buf = malloc(size);
    x->argv = calloc(MAX_ITEMS + 1, sizeof(char *));
    x->envp = calloc(MAX_ITEMS + 1, sizeof(char *));
    x->candidates = calloc(MAX_ITEMS, sizeof(char *));
    int err = 0;
    if (!x->buf || !x->argv || !x->envp || !x->candidates) {
        err = ENOMEM;
        goto out;
    }
    for (size_t got = 0; got < size;) {
        ssize_t n = pread(fd, x->buf + got, size - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            err = n < 0 ? errno : EIO;
            goto out;
        }
        got += (size_t)n;
    }
    struct cmd *c = &x->cmd;
    int have_cred = 0;
    for (size_t off = 0; off < size;) {
        if (size - off < 8) {
            err = EINVAL;
            goto out;
        }
        uint32_t tag = get_u32(x->buf + off), len = get_u32(x->buf + off + 4);
        off += 8;
        if (len > size - off) {
            err = EINVAL;
            goto out;
        }
        char *p = x->buf + off;
        off += len;
        switch (tag) {
        case T_CWD:
            if (!nul_terminated(p, len))
                err = EINVAL;
            c->cwd = p;
            break;
        case T_CRED:
            if (len != 8)
                err = EINVAL;
            else {
                c->uid = get_u32(p);
                c->gid = get_u32(p + 4);
                have_cred = 1;
            }
            break;
        case T_ARG:
        case T_ENV:
        case T_CANDIDATE:
            if (!nul_terminated(p, len))
                err = EINVAL;
            else if (tag == T_ARG && x->nargv < MAX_ITEMS)
                x->argv[x->nargv++] = p;
            else if (tag == T_ENV && x->nenvp < MAX_ITEMS)
                x->envp[x->nenvp++] = p;
            else if (tag == T_CANDIDATE && c->ncandidates < MAX_ITEMS)
                x->candidates[c->ncandidates++] = p;
            else
                err = E2BIG;
            break;
        case T_NOT_FOUND:
            c->not_found = p;
            c->not_found_len = len;
            break;
        case T_DENIED:
            c->denied = p;
            c->denied_len = len;
            break;
        default:
            /* Mounts, files, seccomp, ...: the run's, never a request's. */
            err = ENOTSUP;
        }
        if (err)
            goto out;
    }
    if (!c->cwd || !have_cred || x->nargv == 0 || c->ncandidates == 0)
        err = EINVAL;
out:
    if (err) {
        free_xplan(x);
        memset(x, 0, sizeof *x);
        return err;
    }
    c->argv = x->argv;
    c->envp = x->envp;
    c->candidates = x->candidates;
    return 0;
}

static _Noreturn void exec_subproc(const struct xplan *x, const int *fds)
{
    /* The request's fds may sit anywhere (even on 0-2 or FD_ERR): lift them above FD_ERR
     * first, so that placing them on 0-2 and FD_ERR clobbers none, then close everything
     * else of PID 1's. */
    int hi[XFD_COUNT];
    for (int i = XFD_STDIN; i <= XFD_ERR; i++) {
        hi[i] = fcntl(fds[i], F_DUPFD, FD_ERR + 1);
        if (hi[i] < 0) {
            struct err_record rec = {S_STDIO, 10 + (uint32_t)i, errno};
            ssize_t r = write(fds[XFD_ERR], &rec, sizeof rec);
            (void)r;
            _exit(111);
        }
    }
    if (dup2(hi[XFD_ERR], FD_ERR) < 0 || fcntl(FD_ERR, F_SETFD, FD_CLOEXEC) < 0) {
        struct err_record rec = {S_STDIO, 14, errno};
        ssize_t r = write(hi[XFD_ERR], &rec, sizeof rec);
        (void)r;
        _exit(111);
    }
    check(dup2(hi[XFD_STDIN], 0), S_STDIO, 0);
    check(dup2(hi[XFD_STDOUT], 1), S_STDIO, 1);
    check(dup2(hi[XFD_STDERR], 2), S_STDIO, 2);
    /* Nothing of PID 1 (the control socket, the status pipes, other processes' pipes)
     * stays open in the process. */
    check(syscall(SYS_close_range, 3, FD_ERR - 1, 0), S_STDIO, 15);
    check(syscall(SYS_close_range, FD_ERR + 1, ~0U, 0), S_STDIO, 16);
    run_command(&x->cmd);
}

static void close_fds(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0) {
            close(fds[i]);
            fds[i] = -1;
        }
}

/* Starts an extra process; takes the request's fds. A failure before the fork is
 * reported on the request's error pipe (after it, the process reports its own). */
static void start_subproc(uint32_t spid, int *fds)
{
    int err = 0;
    struct xplan x;
    memset(&x, 0, sizeof x);
    if (nsubprocs >= MAX_SUBPROCS)
        err = EAGAIN;
    else
        err = read_xplan(fds[XFD_PLAN], &x);
    if (!err) {
        uint64_t start = monotonic_ns();
        pid_t pid = fork();
        if (pid == 0)
            exec_subproc(&x, fds);
        if (pid < 0) {
            err = errno;
        } else {
            subprocs[nsubprocs++] = (struct subproc){pid, spid, fds[XFD_STATUS], start};
            int32_t p = pid;
            ssize_t r = write(fds[XFD_STATUS], &p, sizeof p);
            (void)r;
            fds[XFD_STATUS] = -1;
        }
        free_xplan(&x);
    }
    if (err) {
        struct err_record rec = {S_FORK_COMMAND, 1, err};
        ssize_t r = write(fds[XFD_ERR], &rec, sizeof rec);
        (void)r;
    }
    close_fds(fds, XFD_COUNT);
}

static void kill_subproc(uint32_t spid, int sig)
{
    if (sig <= 0 || sig >= 65)
        return;
    for (int i = 0; i < nsubprocs; i++) {
        if (subprocs[i].spid != spid)
            continue;
        /* Its process group (it made its own with setsid); itself if it has not yet. */
        if (kill(-subprocs[i].pid, sig) < 0)
            kill(subprocs[i].pid, sig);
        return;
    }
}

/* Reports a reaped extra process; returns 0 when `pid` is not one. */
static int reaped_subproc(pid_t pid, int status, const struct rusage *ru)
{
    for (int i = 0; i < nsubprocs; i++) {
        if (subprocs[i].pid != pid)
            continue;
        struct report rep;
        memset(&rep, 0, sizeof rep);
        rep.status = status;
        rep.elapsed_ns = monotonic_ns() - subprocs[i].start;
        rep.rusage = *ru;
        ssize_t r = write(subprocs[i].status_fd, &rep, sizeof rep);
        (void)r;
        close(subprocs[i].status_fd);
        subprocs[i] = subprocs[--nsubprocs];
        return 1;
    }
    return 0;
}

/* One message from the server; -1 once the server is gone. */
static int handle_ctl(void)
{
    union {
        int32_t sig;
        struct ctl_msg m;
        char raw[64];
    } msg;
    union {
        char buf[CMSG_SPACE(sizeof(int) * XFD_COUNT)];
        struct cmsghdr align;
    } ctrl;
    struct iovec iov = {&msg, sizeof msg};
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = ctrl.buf;
    mh.msg_controllen = sizeof ctrl.buf;
    ssize_t r = recvmsg(FD_CTL, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (r < 0)
        return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
    if (r == 0)
        return -1;
    int fds[XFD_COUNT];
    int nfds = 0;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        int n = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (int i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm) + (size_t)i * sizeof(int), sizeof fd);
            if (nfds < XFD_COUNT)
                fds[nfds++] = fd;
            else
                close(fd);
        }
    }
    if (r == (ssize_t)sizeof(int32_t) && nfds == 0) {
        if (msg.sig > 0 && msg.sig < 65)
            /* Every process of the namespace but init: the whole tree. */
            kill(-1, msg.sig);
    } else if (r == (ssize_t)sizeof(struct ctl_msg) && msg.m.op == CTL_EXEC && nfds == XFD_COUNT &&
               !(mh.msg_flags & MSG_CTRUNC)) {
        start_subproc(msg.m.spid, fds);
        nfds = 0;
    } else if (r == (ssize_t)sizeof(struct ctl_msg) && msg.m.op == CTL_KILL && nfds == 0) {
        kill_subproc(msg.m.spid, msg.m.sig);
    }
    close_fds(fds, nfds);
    return 0;
}

/* ----------------------------------------------------------------------------------- */
/* PID 1                                                                               */

static _Noreturn void reap_loop(int sfd, pid_t cmd, uint64_t start)
{
    uint64_t deadline = plan.has_timeout ? start + plan.timeout_ms * 1000000ull : 0;
    int timed_out = 0, ctl_open = 1, done = 0, status = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    while (!done) {
        struct pollfd fds[2] = {{sfd, POLLIN, 0}, {ctl_open ? FD_CTL : -1, POLLIN, 0}};
        int timeout = -1;
        if (plan.has_timeout && !timed_out) {
            uint64_t now = monotonic_ns();
            uint64_t left = now >= deadline ? 0 : (deadline - now + 999999) / 1000000;
            timeout = left > 0x7fffffff ? 0x7fffffff : (int)left;
        }
        if (poll(fds, 2, timeout) < 0)
            continue;
        if (plan.has_timeout && !timed_out && monotonic_ns() >= deadline) {
            timed_out = 1;
            kill(-1, SIGKILL);
        }
        if (fds[1].revents && handle_ctl() < 0) {
            /* The server dropped the sandbox: nobody will collect the result. */
            ctl_open = 0;
            kill(-1, SIGKILL);
        }
        if (fds[0].revents) {
            struct signalfd_siginfo info;
            while (read(sfd, &info, sizeof info) > 0) {
            }
        }
        for (;;) {
            int st = 0;
            struct rusage r;
            pid_t pid = wait4(-1, &st, WNOHANG, &r);
            if (pid <= 0)
                break;
            if (pid == cmd) {
                status = st;
                ru = r;
                done = 1;
            } else {
                reaped_subproc(pid, st, &r);
            }
        }
    }
    struct report rep;
    memset(&rep, 0, sizeof rep);
    rep.status = status;
    rep.timed_out = timed_out;
    rep.elapsed_ns = monotonic_ns() - start;
    rep.rusage = ru;
    ssize_t r = write(FD_STATUS, &rep, sizeof rep);
    (void)r;
    /* Exiting as PID 1 makes the kernel kill everything left in the namespace. */
    _exit(0);
}

static _Noreturn void pid1(void)
{
    /* Die with outer init, which is what the server can kill. */
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    /* /proc/1/{mem,environ,fd,exe} stay out of reach of the command (no CAP_SYS_PTRACE). */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    umask(0);
    check(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), S_MAKE_PRIVATE, 1);
    /* cwd is the image's root (outer init entered it before unsharing; host paths are not
     * traversable from here). Its mounts came from the host's more privileged namespace,
     * so they are locked, and pivot_root refuses a locked new root: a recursive copy of
     * the root attached onto itself is a mount of this namespace's own. */
    int root = (int)syscall(SYS_open_tree, AT_FDCWD, ".", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
    check(root, S_PIVOT_ROOT, 5);
    check(syscall(SYS_move_mount, root, "", AT_FDCWD, ".", MOVE_MOUNT_F_EMPTY_PATH), S_PIVOT_ROOT, 6);
    check(fchdir(root), S_PIVOT_ROOT, 0);
    check(root, S_PIVOT_ROOT, 1);
    for (int i = 0; i < plan.nfiles; i++)
        place_file(root, &plan.files[i], (uint32_t)i);
    create_cwd(root);
    close(root);
    /* /dev and /proc while the host's /proc is still visible (a user namespace may only
     * mount a procfs where one is fully visible already). */
    setup_dev();
    setup_proc();
    check(syscall(SYS_pivot_root, ".", "."), S_PIVOT_ROOT, 2);
    /* The old root is stacked on the new one: detach it, so no path leads back. */
    check(umount2(".", MNT_DETACH), S_PIVOT_ROOT, 3);
    check(chdir("/"), S_PIVOT_ROOT, 4);
    check(sethostname(plan.hostname ? plan.hostname : "contree", plan.hostname ? plan.hostname_len : 7), S_HOSTNAME,
          0);
    check(loopback_up(), S_LOOPBACK, 0);

    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    check(sfd, S_SIGNALFD, 0);
    uint64_t start = monotonic_ns();
    pid_t cmd = fork();
    check(cmd, S_FORK_COMMAND, 0);
    if (cmd == 0)
        exec_command();
    /* From here on only the command holds the stdio pipes and (until execve) the error
     * pipe, so the server sees EOF exactly when they are done. */
    close(FD_STDIN);
    close(FD_STDOUT);
    close(FD_STDERR);
    close(FD_ERR);
    reap_loop(sfd, cmd, start);
}

static void sync_with_server(void)
{
    char c = 'U';
    check(send(FD_SYNC, &c, 1, MSG_NOSIGNAL), S_SYNC, 0);
    ssize_t n;
    do
        n = recv(FD_SYNC, &c, 1, 0);
    while (n < 0 && errno == EINTR);
    if (n != 1 || c != 'G')
        fail(S_SYNC, 1, n < 0 ? errno : EPIPE);
    close(FD_SYNC);
}

static int userns_mode(void)
{
    if (unshare(CLONE_NEWUSER) < 0)
        return 1;
    char c = 'U';
    if (send(FD_PLAN, &c, 1, MSG_NOSIGNAL) != 1)
        return 1;
    /* Live until the server has opened our namespace and closes its end. */
    for (;;) {
        ssize_t n = recv(FD_PLAN, &c, 1, 0);
        if (n < 0 && errno == EINTR)
            continue;
        return 0;
    }
}

int main(int argc, char **argv)
{
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    if (argc > 1 && strcmp(argv[1], "userns") == 0) {
        syscall(SYS_close_range, 4, ~0U, 0);
        return userns_mode();
    }
    read_plan();
    /* Whatever the server had open without O_CLOEXEC stops here, and none of our fds
     * survive the command's execve (the error pipe's EOF tells the server it happened). */
    syscall(SYS_close_range, FD_FIRST_FILE + plan.nfiles, ~0U, 0);
    syscall(SYS_close_range, FD_ERR, FD_FIRST_FILE + plan.nfiles, CLOSE_RANGE_CLOEXEC);
    check(setgroups(0, NULL), S_USERNS, 0);
    /* A fresh, empty session keyring of the run's own, created as host root so that
     * thousands of concurrent runs don't hit the per-user key quota of the range's uid. */
    check(syscall(SYS_keyctl, 1 /* KEYCTL_JOIN_SESSION_KEYRING */, NULL), S_KEYRING, 0);

    /* 1-3: as host root, in a private mount namespace of our own. */
    check(unshare(CLONE_NEWNS), S_MAKE_PRIVATE, 0);
    check(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), S_MAKE_PRIVATE, 0);
    for (int i = 0; i < plan.nidmaps; i++)
        idmap_in_place(plan.idmaps[i], (uint32_t)i);
    close(FD_USERNS);
    for (int i = 0; i < plan.noverlays; i++)
        check(mount_overlay(&plan.overlays[i]), S_MOUNT_OVERLAY, (uint32_t)i);
    /* unshare carries cwd over to the new mount namespace's copy of this mount: PID 1
     * starts there without walking host paths it may not traverse. */
    check(chdir(plan.new_root), S_PIVOT_ROOT, 7);

    /* 4: the sandbox's namespaces, owned by its user namespace. */
    check(unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWPID |
                  CLONE_NEWCGROUP),
          S_USERNS, 1);
    sync_with_server();
    /* 5: root of the new user namespace (host uid/gid = the start of the server's range). */
    check(setresgid(0, 0, 0), S_USERNS, 2);
    check(setresuid(0, 0, 0), S_USERNS, 3);
    pid_t child = fork();
    check(child, S_FORK_INIT, 0);
    if (child == 0)
        pid1();
    /* Outer init holds nothing of the run: only PID 1 and the command may, or EOFs
     * would never come. */
    syscall(SYS_close_range, 0, ~0U, 0);
    int status = 0;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
    }
    _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}
