package security

import (
	"context"
	"errors"
	"net/netip"
	"time"
)

// Offline works on security.json and the firewall directly, for the CLI when no agent runs. The
// agent restores from the same file at its next start.
type Offline struct {
	StatePath string
	Options   Options
	// Backend is the firewall, or nil when it cannot be reached (the file is still updated).
	Backend Backend
	Now     func() time.Time
}

func (o Offline) load() (*Policy, *State, error) {
	st, err := LoadState(o.StatePath)
	if err != nil {
		return nil, nil, err
	}
	bans, history, allow, deny, _ := st.Decode()
	p := NewPolicy(o.Options, nil)
	p.SetAccessLists(allow, deny)
	p.Restore(bans, history, o.now())
	return p, st, nil
}

func (o Offline) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// List returns the bans in the file that have not expired.
func (o Offline) List() ([]BanView, error) {
	p, _, err := o.load()
	if err != nil {
		return nil, err
	}
	now := o.now()
	var out []BanView
	for _, b := range p.Bans(now) {
		out = append(out, ViewOf(b, now))
	}
	return out, nil
}

// Ban records a ban in the file and, when the firewall is reachable, adds it there. The returned
// error is the firewall's; the file is saved either way.
func (o Offline) Ban(ctx context.Context, pr netip.Prefix, ttl time.Duration, reason string) (BanView, error) {
	p, _, err := o.load()
	if err != nil {
		return BanView{}, err
	}
	if ttl == 0 {
		ttl = o.Options.BannedTimeout
	}
	now := o.now()
	b, err := p.Ban(pr, ttl, reason, now)
	if err != nil {
		return BanView{}, err
	}
	if err := SaveState(o.StatePath, Snapshot(p, now)); err != nil {
		return BanView{}, err
	}
	if o.Backend != nil {
		if err := o.Backend.Ban(ctx, b.Prefix, b.Remaining(now)); err != nil {
			return ViewOf(b, now), err
		}
	}
	return ViewOf(b, now), nil
}

// Unban removes a ban from the file and the firewall; found is false when the file did not hold it
// (the firewall entry is removed anyway).
func (o Offline) Unban(ctx context.Context, pr netip.Prefix) (found bool, err error) {
	p, _, err := o.load()
	if err != nil {
		return false, err
	}
	now := o.now()
	b, found := p.Unban(pr)
	if found {
		if err := SaveState(o.StatePath, Snapshot(p, now)); err != nil {
			return found, err
		}
	}
	key := b.Prefix
	if !found {
		key = pr
		if pr.IsSingleIP() {
			key = p.Key(pr.Addr())
		}
	}
	if o.Backend != nil {
		if err := o.Backend.Unban(ctx, key); err != nil && !errors.Is(err, ErrNoTable) {
			return found, err
		}
	}
	return found, nil
}
