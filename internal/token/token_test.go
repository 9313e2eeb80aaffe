package token

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func mustNew(t *testing.T, scope Scope) (string, Record) {
	t.Helper()
	tok, rec, err := New(scope, now)
	if err != nil {
		t.Fatal(err)
	}
	return tok, rec
}

func TestNew(t *testing.T) {
	t.Run("each scope gets its own recognisable prefix", func(t *testing.T) {
		for scope, prefix := range map[Scope]string{ScopeSCIM: "obs_", ScopeMessenger: "obm_", ScopeAdmin: "oba_"} {
			tok, rec := mustNew(t, scope)
			if !strings.HasPrefix(tok, prefix) || len(tok) != Len {
				t.Errorf("%s: got %d chars, prefix %q", scope, len(tok), tok[:4])
			}
			if rec.Scope != scope || rec.CreatedAt != now || len(rec.Hash) != 64 {
				t.Errorf("%s: bad record %+v", scope, rec)
			}
		}
	})
	t.Run("the record holds the id but not the secret", func(t *testing.T) {
		tok, rec := mustNew(t, ScopeSCIM)
		_, id, secret, err := Parse(tok)
		if err != nil {
			t.Fatal(err)
		}
		if id != rec.ID {
			t.Errorf("id %q, record %q", id, rec.ID)
		}
		if strings.Contains(rec.Hash, secret) || rec.Hash == secret {
			t.Error("record contains the secret")
		}
	})
	t.Run("secrets carry at least 256 bits", func(t *testing.T) {
		if secretBytes*8 < 256 {
			t.Fatalf("secret has %d bits", secretBytes*8)
		}
	})
	t.Run("two tokens never share id or secret", func(t *testing.T) {
		seen := map[string]bool{}
		for range 1000 {
			tok, _ := mustNew(t, ScopeSCIM)
			_, id, secret, _ := Parse(tok)
			if seen[id] || seen[secret] {
				t.Fatal("repeated id or secret")
			}
			seen[id], seen[secret] = true, true
		}
	})
	t.Run("an unknown scope is an error, not a token", func(t *testing.T) {
		if _, _, err := New("root", now); !errors.Is(err, ErrUnknownScope) {
			t.Fatalf("got %v", err)
		}
		if _, err := ParseScope("Scim"); !errors.Is(err, ErrUnknownScope) {
			t.Fatalf("got %v", err)
		}
		if s, err := ParseScope("messenger"); err != nil || s != ScopeMessenger {
			t.Fatalf("got %v %v", s, err)
		}
	})
}

func TestParse(t *testing.T) {
	tok, _ := mustNew(t, ScopeMessenger)
	t.Run("a generated token parses back", func(t *testing.T) {
		scope, _, _, err := Parse(tok)
		if err != nil || scope != ScopeMessenger {
			t.Fatalf("got %v %v", scope, err)
		}
	})
	bad := map[string]string{
		"empty":              "",
		"unknown prefix":     "obx_" + tok[4:],
		"upper-case prefix":  "OBM_" + tok[4:],
		"upper-case secret":  tok[:30] + strings.ToUpper(tok[30:]),
		"one char short":     tok[:Len-1],
		"one char long":      tok + "a",
		"trailing newline":   tok[:Len-1] + "\n",
		"missing separator":  tok[:20] + "a" + tok[21:],
		"base32 padding":     tok[:Len-1] + "=",
		"digit outside 2-7":  tok[:Len-1] + "8",
		"bearer prefix kept": ("Bearer " + tok)[:Len],
		"non-ASCII":          tok[:Len-2] + "é",
		"NUL byte":           tok[:Len-1] + "\x00",
	}
	for name, in := range bad {
		t.Run("rejects "+name, func(t *testing.T) {
			if _, _, _, err := Parse(in); !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v", err)
			}
		})
	}
	t.Run("the error never echoes the token", func(t *testing.T) {
		_, _, _, err := Parse(tok + "x")
		if strings.Contains(err.Error(), tok[5:20]) {
			t.Fatal("error leaks input")
		}
	})
}

func TestCheck(t *testing.T) {
	tok, rec := mustNew(t, ScopeSCIM)
	_, _, secret, _ := Parse(tok)
	t.Run("the right token for the right scope passes", func(t *testing.T) {
		if err := Check(rec, tok, ScopeSCIM); err != nil {
			t.Fatal(err)
		}
		if !Verify(rec, secret) {
			t.Fatal("Verify false")
		}
	})
	t.Run("a token of another scope is rejected", func(t *testing.T) {
		if err := Check(rec, tok, ScopeAdmin); !errors.Is(err, ErrInvalid) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("a re-prefixed token is rejected even for the re-prefixed scope", func(t *testing.T) {
		if err := Check(rec, "oba_"+tok[4:], ScopeAdmin); !errors.Is(err, ErrInvalid) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("a wrong secret is rejected", func(t *testing.T) {
		other, _ := mustNew(t, ScopeSCIM)
		forged := tok[:prefixLen+idLen+1] + other[prefixLen+idLen+1:]
		if err := Check(rec, forged, ScopeSCIM); !errors.Is(err, ErrInvalid) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("the secret of one record does not open another", func(t *testing.T) {
		_, rec2 := mustNew(t, ScopeSCIM)
		if err := Check(rec2, tok, ScopeSCIM); !errors.Is(err, ErrInvalid) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("a record with a broken hash never matches", func(t *testing.T) {
		for _, h := range []string{"", "zz", rec.Hash[:62]} {
			r := rec
			r.Hash = h
			if Verify(r, secret) {
				t.Fatalf("hash %q matched", h)
			}
		}
	})
	t.Run("a malformed token reports malformed", func(t *testing.T) {
		if err := Check(rec, "nope", ScopeSCIM); !errors.Is(err, ErrMalformed) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestEqual(t *testing.T) {
	t.Run("equal static secrets match and others do not", func(t *testing.T) {
		if !Equal("s3cret-admin", "s3cret-admin") || Equal("s3cret-admin", "s3cret-admiN") || Equal("a", "ab") {
			t.Fatal("wrong result")
		}
	})
	t.Run("an unset configured secret matches nothing", func(t *testing.T) {
		if Equal("", "") {
			t.Fatal("empty matched")
		}
	})
}

func TestRecordLogValue(t *testing.T) {
	t.Run("logging a record shows id and scope but not the hash", func(t *testing.T) {
		_, rec := mustNew(t, ScopeSCIM)
		var buf bytes.Buffer
		slog.New(slog.NewTextHandler(&buf, nil)).Info("token created", "token", rec)
		out := buf.String()
		if !strings.Contains(out, rec.ID) || strings.Contains(out, rec.Hash) {
			t.Fatalf("log: %s", out)
		}
	})
}
