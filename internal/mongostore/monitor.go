package mongostore

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"go.mongodb.org/mongo-driver/v2/event"
)

// CommandCounter counts the database round trips a client makes, by command and collection
// ("find employees", "update tenants"). It is a prometheus.Collector
// (offboard_db_commands_total) and gives the benchmarks their round-trip counts.
type CommandCounter struct {
	mu     sync.Mutex
	counts map[[2]string]*atomic.Int64
	desc   *prometheus.Desc
}

// NewCommandCounter returns an empty CommandCounter.
func NewCommandCounter() *CommandCounter {
	return &CommandCounter{
		counts: map[[2]string]*atomic.Int64{},
		desc: prometheus.NewDesc("offboard_db_commands_total",
			"Database commands (round trips) sent, by command and collection.", []string{"command", "collection"}, nil),
	}
}

// Monitor returns the driver command monitor that feeds the counter.
func (c *CommandCounter) Monitor() *event.CommandMonitor {
	return &event.CommandMonitor{Started: func(_ context.Context, e *event.CommandStartedEvent) {
		coll, _ := e.Command.Lookup(e.CommandName).StringValueOK()
		c.counter(e.CommandName, coll).Add(1)
	}}
}

func (c *CommandCounter) counter(cmd, coll string) *atomic.Int64 {
	k := [2]string{cmd, coll}
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.counts[k]
	if !ok {
		n = &atomic.Int64{}
		c.counts[k] = n
	}
	return n
}

// Snapshot returns the counts so far, keyed "command collection".
func (c *CommandCounter) Snapshot() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int64, len(c.counts))
	for k, n := range c.counts {
		key := k[0]
		if k[1] != "" {
			key += " " + k[1]
		}
		out[key] = n.Load()
	}
	return out
}

// Total is the number of commands counted so far.
func (c *CommandCounter) Total() int64 {
	var t int64
	for _, n := range c.Snapshot() {
		t += n
	}
	return t
}

// Describe implements prometheus.Collector.
func (c *CommandCounter) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *CommandCounter) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	keys := make([][2]string, 0, len(c.counts))
	for k := range c.counts {
		keys = append(keys, k)
	}
	c.mu.Unlock()
	sort.Slice(keys, func(i, j int) bool { return keys[i][0]+keys[i][1] < keys[j][0]+keys[j][1] })
	for _, k := range keys {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(c.counter(k[0], k[1]).Load()), k[0], k[1])
	}
}
