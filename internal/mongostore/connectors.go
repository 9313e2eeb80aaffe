package mongostore

import (
	"context"
	"errors"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/offboard/offboard/identity"
	"github.com/offboard/offboard/mdm"
)

// CreateConnector stores a connector; a name already used in the tenant is ErrConflict.
func (s *Store) CreateConnector(ctx context.Context, c *identity.Connector) error {
	_, err := s.c(colConnectors).InsertOne(ctx, c)
	return wrap("create connector", err)
}

// GetConnector reads a tenant's connector by id or name.
func (s *Store) GetConnector(ctx context.Context, tenant, idOrName string) (*identity.Connector, error) {
	var c identity.Connector
	err := s.c(colConnectors).FindOne(ctx, bson.D{{Key: "_id", Value: idOrName}}).Decode(&c)
	if err == nil && c.Tenant == tenant {
		return &c, nil
	}
	if err != nil && !errors.Is(err, mongo.ErrNoDocuments) {
		return nil, wrap("get connector", err)
	}
	err = s.c(colConnectors).FindOne(ctx, bson.D{{Key: "tenant", Value: tenant}, {Key: "name", Value: idOrName}}).Decode(&c)
	if err != nil {
		return nil, wrap("get connector", err)
	}
	return &c, nil
}

// LoadConnector reads a connector by id whatever its tenant (inbound webhooks).
func (s *Store) LoadConnector(ctx context.Context, id string) (*identity.Connector, error) {
	var c identity.Connector
	if err := s.c(colConnectors).FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&c); err != nil {
		return nil, wrap("load connector", err)
	}
	return &c, nil
}

// ListConnectors returns a tenant's connectors, oldest first.
func (s *Store) ListConnectors(ctx context.Context, tenant string) ([]*identity.Connector, error) {
	cur, err := s.c(colConnectors).Find(ctx, bson.D{{Key: "tenant", Value: tenant}}, options.Find().SetSort(bson.D{{Key: "created", Value: 1}, {Key: "_id", Value: 1}}))
	if err != nil {
		return nil, wrap("list connectors", err)
	}
	var out []*identity.Connector
	if err := cur.All(ctx, &out); err != nil {
		return nil, wrap("list connectors", err)
	}
	return out, nil
}

// AllConnectors returns every connector of every tenant (key rotation).
func (s *Store) AllConnectors(ctx context.Context) ([]*identity.Connector, error) {
	cur, err := s.c(colConnectors).Find(ctx, bson.D{})
	if err != nil {
		return nil, wrap("list connectors", err)
	}
	var out []*identity.Connector
	if err := cur.All(ctx, &out); err != nil {
		return nil, wrap("list connectors", err)
	}
	return out, nil
}

// ReplaceSealed swaps a connector's sealed secrets (key rotation) if it is unchanged since read.
func (s *Store) ReplaceSealed(ctx context.Context, c *identity.Connector, sealed, hook string) error {
	res, err := s.c(colConnectors).UpdateOne(ctx, bson.D{{Key: "_id", Value: c.ID}, {Key: "rev", Value: c.Rev}},
		bson.D{{Key: "$set", Value: bson.D{{Key: "sealed", Value: sealed}, {Key: "hookSecret", Value: hook}, {Key: "rev", Value: c.Rev + 1}}}})
	if err != nil {
		return wrap("rewrap connector", err)
	}
	if res.MatchedCount == 0 {
		return fmt.Errorf("rewrap connector: %w", identity.ErrRetry)
	}
	return nil
}

// DeleteConnector removes a tenant's connector.
func (s *Store) DeleteConnector(ctx context.Context, tenant, id string) error {
	res, err := s.c(colConnectors).DeleteOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "tenant", Value: tenant}})
	if err != nil {
		return wrap("delete connector", err)
	}
	if res.DeletedCount == 0 {
		return fmt.Errorf("delete connector: %w", identity.ErrNotFound)
	}
	return nil
}

// SetConnectorHealth records the last health check.
func (s *Store) SetConnectorHealth(ctx context.Context, id string, h identity.ConnectorHealth) error {
	_, err := s.c(colConnectors).UpdateOne(ctx, bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: bson.D{{Key: "health", Value: h}}}})
	return wrap("set connector health", err)
}

// commandDoc is one vendor command outcome reported asynchronously.
type commandDoc struct {
	ID        string      `bson:"_id"`
	Connector string      `bson:"connector"`
	Cmd       mdm.Command `bson:"cmd"`
}

// CommandLog returns the MongoDB-backed mdm.CommandLog.
func (s *Store) CommandLog() mdm.CommandLog { return commandLog{s} }

type commandLog struct{ s *Store }

func (l commandLog) Record(ctx context.Context, connectorID string, cmd mdm.Command) error {
	_, err := l.s.c(colCommands).ReplaceOne(ctx, bson.D{{Key: "_id", Value: connectorID + "|" + cmd.ID}},
		commandDoc{ID: connectorID + "|" + cmd.ID, Connector: connectorID, Cmd: cmd}, options.Replace().SetUpsert(true))
	return wrap("record command", err)
}

func (l commandLog) Lookup(ctx context.Context, connectorID, commandID string) (mdm.Command, bool, error) {
	var d commandDoc
	err := l.s.c(colCommands).FindOne(ctx, bson.D{{Key: "_id", Value: connectorID + "|" + commandID}}).Decode(&d)
	if errors.Is(err, mongo.ErrNoDocuments) {
		return mdm.Command{}, false, nil
	}
	if err != nil {
		return mdm.Command{}, false, wrap("lookup command", err)
	}
	return d.Cmd, true, nil
}

type commandRef struct {
	ID       string `bson:"_id"`
	Tenant   string `bson:"tenant"`
	Employee string `bson:"employee"`
}

// PutCommandRef records which employee waits on a vendor command.
func (s *Store) PutCommandRef(ctx context.Context, connector, command, tenant, employee string) error {
	id := "ref|" + connector + "|" + command
	_, err := s.c(colCommands).ReplaceOne(ctx, bson.D{{Key: "_id", Value: id}}, commandRef{ID: id, Tenant: tenant, Employee: employee}, options.Replace().SetUpsert(true))
	return wrap("put command ref", err)
}

// GetCommandRef returns the employee waiting on a vendor command.
func (s *Store) GetCommandRef(ctx context.Context, connector, command string) (string, string, error) {
	var r commandRef
	if err := s.c(colCommands).FindOne(ctx, bson.D{{Key: "_id", Value: "ref|" + connector + "|" + command}}).Decode(&r); err != nil {
		return "", "", wrap("get command ref", err)
	}
	return r.Tenant, r.Employee, nil
}
