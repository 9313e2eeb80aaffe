package nanomdm

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"

	"github.com/micromdm/plist"

	"github.com/offboard/offboard/mdm"
)

// maxWebhookBody bounds one webhook event. ManagedApplicationList answers are the largest we
// expect, and ours ask for one app.
const maxWebhookBody = 4 << 20

// maxDetail bounds the text kept from a device's answer.
const maxDetail = 1000

// hmacHeader is the header in which NanoMDM sends the webhook body's HMAC when started with
// -webhook-hmac-key (service/webhook.HMACHeader).
const hmacHeader = "X-Hmac-Signature"

// NewWebhookSecret returns a fresh random secret for the path of a connector's webhook URL:
// 32 bytes from crypto/rand, base64url without padding (43 characters, safe in a path segment).
// The app stores it with the connector, builds the URL from it (for example
// https://offboard.example/mdm/nanomdm/{connectorID}/{secret}), shows that URL to the
// administrator once, and checks incoming requests with CheckWebhookSecret.
func NewWebhookSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating webhook secret: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// CheckWebhookSecret reports whether got, the secret path segment of a request, equals want.
// It runs in constant time (both are hashed first, so neither content nor length leaks) and
// never accepts an empty want.
func CheckWebhookSecret(want, got string) bool {
	if want == "" {
		return false
	}
	w := sha256.Sum256([]byte(want))
	g := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(w[:], g[:]) == 1
}

// WebhookOption configures the handler from NewWebhookHandler.
type WebhookOption func(*webhookHandler)

// WithWake sets a function called after a command result was recorded, so the app can wake its
// job runner instead of waiting for the next poll. commandID is the CommandUUID the connector
// returned from RemoveApp or WipeDevice, which a job waits on: for the answer to the
// ManagedApplicationList that verifies a removal it is the removal's; for a check-out it is the
// log id of the check-out. It must not block.
func WithWake(fn func(connectorID, commandID string)) WebhookOption {
	return func(h *webhookHandler) { h.wake = fn }
}

// WithLogger sets the logger; by default nothing is logged.
func WithLogger(l *slog.Logger) WebhookOption {
	return func(h *webhookHandler) { h.log = l }
}

// WithHMACKey makes the handler require NanoMDM's X-Hmac-Signature header (base64 HMAC-SHA256
// of the body), as sent by nanomdm -webhook-hmac-key with the same key.
func WithHMACKey(key []byte) WebhookOption {
	return func(h *webhookHandler) { h.hmacKey = key }
}

type webhookHandler struct {
	connectorID string
	commands    mdm.CommandLog
	wake        func(connectorID, commandID string)
	log         *slog.Logger
	hmacKey     []byte
}

// NewWebhookHandler returns the handler NanoMDM's -webhook-url points at for connector
// connectorID. It accepts NanoMDM webhook events (POST, JSON) and records, for the commands this
// package issued, the device's answer in commands: Acknowledged → done, Error and
// CommandFormatError → failed with the device's ErrorChain as detail, NotNow → pending. For a
// ManagedApplicationList sent to verify a removal, "done" means the app is no longer installed.
// A CheckOut check-in (MDM profile removed) is recorded too, so that CommandStatus stops waiting
// for that device; an Authenticate or TokenUpdate after it undoes that. Every other event is
// answered 200 and ignored.
//
// The handler does not check the secret in the URL: mount it behind CheckWebhookSecret.
func NewWebhookHandler(connectorID string, commands mdm.CommandLog, opts ...WebhookOption) http.Handler {
	if commands == nil {
		panic("nanomdm: NewWebhookHandler needs a command log")
	}
	h := &webhookHandler{connectorID: connectorID, commands: commands, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(h)
	}
	return h
}

// webhookEvent is the part of NanoMDM's webhook event (service/webhook.EventJson) we read.
type webhookEvent struct {
	Topic            string `json:"topic"`
	EventID          string `json:"event_id"`
	AcknowledgeEvent *struct {
		CommandUUID string `json:"command_uuid"`
		Status      string `json:"status"`
		UDID        string `json:"udid"`
		IDs         *struct {
			ID string `json:"id"`
		} `json:"ids"`
		// RawPayload is the device's command report plist, base64 on the wire.
		RawPayload []byte `json:"raw_payload"`
	} `json:"acknowledge_event"`
	CheckinEvent *struct {
		UDID string `json:"udid"`
		IDs  *struct {
			ID string `json:"id"`
		} `json:"ids"`
	} `json:"checkin_event"`
}

// Webhook topics that change whether an enrollment can still answer.
const (
	topicAuthenticate = "mdm.Authenticate"
	topicTokenUpdate  = "mdm.TokenUpdate"
	topicCheckOut     = "mdm.CheckOut"
)

// commandReport is the part of an Apple MDM command report we read.
type commandReport struct {
	CommandUUID     string             `plist:"CommandUUID"`
	Status          string             `plist:"Status"`
	ErrorChain      []errorChainItem   `plist:"ErrorChain"`
	RejectionReason string             `plist:"RejectionReason"`
	ManagedApps     map[string]appInfo `plist:"ManagedApplicationList"`
}

type errorChainItem struct {
	ErrorCode            int    `plist:"ErrorCode"`
	ErrorDomain          string `plist:"ErrorDomain"`
	LocalizedDescription string `plist:"LocalizedDescription"`
	USEnglishDescription string `plist:"USEnglishDescription"`
}

type appInfo struct {
	Status string `plist:"Status"`
}

func (h *webhookHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, "event too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "reading event failed", http.StatusBadRequest)
		return
	}
	if h.hmacKey != nil && !validHMAC(h.hmacKey, body, r.Header.Get(hmacHeader)) {
		h.log.WarnContext(r.Context(), "nanomdm webhook signature invalid", "connector", h.connectorID)
		http.Error(w, "invalid signature", http.StatusUnauthorized)
		return
	}
	var ev webhookEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		http.Error(w, "not a NanoMDM webhook event", http.StatusBadRequest)
		return
	}
	if ci := ev.CheckinEvent; ci != nil {
		id := ci.UDID
		if ci.IDs != nil && ci.IDs.ID != "" {
			id = ci.IDs.ID // the enrollment id, which is what mdm.Device.ID holds
		}
		h.checkin(w, r, ev.Topic, id)
		return
	}
	ack := ev.AcknowledgeEvent
	if ack == nil || ack.CommandUUID == "" {
		w.WriteHeader(http.StatusOK) // Idle, or neither kind of event
		return
	}
	k, ours := commandKind(ack.CommandUUID)
	if !ours || k == kindCheckOut {
		w.WriteHeader(http.StatusOK) // another tool's command on the same NanoMDM
		return
	}
	enrollmentID := ack.UDID
	if ack.IDs != nil && ack.IDs.ID != "" {
		enrollmentID = ack.IDs.ID
	}
	cmd, ok := interpret(k, resultID(ack.CommandUUID, enrollmentID), ack.Status, ack.RawPayload)
	if !ok || enrollmentID == "" {
		w.WriteHeader(http.StatusOK)
		return
	}
	ctx := r.Context()
	prev, found, err := h.commands.Lookup(ctx, h.connectorID, cmd.ID)
	if err != nil {
		h.log.ErrorContext(ctx, "nanomdm webhook could not read the command log", "connector", h.connectorID, "log_id", cmd.ID, "err", err)
		http.Error(w, "command log unavailable", http.StatusInternalServerError)
		return
	}
	if found && prev.State != mdm.CommandPending && cmd.State == mdm.CommandPending {
		w.WriteHeader(http.StatusOK) // a late NotNow never reopens a finished command
		return
	}
	wakeID := ack.CommandUUID
	if k == kindVerify {
		link, ok, err := h.commands.Lookup(ctx, h.connectorID, verifiesID(ack.CommandUUID))
		if err == nil && ok && link.Detail != "" {
			wakeID = link.Detail // the removal the job waits on
		}
	}
	h.record(w, r, cmd, wakeID, "nanomdm command result recorded", "enrollment_id", enrollmentID, "status", ack.Status)
}

// checkin records that enrollment id checked out, or that it enrolled again after a check-out.
// Enrollments that never checked out leave no trace.
func (h *webhookHandler) checkin(w http.ResponseWriter, r *http.Request, topic, id string) {
	if id == "" || topic != topicCheckOut && topic != topicAuthenticate && topic != topicTokenUpdate {
		w.WriteHeader(http.StatusOK)
		return
	}
	marker := mdm.Command{ID: checkOutID(id)}
	if topic == topicCheckOut {
		marker.State = mdm.CommandDone
		marker.Detail = "checked out of NanoMDM (its MDM profile was removed) before answering"
	} else {
		prev, found, err := h.commands.Lookup(r.Context(), h.connectorID, marker.ID)
		if err != nil {
			h.log.ErrorContext(r.Context(), "nanomdm webhook could not read the command log", "connector", h.connectorID, "enrollment_id", id, "err", err)
			http.Error(w, "command log unavailable", http.StatusInternalServerError)
			return
		}
		if !found || prev.State != mdm.CommandDone {
			w.WriteHeader(http.StatusOK)
			return
		}
		marker.State = mdm.CommandPending
		marker.Detail = "enrolled again after a check-out"
	}
	h.record(w, r, marker, marker.ID, "nanomdm enrollment change recorded", "enrollment_id", id, "topic", topic)
}

// record stores cmd, wakes the app for wakeID and answers NanoMDM.
func (h *webhookHandler) record(w http.ResponseWriter, r *http.Request, cmd mdm.Command, wakeID, msg string, attrs ...any) {
	ctx := r.Context()
	if err := h.commands.Record(ctx, h.connectorID, cmd); err != nil {
		h.log.ErrorContext(ctx, "nanomdm webhook could not record a result", "connector", h.connectorID, "log_id", cmd.ID, "err", err)
		http.Error(w, "command log unavailable", http.StatusInternalServerError)
		return
	}
	h.log.InfoContext(ctx, msg, append([]any{"connector", h.connectorID, "log_id", cmd.ID, "state", cmd.State}, attrs...)...)
	if h.wake != nil {
		h.wake(h.connectorID, wakeID)
	}
	w.WriteHeader(http.StatusOK)
}

func validHMAC(key, body []byte, header string) bool {
	got, err := base64.StdEncoding.DecodeString(header)
	if err != nil || len(got) == 0 {
		return false
	}
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return hmac.Equal(got, m.Sum(nil))
}

// interpret turns a device's command report into the command state to record under id; ok is
// false for reports that change nothing.
func interpret(k kind, id, status string, raw []byte) (cmd mdm.Command, ok bool) {
	var rep commandReport
	parseErr := plist.Unmarshal(raw, &rep)
	if parseErr == nil && rep.Status != "" {
		status = rep.Status // the device's own word; NanoMDM copies it into the event
	}
	cmd.ID = id
	switch status {
	case "Acknowledged":
		if k != kindVerify {
			cmd.State = mdm.CommandDone
			return cmd, true
		}
		if parseErr != nil {
			cmd.State = mdm.CommandFailed
			cmd.Detail = "the ManagedApplicationList answer could not be read: " + parseErr.Error()
			return cmd, true
		}
		if still := installed(rep.ManagedApps); len(still) > 0 {
			cmd.State = mdm.CommandFailed
			cmd.Detail = clip("the device still lists the app as installed: " + strings.Join(still, ", "))
			return cmd, true
		}
		cmd.State = mdm.CommandDone
		return cmd, true
	case "Error":
		cmd.State = mdm.CommandFailed
		cmd.Detail = clip("the device answered Error: " + renderErrorChain(rep))
		return cmd, true
	case "CommandFormatError":
		cmd.State = mdm.CommandFailed
		cmd.Detail = "the device answered CommandFormatError: it could not parse the command"
		return cmd, true
	case "NotNow":
		cmd.State = mdm.CommandPending
		cmd.Detail = "the device answered NotNow (busy or locked); NanoMDM hands the command out again at a later check-in"
		return cmd, true
	default:
		return mdm.Command{}, false
	}
}

// renderErrorChain renders Apple's ErrorChain as "Domain Code: description; ...".
func renderErrorChain(rep commandReport) string {
	var parts []string
	for _, e := range rep.ErrorChain {
		desc := e.USEnglishDescription
		if desc == "" {
			desc = e.LocalizedDescription
		}
		p := strings.TrimSpace(fmt.Sprintf("%s %d", e.ErrorDomain, e.ErrorCode))
		if desc != "" {
			p += ": " + desc
		}
		parts = append(parts, p)
	}
	if rep.RejectionReason != "" {
		parts = append(parts, "RejectionReason: "+rep.RejectionReason)
	}
	if len(parts) == 0 {
		return "no ErrorChain given"
	}
	return strings.Join(parts, "; ")
}

// notInstalled are the ManagedApplicationList statuses in which the app is not on the device.
// Any other status, including ones Apple adds later, counts as installed: a removal is only
// confirmed by positive evidence.
var notInstalled = map[string]bool{
	"ManagedButUninstalled": true,
	"NeedsRedemption":       true,
	"Redeeming":             true,
	"Prompting":             true,
	"PromptingForLogin":     true,
	"ValidatingPurchase":    true,
	"Queued":                true,
	"Installing":            true,
	"UserRejected":          true,
	"ManagementRejected":    true,
	"Failed":                true,
}

// installed lists the apps of a ManagedApplicationList answer that are still on the device.
// The verification asks for the messenger's bundle id alone, so any entry is about it.
func installed(apps map[string]appInfo) []string {
	var out []string
	for id, a := range apps {
		if !notInstalled[a.Status] {
			out = append(out, fmt.Sprintf("%s (%s)", id, a.Status))
		}
	}
	sort.Strings(out)
	return out
}

func clip(s string) string {
	if len(s) <= maxDetail {
		return s
	}
	cut := maxDetail
	for cut > 0 && s[cut]&0xc0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}
