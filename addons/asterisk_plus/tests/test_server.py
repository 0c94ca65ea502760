import base64

from odoo.exceptions import AccessError, ValidationError
from odoo.tests import tagged

from .common import AsteriskCase


@tagged("post_install", "-at_install")
class TestServerAndSecurity(AsteriskCase):

    def test_new_server_gets_agent_user_and_defaults(self):
        server = self.env["asterisk_plus.server"].create({"name": "Branch"})
        self.assertEqual(server.user.groups_id, self.env.ref("asterisk_plus.group_asterisk_server"))
        self.assertTrue(server.user.share, "the agent user is not an internal user")
        self.assertEqual(len(server.sudo().security_token), 64)
        self.assertNotEqual(server.sudo().security_token, self.server.sudo().security_token)
        options = {o.key: o.value for o in server.agent_options}
        self.assertEqual(options["fagi_listen"], "127.0.0.1")
        self.assertEqual(options["security_maxretry"], "5")
        self.assertEqual(server.agent_tls_mode, "fingerprint")

    def test_admin_only_buttons(self):
        Server = self.server.with_user(self.alice)
        for method in ("ping_agent", "reload_config", "allow_agent_initialization", "reset_agent",
                       "regenerate_security_token"):
            with self.assertRaises(AccessError, msg=method):
                getattr(Server, method)()
        with self.assertRaises(AccessError):
            self.server.with_user(self.alice).sudo(False).read(["agent_token"])

    def test_agent_sees_only_its_server(self):
        other = self.env["asterisk_plus.server"].create({"name": "Other"})
        visible = self.env["asterisk_plus.server"].with_user(self.agent).search([])
        self.assertEqual(visible, self.server)
        with self.assertRaises(AccessError):
            self.env["asterisk_plus.server"].with_user(other.user).browse(self.server.id).read(["name"])

    def test_agent_config_includes_access_lists(self):
        self.env["asterisk_plus.access_list"].create([
            {"server": self.server.id, "address": "192.0.2.0/24", "access_type": "allow", "comment": "office"},
            {"server": self.server.id, "address": "2001:db8::5", "access_type": "deny"},
            {"server": self.server.id, "address": "198.51.100.7", "access_type": "deny", "is_enabled": False},
        ])
        config = self.env["asterisk_plus.server"].with_user(self.agent).agent_get_config()
        self.assertEqual(config["access_lists"], [
            {"address": "192.0.2.0/24", "access_type": "allow", "comment": "office"},
            {"address": "2001:db8::5/128", "access_type": "deny", "comment": ""},
        ])
        with self.assertRaises(ValidationError):
            self.env["asterisk_plus.access_list"].create({"server": self.server.id, "address": "300.1.1.1"})
        with self.assertRaises(AccessError):
            self.env["asterisk_plus.server"].with_user(self.alice).agent_get_config()

    def test_agent_ban_update(self):
        Ban = self.env["asterisk_plus.access_ban"].with_user(self.agent)
        result = Ban.agent_ban_update([
            {"address": "203.0.113.9", "action": "ban", "reason": "PJSIP ChallengeResponseFailed 101",
             "expires_at": "2026-11-25T20:00:00Z", "service": "PJSIP", "account_id": "101"},
            {"address": "2001:db8::66", "action": "ban", "reason": "AMI InvalidPassword", "expires_at": 1795630000},
        ])
        self.assertEqual(result, {"updated": 2})
        bans = self.env["asterisk_plus.access_ban"].search([("server", "=", self.server.id)])
        self.assertEqual(set(bans.mapped("address")), {"203.0.113.9", "2001:db8::66"})
        ban = bans.filtered(lambda b: b.address == "203.0.113.9")
        self.assertEqual(str(ban.expires_at), "2026-11-25 20:00:00")
        self.assertEqual(ban.account_id, "101")
        # A repeated push updates the row; unban and expiry remove it.
        Ban.agent_ban_update([{"address": "203.0.113.9", "action": "ban", "reason": "again", "offences": 2}])
        self.assertEqual(ban.offences, 2)
        Ban.agent_ban_update([{"address": "203.0.113.9", "action": "unban"}, {"address": "2001:db8::66", "action": "expire"}])
        self.assertFalse(self.env["asterisk_plus.access_ban"].search([("server", "=", self.server.id)]))
        with self.assertRaises(AccessError):
            self.env["asterisk_plus.access_ban"].with_user(self.alice).agent_ban_update([{"address": "203.0.113.9"}])

    def test_notify_permissions(self):
        Settings = self.env["asterisk_plus.settings"]
        self.assertTrue(Settings.with_user(self.agent).asterisk_plus_notify(
            "test.ping: OK", title="PBX", notify_uid=self.bob.id, warning=False))
        [payload] = self.bus_messages(self.bob, "asterisk_plus_notify")
        self.assertEqual(payload["message"], "test.ping: OK")
        self.assertTrue(Settings.with_user(self.alice).asterisk_plus_notify("to myself"))
        with self.assertRaises(AccessError):
            Settings.with_user(self.alice).asterisk_plus_notify("spoof", notify_uid=self.bob.id)

    def test_upload_recording_callback(self):
        recording = self.env["asterisk_plus.recording"].create({
            "server": self.server.id, "uniqueid": "1.1", "file_path": "/var/spool/asterisk/monitor/a.wav",
            "recording_filename": "a.wav",
        })
        data = base64.b64encode(b"RIFF....WAVEfmt ").decode()
        Recording = self.env["asterisk_plus.recording"].with_user(self.agent)
        self.assertTrue(Recording.upload_recording({"file_name": "a.mp3", "file_data": data}, recording_id=recording.id))
        self.assertEqual(recording.state, "stored")
        self.assertEqual(recording.recording_filename, "a.mp3")
        self.assertEqual(recording.recording_attachment, data.encode())
        self.assertTrue(Recording.upload_recording({"file_name": "a.mp3", "file_data": data}, recording_id=recording.id),
                        "a repeated callback is harmless")
        other = self.env["asterisk_plus.server"].create({"name": "Other"})
        self.assertFalse(self.env["asterisk_plus.recording"].with_user(other.user).upload_recording(
            {"file_data": data}, recording_id=recording.id), "another server's agent cannot fill it")
        failed = recording.copy({"uniqueid": "1.2", "state": "pending"})
        Recording.upload_recording({"error": "not found", "error_code": "not_found"}, recording_id=failed.id)
        self.assertEqual(failed.state, "error")

    def test_events_map_rules(self):
        Event = self.env["asterisk_plus.event"]
        with self.assertRaises(ValidationError):
            Event.create({"name": "Newchannel", "model": "asterisk_plus.channel", "method": "_private"})
        with self.assertRaises(ValidationError):
            Event.create({"name": "Newchannel", "model": "asterisk_plus.channel", "method": "x", "condition": "os.system('x')"})
        with self.assertRaises(ValidationError):
            Event.create({"name": "Newchannel", "model": "asterisk_plus.channel", "method": "x", "condition": "event['A'] is None"})
        with self.assertRaises(ValidationError):
            Event.create({"name": "Newchannel", "model": "asterisk_plus.channel", "method": "x", "delay": -1})
        ok = Event.create({"name": "UserEvent", "model": "asterisk_plus.call", "method": "on_user_event_set_transfer",
                           "condition": "event.get('UserEvent') == 'X' and int(event['Cause']) == 16"})
        self.assertTrue(ok)
        # Rows marked update=no survive module upgrades.
        row = self.env.ref("asterisk_plus.hangup")
        row.write({"update": "no", "condition": "True"})
        row.with_context(install_mode=True).write({"condition": "not event['Channel'].startswith('Local/')"})
        self.assertEqual(row.condition, "True")
        self.assertTrue(all(r.delay == 0 for r in Event.search([])), "the default map has no delays")

    def test_users_edit_only_their_preferences(self):
        pbx_alice = self.make_pbx_user(self.alice, "101", ["PJSIP/101"])
        pbx_bob = self.make_pbx_user(self.bob, "100", ["PJSIP/100"])
        mine = pbx_alice.with_user(self.alice)
        mine.write({"call_popup_is_sticky": True, "open_reference": True})
        self.assertTrue(pbx_alice.call_popup_is_sticky)
        with self.assertRaises(AccessError):
            mine.write({"exten": "100"})
        with self.assertRaises(AccessError):
            pbx_bob.with_user(self.alice).write({"missed_calls_notify": False})
        self.assertEqual(self.env["asterisk_plus.user"].with_user(self.alice).search([]), pbx_alice)
        self.alice.groups_id = [(4, self.env.ref("asterisk_plus.group_asterisk_supervisor").id)]
        pbx_bob.with_user(self.alice).write({"dial_timeout": 40})
        self.assertEqual(pbx_bob.dial_timeout, 40)
