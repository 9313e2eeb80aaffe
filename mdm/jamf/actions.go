package jamf

import (
	"context"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/offboard/offboard/mdm"
)

// Command ID prefix for scope removals; ERASE_DEVICE commands use Jamf's command UUID.
const scopePrefix = "scope:"

// Classic API XML shapes (only the elements the connector reads or sends).
type (
	xmlApp struct {
		XMLName xml.Name `xml:"mobile_device_application"`
		General *struct {
			BundleID string `xml:"bundle_id"`
		} `xml:"general,omitempty"`
		Scope *xmlScope `xml:"scope"`
	}
	xmlScope struct {
		Exclusions xmlExclusions `xml:"exclusions"`
	}
	xmlExclusions struct {
		Groups []xmlGroupRef `xml:"mobile_device_groups>mobile_device_group"`
	}
	xmlGroupRef struct {
		ID   int    `xml:"id"`
		Name string `xml:"name,omitempty"`
	}
	xmlGroup struct {
		XMLName xml.Name       `xml:"mobile_device_group"`
		IsSmart bool           `xml:"is_smart"`
		Devices []xmlDeviceRef `xml:"mobile_devices>mobile_device"`
	}
	xmlGroupAdditions struct {
		XMLName   xml.Name       `xml:"mobile_device_group"`
		Additions []xmlDeviceRef `xml:"mobile_device_additions>mobile_device"`
	}
	xmlDeviceRef struct {
		ID int `xml:"id"`
	}
)

// scopeOnce remembers the app's bundle id once its scope is known to exclude the group.
type scopeOnce struct {
	mu       sync.Mutex
	bundleID string
}

// RemoveApp implements mdm.AppRemover: the app's scope excludes the offboarding group (added
// once if missing) and the device joins that group, so Jamf removes the managed app and its data.
func (c *Connector) RemoveApp(ctx context.Context, req mdm.Request) (mdm.Command, error) {
	if req.Device == nil {
		return mdm.Command{}, &mdm.VendorError{Vendor: Type, Op: "remove app", Detail: "request without device"}
	}
	inv, err := c.lookup(ctx, "remove app", req.Device.ID, "GENERAL")
	if err != nil {
		return mdm.Command{}, err
	}
	bundleID, err := c.ensureExclusion(ctx)
	if err != nil {
		return mdm.Command{}, err
	}
	devID, _ := strconv.Atoi(inv.MobileDeviceID)
	groupPath := "/JSSResource/mobiledevicegroups/id/" + strconv.Itoa(c.cfg.GroupID)
	b, err := c.call(ctx, "read offboarding group", http.MethodGet, groupPath, "", nil, mediaXML)
	if err != nil {
		return mdm.Command{}, err
	}
	var g xmlGroup
	if err := xml.Unmarshal(b, &g); err != nil {
		return mdm.Command{}, &mdm.VendorError{Vendor: Type, Op: "read offboarding group", Retryable: true, Err: err}
	}
	if g.IsSmart {
		return mdm.Command{}, &mdm.VendorError{Vendor: Type, Op: "remove app", Detail: "groupId names a smart group; it must be a static group"}
	}
	cmd := mdm.Command{ID: scopePrefix + bundleID, State: mdm.CommandPending, Detail: "device left the app's scope"}
	if slices.ContainsFunc(g.Devices, func(d xmlDeviceRef) bool { return d.ID == devID }) {
		return cmd, nil // already a member: this request (or an earlier one) added it
	}
	add, _ := xml.Marshal(xmlGroupAdditions{Additions: []xmlDeviceRef{{ID: devID}}})
	if _, err := c.call(ctx, "remove app", http.MethodPut, groupPath, mediaXML, add, mediaXML); err != nil {
		return mdm.Command{}, mdm.DeviceGone(err)
	}
	return cmd, nil
}

// ensureExclusion makes sure the app's scope excludes the offboarding group and returns the
// app's bundle id. The Classic API replaces the whole exclusion group list, so the existing
// exclusions are sent back with the new one.
func (c *Connector) ensureExclusion(ctx context.Context) (string, error) {
	c.scope.mu.Lock()
	defer c.scope.mu.Unlock()
	if c.scope.bundleID != "" {
		return c.scope.bundleID, nil
	}
	appPath := "/JSSResource/mobiledeviceapplications/id/" + strconv.Itoa(c.cfg.AppID)
	b, err := c.call(ctx, "read app scope", http.MethodGet, appPath, "", nil, mediaXML)
	if err != nil {
		return "", err
	}
	var app xmlApp
	if err := xml.Unmarshal(b, &app); err != nil || app.General == nil || app.General.BundleID == "" {
		return "", &mdm.VendorError{Vendor: Type, Op: "read app scope", Retryable: true, Detail: "app record without bundle id"}
	}
	var groups []xmlGroupRef
	if app.Scope != nil {
		groups = app.Scope.Exclusions.Groups
	}
	if !slices.ContainsFunc(groups, func(g xmlGroupRef) bool { return g.ID == c.cfg.GroupID }) {
		send := make([]xmlGroupRef, 0, len(groups)+1)
		for _, g := range groups {
			send = append(send, xmlGroupRef{ID: g.ID})
		}
		send = append(send, xmlGroupRef{ID: c.cfg.GroupID})
		body, _ := xml.Marshal(xmlApp{Scope: &xmlScope{Exclusions: xmlExclusions{Groups: send}}})
		if _, err := c.call(ctx, "exclude offboarding group", http.MethodPut, appPath, mediaXML, body, mediaXML); err != nil {
			return "", err
		}
	}
	c.scope.bundleID = app.General.BundleID
	return c.scope.bundleID, nil
}

// WipeDevice implements mdm.Wiper with ERASE_DEVICE. It refuses devices Jamf does not list as
// Institutional, whatever the request says.
func (c *Connector) WipeDevice(ctx context.Context, req mdm.Request) (mdm.Command, error) {
	if req.Device == nil {
		return mdm.Command{}, &mdm.VendorError{Vendor: Type, Op: "erase", Detail: "request without device"}
	}
	if req.Device.Ownership == mdm.OwnershipPersonal {
		return mdm.Command{}, refusePersonal()
	}
	inv, err := c.lookup(ctx, "erase", req.Device.ID, "GENERAL")
	if err != nil {
		return mdm.Command{}, err
	}
	if ownership(inv.General.DeviceOwnershipType) != mdm.OwnershipCompany {
		return mdm.Command{}, refusePersonal()
	}
	mid := inv.managementID()
	if mid == "" {
		return mdm.Command{}, &mdm.VendorError{Vendor: Type, Op: "erase", Detail: "device has no managementId (not MDM-managed)"}
	}
	if prior, ok, err := c.priorErase(ctx, mid, req.Occurred); err != nil {
		return mdm.Command{}, err
	} else if ok {
		return prior, nil
	}
	body, _ := json.Marshal(map[string]any{
		"clientData":  []map[string]string{{"managementId": mid, "clientType": "MOBILE_DEVICE"}},
		"commandData": map[string]any{"commandType": "ERASE_DEVICE", "preserveDataPlan": true, "disallowProximitySetup": true},
	})
	b, err := c.call(ctx, "erase", http.MethodPost, "/api/v2/mdm/commands", mediaJSON, body, mediaJSON)
	if err != nil {
		return mdm.Command{}, mdm.DeviceGone(err)
	}
	var created []struct {
		ID   string `json:"id"`
		Href string `json:"href"`
	}
	if err := json.Unmarshal(b, &created); err != nil || len(created) == 0 || created[0].ID == "" {
		// The command was probably queued: a retry finds it through priorErase.
		return mdm.Command{}, &mdm.VendorError{Vendor: Type, Op: "erase", Retryable: true, Detail: "unreadable command response"}
	}
	return mdm.Command{ID: created[0].ID, State: mdm.CommandPending}, nil
}

func refusePersonal() error {
	return &mdm.VendorError{Vendor: Type, Op: "erase", Detail: "refusing to erase a device Jamf does not list as Institutional"}
}

// commandRecord is one result of GET /api/v2/mdm/commands.
type commandRecord struct {
	UUID               string    `json:"uuid"`
	ClientManagementID string    `json:"clientManagementId"`
	CommandType        string    `json:"commandType"`
	Command            string    `json:"command"`
	Status             string    `json:"status"`
	DateSent           time.Time `json:"dateSent"`
}

func (r commandRecord) kind() string {
	if r.CommandType != "" {
		return r.CommandType
	}
	return r.Command
}

type commandPage struct {
	TotalCount int             `json:"totalCount"`
	Results    []commandRecord `json:"results"`
}

// priorErase finds an ERASE_DEVICE for the device sent at or after since that has not failed.
func (c *Connector) priorErase(ctx context.Context, managementID string, since time.Time) (mdm.Command, bool, error) {
	var res commandPage
	q := encodeQuery("page", "0", "page-size", "100", "sort", "dateSent:desc",
		"filter", "clientManagementId=="+rsqlString(managementID))
	if err := c.getJSON(ctx, "erase", "/api/v2/mdm/commands?"+q, &res); err != nil {
		return mdm.Command{}, false, err
	}
	for _, r := range res.Results {
		if r.kind() != "ERASE_DEVICE" || r.DateSent.Before(since) {
			continue
		}
		if st, detail := commandState(r.Status); st != mdm.CommandFailed {
			return mdm.Command{ID: r.UUID, State: st, Detail: detail}, true, nil
		}
	}
	return mdm.Command{}, false, nil
}

// commandState maps Jamf's command status.
func commandState(s string) (mdm.CommandState, string) {
	switch strings.ToLower(s) {
	case "acknowledged":
		return mdm.CommandDone, ""
	case "error":
		return mdm.CommandFailed, "Jamf reports the command failed"
	case "notnow":
		return mdm.CommandPending, "device answered NotNow"
	}
	return mdm.CommandPending, s
}

// CommandStatus implements mdm.StatusReporter: ERASE_DEVICE from the command list, a scope
// removal from the device's app inventory (done once the app is gone).
func (c *Connector) CommandStatus(ctx context.Context, dev mdm.Device, cmd mdm.Command) (mdm.Command, error) {
	if bundleID, ok := strings.CutPrefix(cmd.ID, scopePrefix); ok {
		inv, err := c.lookup(ctx, "command status", dev.ID, "APPLICATIONS")
		if err != nil {
			return cmd, err
		}
		if slices.ContainsFunc(inv.Applications, func(a inventoryApp) bool { return a.Identifier == bundleID }) {
			cmd.State, cmd.Detail = mdm.CommandPending, "app still in the device's inventory"
		} else {
			cmd.State, cmd.Detail = mdm.CommandDone, "app no longer in the device's inventory"
		}
		return cmd, nil
	}
	var res commandPage
	q := encodeQuery("page", "0", "page-size", "1", "filter", "uuid=="+rsqlString(cmd.ID))
	if err := c.getJSON(ctx, "command status", "/api/v2/mdm/commands?"+q, &res); err != nil {
		return cmd, err
	}
	for _, r := range res.Results {
		if r.UUID == cmd.ID {
			cmd.State, cmd.Detail = commandState(r.Status)
			return cmd, nil
		}
	}
	cmd.State, cmd.Detail = mdm.CommandPending, fmt.Sprintf("command %s not listed yet", cmd.ID)
	return cmd, nil
}
