// Command offboard is the Offboard server and its command-line client: `offboard serve` runs
// the SCIM endpoint, admin and messenger APIs and the job runner; `offboard devdb` runs the
// embedded MongoDB-compatible store on its own; the other subcommands call the admin API.
package main

import (
	"fmt"
	"os"
)

const usage = `Offboard: SCIM joiner/leaver automation for business messengers.

Usage:
  offboard serve [flags]                 run the server (embedded store unless --mongo-uri)
  offboard devdb --listen ADDR --data D  run the embedded MongoDB-compatible store on its own
  offboard keys rewrap [flags]           re-seal connector secrets under the current key
  offboard backup --data D --out DIR     consistent copy of the embedded store and key file

Admin API client (flags: --server/OFFBOARD_SERVER, --token/OFFBOARD_ADMIN_TOKEN, --json):
  offboard tenant create NAME --seats N
  offboard tenant list | show TENANT | resize TENANT --seats N
  offboard token create --tenant T --scope scim|messenger|admin
  offboard token list --tenant T | revoke --tenant T ID
  offboard policy set --tenant T [--notice 336h] [--wipe app|device|none] [--brake N --brake-window 1h]
  offboard oidc set --tenant T --issuer URL --audience AUD [--claim k=v ...]
  offboard connector create --tenant T --type TYPE [--name N] --config JSON
  offboard connector list --tenant T | check --tenant T ID | delete --tenant T ID
  offboard seats --tenant T
  offboard employee show --tenant T ID | credentials --tenant T ID
  offboard employee attach-device --tenant T ID --connector C --device D [--ownership company]
  offboard job retry|approve|reject --tenant T EMPLOYEE JOB
  offboard jobs --tenant T [--state failed]
  offboard brake confirm|cancel --tenant T
  offboard audit --tenant T [--since RFC3339]
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "devdb":
		err = devdb(os.Args[2:])
	case "backup":
		err = backup(os.Args[2:])
	case "keys":
		err = keys(os.Args[2:])
	case "help", "-h", "--help":
		fmt.Print(usage)
		return
	default:
		err = client(os.Args[1:])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "offboard:", err)
		os.Exit(1)
	}
}
