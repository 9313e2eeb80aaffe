package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"
)

// api is a small admin API client.
type api struct {
	server, token string
	asJSON        bool
	http          *http.Client
}

// commonFlags adds the client flags to a flag set.
func commonFlags(fs *flag.FlagSet) *api {
	a := &api{http: &http.Client{Timeout: 60 * time.Second}}
	fs.StringVar(&a.server, "server", env("OFFBOARD_SERVER", "http://127.0.0.1:8080"), "server base URL (OFFBOARD_SERVER)")
	fs.StringVar(&a.token, "token", os.Getenv("OFFBOARD_ADMIN_TOKEN"), "admin token (OFFBOARD_ADMIN_TOKEN)")
	fs.BoolVar(&a.asJSON, "json", false, "print the API's JSON answer")
	return a
}

// parse parses flags that may come before or after positional arguments.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func (a *api) do(method, path string, body any) (map[string]any, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, strings.TrimRight(a.server, "/")+path, rd)
	if err != nil {
		return nil, err
	}
	if a.token == "" {
		return nil, errors.New("no admin token: set OFFBOARD_ADMIN_TOKEN or --token")
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(raw)))
		}
	}
	if resp.StatusCode >= 300 {
		msg, _ := out["error"].(string)
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, msg)
	}
	return out, nil
}

// print writes an answer as JSON or as sorted "key: value" lines.
func (a *api) print(v map[string]any) {
	if a.asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(v)
		return
	}
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch x := v[k].(type) {
		case map[string]any, []any:
			b, _ := json.Marshal(x)
			fmt.Printf("%s: %s\n", k, b)
		default:
			fmt.Printf("%s: %v\n", k, x)
		}
	}
}

func tenantPath(t string) string { return "/admin/v1/tenants/" + url.PathEscape(t) }

// client runs an admin API subcommand.
func client(args []string) error {
	group, args := args[0], args[1:]
	sub := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") && group != "seats" && group != "jobs" && group != "audit" {
		sub, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet(group+" "+sub, flag.ContinueOnError)
	a := commonFlags(fs)
	tenant := fs.String("tenant", os.Getenv("OFFBOARD_TENANT"), "tenant id or name (OFFBOARD_TENANT)")
	seats := fs.Int("seats", -1, "number of seats")
	scope := fs.String("scope", "scim", "token scope: scim, messenger or admin")
	notice := fs.String("notice", "", "notice period, e.g. 336h or 0s")
	wipe := fs.String("wipe", "", "app, device or none")
	brake := fs.Int("brake", -1, "mass-offboarding brake threshold (0 disables)")
	brakeWindow := fs.String("brake-window", "", "brake window, e.g. 1h")
	issuer := fs.String("issuer", "", "OIDC issuer URL")
	audience := fs.String("audience", "", "OIDC audience")
	var claims claimFlags
	fs.Var(&claims, "claim", "required claim k=v (repeatable)")
	typ := fs.String("type", "", "connector type")
	name := fs.String("name", "", "connector name")
	config := fs.String("config", "{}", "connector configuration JSON (or @file)")
	connector := fs.String("connector", "", "connector id or name")
	device := fs.String("device", "", "device id")
	ownership := fs.String("ownership", "", "company or personal")
	state := fs.String("state", "failed", "job state to list")
	since := fs.String("since", "", "RFC 3339 time")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	arg := func(i int, what string) (string, error) {
		if i >= len(pos) {
			return "", fmt.Errorf("%s %s: missing %s", group, sub, what)
		}
		return pos[i], nil
	}
	needTenant := func() error {
		if *tenant == "" {
			return errors.New("--tenant is required")
		}
		return nil
	}
	var out map[string]any
	switch group + " " + sub {
	case "tenant create":
		n, err := arg(0, "NAME")
		if err != nil {
			return err
		}
		if *seats < 0 {
			return errors.New("--seats is required")
		}
		out, err = a.do("POST", "/admin/v1/tenants", map[string]any{"name": n, "seats": *seats})
		if err == nil && !a.asJSON {
			fmt.Println("SCIM token (shown once):", out["scimToken"])
		}
	case "tenant list":
		out, err = a.do("GET", "/admin/v1/tenants", nil)
	case "tenant show":
		t, e := arg(0, "TENANT")
		if e != nil {
			return e
		}
		out, err = a.do("GET", tenantPath(t)+"/", nil)
	case "tenant resize":
		t, e := arg(0, "TENANT")
		if e != nil {
			return e
		}
		out, err = a.do("PATCH", tenantPath(t)+"/", map[string]any{"seats": *seats})
	case "token create":
		if err := needTenant(); err != nil {
			return err
		}
		out, err = a.do("POST", tenantPath(*tenant)+"/tokens", map[string]any{"scope": *scope})
	case "token list":
		if err := needTenant(); err != nil {
			return err
		}
		out, err = a.do("GET", tenantPath(*tenant)+"/tokens", nil)
	case "token revoke":
		id, e := arg(0, "ID")
		if e := needTenant(); e != nil {
			return e
		}
		if e != nil {
			return e
		}
		out, err = a.do("DELETE", tenantPath(*tenant)+"/tokens/"+url.PathEscape(id), nil)
		if err == nil {
			out = map[string]any{"revoked": id}
		}
	case "policy set":
		if err := needTenant(); err != nil {
			return err
		}
		cur, err := a.do("GET", tenantPath(*tenant)+"/", nil)
		if err != nil {
			return err
		}
		p, _ := cur["policy"].(map[string]any)
		if *notice != "" {
			p["noticePeriod"] = *notice
		}
		if *wipe != "" {
			p["wipe"] = *wipe
		}
		if *brake >= 0 {
			p["brakeThreshold"] = *brake
		}
		if *brakeWindow != "" {
			p["brakeWindow"] = *brakeWindow
		}
		out, err = a.do("PUT", tenantPath(*tenant)+"/policy", p)
	case "oidc set":
		if err := needTenant(); err != nil {
			return err
		}
		body := map[string]any{"issuer": *issuer, "audience": *audience}
		if len(claims) > 0 {
			body["claims"] = map[string]string(claims)
		}
		out, err = a.do("PUT", tenantPath(*tenant)+"/oidc", body)
	case "connector create":
		if err := needTenant(); err != nil {
			return err
		}
		raw := *config
		if strings.HasPrefix(raw, "@") {
			b, e := os.ReadFile(raw[1:])
			if e != nil {
				return e
			}
			raw = string(b)
		}
		if !json.Valid([]byte(raw)) {
			return errors.New("--config is not valid JSON")
		}
		out, err = a.do("POST", tenantPath(*tenant)+"/connectors", map[string]any{"type": *typ, "name": *name, "config": json.RawMessage(raw)})
	case "connector list":
		if err := needTenant(); err != nil {
			return err
		}
		out, err = a.do("GET", tenantPath(*tenant)+"/connectors", nil)
	case "connector check", "connector delete":
		id, e := arg(0, "ID")
		if e != nil {
			return e
		}
		if e := needTenant(); e != nil {
			return e
		}
		if sub == "check" {
			out, err = a.do("POST", tenantPath(*tenant)+"/connectors/"+url.PathEscape(id)+"/check", nil)
		} else {
			out, err = a.do("DELETE", tenantPath(*tenant)+"/connectors/"+url.PathEscape(id), nil)
			if err == nil {
				out = map[string]any{"deleted": id}
			}
		}
	case "seats ":
		if err := needTenant(); err != nil {
			return err
		}
		out, err = a.do("GET", tenantPath(*tenant)+"/seats", nil)
	case "jobs ":
		if err := needTenant(); err != nil {
			return err
		}
		out, err = a.do("GET", tenantPath(*tenant)+"/jobs?state="+url.QueryEscape(*state), nil)
	case "audit ":
		if err := needTenant(); err != nil {
			return err
		}
		q := ""
		if *since != "" {
			q = "?since=" + url.QueryEscape(*since)
		}
		out, err = a.do("GET", tenantPath(*tenant)+"/audit"+q, nil)
	case "employee show", "employee credentials", "employee attach-device":
		id, e := arg(0, "ID")
		if e != nil {
			return e
		}
		if e := needTenant(); e != nil {
			return e
		}
		p := tenantPath(*tenant) + "/employees/" + url.PathEscape(id)
		switch sub {
		case "show":
			out, err = a.do("GET", p+"/", nil)
		case "credentials":
			out, err = a.do("POST", p+"/credentials", nil)
		default:
			out, err = a.do("POST", p+"/devices", map[string]any{"connector": *connector, "deviceId": *device, "ownership": *ownership})
		}
	case "job retry", "job approve", "job reject":
		emp, e := arg(0, "EMPLOYEE")
		if e != nil {
			return e
		}
		job, e := arg(1, "JOB")
		if e != nil {
			return e
		}
		if e := needTenant(); e != nil {
			return e
		}
		out, err = a.do("POST", tenantPath(*tenant)+"/employees/"+url.PathEscape(emp)+"/jobs/"+url.PathEscape(job)+"/"+sub, nil)
	case "brake confirm", "brake cancel":
		if err := needTenant(); err != nil {
			return err
		}
		out, err = a.do("POST", tenantPath(*tenant)+"/brake/"+sub, nil)
	default:
		return fmt.Errorf("unknown command %q (see offboard help)", strings.TrimSpace(group+" "+sub))
	}
	if err != nil {
		return err
	}
	a.print(out)
	return nil
}

// claimFlags collects --claim k=v.
type claimFlags map[string]string

func (c *claimFlags) String() string { return "" }
func (c *claimFlags) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return errors.New("claim must be key=value")
	}
	if *c == nil {
		*c = map[string]string{}
	}
	(*c)[k] = val
	return nil
}
