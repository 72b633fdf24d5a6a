package task

import (
	runc "github.com/containerd/go-runc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/berthrt/berth/internal/spantrace"
	"github.com/berthrt/berth/shimapi"
	"github.com/berthrt/berth/task/reaper"
)

// Exit routing. The reaper hands every exit of a container process to the
// one goroutine of handleExits, which finds the process by pid. A process
// whose runtime call (create, exec) is still under way has no pid yet: its
// exit, if it comes that early, is held by an exitWatch and matched by
// settle once the pid is read. See doc.go for the invariants.

// exitWatch collects the exits that happen while a runtime call that starts
// a process is under way, so that an exit reaped before its pid is known is
// matched afterwards.
type exitWatch struct {
	exits []runc.Exit // guarded by Service.mu
}

// handleExits is the one goroutine that turns reaped exits into process
// exits. It never blocks on a process's lock while holding s.mu.
func (s *Service) handleExits(sub *reaper.Subscription) {
	for range sub.Ready() {
		for _, e := range sub.Take() {
			s.mu.Lock()
			for w := range s.watches {
				w.exits = append(w.exits, e)
			}
			p := s.running[e.Pid]
			delete(s.running, e.Pid)
			s.mu.Unlock()
			if p != nil {
				s.processExited(p, exitInfo{status: e.Status, at: e.Timestamp})
			}
		}
	}
}

// watchExits starts collecting exits before a runtime call that starts a
// process.
func (s *Service) watchExits() *exitWatch {
	w := &exitWatch{}
	s.mu.Lock()
	s.watches[w] = struct{}{}
	s.mu.Unlock()
	return w
}

// settle ends a watch: if pid exited during the call its exit is returned;
// otherwise p is registered so that its exit will be routed to it.
func (s *Service) settle(w *exitWatch, pid int, p *process) *exitInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.watches, w)
	if pid == 0 {
		return nil
	}
	for _, e := range w.exits {
		if e.Pid == pid {
			return &exitInfo{status: e.Status, at: e.Timestamp}
		}
	}
	s.running[pid] = p
	return nil
}

func (s *Service) cancelWatch(w *exitWatch) {
	s.mu.Lock()
	delete(s.watches, w)
	s.mu.Unlock()
}

// processExited records an exit and reports it.
func (s *Service) processExited(p *process, e exitInfo) {
	if !p.exited(e) {
		return
	}
	s.exitRecorded(p, e)
}

// exitRecorded does what follows an exit: persist init's exit, deliver the
// output, release waiters, publish the event.
func (s *Service) exitRecorded(p *process, e exitInfo) {
	pid := p.Pid()
	if p.id == "" {
		defer spantrace.Start("write exit file").End()
		st := shimapi.ExitStatus{Pid: uint32(pid), Status: uint32(e.status), ExitedAt: e.at}
		if err := shimapi.WriteExitFile(s.cfg.Bundle, st); err != nil {
			s.log.Error("persist exit status", "error", err)
		}
	}
	go func() {
		p.finish()
		s.events.publish(&shimapi.TaskExit{
			ContainerId: s.cfg.ID, ExecId: p.id, Pid: uint32(pid),
			ExitStatus: uint32(e.status), ExitedAt: timestamppb.New(e.at),
		})
		if p.id == "" {
			// After the exit is persisted and on its way, not before:
			// the release must not delay it.
			s.releaseOnExit()
		}
	}()
}
