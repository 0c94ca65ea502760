from datetime import timedelta

from odoo import fields
from odoo.exceptions import AccessError
from odoo.tests import HttpCase, tagged

from .common import AsteriskCase


@tagged("post_install", "-at_install")
class TestConsoleTokens(AsteriskCase):

    def test_token_is_one_time_and_bound_to_the_server(self):
        Server = self.env["asterisk_plus.server"]
        admin = self.env.ref("base.user_admin")
        self.server = self.server.with_user(admin)
        token = self.server.console_new_token()
        stored = self.env["asterisk_plus.console_token"].sudo().search([])
        self.assertNotIn(token, stored.mapped("token_hash"), "only the hash is stored")
        other = Server.create({"name": "Other"})
        self.assertEqual(Server.with_user(other.user).console_validate_token(token), {"ok": False, "error": "invalid"},
                         "another server's agent cannot use it (and burns it)")
        token = self.server.console_new_token()
        result = Server.with_user(self.agent).console_validate_token(token, {"remote_addr": "192.0.2.7"})
        self.assertEqual(result, {"ok": True, "user_id": admin.id, "login": admin.login})
        self.assertEqual(Server.with_user(self.agent).console_validate_token(token)["ok"], False, "one use")
        audit = self.env["asterisk_plus.console_audit"].search([("server", "=", self.server.id)])
        self.assertEqual(audit.remote_addr, "192.0.2.7")
        # Expired tokens are refused.
        token = self.server.console_new_token()
        self.env["asterisk_plus.console_token"].sudo().search([]).expires = fields.Datetime.now() - timedelta(seconds=1)
        self.assertFalse(Server.with_user(self.agent).console_validate_token(token)["ok"])
        with self.assertRaises(AccessError):
            Server.with_user(self.alice).console_validate_token("x")
        with self.assertRaises(AccessError):
            self.server.with_user(self.alice).console_new_token()

    def test_audit_lines(self):
        Server = self.env["asterisk_plus.server"].with_user(self.agent)
        Server.console_audit([{"session": "s1", "login": "admin", "remote_addr": "192.0.2.7",
                               "started": "2026-11-25T19:00:00Z"}])
        Server.console_audit([{"session": "s1", "line": "core show channels"},
                              {"session": "s1", "line": "!sh", "rejected": True},
                              {"session": "s1", "ended": 1795633300}])
        audit = self.env["asterisk_plus.console_audit"].search([("session", "=", "s1")])
        self.assertEqual(audit.lines, "core show channels\n[rejected] !sh")
        self.assertEqual(audit.user, self.env.ref("base.user_admin"))
        self.assertEqual(str(audit.started), "2026-11-25 19:00:00")
        self.assertTrue(audit.ended)


@tagged("post_install", "-at_install")
class TestConsolePage(HttpCase):

    def test_page_needs_admin_and_carries_token_in_body(self):
        server = self.env["asterisk_plus.server"].create({"name": "PBX", "agent_url": "https://pbx.example.com:48000"})
        self.authenticate("admin", "admin")
        response = self.url_open("/asterisk_plus/console/%d" % server.id)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.headers["Cache-Control"], "no-store")
        self.assertIn('data-url="wss://pbx.example.com:48001/console"', response.text)
        self.assertEqual(len(self.env["asterisk_plus.console_token"].search([("server", "=", server.id)])), 1)
