package workspaceone

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/offboard/offboard/mdm"
)

// device is the part of a Workspace ONE device record the connector reads.
type device struct {
	ID struct {
		Value int64 `json:"Value"`
	} `json:"Id"`
	UUID               string `json:"Uuid"`
	SerialNumber       string `json:"SerialNumber"`
	DeviceFriendlyName string `json:"DeviceFriendlyName"`
	UserName           string `json:"UserName"`
	UserEmailAddress   string `json:"UserEmailAddress"`
	Ownership          string `json:"Ownership"`
	Platform           string `json:"Platform"`
	EnrollmentStatus   string `json:"EnrollmentStatus"`
}

type searchResult struct {
	Devices  []device `json:"Devices"`
	Page     int      `json:"Page"`
	PageSize int      `json:"PageSize"`
	Total    int      `json:"Total"`
}

const pageSize = 500

// maxPages bounds pagination.
const maxPages = 50

var digitsRE = regexp.MustCompile(`^[0-9]{1,19}$`)

// FindDevices implements mdm.Finder: the devices whose enrollment user is the person's user name
// (its part before "@" with stripDomain). The search may match loosely; only exact user names
// (case-insensitive) are returned. By email the search runs on the e-mail address's local part
// and keeps only devices whose UserEmailAddress is that address. Workspace ONE's device search
// knows no IdP id, so externalId is refused.
func (c *Connector) FindDevices(ctx context.Context, p mdm.Person) ([]mdm.Device, error) {
	attr, value := p.MatchValue()
	user, email := value, ""
	switch attr {
	case mdm.MatchEmail:
		email = value
		user, _, _ = strings.Cut(value, "@")
	case mdm.MatchExternalID:
		return nil, mdm.UnsupportedMatch(Type, attr, mdm.MatchUserName, mdm.MatchEmail)
	default:
		if c.cfg.StripDomain {
			user, _, _ = strings.Cut(user, "@")
		}
	}
	if user == "" {
		return nil, &mdm.VendorError{Vendor: Type, Op: "find devices", Detail: "person has no " + string(attr)}
	}
	match := func(d device) bool {
		if email != "" {
			return strings.EqualFold(d.UserEmailAddress, email)
		}
		return strings.EqualFold(d.UserName, user)
	}
	var out []mdm.Device
	seen := 0
	for page := 0; page < maxPages; page++ {
		q := url.Values{"user": {user}, "page": {strconv.Itoa(page)}, "pagesize": {strconv.Itoa(pageSize)}}
		var res searchResult
		status, err := c.call(ctx, "find devices", http.MethodGet, "/API/mdm/devices/search?"+q.Encode(), nil, &res)
		if err != nil {
			return nil, err
		}
		if status == http.StatusNoContent {
			return out, nil // Workspace ONE answers a search without matches with 204
		}
		for _, d := range res.Devices {
			if match(d) {
				out = append(out, c.device(d))
			}
		}
		seen += len(res.Devices)
		if len(res.Devices) == 0 || seen >= res.Total {
			return out, nil
		}
	}
	return nil, &mdm.VendorError{Vendor: Type, Op: "find devices", Retryable: true, Detail: "too many result pages"}
}

func (c *Connector) device(d device) mdm.Device {
	return mdm.Device{
		ID:        strconv.FormatInt(d.ID.Value, 10),
		Connector: c.id,
		Platform:  platform(d.Platform),
		Ownership: ownership(d.Ownership),
		Name:      d.DeviceFriendlyName,
		Serial:    d.SerialNumber,
	}
}

// ownership maps Workspace ONE's codes: C corporate-dedicated and S corporate-shared are the
// company's, E employee-owned is personal, anything else (Undefined) is unknown.
func ownership(o string) mdm.Ownership {
	switch strings.ToUpper(o) {
	case "C", "S":
		return mdm.OwnershipCompany
	case "E":
		return mdm.OwnershipPersonal
	}
	return mdm.OwnershipUnknown
}

func platform(p string) mdm.Platform {
	switch s := strings.ToLower(p); {
	case s == "apple":
		return mdm.PlatformIOS
	case strings.HasPrefix(s, "appleosx"), strings.HasPrefix(s, "macos"):
		return mdm.PlatformMacOS
	case strings.HasPrefix(s, "android"):
		return mdm.PlatformAndroid
	case strings.HasPrefix(s, "win"):
		return mdm.PlatformWindows
	}
	return mdm.PlatformUnknown
}

// getDevice reads one device record. A device Workspace ONE no longer knows, or that is no
// longer enrolled, is mdm.ErrDeviceGone.
func (c *Connector) getDevice(ctx context.Context, op, id string) (device, error) {
	if !digitsRE.MatchString(id) {
		return device{}, &mdm.VendorError{Vendor: Type, Op: op, Detail: "device id is not a Workspace ONE device id"}
	}
	var d device
	if _, err := c.call(ctx, op, http.MethodGet, "/API/mdm/devices/"+id, nil, &d); err != nil {
		return device{}, mdm.DeviceGone(err)
	}
	if unenrolled(d.EnrollmentStatus) {
		return device{}, &mdm.VendorError{Vendor: Type, Op: op, Detail: "device is " + d.EnrollmentStatus, Err: mdm.ErrDeviceGone}
	}
	return d, nil
}

func unenrolled(status string) bool {
	switch strings.ToLower(status) {
	case "unenrolled", "retired", "enterprisewipecompleted", "devicewipecompleted":
		return true
	}
	return false
}

// CheckHealth implements mdm.HealthChecker: credentials, API key and reachability, through the
// system information endpoint.
func (c *Connector) CheckHealth(ctx context.Context) error {
	var info map[string]any
	_, err := c.call(ctx, "health check", http.MethodGet, "/API/system/info", nil, &info)
	return err
}
