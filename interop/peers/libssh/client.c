/*
 * An ssh-like client built on libssh, for the interop matrix.
 *
 * Takes the subset of ssh's flags the matrix and OpenSSH's sftp/scp (-S) use:
 * -p -i -l -t -N -s -L -v, -o UserKnownHostsFile/SetEnv/ProxyCommand/Port/User
 * (other options ignored), [user@]host [command...]. The host key is checked
 * against UserKnownHostsFile by libssh (ssh_session_is_known_server); the key
 * given with -i is the only one offered. Runs the command (or subsystem) with
 * pipes or a pty (window changes sent), prints -v's "kex: algorithm:" line,
 * and exits with the remote exit status (255 when connecting or logging in
 * fails).
 *
 * Build: gcc -O2 -Wall -o libssh-ssh client.c -lssh
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <libssh/libssh.h>

#define MAX_ENV 16

struct options {
    const char *host, *user, *identity, *known_hosts, *proxy_command;
    int port, tty, no_command, subsystem, verbose;
    char command[8192];
    char *env_names[MAX_ENV], *env_values[MAX_ENV];
    int env_count;
    char *local_forward; /* [bind:]port:host:hostport */
};

static volatile sig_atomic_t window_changed;
static struct termios saved_termios;
static int termios_saved;

static void fail(const char *what, const char *detail)
{
    if (termios_saved)
        tcsetattr(0, TCSADRAIN, &saved_termios);
    fprintf(stderr, "libssh-ssh: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    exit(255);
}

static void on_winch(int sig)
{
    (void)sig;
    window_changed = 1;
}

/* -oKey=Value or -oKey Value (OpenSSH's sftp passes the second form). */
static void apply_option(struct options *o, char *text)
{
    char *sep = strpbrk(text, "= ");
    if (!sep)
        return;
    *sep = '\0';
    char *value = sep + 1;
    while (*value == ' ')
        value++;
    if (!strcasecmp(text, "UserKnownHostsFile"))
        o->known_hosts = value;
    else if (!strcasecmp(text, "ProxyCommand"))
        o->proxy_command = value;
    else if (!strcasecmp(text, "Port"))
        o->port = atoi(value);
    else if (!strcasecmp(text, "User"))
        o->user = value;
    else if (!strcasecmp(text, "SetEnv") && o->env_count < MAX_ENV) {
        char *eq = strchr(value, '=');
        if (eq) {
            *eq = '\0';
            o->env_names[o->env_count] = value;
            o->env_values[o->env_count++] = eq + 1;
        }
    }
}

static void parse_args(struct options *o, int argc, char **argv)
{
    const char *takes_value = "pilLRDoFJcmbeEBIOQSWw";
    int i = 1;
    o->port = 22;
    for (; i < argc; i++) {
        char *word = argv[i];
        if (!strcmp(word, "--")) {
            i++;
            break;
        }
        if (word[0] != '-' || word[1] == '\0')
            break;
        char flag = word[1];
        if (strchr(takes_value, flag)) {
            char *value = word[2] ? word + 2 : (i + 1 < argc ? argv[++i] : "");
            switch (flag) {
            case 'p': o->port = atoi(value); break;
            case 'i': o->identity = value; break;
            case 'l': o->user = value; break;
            case 'L': o->local_forward = value; break;
            case 'o': apply_option(o, value); break;
            default: break;
            }
            continue;
        }
        for (char *f = word + 1; *f; f++) {
            switch (*f) {
            case 't': o->tty = 1; break;
            case 'N': o->no_command = 1; break;
            case 's': o->subsystem = 1; break;
            case 'v': o->verbose = 1; break;
            default: break;
            }
        }
    }
    if (i >= argc)
        fail("usage: [options] [user@]host [command]", NULL);
    char *at = strrchr(argv[i], '@');
    if (at) {
        *at = '\0';
        o->user = argv[i];
        o->host = at + 1;
    } else {
        o->host = argv[i];
    }
    for (i++; i < argc; i++) {
        if (o->command[0])
            strncat(o->command, " ", sizeof o->command - strlen(o->command) - 1);
        strncat(o->command, argv[i], sizeof o->command - strlen(o->command) - 1);
    }
}

static void check_host_key(ssh_session session)
{
    enum ssh_known_hosts_e state = ssh_session_is_known_server(session);
    switch (state) {
    case SSH_KNOWN_HOSTS_OK:
        return;
    case SSH_KNOWN_HOSTS_CHANGED:
        fail("host key for server changed", ssh_get_error(session));
    case SSH_KNOWN_HOSTS_OTHER:
        fail("host key for server changed (the server now presents another key type)", NULL);
    case SSH_KNOWN_HOSTS_NOT_FOUND:
    case SSH_KNOWN_HOSTS_UNKNOWN:
        fail("host key not in known_hosts", NULL);
    default:
        fail("cannot check the host key", ssh_get_error(session));
    }
}

/* -L: accept connections and carry each through a direct-tcpip channel (one at a time). */
static void local_forward(ssh_session session, char *spec)
{
    char bind_host[256] = "127.0.0.1", host[256];
    int bind_port, port;
    if (sscanf(spec, "%255[^:]:%d:%255[^:]:%d", bind_host, &bind_port, host, &port) != 4 &&
        sscanf(spec, "%d:%255[^:]:%d", &bind_port, host, &port) != 3)
        fail("bad -L spec", spec);
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(bind_port)};
    inet_pton(AF_INET, bind_host, &addr.sin_addr);
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(listener, 8) < 0)
        fail("-L: cannot listen", strerror(errno));
    for (;;) {
        int conn = accept(listener, NULL, NULL);
        if (conn < 0)
            continue;
        ssh_channel channel = ssh_channel_new(session);
        if (ssh_channel_open_forward(channel, host, port, "127.0.0.1", bind_port) != SSH_OK) {
            fprintf(stderr, "libssh-ssh: direct-tcpip refused: %s\n", ssh_get_error(session));
            ssh_channel_free(channel);
            close(conn);
            continue;
        }
        char buf[32768];
        int open_in = 1;
        while (!ssh_channel_is_eof(channel) && ssh_channel_is_open(channel)) {
            struct pollfd p = {.fd = conn, .events = open_in ? POLLIN : 0};
            poll(&p, 1, 20);
            if (open_in && (p.revents & (POLLIN | POLLHUP))) {
                ssize_t n = read(conn, buf, sizeof buf);
                if (n <= 0) {
                    ssh_channel_send_eof(channel);
                    open_in = 0;
                } else if (ssh_channel_write(channel, buf, n) != n) {
                    break;
                }
            }
            int n = ssh_channel_read_nonblocking(channel, buf, sizeof buf, 0);
            if (n > 0 && write(conn, buf, n) != n)
                break;
            if (n < 0)
                break;
        }
        ssh_channel_close(channel);
        ssh_channel_free(channel);
        close(conn);
    }
}

static int run_session(ssh_session session, struct options *o)
{
    ssh_channel channel = ssh_channel_new(session);
    if (!channel || ssh_channel_open_session(channel) != SSH_OK)
        fail("cannot open a session", ssh_get_error(session));
    for (int i = 0; i < o->env_count; i++)
        if (ssh_channel_request_env(channel, o->env_names[i], o->env_values[i]) != SSH_OK)
            fprintf(stderr, "libssh-ssh: env %s refused\n", o->env_names[i]);
    if (o->tty) {
        struct winsize ws = {.ws_col = 80, .ws_row = 24};
        ioctl(0, TIOCGWINSZ, &ws);
        if (ssh_channel_request_pty_size(channel, "xterm", ws.ws_col, ws.ws_row) != SSH_OK)
            fail("pty refused", ssh_get_error(session));
        if (isatty(0) && tcgetattr(0, &saved_termios) == 0) {
            struct termios raw = saved_termios;
            cfmakeraw(&raw);
            tcsetattr(0, TCSADRAIN, &raw);
            termios_saved = 1;
        }
        signal(SIGWINCH, on_winch);
    }
    int rc;
    if (o->subsystem)
        rc = ssh_channel_request_subsystem(channel, o->command);
    else if (o->command[0])
        rc = ssh_channel_request_exec(channel, o->command);
    else
        rc = ssh_channel_request_shell(channel);
    if (rc != SSH_OK)
        fail("the server refused the command", ssh_get_error(session));

    char buf[65536];
    int stdin_open = 1;
    while (ssh_channel_is_open(channel) && !ssh_channel_is_eof(channel)) {
        if (window_changed) {
            struct winsize ws;
            window_changed = 0;
            if (ioctl(0, TIOCGWINSZ, &ws) == 0)
                ssh_channel_change_pty_size(channel, ws.ws_col, ws.ws_row);
        }
        struct pollfd p = {.fd = 0, .events = stdin_open ? POLLIN : 0};
        poll(&p, 1, stdin_open ? 10 : 0);
        if (stdin_open && (p.revents & (POLLIN | POLLHUP))) {
            ssize_t n = read(0, buf, sizeof buf);
            if (n <= 0) {
                ssh_channel_send_eof(channel);
                stdin_open = 0;
            } else if (ssh_channel_write(channel, buf, n) != n) {
                break;
            }
        }
        int busy = 0;
        for (int is_stderr = 0; is_stderr <= 1; is_stderr++) {
            int n = ssh_channel_read_timeout(channel, buf, sizeof buf, is_stderr, stdin_open ? 0 : 10);
            if (n > 0) {
                busy = 1;
                if (write(is_stderr ? 2 : 1, buf, n) != n)
                    break;
            }
        }
        (void)busy;
    }
    /* Whatever is still buffered after EOF. */
    for (int is_stderr = 0; is_stderr <= 1; is_stderr++) {
        int n;
        while ((n = ssh_channel_read_timeout(channel, buf, sizeof buf, is_stderr, 100)) > 0)
            if (write(is_stderr ? 2 : 1, buf, n) != n)
                break;
    }
    ssh_channel_send_eof(channel);
    ssh_channel_close(channel);
    int status = ssh_channel_get_exit_status(channel);
    ssh_channel_free(channel);
    if (termios_saved)
        tcsetattr(0, TCSADRAIN, &saved_termios);
    return status >= 0 ? status : 255;
}

int main(int argc, char **argv)
{
    struct options o = {0};
    parse_args(&o, argc, argv);
    ssh_session session = ssh_new();
    int verbosity = SSH_LOG_NOLOG;
    long timeout = 30;
    ssh_options_set(session, SSH_OPTIONS_HOST, o.host);
    ssh_options_set(session, SSH_OPTIONS_PORT, &o.port);
    ssh_options_set(session, SSH_OPTIONS_LOG_VERBOSITY, &verbosity);
    ssh_options_set(session, SSH_OPTIONS_TIMEOUT, &timeout);
    /* Read no ~/.ssh/config and no system known_hosts: the cell's file alone decides. */
    ssh_options_set(session, SSH_OPTIONS_GLOBAL_KNOWNHOSTS, "/dev/null");
    if (o.user)
        ssh_options_set(session, SSH_OPTIONS_USER, o.user);
    if (o.known_hosts)
        ssh_options_set(session, SSH_OPTIONS_KNOWNHOSTS, o.known_hosts);
    if (o.proxy_command) {
        /* %h and %p filled in here, as ssh does. */
        /* "exec" first, as ssh does: libssh runs the command with sh -c, and a shell left
         * behind would hold a copy of the socket. */
        char expanded[4096] = "exec ";
        for (const char *c = o.proxy_command; *c && strlen(expanded) < sizeof expanded - 64; c++) {
            if (c[0] == '%' && c[1] == 'h') {
                strncat(expanded, o.host, sizeof expanded - strlen(expanded) - 1);
                c++;
            } else if (c[0] == '%' && c[1] == 'p') {
                snprintf(expanded + strlen(expanded), sizeof expanded - strlen(expanded), "%d", o.port);
                c++;
            } else {
                strncat(expanded, c, 1);
            }
        }
        ssh_options_set(session, SSH_OPTIONS_PROXYCOMMAND, expanded);
    }
    if (ssh_connect(session) != SSH_OK)
        fail("cannot connect", ssh_get_error(session));
    if (o.verbose)
        fprintf(stderr, "debug1: kex: algorithm: %s\n", ssh_get_kex_algo(session));
    check_host_key(session);

    ssh_key key = NULL;
    if (!o.identity || ssh_pki_import_privkey_file(o.identity, NULL, NULL, NULL, &key) != SSH_OK)
        fail("cannot load the identity", o.identity);
    if (ssh_userauth_publickey(session, NULL, key) != SSH_AUTH_SUCCESS)
        fail("authentication refused", ssh_get_error(session));
    ssh_key_free(key);

    if (o.local_forward)
        local_forward(session, o.local_forward);
    int status = o.no_command ? 0 : run_session(session, &o);
    ssh_disconnect(session);
    ssh_free(session);
    return status;
}
