// An sshd-like server built on Go's golang.org/x/crypto/ssh, for the interop matrix.
//
// Public-key logins for one user (keys in their ~/.ssh/authorized_keys, read at
// each login); session channels run a command, a shell or the sftp subsystem
// (OpenSSH's sftp-server) as that user, with pipes or a pty (window changes
// applied) and accepted environment names; direct-tcpip channels (ssh -L, -D)
// and tcpip-forward requests (ssh -R) are served.
//
//	go-server --port P --host-key FILE --user NAME [--accept-env NAME]...
package main

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

const sftpServer = "/usr/lib/openssh/sftp-server"

type stringList []string

func (l *stringList) String() string     { return fmt.Sprint(*l) }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

var (
	port      = flag.Int("port", 0, "TCP port on 127.0.0.1")
	hostKey   = flag.String("host-key", "", "OpenSSH private host key")
	loginUser = flag.String("user", "", "the one account that may log in")
	acceptEnv stringList
)

func authorized(key ssh.PublicKey, home string) bool {
	text, err := os.ReadFile(filepath.Join(home, ".ssh", "authorized_keys"))
	if err != nil {
		return false
	}
	for len(text) > 0 {
		pub, _, _, rest, err := ssh.ParseAuthorizedKey(text)
		if err != nil {
			return false
		}
		if bytes.Equal(pub.Marshal(), key.Marshal()) {
			return true
		}
		text = rest
	}
	return false
}

// account is the login user's identity, for running their processes.
type account struct {
	uid, gid   uint32
	home, name string
}

func lookupAccount(name string) account {
	u, err := user.Lookup(name)
	if err != nil {
		log.Fatalf("user %s: %v", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return account{uint32(uid), uint32(gid), u.HomeDir, name}
}

// openPty makes a new pty pair by hand (no pty package in Debian's gocode set).
func openPty(cols, rows uint32) (*os.File, *os.File, error) {
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		return nil, nil, err
	}
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	slave, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	setSize(master, cols, rows)
	return master, slave, nil
}

func setSize(master *os.File, cols, rows uint32) {
	unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: uint16(rows), Col: uint16(cols)})
}

type session struct {
	acct   account
	ch     ssh.Channel
	env    []string
	pty    bool
	cols   uint32
	rows   uint32
	master *os.File
	mu     sync.Mutex
}

func (s *session) command(argv []string) *exec.Cmd {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = s.acct.home
	cmd.Env = append([]string{"HOME=" + s.acct.home, "USER=" + s.acct.name, "LOGNAME=" + s.acct.name,
		"SHELL=/bin/sh", "PATH=/usr/local/bin:/usr/bin:/bin"}, s.env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true,
		Credential: &syscall.Credential{Uid: s.acct.uid, Gid: s.acct.gid, Groups: []uint32{}}}
	return cmd
}

// run starts argv on pipes or the session's pty and reports its exit to the client.
func (s *session) run(argv []string) error {
	cmd := s.command(argv)
	var copies sync.WaitGroup
	if s.pty {
		master, slave, err := openPty(s.cols, s.rows)
		if err != nil {
			return err
		}
		cmd.Env = append(cmd.Env, "TERM=xterm")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
		cmd.SysProcAttr.Setctty = true
		cmd.SysProcAttr.Ctty = 0
		if err := cmd.Start(); err != nil {
			master.Close()
			slave.Close()
			return err
		}
		slave.Close()
		s.mu.Lock()
		s.master = master
		s.mu.Unlock()
		go io.Copy(master, s.ch)
		copies.Add(1)
		go func() { io.Copy(s.ch, master); copies.Done() }() // ends with EIO when the child side closes
	} else {
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		stderr, _ := cmd.StderrPipe()
		if err := cmd.Start(); err != nil {
			return err
		}
		go func() { io.Copy(stdin, s.ch); stdin.Close() }()
		copies.Add(2)
		go func() { io.Copy(s.ch, stdout); copies.Done() }()
		go func() { io.Copy(s.ch.Stderr(), stderr); copies.Done() }()
	}
	go func() {
		copies.Wait()
		err := cmd.Wait()
		status := 0
		if exit, ok := err.(*exec.ExitError); ok {
			if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				sig := unix.SignalName(ws.Signal())
				payload := ssh.Marshal(struct {
					Signal  string
					Core    bool
					Message string
					Lang    string
				}{sig[3:], false, "", ""})
				s.ch.SendRequest("exit-signal", false, payload)
				s.ch.Close()
				return
			}
			status = exit.ExitCode()
		}
		s.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(status)}))
		s.ch.CloseWrite()
		s.ch.Close()
	}()
	return nil
}

func handleSession(acct account, newChannel ssh.NewChannel) {
	ch, requests, err := newChannel.Accept()
	if err != nil {
		return
	}
	s := &session{acct: acct, ch: ch}
	for req := range requests {
		ok := false
		switch req.Type {
		case "env":
			var kv struct{ Name, Value string }
			if ssh.Unmarshal(req.Payload, &kv) == nil {
				for _, name := range acceptEnv {
					if name == kv.Name {
						s.env = append(s.env, kv.Name+"="+kv.Value)
						ok = true
					}
				}
			}
		case "pty-req":
			var p struct {
				Term                 string
				Cols, Rows, Wpx, Hpx uint32
				Modes                string
			}
			if ssh.Unmarshal(req.Payload, &p) == nil {
				s.pty, s.cols, s.rows, ok = true, p.Cols, p.Rows, true
			}
		case "window-change":
			var w struct{ Cols, Rows, Wpx, Hpx uint32 }
			if ssh.Unmarshal(req.Payload, &w) == nil {
				s.mu.Lock()
				if s.master != nil {
					setSize(s.master, w.Cols, w.Rows)
				}
				s.mu.Unlock()
				ok = true
			}
		case "exec":
			var c struct{ Command string }
			if ssh.Unmarshal(req.Payload, &c) == nil {
				ok = s.run([]string{"/bin/sh", "-c", c.Command}) == nil
			}
		case "shell":
			ok = s.run([]string{"/bin/sh", "-l"}) == nil
		case "subsystem":
			var sub struct{ Name string }
			if ssh.Unmarshal(req.Payload, &sub) == nil && sub.Name == "sftp" {
				ok = s.run([]string{sftpServer}) == nil
			}
		}
		if req.WantReply {
			req.Reply(ok, nil)
		}
	}
}

func handleDirect(newChannel ssh.NewChannel) {
	var d struct {
		Host     string
		Port     uint32
		OrigHost string
		OrigPort uint32
	}
	if err := ssh.Unmarshal(newChannel.ExtraData(), &d); err != nil {
		newChannel.Reject(ssh.ConnectionFailed, "bad direct-tcpip request")
		return
	}
	conn, err := net.Dial("tcp", net.JoinHostPort(d.Host, strconv.Itoa(int(d.Port))))
	if err != nil {
		newChannel.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	ch, requests, err := newChannel.Accept()
	if err != nil {
		conn.Close()
		return
	}
	go ssh.DiscardRequests(requests)
	splice(ch, conn)
}

func splice(ch ssh.Channel, conn net.Conn) {
	go func() { io.Copy(ch, conn); ch.CloseWrite() }()
	go func() { io.Copy(conn, ch); conn.(*net.TCPConn).CloseWrite() }()
}

// handleGlobal serves tcpip-forward: listen, and open a forwarded-tcpip channel per connection.
func handleGlobal(conn *ssh.ServerConn, requests <-chan *ssh.Request) {
	for req := range requests {
		if req.Type != "tcpip-forward" {
			if req.WantReply {
				req.Reply(req.Type == "cancel-tcpip-forward", nil)
			}
			continue
		}
		var f struct {
			Addr string
			Port uint32
		}
		if ssh.Unmarshal(req.Payload, &f) != nil {
			req.Reply(false, nil)
			continue
		}
		listener, err := net.Listen("tcp", net.JoinHostPort(f.Addr, strconv.Itoa(int(f.Port))))
		if err != nil {
			req.Reply(false, nil)
			continue
		}
		bound := uint32(listener.Addr().(*net.TCPAddr).Port)
		reply := make([]byte, 4)
		binary.BigEndian.PutUint32(reply, bound)
		req.Reply(true, reply)
		go func(addr string, port uint32) {
			defer listener.Close()
			for {
				local, err := listener.Accept()
				if err != nil {
					return
				}
				origin := local.RemoteAddr().(*net.TCPAddr)
				payload := ssh.Marshal(struct {
					Addr     string
					Port     uint32
					OrigAddr string
					OrigPort uint32
				}{addr, port, origin.IP.String(), uint32(origin.Port)})
				ch, reqs, err := conn.OpenChannel("forwarded-tcpip", payload)
				if err != nil {
					local.Close()
					continue
				}
				go ssh.DiscardRequests(reqs)
				splice(ch, local)
			}
		}(f.Addr, bound)
	}
}

func serve(tcp net.Conn, config *ssh.ServerConfig, acct account) {
	conn, chans, reqs, err := ssh.NewServerConn(tcp, config)
	if err != nil {
		return
	}
	go handleGlobal(conn, reqs)
	for newChannel := range chans {
		switch newChannel.ChannelType() {
		case "session":
			go handleSession(acct, newChannel)
		case "direct-tcpip":
			go handleDirect(newChannel)
		default:
			newChannel.Reject(ssh.UnknownChannelType, "unsupported channel type")
		}
	}
}

func main() {
	flag.Var(&acceptEnv, "accept-env", "environment name accepted (repeatable)")
	flag.Parse()
	acct := lookupAccount(*loginUser)
	pem, err := os.ReadFile(*hostKey)
	if err != nil {
		log.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		log.Fatal(err)
	}
	config := &ssh.ServerConfig{
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if meta.User() == acct.name && authorized(key, acct.home) {
				return &ssh.Permissions{}, nil
			}
			return nil, fmt.Errorf("key not authorized for %s", meta.User())
		},
	}
	config.AddHostKey(signer)
	listener, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(*port)))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("go x/crypto/ssh server listening on 127.0.0.1 port %d\n", *port)
	for {
		tcp, err := listener.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go serve(tcp, config, acct)
	}
}
