package app

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/xueliang/xl/central/internal/store"
	"github.com/xueliang/xl/central/internal/web"
	"github.com/xueliang/xl/internal/cli"
	"github.com/xueliang/xl/internal/logging"
)

// userCommand is `xl-central user add|list|passwd` and `xl-central user token`.
func userCommand() *cobra.Command {
	parent := &cobra.Command{Use: "user", Short: "Manage console and API users"}
	var username, role, agency, display, tokenName string
	var noPassword bool
	add := cli.WithConfig(&cobra.Command{
		Use:   "add",
		Short: "Add a user; the password (10+ characters) is read from standard input",
		Long: "Add a console or API user with a role: officer (duty officer), agency (a field unit of --agency), ops or admin.\n" +
			"The password is read from the first line of standard input (a prompt is printed on a terminal).",
		Args: cobra.NoArgs,
	}, defaultConfigPath, LoadConfig, func(c *Config) logging.Config { return c.Log },
		func(cmd *cobra.Command, cfg *Config, _ *slog.Logger) error {
			if agency != "" {
				known := false
				for _, a := range cfg.Routing.Agencies {
					known = known || a.ID == agency
				}
				if !known {
					return fmt.Errorf("--agency %q is not an agency of routing.agencies", agency)
				}
			}
			pw := ""
			if !noPassword {
				var err error
				if pw, err = readPassword(cmd); err != nil {
					return err
				}
			}
			st, err := openStore(cmd.Context(), cfg.Store, false)
			if err != nil {
				return err
			}
			defer st.Close()
			u, err := web.NewUser(cmd.Context(), st, store.User{Username: username, Role: role, AgencyID: agency, DisplayName: display}, pw)
			if errors.Is(err, store.ErrConflict) {
				return fmt.Errorf("user %s exists (xl-central user passwd changes a password)", username)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "user %s added (role %s%s)\n", u.Username, u.Role, map[bool]string{true: ", agency " + u.AgencyID}[u.AgencyID != ""])
			return nil
		})
	add.Flags().StringVar(&username, "username", "", "login name (required)")
	add.Flags().StringVar(&role, "role", "", "officer, agency, ops or admin (required)")
	add.Flags().StringVar(&agency, "agency", "", "the agency ID of an agency user")
	add.Flags().StringVar(&display, "display-name", "", "name shown in the console")
	add.Flags().BoolVar(&noPassword, "no-password", false, "a system account that signs in with API tokens only")

	passwd := cli.WithConfig(&cobra.Command{
		Use:   "passwd",
		Short: "Set a user's password, read from standard input",
		Args:  cobra.NoArgs,
	}, defaultConfigPath, LoadConfig, func(c *Config) logging.Config { return c.Log },
		func(cmd *cobra.Command, cfg *Config, _ *slog.Logger) error {
			pw, err := readPassword(cmd)
			if err != nil {
				return err
			}
			h, err := web.HashPassword(pw)
			if err != nil {
				return err
			}
			st, err := openStore(cmd.Context(), cfg.Store, true)
			if err != nil {
				return err
			}
			defer st.Close()
			if err := st.SetPassword(cmd.Context(), username, h); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "password of %s set\n", username)
			return nil
		})
	passwd.Flags().StringVar(&username, "username", "", "login name (required)")

	token := cli.WithConfig(&cobra.Command{
		Use:   "token",
		Short: "Create an API token (Authorization: Bearer) acting as a user; printed once, stored hashed",
		Args:  cobra.NoArgs,
	}, defaultConfigPath, LoadConfig, func(c *Config) logging.Config { return c.Log },
		func(cmd *cobra.Command, cfg *Config, _ *slog.Logger) error {
			st, err := openStore(cmd.Context(), cfg.Store, false)
			if err != nil {
				return err
			}
			defer st.Close()
			secret, _, err := web.NewToken(cmd.Context(), st, username, tokenName)
			if err != nil {
				return fmt.Errorf("token for %s: %w", username, err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), secret)
			return nil
		})
	token.Flags().StringVar(&username, "username", "", "the user the token acts as (required)")
	token.Flags().StringVar(&tokenName, "name", "api", "what the token is for (shown in the audit log)")
	for _, c := range []*cobra.Command{add, passwd, token} {
		_ = c.MarkFlagRequired("username")
	}
	_ = add.MarkFlagRequired("role")
	parent.AddCommand(add, passwd, token)
	return parent
}

// readPassword reads the first line of standard input, prompting on a
// terminal.
func readPassword(cmd *cobra.Command) (string, error) {
	if f, ok := cmd.InOrStdin().(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			fmt.Fprint(cmd.ErrOrStderr(), "password (input is shown; prefer a pipe): ")
		}
	}
	line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
	if err != nil && line == "" {
		return "", fmt.Errorf("read password: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}
