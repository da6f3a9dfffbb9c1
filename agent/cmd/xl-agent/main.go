// Command xl-agent is the Xueliang edge analytics agent.
package main

import (
	"os"

	"github.com/xueliang/xl/agent/internal/app"
	"github.com/xueliang/xl/internal/cli"
)

func main() { os.Exit(cli.Execute(app.Command(), os.Args[1:], os.Stderr)) }
