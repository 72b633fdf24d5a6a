package main

import (
	"github.com/spf13/cobra"

	"github.com/berthrt/berth/oci"
)

// ociCommand is `oci`: the OCI runtime specs the client writes.
func ociCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "oci", Short: "OCI runtime specs as berth makes them"}
	cmd.AddCommand(&cobra.Command{
		Use:   "spec [ID]",
		Short: "print the default runtime spec of a container as JSON",
		Long: `spec prints the OCI runtime spec (config.json) that the client makes for a
new container before any option changes it: for container ID (default
"example"; it names the hostname and the cgroup) in the namespace of -n.
It needs no daemon.`,
		Example: `  berthctl oci spec
  berthctl -n ci oci spec web | jq .linux.cgroupsPath`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := "example"
			if len(args) > 0 {
				id = args[0]
			}
			s, err := oci.GenerateSpec(cmd.Context(), g.namespace, id)
			if err != nil {
				return usageError{err}
			}
			return writeJSON(cmd.OutOrStdout(), s)
		},
	})
	return cmd
}
