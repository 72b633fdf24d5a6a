package errdefs_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/berthrt/berth/errdefs"
)

// TestBoundReplies: a reply larger than a ttrpc message may carry fails
// its call with ErrResourceExhausted naming the method and size, and the
// connection, which ttrpc would otherwise have closed, serves on.
func TestBoundReplies(t *testing.T) {
	c := servePanics(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := c.Call(ctx, panicService, "Big", &emptypb.Empty{}, &wrapperspb.BytesValue{})
	if !errdefs.IsResourceExhausted(err) || !strings.Contains(err.Error(), "/"+panicService+"/Big: the reply takes") {
		t.Fatalf("an oversized reply: %v, want ResourceExhausted naming the method", err)
	}
	if err := c.Call(ctx, panicService, "Ping", &emptypb.Empty{}, &emptypb.Empty{}); err != nil {
		t.Fatalf("the connection after an oversized reply: %v", err)
	}
}
