package proc

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// ExitCode says on stderr how the benchmark name ended and returns its
// exit code: 130 when ctx, cancelled by SIGINT or SIGTERM, is done; 1 when
// err is set; 0 when the caller should print its report. Call it after
// every cleanup of the run has returned, so that "cleaned up" is true.
func ExitCode(ctx context.Context, name string, err error) int {
	switch {
	case ctx.Err() != nil:
		fmt.Fprintf(os.Stderr, "\n%s: interrupted; cleaned up\n", name)
		if err != nil && !errors.Is(err, context.Canceled) {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		}
		return 130
	case err != nil:
		fmt.Fprintf(os.Stderr, "\n%s: %v\n", name, err)
		return 1
	}
	return 0
}
