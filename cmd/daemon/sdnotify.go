package main

import (
	"fmt"
	"net"
	"os"
	"time"
)

// notifySocketEnv names the datagram socket of the service manager
// (systemd with Type=notify), as sd_notify(3) defines it.
const notifySocketEnv = "NOTIFY_SOCKET"

// notifyTimeout bounds one notification: a manager that does not read its
// socket must not hold up the daemon.
const notifyTimeout = time.Second

// notifier tells the service manager how the daemon is doing; without
// NOTIFY_SOCKET it tells nobody. It is the few lines of sd_notify(3) berthd
// needs (a datagram of KEY=VALUE lines to a unix socket, "@" for the
// abstract namespace, which package net maps), rather than a dependency.
type notifier struct{ addr string }

// takeNotifier returns the notifier of NOTIFY_SOCKET and removes the
// variable from the environment, before any shim or runc is started: runc
// takes NOTIFY_SOCKET as a socket to pass into the container and waits for
// the container to report on it.
func takeNotifier() notifier {
	n := notifier{addr: os.Getenv(notifySocketEnv)}
	os.Unsetenv(notifySocketEnv)
	return n
}

// notify sends state ("READY=1", "STOPPING=1", "STATUS=…" lines).
func (n notifier) notify(state string) error {
	if n.addr == "" {
		return nil
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: n.addr, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify %s: %w", n.addr, err)
	}
	defer conn.Close()
	if err := conn.SetWriteDeadline(time.Now().Add(notifyTimeout)); err != nil {
		return err
	}
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify %s: %w", n.addr, err)
	}
	return nil
}
