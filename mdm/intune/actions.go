package intune

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/offboard/offboard/mdm"
)

// Graph action names as deviceActionResults reports them, and the uninstall pseudo-action.
const (
	actionWipe      = "wipe"
	actionRetire    = "retire"
	actionUninstall = "uninstall"
)

func commandID(deviceID, action string) string { return deviceID + "/" + action }

func parseCommandID(id string) (deviceID, action string, ok bool) {
	deviceID, action, ok = strings.Cut(id, "/")
	return deviceID, action, ok && deviceID != "" && action != ""
}

// RemoveApp implements mdm.AppRemover according to the configured mode.
func (c *Connector) RemoveApp(ctx context.Context, req mdm.Request) (mdm.Command, error) {
	if req.Device == nil {
		return mdm.Command{}, &mdm.VendorError{Vendor: Type, Op: "remove app", Detail: "request without device"}
	}
	if c.cfg.Mode == ModeRetire {
		return c.deviceAction(ctx, "retire", actionRetire, req, nil)
	}
	return c.uninstall(ctx, req)
}

// WipeDevice implements mdm.Wiper. It refuses any device Intune does not list as company-owned,
// whatever the request says.
func (c *Connector) WipeDevice(ctx context.Context, req mdm.Request) (mdm.Command, error) {
	if req.Device == nil {
		return mdm.Command{}, &mdm.VendorError{Vendor: Type, Op: "wipe", Detail: "request without device"}
	}
	if req.Device.Ownership == mdm.OwnershipPersonal {
		return mdm.Command{}, refusePersonal()
	}
	return c.deviceAction(ctx, "wipe", actionWipe, req, func(d managedDevice) error {
		if ownership(d.ManagedDeviceOwnerType) != mdm.OwnershipCompany {
			return refusePersonal()
		}
		return nil
	})
}

func refusePersonal() error {
	return &mdm.VendorError{Vendor: Type, Op: "wipe", Detail: "refusing to wipe a device Intune does not list as company-owned"}
}

// wipeBody is the body of managedDevice/wipe: a factory reset that keeps nothing but the eSIM
// data plan.
type wipeBody struct {
	KeepEnrollmentData  bool `json:"keepEnrollmentData"`
	KeepUserData        bool `json:"keepUserData"`
	PersistEsimDataPlan bool `json:"persistEsimDataPlan"`
}

// deviceAction sends wipe or retire unless the device already has that action from this request.
func (c *Connector) deviceAction(ctx context.Context, op, action string, req mdm.Request, check func(managedDevice) error) (mdm.Command, error) {
	d, err := c.getDevice(ctx, op, req.Device.ID)
	if err != nil {
		return mdm.Command{}, err
	}
	if check != nil {
		if err := check(d); err != nil {
			return mdm.Command{}, err
		}
	}
	cmd := mdm.Command{ID: commandID(d.ID, action), State: mdm.CommandPending}
	for _, r := range d.DeviceActionResults {
		if strings.EqualFold(r.ActionName, action) && !r.StartDateTime.Before(req.Occurred) {
			if st, detail := actionState(r.ActionState); st != mdm.CommandFailed {
				cmd.State, cmd.Detail = st, detail
				return cmd, nil // already sent for this request
			}
		}
	}
	var body any
	if action == actionWipe {
		body = wipeBody{PersistEsimDataPlan: true}
	}
	err = c.call(ctx, op, http.MethodPost, "/deviceManagement/managedDevices/"+d.ID+"/"+action, body, nil)
	if err != nil {
		return mdm.Command{}, mdm.DeviceGone(err)
	}
	return cmd, nil
}

// actionState maps a deviceActionResult actionState to a command state.
func actionState(s string) (mdm.CommandState, string) {
	switch strings.ToLower(s) {
	case "done":
		return mdm.CommandDone, ""
	case "failed", "canceled", "notsupported":
		return mdm.CommandFailed, "Intune reports the action " + s
	}
	return mdm.CommandPending, s // none, pending, active
}

// CommandStatus implements mdm.StatusReporter from the device's deviceActionResults. A device
// that has disappeared (a finished wipe or retire removes it) is mdm.ErrDeviceGone.
func (c *Connector) CommandStatus(ctx context.Context, dev mdm.Device, cmd mdm.Command) (mdm.Command, error) {
	deviceID, action, ok := parseCommandID(cmd.ID)
	if !ok {
		return cmd, &mdm.VendorError{Vendor: Type, Op: "command status", Detail: "not an Intune command id"}
	}
	if action == actionUninstall {
		cmd.State, cmd.Detail = mdm.CommandDone, "uninstall intent assigned; Intune enforces it at check-in"
		return cmd, nil
	}
	d, err := c.getDevice(ctx, "command status", deviceID)
	if err != nil {
		return cmd, err
	}
	var latest *actionResult
	for i, r := range d.DeviceActionResults {
		if strings.EqualFold(r.ActionName, action) && (latest == nil || r.StartDateTime.After(latest.StartDateTime)) {
			latest = &d.DeviceActionResults[i]
		}
	}
	if latest == nil {
		cmd.State, cmd.Detail = mdm.CommandPending, "not yet reported by Intune"
		return cmd, nil
	}
	cmd.State, cmd.Detail = actionState(latest.ActionState)
	return cmd, nil
}

// assignment is a mobileAppAssignment as Graph returns and accepts it. Other properties are
// carried through unchanged, because /assign replaces the app's whole assignment list.
type assignment map[string]json.RawMessage

func (a assignment) intent() string {
	var s string
	json.Unmarshal(a["intent"], &s)
	return s
}

func (a assignment) groupID() string {
	var t struct {
		GroupID string `json:"groupId"`
	}
	json.Unmarshal(a["target"], &t)
	return t.GroupID
}

// assignmentOnce remembers that the uninstall assignment is in place.
type assignmentOnce struct {
	mu   sync.Mutex
	done bool
}

// uninstall makes sure the app has an uninstall assignment to the offboarding group, then adds
// the device's user to that group.
func (c *Connector) uninstall(ctx context.Context, req mdm.Request) (mdm.Command, error) {
	d, err := c.getDevice(ctx, "remove app", req.Device.ID)
	if err != nil {
		return mdm.Command{}, err
	}
	if d.UserID == "" {
		return mdm.Command{}, &mdm.VendorError{Vendor: Type, Op: "remove app", Detail: "device has no primary user to add to the offboarding group"}
	}
	if err := c.ensureAssignment(ctx); err != nil {
		return mdm.Command{}, err
	}
	ref := map[string]string{"@odata.id": c.cfg.GraphURL + v1 + "/directoryObjects/" + d.UserID}
	err = c.call(ctx, "remove app", http.MethodPost, "/groups/"+c.cfg.GroupID+"/members/$ref", ref, nil)
	var ve *mdm.VendorError
	if errors.As(err, &ve) && ve.StatusCode == http.StatusBadRequest && strings.Contains(ve.Detail, "already exist") {
		err = nil // the leaver is a member already: this request (or an earlier one) did it
	}
	if err != nil {
		return mdm.Command{}, err
	}
	return mdm.Command{ID: commandID(d.ID, actionUninstall), State: mdm.CommandDone,
		Detail: "uninstall intent assigned; Intune enforces it at check-in"}, nil
}

func (c *Connector) ensureAssignment(ctx context.Context) error {
	once := &c.assigned
	once.mu.Lock()
	defer once.mu.Unlock()
	if once.done {
		return nil
	}
	var list struct {
		Value []assignment `json:"value"`
	}
	base := "/deviceAppManagement/mobileApps/" + c.cfg.AppID
	if err := c.call(ctx, "read app assignments", http.MethodGet, base+"/assignments", nil, &list); err != nil {
		return err
	}
	keep := make([]assignment, 0, len(list.Value)+1)
	for _, a := range list.Value {
		if strings.EqualFold(a.groupID(), c.cfg.GroupID) && a.intent() == actionUninstall {
			once.done = true
			return nil
		}
		delete(a, "id") // ids are assigned by Graph
		if _, ok := a["@odata.type"]; !ok {
			a["@odata.type"] = json.RawMessage(`"#microsoft.graph.mobileAppAssignment"`)
		}
		keep = append(keep, a)
	}
	target, _ := json.Marshal(map[string]string{
		"@odata.type": "#microsoft.graph.groupAssignmentTarget",
		"groupId":     c.cfg.GroupID,
	})
	keep = append(keep, assignment{
		"@odata.type": json.RawMessage(`"#microsoft.graph.mobileAppAssignment"`),
		"intent":      json.RawMessage(`"uninstall"`),
		"target":      target,
	})
	body := map[string]any{"mobileAppAssignments": keep}
	if err := c.call(ctx, "assign uninstall intent", http.MethodPost, base+"/assign", body, nil); err != nil {
		return fmt.Errorf("intune: the app's uninstall assignment: %w", err)
	}
	once.done = true
	return nil
}
