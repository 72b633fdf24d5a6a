// Command berthd is berth's daemon: it keeps the metadata, serves the API on
// a unix socket and supervises one shim per task. It is disposable: killing
// or replacing it never stops a container; on start it reconnects to every
// shim it finds in its state folder.
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/berthrt/berth/version"
)

// defaultConfigPath is read when it exists and --config is not given.
const defaultConfigPath = "/etc/berth/config.toml"

type flags struct {
	config, root, state, address, logLevel string
}

func main() {
	var f flags
	root := &cobra.Command{
		Use:   "berthd",
		Short: "berthd is berth's container runtime daemon",
		Long: `berthd keeps berth's metadata, serves its API on a unix socket and
supervises one berth-shim per running container. Stopping or killing it
never stops a container.`,
		Example:       "  berthd --root /var/lib/berth --state /run/berth\n  berthd config default > /etc/berth/config.toml",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.load(cmd)
			if err != nil {
				return err
			}
			return serve(cmd.Context(), cfg)
		},
	}
	f.register(root, true)
	root.AddCommand(configCommand(&f), checkCommand(), &cobra.Command{
		Use:   "version",
		Short: "print the version",
		Args:  cobra.NoArgs,
		Run: func(*cobra.Command, []string) {
			fmt.Println("berthd", version.Version, version.Revision())
		},
	})
	if err := root.Execute(); err != nil {
		if !errors.Is(err, errInconsistent) {
			fmt.Fprintln(os.Stderr, "berthd:", err)
		}
		os.Exit(1)
	}
}

func configCommand(f *flags) *cobra.Command {
	c := &cobra.Command{Use: "config", Short: "work with the configuration file"}
	c.AddCommand(&cobra.Command{
		Use:   "default",
		Short: "print the default configuration, commented",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprint(cmd.OutOrStdout(), defaultConfigText)
		},
	}, &cobra.Command{
		Use:   "check [FILE]",
		Short: "check a configuration file and print the result with defaults filled in",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, required := defaultConfigPath, false
			if len(args) == 1 {
				path, required = args[0], true
			}
			cfg, err := loadConfig(path, required)
			if err != nil {
				return err
			}
			return printConfig(cmd.OutOrStdout(), cfg)
		},
	})
	return c
}

// register adds the flags that choose the config and the folders to c;
// serving ones (address, log level) too when serving.
func (f *flags) register(c *cobra.Command, serving bool) {
	pf := c.Flags()
	pf.StringVar(&f.config, "config", "", "configuration file (default "+defaultConfigPath+" when it exists)")
	pf.StringVar(&f.root, "root", "", "folder of durable data (overrides the config; default /var/lib/berth)")
	pf.StringVar(&f.state, "state", "", "folder of runtime state (overrides the config; default /run/berth)")
	if serving {
		pf.StringVar(&f.address, "address", "", "socket address (overrides the config; default /run/berth/berth.sock)")
		pf.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (overrides the config)")
	}
}

// load reads the config file and applies the flags over it.
func (f *flags) load(cmd *cobra.Command) (*Config, error) {
	path, required := defaultConfigPath, false
	if cmd.Flags().Changed("config") {
		path, required = f.config, true
	}
	cfg, err := loadConfig(path, required)
	if err != nil {
		return nil, err
	}
	for _, o := range []struct {
		flag string
		dst  *string
		val  string
	}{{"root", &cfg.Root, f.root}, {"state", &cfg.State, f.state}, {"address", &cfg.API.Address, f.address}, {"log-level", &cfg.Log.Level, f.logLevel}} {
		if cmd.Flags().Changed(o.flag) {
			*o.dst = o.val
		}
	}
	// A state folder given without an address keeps the socket in it.
	if cmd.Flags().Changed("state") && !cmd.Flags().Changed("address") && cfg.API.Address == defaultConfig().API.Address {
		cfg.API.Address = strings.TrimRight(cfg.State, "/") + "/berth.sock"
	}
	// So does another state folder for the CRI's socket, so that two
	// daemons with their own state never contend for one CRI socket.
	if def := defaultConfig(); cfg.State != def.State && cfg.CRI.Address == def.CRI.Address {
		cfg.CRI.Address = strings.TrimRight(cfg.State, "/") + "/cri.sock"
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, errors.New("log level " + s + ": want debug, info, warn or error")
	}
	return l, nil
}
