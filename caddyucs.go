// Package caddyucs registers the ucs HTTP handler with Caddy.
//
// It exists so that xcaddy can build Caddy with this module by its module path
// (`xcaddy build --with github.com/ucsedge/caddy-ucs`): xcaddy imports the module
// root as a package, and the handler itself lives in caddymodule.
package caddyucs

import _ "github.com/ucsedge/caddy-ucs/caddymodule"
