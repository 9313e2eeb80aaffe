package ratelimit

import (
	"time"

	"github.com/offboard/offboard/internal/testclock"
)

func newClock() *testclock.Clock { return testclock.New(time.Date(2025, 6, 1, 9, 0, 0, 0, time.UTC)) }
