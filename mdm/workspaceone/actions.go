package workspaceone

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/offboard/offboard/mdm"
)

// Device commands.
const (
	cmdEnterpriseWipe = "EnterpriseWipe"
	cmdDeviceWipe     = "DeviceWipe"
	cmdUninstall      = "uninstall"
)

// pendingStatus is the EnrollmentStatus a device shows while a command is queued.
var pendingStatus = map[string]string{
	cmdEnterpriseWipe: "enterprisewipepending",
	cmdDeviceWipe:     "devicewipepending",
}

// RemoveApp implements mdm.AppRemover: an app uninstall when appId is configured, otherwise an
// EnterpriseWipe (managed apps and their data, profiles, enrollment; personal data stays).
func (c *Connector) RemoveApp(ctx context.Context, req mdm.Request) (mdm.Command, error) {
	if req.Device == nil {
		return mdm.Command{}, &mdm.VendorError{Vendor: Type, Op: "remove app", Detail: "request without device"}
	}
	if c.cfg.AppID == 0 {
		return c.command(ctx, "remove app", cmdEnterpriseWipe, req, nil)
	}
	if v, ok := c.uninstalled.Load(req.Key); ok {
		return v.(mdm.Command), nil
	}
	d, err := c.getDevice(ctx, "remove app", req.Device.ID)
	if err != nil {
		return mdm.Command{}, err
	}
	body := map[string]int64{"DeviceId": d.ID.Value}
	path := "/API/mam/apps/public/" + strconv.Itoa(c.cfg.AppID) + "/uninstall"
	if _, err := c.call(ctx, "remove app", http.MethodPost, path, body, nil); err != nil {
		return mdm.Command{}, mdm.DeviceGone(err)
	}
	cmd := mdm.Command{ID: cmdUninstall + ":" + strconv.FormatInt(d.ID.Value, 10), State: mdm.CommandDone,
		Detail: "uninstall accepted; Workspace ONE reports no per-device status for it"}
	c.uninstalled.Store(req.Key, cmd)
	return cmd, nil
}

// WipeDevice implements mdm.Wiper with DeviceWipe. It refuses devices Workspace ONE does not
// list as corporate (C or S), whatever the request says.
func (c *Connector) WipeDevice(ctx context.Context, req mdm.Request) (mdm.Command, error) {
	if req.Device == nil {
		return mdm.Command{}, &mdm.VendorError{Vendor: Type, Op: "wipe", Detail: "request without device"}
	}
	if req.Device.Ownership == mdm.OwnershipPersonal {
		return mdm.Command{}, refusePersonal()
	}
	return c.command(ctx, "wipe", cmdDeviceWipe, req, func(d device) error {
		if ownership(d.Ownership) != mdm.OwnershipCompany {
			return refusePersonal()
		}
		return nil
	})
}

func refusePersonal() error {
	return &mdm.VendorError{Vendor: Type, Op: "wipe", Detail: "refusing to wipe a device Workspace ONE does not list as corporate-owned"}
}

// command sends a device command unless the device already shows it pending.
func (c *Connector) command(ctx context.Context, op, name string, req mdm.Request, check func(device) error) (mdm.Command, error) {
	d, err := c.getDevice(ctx, op, req.Device.ID)
	if err != nil {
		return mdm.Command{}, err
	}
	if check != nil {
		if err := check(d); err != nil {
			return mdm.Command{}, err
		}
	}
	id := strconv.FormatInt(d.ID.Value, 10)
	cmd := mdm.Command{ID: name + ":" + id, State: mdm.CommandPending}
	if strings.EqualFold(d.EnrollmentStatus, pendingStatus[name]) {
		cmd.Detail = d.EnrollmentStatus
		return cmd, nil // queued already, by this request or an earlier one
	}
	if _, err := c.call(ctx, op, http.MethodPost, "/API/mdm/devices/"+id+"/commands?command="+name, nil, nil); err != nil {
		return mdm.Command{}, mdm.DeviceGone(err)
	}
	return cmd, nil
}

// CommandStatus implements mdm.StatusReporter by polling the device record (see the package
// documentation). A device that is unenrolled or gone is mdm.ErrDeviceGone, which the runner
// treats as done.
func (c *Connector) CommandStatus(ctx context.Context, dev mdm.Device, cmd mdm.Command) (mdm.Command, error) {
	name, id, ok := strings.Cut(cmd.ID, ":")
	if !ok {
		return cmd, &mdm.VendorError{Vendor: Type, Op: "command status", Detail: "not a Workspace ONE command id"}
	}
	if name == cmdUninstall {
		cmd.State = mdm.CommandDone
		return cmd, nil
	}
	d, err := c.getDevice(ctx, "command status", id)
	if err != nil {
		return cmd, err
	}
	cmd.State, cmd.Detail = mdm.CommandPending, d.EnrollmentStatus
	return cmd, nil
}
