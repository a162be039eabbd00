// Command caddy is Caddy with the standard modules and the ucs handler,
// the same main.go that xcaddy generates, so `go run ./cmd/caddy` needs no xcaddy.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/ucsedge/caddy-ucs"
)

func main() {
	caddycmd.Main()
}
