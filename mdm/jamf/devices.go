package jamf

import (
	"context"
	"regexp"
	"strconv"
	"strings"

	"github.com/offboard/offboard/mdm"
)

// inventory is one record of GET /api/v2/mobile-devices/detail.
type inventory struct {
	MobileDeviceID string `json:"mobileDeviceId"`
	DeviceType     string `json:"deviceType"`
	ManagementID   string `json:"managementId"`
	General        struct {
		DisplayName         string `json:"displayName"`
		ManagementID        string `json:"managementId"`
		DeviceOwnershipType string `json:"deviceOwnershipType"`
	} `json:"general"`
	Hardware struct {
		SerialNumber string `json:"serialNumber"`
	} `json:"hardware"`
	UserAndLocation struct {
		Username     string `json:"username"`
		EmailAddress string `json:"emailAddress"`
	} `json:"userAndLocation"`
	Applications []inventoryApp `json:"applications"`
}

// inventoryApp is one app of the APPLICATIONS section.
type inventoryApp struct {
	Identifier string `json:"identifier"`
	Name       string `json:"name"`
}

func (r inventory) managementID() string {
	if r.ManagementID != "" {
		return r.ManagementID
	}
	return r.General.ManagementID
}

type inventoryPage struct {
	TotalCount int         `json:"totalCount"`
	Results    []inventory `json:"results"`
}

const pageSize = 100

// maxPages bounds pagination.
const maxPages = 50

var digitsRE = regexp.MustCompile(`^[0-9]{1,19}$`)

// FindDevices implements mdm.Finder. The configured match decides the inventory field
// (userAndLocation.emailAddress by default, or userAndLocation.username) and the person's
// Match attribute the value: by userName (the default) the userName is compared with that field
// (IdPs often provision the e-mail address as userName); by email the e-mail address is compared
// with userAndLocation.emailAddress whatever the configured match. Jamf keeps no IdP id, so
// externalId is refused.
func (c *Connector) FindDevices(ctx context.Context, p mdm.Person) ([]mdm.Device, error) {
	field := "userAndLocation.emailAddress"
	if c.cfg.Match == MatchUsername {
		field = "userAndLocation.username"
	}
	var value string
	switch p.Match {
	case mdm.MatchUserName:
		value = p.UserName
	case mdm.MatchEmail:
		field, value = "userAndLocation.emailAddress", p.Email
	case mdm.MatchExternalID:
		return nil, mdm.UnsupportedMatch(Type, p.Match, mdm.MatchUserName, mdm.MatchEmail)
	default: // no policy given: the connector's own choice
		value = p.UserName
		if field == "userAndLocation.emailAddress" {
			value = p.Email
			if value == "" && strings.Contains(p.UserName, "@") {
				value = p.UserName
			}
		}
	}
	if value == "" {
		return nil, &mdm.VendorError{Vendor: Type, Op: "find devices", Detail: "person has no value to compare with " + field}
	}
	var out []mdm.Device
	seen := 0
	for page := 0; ; page++ {
		if page == maxPages {
			return nil, &mdm.VendorError{Vendor: Type, Op: "find devices", Retryable: true, Detail: "too many result pages"}
		}
		var res inventoryPage
		q := encodeQuery("section", "GENERAL", "section", "HARDWARE", "section", "USER_AND_LOCATION",
			"page", strconv.Itoa(page), "page-size", strconv.Itoa(pageSize),
			"filter", field+"=="+rsqlString(value))
		if err := c.getJSON(ctx, "find devices", "/api/v2/mobile-devices/detail?"+q, &res); err != nil {
			return nil, err
		}
		for _, r := range res.Results {
			got := r.UserAndLocation.EmailAddress
			if field == "userAndLocation.username" {
				got = r.UserAndLocation.Username
			}
			if !strings.EqualFold(got, value) {
				continue // defence in depth: never act on another person's device
			}
			out = append(out, c.device(r))
		}
		seen += len(res.Results)
		if len(res.Results) == 0 || seen >= res.TotalCount {
			return out, nil
		}
	}
}

func (c *Connector) device(r inventory) mdm.Device {
	return mdm.Device{
		ID:        r.MobileDeviceID,
		Connector: c.id,
		Platform:  platform(r.DeviceType),
		Ownership: ownership(r.General.DeviceOwnershipType),
		Name:      r.General.DisplayName,
		Serial:    r.Hardware.SerialNumber,
	}
}

// ownership maps general.deviceOwnershipType. Only "Institutional" is the company's; the
// personal enrollment types are personal; anything else is unknown (and never wiped).
func ownership(t string) mdm.Ownership {
	switch t {
	case "Institutional":
		return mdm.OwnershipCompany
	case "PersonalDeviceProfile", "UserEnrollment", "AccountDrivenUserEnrollment":
		return mdm.OwnershipPersonal
	}
	return mdm.OwnershipUnknown
}

func platform(deviceType string) mdm.Platform {
	switch strings.ToLower(deviceType) {
	case "ios", "ipados":
		return mdm.PlatformIOS
	}
	return mdm.PlatformUnknown
}

// lookup reads one device's inventory with the given sections; a device Jamf does not list is
// mdm.ErrDeviceGone.
func (c *Connector) lookup(ctx context.Context, op, id string, sections ...string) (inventory, error) {
	if !digitsRE.MatchString(id) {
		return inventory{}, &mdm.VendorError{Vendor: Type, Op: op, Detail: "device id is not a Jamf mobile device id"}
	}
	var kv []string
	for _, s := range sections {
		kv = append(kv, "section", s)
	}
	kv = append(kv, "page", "0", "page-size", "1", "filter", "mobileDeviceId=="+rsqlString(id))
	var res inventoryPage
	if err := c.getJSON(ctx, op, "/api/v2/mobile-devices/detail?"+encodeQuery(kv...), &res); err != nil {
		return inventory{}, mdm.DeviceGone(err)
	}
	for _, r := range res.Results {
		if r.MobileDeviceID == id {
			return r, nil
		}
	}
	return inventory{}, &mdm.VendorError{Vendor: Type, Op: op, StatusCode: 404, Detail: "device not in inventory", Err: mdm.ErrDeviceGone}
}

// CheckHealth implements mdm.HealthChecker: a token and the server's version.
func (c *Connector) CheckHealth(ctx context.Context) error {
	var v struct {
		Version string `json:"version"`
	}
	return c.getJSON(ctx, "health check", "/api/v1/jamf-pro-version", &v)
}
