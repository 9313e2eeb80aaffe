package intune

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/offboard/offboard/mdm"
)

// managedDevice is the part of Graph's managedDevice the connector reads.
type managedDevice struct {
	ID                     string         `json:"id"`
	UserID                 string         `json:"userId"`
	DeviceName             string         `json:"deviceName"`
	OperatingSystem        string         `json:"operatingSystem"`
	ManagedDeviceOwnerType string         `json:"managedDeviceOwnerType"`
	ManagementState        string         `json:"managementState"`
	SerialNumber           string         `json:"serialNumber"`
	UserPrincipalName      string         `json:"userPrincipalName"`
	DeviceActionResults    []actionResult `json:"deviceActionResults"`
}

type actionResult struct {
	ActionName          string    `json:"actionName"`
	ActionState         string    `json:"actionState"`
	StartDateTime       time.Time `json:"startDateTime"`
	LastUpdatedDateTime time.Time `json:"lastUpdatedDateTime"`
}

type deviceList struct {
	Value    []managedDevice `json:"value"`
	NextLink string          `json:"@odata.nextLink"`
}

const listSelect = "id,deviceName,operatingSystem,managedDeviceOwnerType,managementState,serialNumber,userPrincipalName"

// maxPages bounds pagination against a vendor that keeps sending nextLinks.
const maxPages = 50

// FindDevices implements mdm.Finder. By userName (the default) or email it lists the managed
// devices whose userPrincipalName is that value (Entra ID provisions userName as the UPN, which in
// most tenants is also the e-mail address); by externalId, which must then carry the user's Entra
// object id, it lists /users/{id}/managedDevices.
func (c *Connector) FindDevices(ctx context.Context, p mdm.Person) ([]mdm.Device, error) {
	attr, value := p.MatchValue()
	if p.Match == "" && value == "" {
		attr, value = mdm.MatchEmail, p.Email
	}
	if value == "" {
		return nil, &mdm.VendorError{Vendor: Type, Op: "find devices", Detail: "person has no " + string(attr)}
	}
	var next string
	keep := func(d managedDevice) bool {
		// Defence in depth: never act on another person's device.
		return d.UserPrincipalName == "" || strings.EqualFold(d.UserPrincipalName, value)
	}
	switch attr {
	case mdm.MatchExternalID:
		if !guidRE.MatchString(value) {
			return nil, &mdm.VendorError{Vendor: Type, Op: "find devices",
				Detail: "externalId is not an Entra object id; map objectId to externalId in the provisioning app or match by userName"}
		}
		next = "/users/" + value + "/managedDevices?" + query("$select", listSelect+",userId")
		keep = func(d managedDevice) bool { return d.UserID == "" || strings.EqualFold(d.UserID, value) }
	default:
		next = "/deviceManagement/managedDevices?" + query(
			"$filter", "userPrincipalName eq "+odataString(value),
			"$select", listSelect,
		)
	}
	var out []mdm.Device
	for page := 0; next != ""; page++ {
		if page == maxPages {
			return nil, &mdm.VendorError{Vendor: Type, Op: "find devices", Retryable: true, Detail: "too many result pages"}
		}
		var l deviceList
		err := c.call(ctx, "find devices", "GET", next, nil, &l)
		var ve *mdm.VendorError
		if attr == mdm.MatchExternalID && errors.As(err, &ve) && ve.StatusCode == http.StatusNotFound {
			return out, nil // Entra knows no such user, so Intune has no device of theirs
		}
		if err != nil {
			return nil, err
		}
		for _, d := range l.Value {
			if keep(d) {
				out = append(out, c.device(d))
			}
		}
		next = ""
		if l.NextLink != "" {
			if !c.sameHost(l.NextLink) {
				return nil, &mdm.VendorError{Vendor: Type, Op: "find devices", Detail: "nextLink points outside the Graph URL"}
			}
			next = l.NextLink
		}
	}
	return out, nil
}

// sameHost reports whether link is below the configured Graph URL, so the bearer token is
// never sent elsewhere.
func (c *Connector) sameHost(link string) bool {
	u, err := url.Parse(link)
	if err != nil {
		return false
	}
	base, _ := url.Parse(c.cfg.GraphURL)
	return u.Scheme == base.Scheme && u.Host == base.Host && strings.HasPrefix(u.Path, base.Path+v1+"/")
}

func (c *Connector) device(d managedDevice) mdm.Device {
	return mdm.Device{
		ID:        d.ID,
		Connector: c.id,
		Platform:  platform(d.OperatingSystem),
		Ownership: ownership(d.ManagedDeviceOwnerType),
		Name:      d.DeviceName,
		Serial:    d.SerialNumber,
	}
}

func ownership(t string) mdm.Ownership {
	switch strings.ToLower(t) {
	case "company":
		return mdm.OwnershipCompany
	case "personal":
		return mdm.OwnershipPersonal
	}
	return mdm.OwnershipUnknown
}

func platform(os string) mdm.Platform {
	s := strings.ToLower(os)
	switch {
	case strings.HasPrefix(s, "ios"), strings.HasPrefix(s, "ipados"):
		return mdm.PlatformIOS
	case strings.HasPrefix(s, "mac"):
		return mdm.PlatformMacOS
	case strings.HasPrefix(s, "android"):
		return mdm.PlatformAndroid
	case strings.HasPrefix(s, "windows"):
		return mdm.PlatformWindows
	}
	return mdm.PlatformUnknown
}

// getDevice reads one managed device; a 404 is mdm.ErrDeviceGone.
func (c *Connector) getDevice(ctx context.Context, op, id string) (managedDevice, error) {
	if !guidRE.MatchString(id) {
		return managedDevice{}, &mdm.VendorError{Vendor: Type, Op: op, Detail: "device id is not an Intune managedDevice id"}
	}
	var d managedDevice
	err := c.call(ctx, op, "GET", "/deviceManagement/managedDevices/"+id+"?"+query(
		"$select", "id,userId,managedDeviceOwnerType,managementState,deviceActionResults"), nil, &d)
	if err != nil {
		return managedDevice{}, mdm.DeviceGone(err)
	}
	if d.ID == "" {
		return managedDevice{}, &mdm.VendorError{Vendor: Type, Op: op, Retryable: true, Err: errors.New("device without id")}
	}
	return d, nil
}

// CheckHealth implements mdm.HealthChecker: a token and one read of managed devices.
func (c *Connector) CheckHealth(ctx context.Context) error {
	var l deviceList
	return c.call(ctx, "health check", "GET", "/deviceManagement/managedDevices?"+query("$top", "1", "$select", "id"), nil, &l)
}
