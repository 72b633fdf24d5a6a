package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/berthrt/berth/client"
	tasksv1 "github.com/berthrt/berth/proto/tasks/v1"
	"github.com/berthrt/berth/shimapi"
)

// taskView is a task as `tasks ls` prints it.
type taskView struct {
	ID         string     `json:"id"`
	Pid        uint32     `json:"pid"`
	Status     string     `json:"status"` // created, running, paused, stopped
	ExitStatus *uint32    `json:"exit_status"`
	ExitedAt   *time.Time `json:"exited_at"`
}

func newTaskView(p *tasksv1.Process) taskView {
	v := taskView{ID: p.ContainerId, Pid: p.Pid, Status: statusName(p.Status)}
	if p.Status == shimapi.Status_STATUS_STOPPED {
		code := p.ExitStatus
		v.ExitStatus = &code
		v.ExitedAt = utcTime(p.GetExitedAt().AsTime())
	}
	return v
}

// statusName is "running" for STATUS_RUNNING.
func statusName(s shimapi.Status) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "STATUS_"))
}

func taskListCommand(g *globals) *cobra.Command {
	var out outputFlags
	cmd := &cobra.Command{
		Use:     "ls [FILTER...]",
		Aliases: []string{"list"},
		Short:   "list tasks",
		Long:    "ls lists TASK, PID and STATUS (with the exit status of a stopped task). Filter fields: id, status, pid.",
		Example: `  berthctl tasks ls 'status==running'
  berthctl tasks ls --format '{{.id}} {{.pid}}'`,
		RunE: g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
			resp, err := c.TaskService().List(ctx, &tasksv1.ListTasksRequest{Filters: args})
			if err != nil {
				return err
			}
			views := make([]taskView, 0, len(resp.Tasks))
			for _, p := range resp.Tasks {
				views = append(views, newTaskView(p))
			}
			return printList(cmd, &out, views, columns[taskView]{
				headers: []string{"TASK", "PID", "STATUS"},
				row: func(v taskView) []any {
					status := strings.ToUpper(v.Status)
					if v.ExitStatus != nil {
						status += fmt.Sprintf(" (%d)", *v.ExitStatus)
					}
					return []any{v.ID, v.Pid, status}
				},
				id: func(v taskView) string { return v.ID },
			})
		}),
	}
	out.register(cmd)
	return cmd
}

// processView is one process of a task, as `tasks ps` prints it.
type processView struct {
	Pid    uint32 `json:"pid"`
	ExecID string `json:"exec_id"` // "" for the init process and its children
}

func taskPsCommand(g *globals) *cobra.Command {
	var out outputFlags
	cmd := &cobra.Command{
		Use:     "ps ID",
		Short:   "list the processes of a task",
		Long:    "ps lists the PID of every process in the task's container, and the EXEC id of those started by tasks exec.",
		Example: "  berthctl tasks ps web\n  berthctl tasks ps -q web",
		Args:    cobra.ExactArgs(1),
		RunE: g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
			task, err := loadTask(ctx, c, args[0])
			if err != nil {
				return err
			}
			pids, err := task.Pids(ctx)
			if err != nil {
				return fmt.Errorf("task %q: %w", args[0], err)
			}
			views := make([]processView, 0, len(pids))
			for _, p := range pids {
				views = append(views, processView{Pid: p.Pid, ExecID: p.ExecID})
			}
			return printList(cmd, &out, views, columns[processView]{
				headers: []string{"PID", "EXEC"},
				row:     func(v processView) []any { return []any{v.Pid, orDash(v.ExecID)} },
				id:      func(v processView) string { return strconv.FormatUint(uint64(v.Pid), 10) },
			})
		}),
	}
	out.register(cmd)
	return cmd
}

// metricsView is a task's cgroup metrics as `tasks metrics` prints them:
// times in nanoseconds, sizes in bytes; a limit of 0 is none.
type metricsView struct {
	ID                  string     `json:"id"`
	Timestamp           *time.Time `json:"timestamp"`
	CgroupVersion       uint32     `json:"cgroup_version"`
	CPUUsageNS          uint64     `json:"cpu_usage_ns"`
	CPUUserNS           uint64     `json:"cpu_user_ns"`
	CPUKernelNS         uint64     `json:"cpu_kernel_ns"`
	MemoryUsageBytes    uint64     `json:"memory_usage_bytes"`
	MemoryLimitBytes    uint64     `json:"memory_limit_bytes"`
	MemoryMaxUsageBytes uint64     `json:"memory_max_usage_bytes"`
	MemoryRSSBytes      uint64     `json:"memory_rss_bytes"`
	MemoryCacheBytes    uint64     `json:"memory_cache_bytes"`
	OOMEvents           uint64     `json:"oom_events"`
	PidsCurrent         uint64     `json:"pids_current"`
	PidsLimit           uint64     `json:"pids_limit"`
}

func newMetricsView(m *client.Metrics) metricsView {
	d := m.Data
	return metricsView{
		ID: m.ContainerID, Timestamp: utcTime(m.Timestamp), CgroupVersion: d.GetCgroupVersion(),
		CPUUsageNS: d.GetCpuUsageNs(), CPUUserNS: d.GetCpuUserNs(), CPUKernelNS: d.GetCpuKernelNs(),
		MemoryUsageBytes: d.GetMemoryUsageBytes(), MemoryLimitBytes: d.GetMemoryLimitBytes(),
		MemoryMaxUsageBytes: d.GetMemoryMaxUsageBytes(), MemoryRSSBytes: d.GetMemoryRssBytes(),
		MemoryCacheBytes: d.GetMemoryCacheBytes(), OOMEvents: d.GetOomEvents(),
		PidsCurrent: d.GetPidsCurrent(), PidsLimit: d.GetPidsLimit(),
	}
}

func taskMetricsCommand(g *globals) *cobra.Command {
	var out outputFlags
	cmd := &cobra.Command{
		Use:   "metrics ID...",
		Short: "print the cgroup metrics of tasks: CPU time, memory, processes",
		Long: `metrics prints, per task, the CPU time used, the memory used and its limit, the
OOM kills, and the processes and their limit. --format json prints every
counter, in nanoseconds and bytes.`,
		Example: "  berthctl tasks metrics web\n  berthctl tasks metrics --format json web db",
		Args:    cobra.MinimumNArgs(1),
		RunE: g.withClient(func(ctx context.Context, c *client.Client, cmd *cobra.Command, args []string) error {
			views := make([]metricsView, 0, len(args))
			for _, id := range args {
				task, err := loadTask(ctx, c, id)
				if err != nil {
					return err
				}
				m, err := task.Metrics(ctx)
				if err != nil {
					return fmt.Errorf("task %q: metrics: %w", id, err)
				}
				views = append(views, newMetricsView(m))
			}
			return printList(cmd, &out, views, columns[metricsView]{
				headers: []string{"TASK", "CPU", "MEMORY", "MEMORY LIMIT", "OOM KILLS", "PIDS", "PIDS LIMIT"},
				row: func(v metricsView) []any {
					return []any{v.ID, time.Duration(v.CPUUsageNS).Round(time.Microsecond),
						humanSize(int64(v.MemoryUsageBytes)), limitOrDash(v.MemoryLimitBytes, humanSize),
						v.OOMEvents, v.PidsCurrent, limitOrDash(v.PidsLimit, func(n int64) string { return strconv.FormatInt(n, 10) })}
				},
				id: func(v metricsView) string { return v.ID },
			})
		}),
	}
	out.register(cmd)
	return cmd
}

// limitOrDash prints a limit, "-" for none (0, or the kernel's "max",
// which cgroup v1 reports as a huge number).
func limitOrDash(n uint64, format func(int64) string) string {
	if n == 0 || n >= 1<<62 {
		return "-"
	}
	return format(int64(n))
}

// loadTask returns the task of container id, attached to no stdio.
func loadTask(ctx context.Context, c *client.Client, id string) (client.Task, error) {
	ctr, err := c.LoadContainer(ctx, id)
	if err != nil {
		return nil, err
	}
	return ctr.Task(ctx, nil)
}
