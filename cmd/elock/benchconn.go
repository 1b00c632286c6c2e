package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// elockLocker speaks the elock protocol: "lock NAME [SECS]", "rlock NAME
// SECS", "acquire NAME LIMIT SECS", "unlock NAME".
type elockLocker struct {
	nc   net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
	secs string
}

func dialElock(ctx context.Context, addr string, wait time.Duration, acc access) (*elockLocker, error) {
	nc, err := dialServer(ctx, addr, 5*time.Second, acc)
	if err != nil {
		return nil, err
	}
	l := &elockLocker{nc: nc, r: bufio.NewReader(nc), w: bufio.NewWriter(nc), secs: strconv.Itoa(int(wait / time.Second))}
	// Register the session before measuring.
	if r, err := l.do("conn_id"); err != nil || !strings.HasPrefix(r, "200 ") {
		nc.Close()
		return nil, fmt.Errorf("conn_id: %q %v", r, err)
	}
	return l, nil
}

func (l *elockLocker) do(parts ...string) (string, error) {
	for i, p := range parts {
		if i > 0 {
			l.w.WriteByte(' ')
		}
		l.w.WriteString(p)
	}
	l.w.WriteString("\r\n")
	if err := l.w.Flush(); err != nil {
		return "", err
	}
	s, err := l.r.ReadString('\n')
	return strings.TrimSuffix(s, "\r\n"), err
}

func (l *elockLocker) acquire(key string, wait bool) (bool, error) {
	if wait {
		return l.take("lock", key, l.secs)
	}
	return l.take("lock", key)
}

// rlock takes key shared, waiting up to the configured wait.
func (l *elockLocker) rlock(key string) (bool, error) {
	return l.take("rlock", key, l.secs)
}

// permit takes one of the limit permits of the semaphore key, waiting up
// to the configured wait.
func (l *elockLocker) permit(key, limit string) (bool, error) {
	return l.take("acquire", key, limit, l.secs)
}

// take sends a request that grants (lock, rlock, acquire) and reads its
// answer: true for a grant, false for 409.
func (l *elockLocker) take(parts ...string) (bool, error) {
	r, err := l.do(parts...)
	switch {
	case err != nil:
		return false, err
	case r == "200 Acquired":
		return true, nil
	case r == "409 Unavailable":
		return false, nil
	}
	return false, fmt.Errorf("unexpected reply %q", r)
}

func (l *elockLocker) release(key string) error {
	r, err := l.do("unlock", key)
	if err == nil && r != "200 Unlocked" {
		err = fmt.Errorf("unexpected reply %q", r)
	}
	return err
}

func (l *elockLocker) close() { l.nc.Close() }

// redisLocker is the usual Redis lock: SET key token NX PX to acquire, and
// a script that deletes the key only if it still holds this client's
// token to release. It has no server-side wait, so a contended acquire
// spins with a 1 ms pause, as Redis clients do.
type redisLocker struct {
	nc    net.Conn
	r     *bufio.Reader
	w     *bufio.Writer
	token string
	sha   string
	wait  time.Duration
}

const redisRelease = `if redis.call("get", KEYS[1]) == ARGV[1] then return redis.call("del", KEYS[1]) else return 0 end`

func dialRedis(ctx context.Context, addr string, wait time.Duration) (*redisLocker, error) {
	nc, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	var tok [16]byte
	rand.Read(tok[:])
	l := &redisLocker{nc: nc, r: bufio.NewReader(nc), w: bufio.NewWriter(nc), token: hex.EncodeToString(tok[:]), wait: wait}
	sha, err := l.do("SCRIPT", "LOAD", redisRelease)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("SCRIPT LOAD: %w", err)
	}
	l.sha = sha
	return l, nil
}

// do sends one command in RESP and returns a simple, bulk or integer
// reply as a string ("" for a null bulk string).
func (l *redisLocker) do(args ...string) (string, error) {
	fmt.Fprintf(l.w, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(l.w, "$%d\r\n%s\r\n", len(a), a)
	}
	if err := l.w.Flush(); err != nil {
		return "", err
	}
	line, err := l.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("redis: %s", line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(l.r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}

func (l *redisLocker) acquire(key string, wait bool) (bool, error) {
	deadline := time.Now().Add(l.wait)
	for {
		r, err := l.do("SET", key, l.token, "NX", "PX", "30000")
		if err != nil {
			return false, err
		}
		if r == "OK" {
			return true, nil
		}
		if !wait || time.Now().After(deadline) {
			return false, nil
		}
		time.Sleep(time.Millisecond)
	}
}

func (l *redisLocker) release(key string) error {
	r, err := l.do("EVALSHA", l.sha, "1", key, l.token)
	if err == nil && r != "1" {
		err = fmt.Errorf("compare-and-delete of %s returned %s", key, r)
	}
	return err
}

func (l *redisLocker) close() { l.nc.Close() }
