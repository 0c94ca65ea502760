package initcmd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/odoopbx/odoopbx/internal/ami"
	"github.com/odoopbx/odoopbx/internal/odoo"
)

// AMILogin is the real AMILoginFunc: one ami.Client session with events off, watched until it is
// connected (Asterisk accepted the login) or refused, then stopped (which logs off).
func AMILogin(ctx context.Context, addr, user, secret string) error {
	ctx, cancel := context.WithCancel(ctx)
	client := ami.NewClient(ami.ClientConfig{
		Address:       addr,
		Username:      user,
		Secret:        secret,
		Events:        "off",
		SingleSession: true,
	})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = client.Run(ctx)
	}()
	// Stop the client and wait for it, so its Logoff is sent before init moves on.
	defer func() {
		cancel()
		wg.Wait()
	}()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	sawConnecting := false
	for {
		switch client.State() {
		case ami.StateConnected:
			return nil
		case ami.StateAuthFailed:
			return errors.New("Asterisk refused the login (wrong secret, unknown user, or the address is not permitted)")
		case ami.StateConnecting:
			sawConnecting = true
		}
		select {
		case <-ctx.Done():
			if sawConnecting {
				return fmt.Errorf("no successful login to %s before the deadline: is AMI listening there?", addr)
			}
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// JSONRPCClient is the real OdooClientFunc: odoo.NewJSONRPC, logged in at once so a refused
// password is reported as such.
func JSONRPCClient(ctx context.Context, conn OdooConn) (odoo.Client, error) {
	c, err := odoo.NewJSONRPC(odoo.Options{
		URL:                conn.URL,
		DB:                 conn.DB,
		User:               conn.User,
		Password:           conn.Password,
		CAFile:             conn.CAFile,
		InsecureSkipVerify: conn.InsecureSkipVerify,
	})
	if err != nil {
		return nil, err
	}
	if err := c.Login(ctx); err != nil {
		return nil, fmt.Errorf("logging in to Odoo as %s: %w", conn.User, err)
	}
	return c, nil
}
