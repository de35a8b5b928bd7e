/*
 * An sshd-like server built on libssh, for the interop matrix.
 *
 * Public-key logins for one user (keys in their ~/.ssh/authorized_keys, read at
 * each login); one session channel per connection, running a command, a shell
 * or the sftp subsystem (OpenSSH's sftp-server) as that user on pipes, with the
 * accepted environment names; exit status (or signal) reported. No pty and no
 * forwarding: this helper uses libssh's blocking message API, which serves one
 * channel at a time. One process per connection.
 *
 *   libssh-server --port P --host-key FILE --user NAME [--accept-env NAME]...
 * Build: gcc -O2 -Wall -o libssh-server server.c -lssh
 */
#include <errno.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libssh/libssh.h>
#include <libssh/server.h>

#define SFTP_SERVER "/usr/lib/openssh/sftp-server"
#define MAX_ENV 16

static const char *login_user;
static const char *accept_env[MAX_ENV];
static int accept_env_count;
static struct passwd account;

static int authorized(ssh_key offered)
{
    char path[4096], line[16384];
    snprintf(path, sizeof path, "%s/.ssh/authorized_keys", account.pw_dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        char type[128], blob[16000];
        if (sscanf(line, "%127s %15999s", type, blob) != 2)
            continue;
        ssh_key key = NULL;
        if (ssh_pki_import_pubkey_base64(blob, ssh_key_type_from_name(type), &key) == SSH_OK) {
            found = ssh_key_cmp(key, offered, SSH_KEY_CMP_PUBLIC) == 0;
            ssh_key_free(key);
        }
    }
    fclose(f);
    return found;
}

static int authenticate(ssh_session session)
{
    ssh_message msg;
    while ((msg = ssh_message_get(session))) {
        int done = 0;
        if (ssh_message_type(msg) == SSH_REQUEST_AUTH && ssh_message_subtype(msg) == SSH_AUTH_METHOD_PUBLICKEY &&
            !strcmp(ssh_message_auth_user(msg), login_user) && authorized(ssh_message_auth_pubkey(msg))) {
            switch (ssh_message_auth_publickey_state(msg)) {
            case SSH_PUBLICKEY_STATE_NONE: /* "would this key do?" */
                ssh_message_auth_reply_pk_ok_simple(msg);
                break;
            case SSH_PUBLICKEY_STATE_VALID: /* signed, and libssh checked the signature */
                ssh_message_auth_reply_success(msg, 0);
                done = 1;
                break;
            default:
                ssh_message_auth_set_methods(msg, SSH_AUTH_METHOD_PUBLICKEY);
                ssh_message_reply_default(msg);
            }
        } else {
            ssh_message_auth_set_methods(msg, SSH_AUTH_METHOD_PUBLICKEY);
            ssh_message_reply_default(msg);
        }
        ssh_message_free(msg);
        if (done)
            return 1;
    }
    return 0;
}

struct request {
    char *argv[4];
    char *env[MAX_ENV + 8];
    int env_count;
};

/* Channel requests until one starts something: env (accepted names), exec, shell, subsystem sftp. */
static int read_requests(ssh_session session, struct request *req)
{
    static char home[4200], user[300], logname[300], command[65536];
    snprintf(home, sizeof home, "HOME=%s", account.pw_dir);
    snprintf(user, sizeof user, "USER=%s", account.pw_name);
    snprintf(logname, sizeof logname, "LOGNAME=%s", account.pw_name);
    req->env[req->env_count++] = home;
    req->env[req->env_count++] = user;
    req->env[req->env_count++] = logname;
    req->env[req->env_count++] = "SHELL=/bin/sh";
    req->env[req->env_count++] = "PATH=/usr/local/bin:/usr/bin:/bin";
    ssh_message msg;
    while ((msg = ssh_message_get(session))) {
        int started = 0, ok = 0;
        if (ssh_message_type(msg) == SSH_REQUEST_CHANNEL) {
            switch (ssh_message_subtype(msg)) {
            case SSH_CHANNEL_REQUEST_ENV: {
                const char *name = ssh_message_channel_request_env_name(msg);
                const char *value = ssh_message_channel_request_env_value(msg);
                for (int i = 0; i < accept_env_count && req->env_count < MAX_ENV + 7; i++) {
                    if (!strcmp(name, accept_env[i])) {
                        char *entry = malloc(strlen(name) + strlen(value) + 2);
                        if (!entry)
                            break;
                        sprintf(entry, "%s=%s", name, value);
                        req->env[req->env_count++] = entry;
                        ok = 1;
                    }
                }
                break;
            }
            case SSH_CHANNEL_REQUEST_EXEC:
                snprintf(command, sizeof command, "%s", ssh_message_channel_request_command(msg));
                req->argv[0] = "/bin/sh", req->argv[1] = "-c", req->argv[2] = command;
                ok = started = 1;
                break;
            case SSH_CHANNEL_REQUEST_SHELL:
                req->argv[0] = "/bin/sh", req->argv[1] = "-l";
                ok = started = 1;
                break;
            case SSH_CHANNEL_REQUEST_SUBSYSTEM:
                if (!strcmp(ssh_message_channel_request_subsystem(msg), "sftp")) {
                    req->argv[0] = SFTP_SERVER;
                    ok = started = 1;
                }
                break;
            default: /* pty-req and the rest: refused */
                break;
            }
        }
        if (ok)
            ssh_message_channel_request_reply_success(msg);
        else
            ssh_message_reply_default(msg);
        ssh_message_free(msg);
        if (started)
            return 1;
    }
    return 0;
}

static pid_t spawn(struct request *req, int *in, int *out, int *err)
{
    int pin[2], pout[2], perr[2];
    if (pipe(pin) || pipe(pout) || pipe(perr))
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pin[0], 0), dup2(pout[1], 1), dup2(perr[1], 2);
        for (int fd = 3; fd < 1024; fd++)
            close(fd);
        signal(SIGPIPE, SIG_DFL);
        if (setgroups(0, NULL) || setgid(account.pw_gid) || setuid(account.pw_uid) || chdir(account.pw_dir))
            _exit(126);
        req->env[req->env_count] = NULL;
        execve(req->argv[0], req->argv, req->env);
        _exit(127);
    }
    close(pin[0]), close(pout[1]), close(perr[1]);
    *in = pin[1], *out = pout[0], *err = perr[0];
    return pid;
}

static void serve(ssh_session session)
{
    if (ssh_handle_key_exchange(session) != SSH_OK || !authenticate(session))
        return;
    ssh_channel channel = NULL;
    ssh_message msg;
    while (!channel && (msg = ssh_message_get(session))) {
        if (ssh_message_type(msg) == SSH_REQUEST_CHANNEL_OPEN && ssh_message_subtype(msg) == SSH_CHANNEL_SESSION)
            channel = ssh_message_channel_request_open_reply_accept(msg);
        else
            ssh_message_reply_default(msg);
        ssh_message_free(msg);
    }
    struct request req = {0};
    if (!channel || !read_requests(session, &req))
        return;
    int in, out, err;
    pid_t pid = spawn(&req, &in, &out, &err);
    if (pid < 0)
        return;
    char buf[65536];
    int outputs = 2;
    /* The child's stdout and stderr, and the connection (so that data from the client wakes us too). */
    struct pollfd fds[3] = {{.fd = out, .events = POLLIN}, {.fd = err, .events = POLLIN},
                            {.fd = ssh_get_fd(session), .events = POLLIN}};
    while (outputs > 0) {
        poll(fds, in >= 0 ? 3 : 2, 10);
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP)))
                continue;
            ssize_t n = read(fds[i].fd, buf, sizeof buf);
            if (n <= 0) {
                close(fds[i].fd);
                fds[i].fd = -1;
                outputs--;
            } else if ((i ? ssh_channel_write_stderr(channel, buf, n) : ssh_channel_write(channel, buf, n)) != n) {
                outputs = 0;
            }
        }
        if (in >= 0) {
            int n = ssh_channel_read_nonblocking(channel, buf, sizeof buf, 0);
            if (n > 0) {
                if (write(in, buf, n) != n) {
                    close(in);
                    in = -1;
                }
            } else if (n < 0 || ssh_channel_is_eof(channel)) {
                close(in);
                in = -1;
            }
        }
    }
    if (in >= 0)
        close(in);
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status)) {
        const char *name = WTERMSIG(status) == SIGKILL ? "KILL" : WTERMSIG(status) == SIGTERM ? "TERM" : "HUP";
        ssh_channel_request_send_exit_signal(channel, name, 0, "", "");
    } else {
        ssh_channel_request_send_exit_status(channel, WEXITSTATUS(status));
    }
    ssh_channel_send_eof(channel);
    ssh_channel_close(channel);
    ssh_blocking_flush(session, 2000);
    /* Close gracefully: stop sending, then read until the client hangs up (or 2 s pass). Closing a
     * socket that still holds unread data makes the kernel send a reset, which can destroy our last
     * packets (exit-status, close) before the client has read them. */
    int fd = ssh_get_fd(session);
    shutdown(fd, SHUT_WR);
    for (int waited = 0; waited < 2000; waited += 50) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) > 0 && read(fd, buf, sizeof buf) <= 0)
            break;
    }
    ssh_channel_free(channel);
}

int main(int argc, char **argv)
{
    int port = 0;
    const char *host_key = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port"))
            port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--host-key"))
            host_key = argv[i + 1];
        else if (!strcmp(argv[i], "--user"))
            login_user = argv[i + 1];
        else if (!strcmp(argv[i], "--accept-env") && accept_env_count < MAX_ENV)
            accept_env[accept_env_count++] = argv[i + 1];
    }
    struct passwd *pw = login_user ? getpwnam(login_user) : NULL;
    if (!port || !host_key || !pw) {
        fprintf(stderr, "usage: libssh-server --port P --host-key FILE --user NAME [--accept-env NAME]...\n");
        return 2;
    }
    account = *pw;
    account.pw_dir = strdup(pw->pw_dir);
    account.pw_name = strdup(pw->pw_name);
    ssh_bind bind = ssh_bind_new();
    ssh_bind_options_set(bind, SSH_BIND_OPTIONS_BINDADDR, "127.0.0.1");
    ssh_bind_options_set(bind, SSH_BIND_OPTIONS_BINDPORT, &port);
    ssh_bind_options_set(bind, SSH_BIND_OPTIONS_HOSTKEY, host_key);
    if (ssh_bind_listen(bind) != SSH_OK) {
        fprintf(stderr, "libssh-server: %s\n", ssh_get_error(bind));
        return 1;
    }
    printf("libssh %s server listening on 127.0.0.1 port %d\n", ssh_version(0), port);
    fflush(stdout);
    signal(SIGCHLD, SIG_IGN); /* connection processes are not waited for */
    for (;;) {
        ssh_session session = ssh_new();
        if (ssh_bind_accept(bind, session) != SSH_OK) {
            ssh_free(session);
            continue;
        }
        pid_t pid = fork();
        if (pid == 0) {
            /* This process waits for its command: SIGCHLD back to default. */
            signal(SIGCHLD, SIG_DFL);
            ssh_bind_free(bind);
            serve(session);
            ssh_disconnect(session);
            ssh_free(session);
            _exit(0);
        }
        ssh_free(session);
    }
}
