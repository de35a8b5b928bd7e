// An ssh-like client built on Go's golang.org/x/crypto/ssh, for the interop matrix.
//
// It takes the subset of ssh's flags the matrix and OpenSSH's sftp/scp (-S) use:
// -p -i -l -t -N -s -L -R -v, -o UserKnownHostsFile/SetEnv/ProxyCommand/Port/User
// (other -o options ignored), [user@]host [command...]. Host keys are checked
// against UserKnownHostsFile with x/crypto's knownhosts (which also reads
// @cert-authority lines); a certificate <key>-cert.pub beside -i is offered.
// Exits with the remote exit status, 255 when connecting or logging in fails.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"golang.org/x/term"
)

type forward struct{ listen, target string }

type options struct {
	host, user, identity, knownHosts, proxyCommand, command string
	port                                                    int
	tty, noCommand, subsystem                               bool
	env                                                     [][2]string
	local, remote                                           []forward
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "go-ssh: "+format+"\n", args...)
	os.Exit(255)
}

// forwardSpec turns [bind:]port:host:hostport into listen and target addresses.
func forwardSpec(spec string) forward {
	parts := strings.Split(spec, ":")
	if len(parts) == 3 {
		parts = append([]string{"127.0.0.1"}, parts...)
	}
	if len(parts) != 4 {
		fail("bad forwarding spec %q", spec)
	}
	return forward{net.JoinHostPort(parts[0], parts[1]), net.JoinHostPort(parts[2], parts[3])}
}

func parseArgs(argv []string) options {
	o := options{port: 22, user: os.Getenv("USER")}
	var rest []string
	takesValue := "pilLRDoFJcmbeEBIOQSWw"
	for i := 0; i < len(argv); i++ {
		word := argv[i]
		if len(rest) > 0 || word == "-" || !strings.HasPrefix(word, "-") {
			rest = append(rest, word)
			continue
		}
		if word == "--" {
			rest = append(rest, argv[i+1:]...)
			break
		}
		flag, value := word[1:2], word[2:]
		if strings.Contains(takesValue, flag) {
			if value == "" && i+1 < len(argv) {
				i++
				value = argv[i]
			}
			o.apply(flag, value)
			continue
		}
		for _, f := range word[1:] {
			o.apply(string(f), "")
		}
	}
	if len(rest) == 0 {
		fail("usage: [options] [user@]host [command]")
	}
	if at := strings.LastIndex(rest[0], "@"); at >= 0 {
		o.user, o.host = rest[0][:at], rest[0][at+1:]
	} else {
		o.host = rest[0]
	}
	o.command = strings.Join(rest[1:], " ")
	return o
}

func (o *options) apply(flag, value string) {
	switch flag {
	case "p":
		o.port, _ = strconv.Atoi(value)
	case "i":
		o.identity = value
	case "l":
		o.user = value
	case "t":
		o.tty = true
	case "N":
		o.noCommand = true
	case "s":
		o.subsystem = true
	case "L":
		o.local = append(o.local, forwardSpec(value))
	case "R":
		o.remote = append(o.remote, forwardSpec(value))
	case "o":
		// -oKey=Value or -oKey Value (OpenSSH's sftp passes the second form).
		kv := strings.SplitN(strings.Replace(value, "=", " ", 1), " ", 2)
		if len(kv) != 2 {
			return
		}
		val := strings.TrimSpace(kv[1])
		switch strings.ToLower(kv[0]) {
		case "userknownhostsfile":
			o.knownHosts = val
		case "proxycommand":
			o.proxyCommand = val
		case "port":
			o.port, _ = strconv.Atoi(val)
		case "user":
			o.user = val
		case "setenv":
			for _, item := range strings.Fields(val) {
				nv := strings.SplitN(item, "=", 2)
				if len(nv) == 2 {
					o.env = append(o.env, [2]string{nv[0], nv[1]})
				}
			}
		}
	}
}

// pipeConn is a net.Conn over a ProxyCommand's stdin and stdout.
type pipeConn struct {
	io.Reader
	io.WriteCloser
	cmd    *exec.Cmd
	target pipeAddr
}

// pipeAddr names the host and port the ProxyCommand reaches: knownhosts
// checks the remote address as well as the host name, and needs host:port.
type pipeAddr string

func (pipeAddr) Network() string  { return "tcp" }
func (a pipeAddr) String() string { return string(a) }

func (c *pipeConn) Close() error {
	c.WriteCloser.Close()
	if c.cmd.Process != nil {
		c.cmd.Process.Kill()
	}
	return nil
}
func (c *pipeConn) LocalAddr() net.Addr                { return pipeAddr("127.0.0.1:0") }
func (c *pipeConn) RemoteAddr() net.Addr               { return c.target }
func (c *pipeConn) SetDeadline(t time.Time) error      { return nil }
func (c *pipeConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *pipeConn) SetWriteDeadline(t time.Time) error { return nil }

func dial(o options, addr string) net.Conn {
	if o.proxyCommand == "" {
		conn, err := net.DialTimeout("tcp", addr, 30*time.Second)
		if err != nil {
			fail("%v", err)
		}
		return conn
	}
	text := strings.ReplaceAll(strings.ReplaceAll(o.proxyCommand, "%h", o.host), "%p", strconv.Itoa(o.port))
	// "exec", as ssh does: no shell stays behind holding a copy of the pipes, so
	// the proxy closing its stdout reaches us as end of file.
	cmd := exec.Command("/bin/sh", "-c", "exec "+text)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		fail("%v", err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		fail("%v", err)
	}
	if err := cmd.Start(); err != nil {
		fail("ProxyCommand: %v", err)
	}
	return &pipeConn{out, in, cmd, pipeAddr(addr)}
}

func signers(identity string) []ssh.Signer {
	pem, err := os.ReadFile(identity)
	if err != nil {
		fail("%v", err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		fail("%s: %v", identity, err)
	}
	// Like ssh, offer <key>-cert.pub (when present) before the plain key.
	if text, err := os.ReadFile(identity + "-cert.pub"); err == nil {
		if pub, _, _, _, err := ssh.ParseAuthorizedKey(text); err == nil {
			if cert, ok := pub.(*ssh.Certificate); ok {
				if certSigner, err := ssh.NewCertSigner(cert, signer); err == nil {
					return []ssh.Signer{certSigner, signer}
				}
			}
		}
	}
	return []ssh.Signer{signer}
}

func splice(a, b io.ReadWriteCloser) {
	go func() { io.Copy(a, b); a.Close() }()
	go func() { io.Copy(b, a); b.Close() }()
}

func localForward(client *ssh.Client, f forward) {
	listener, err := net.Listen("tcp", f.listen)
	if err != nil {
		fail("-L %s: %v", f.listen, err)
	}
	go func() {
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			remote, err := client.Dial("tcp", f.target)
			if err != nil {
				conn.Close()
				continue
			}
			splice(conn, remote)
		}
	}()
}

func remoteForward(client *ssh.Client, f forward) {
	listener, err := client.Listen("tcp", f.listen)
	if err != nil {
		fail("-R %s: %v", f.listen, err)
	}
	go func() {
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			local, err := net.Dial("tcp", f.target)
			if err != nil {
				conn.Close()
				continue
			}
			splice(conn, local)
		}
	}()
}

func runSession(client *ssh.Client, o options) int {
	session, err := client.NewSession()
	if err != nil {
		fail("session: %v", err)
	}
	for _, nv := range o.env {
		if err := session.Setenv(nv[0], nv[1]); err != nil {
			fmt.Fprintf(os.Stderr, "go-ssh: env %s refused\n", nv[0])
		}
	}
	if o.tty {
		cols, rows, err := term.GetSize(0)
		if err != nil {
			cols, rows = 80, 24
		}
		if err := session.RequestPty("xterm", rows, cols, ssh.TerminalModes{}); err != nil {
			fail("pty: %v", err)
		}
		if state, err := term.MakeRaw(0); err == nil {
			defer term.Restore(0, state)
		}
		winch := make(chan os.Signal, 1)
		signal.Notify(winch, syscall.SIGWINCH)
		go func() {
			for range winch {
				if c, r, err := term.GetSize(0); err == nil {
					session.WindowChange(r, c)
				}
			}
		}()
	}
	stdin, _ := session.StdinPipe()
	stdout, _ := session.StdoutPipe()
	stderr, _ := session.StderrPipe()
	switch {
	case o.subsystem:
		err = session.RequestSubsystem(o.command)
	case o.command != "":
		err = session.Start(o.command)
	default:
		err = session.Shell()
	}
	if err != nil {
		fail("%v", err)
	}
	go func() { io.Copy(stdin, os.Stdin); stdin.Close() }()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { io.Copy(os.Stdout, stdout); wg.Done() }()
	go func() { io.Copy(os.Stderr, stderr); wg.Done() }()
	wg.Wait()
	if o.subsystem {
		// x/crypto's RequestSubsystem does not "start" the Session, so Wait
		// would only say "session not started": the subsystem's own protocol
		// (SFTP) has told its user how it went; its exit status is not
		// reachable through this API.
		return 0
	}
	err = session.Wait()
	if err == nil {
		return 0
	}
	if exit, ok := err.(*ssh.ExitError); ok && exit.Signal() == "" {
		return exit.ExitStatus()
	}
	fmt.Fprintf(os.Stderr, "go-ssh: %v\n", err)
	return 255
}

func main() {
	o := parseArgs(os.Args[1:])
	hostKeys, err := knownhosts.New(o.knownHosts)
	if err != nil {
		fail("known hosts %q: %v", o.knownHosts, err)
	}
	config := &ssh.ClientConfig{
		User:            o.user,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signers(o.identity)...)},
		HostKeyCallback: hostKeys,
		Timeout:         30 * time.Second,
	}
	addr := net.JoinHostPort(o.host, strconv.Itoa(o.port))
	conn, chans, reqs, err := ssh.NewClientConn(dial(o, addr), addr, config)
	if err != nil {
		fail("%v", err)
	}
	client := ssh.NewClient(conn, chans, reqs)
	for _, f := range o.local {
		localForward(client, f)
	}
	for _, f := range o.remote {
		remoteForward(client, f)
	}
	if o.noCommand {
		client.Wait()
		os.Exit(0)
	}
	status := runSession(client, o)
	client.Close()
	os.Exit(status)
}
