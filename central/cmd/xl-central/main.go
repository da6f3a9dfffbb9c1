// Command xl-central is the Xueliang command-centre service.
package main

import (
	"os"

	"github.com/xueliang/xl/central/internal/app"
	"github.com/xueliang/xl/internal/cli"
)

func main() { os.Exit(cli.Execute(app.Command(), os.Args[1:], os.Stderr)) }
