import json
from datetime import timedelta
from urllib.parse import urlencode

from odoo import fields
from odoo.tests import HttpCase, get_db_name, tagged

from ..controllers import main as controllers

CERT = "0123456789abcdef" * 4


@tagged("post_install", "-at_install")
class TestAgentHandshake(HttpCase):

    def setUp(self):
        super().setUp()
        controllers._attempts.clear()
        self.server = self.env["asterisk_plus.server"].with_context(tracking_disable=True).create({"name": "PBX 1"})
        self.authenticate(None, None)  # a session bound to the test database

    def handshake(self, **params):
        params.setdefault("db", get_db_name())
        params.setdefault("server_id", self.server.id)
        response = self.url_open("/asterisk_plus/agent?" + urlencode(params))
        return response, response.json()

    def test_one_time_handshake(self):
        response, body = self.handshake()
        self.assertEqual(response.status_code, 403)
        self.assertEqual(body, {"error": "not_permitted"})

        self.server.allow_agent_initialization()
        response, body = self.handshake(agent_url="https://pbx.example.com:48000", cert_sha256=CERT,
                                        system_name="pbx1", version="1.2.3")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.headers["Cache-Control"], "no-store")
        self.assertEqual(set(body), {"agent_token", "odoo_user", "odoo_password", "odoo_db", "server_id"})
        self.assertEqual(body["odoo_user"], self.server.user.login)
        self.assertEqual(body["odoo_db"], get_db_name())
        self.assertEqual(body["server_id"], self.server.id)
        self.assertEqual(len(body["agent_token"]), 64)
        self.server.invalidate_recordset()
        self.assertTrue(self.server.agent_initialized)
        self.assertFalse(self.server.permit_agent_initialization)
        self.assertEqual(self.server.agent_token, body["agent_token"])
        self.assertEqual(self.server.agent_url, "https://pbx.example.com:48000")
        self.assertEqual(self.server.agent_cert_sha256, CERT)
        self.assertEqual(self.server.agent_tls_mode, "fingerprint")
        self.assertEqual(self.server.agent_version, "1.2.3")
        self.assertTrue(self.server.message_ids.filtered(lambda m: "127.0.0.1" in (m.body or "")))

        # The credentials work, and the agent user reaches its own config only.
        uid = self.registry["res.users"].authenticate(get_db_name(), body["odoo_user"], body["odoo_password"],
                                                      {"interactive": False})
        self.assertEqual(uid, self.server.user.id)
        config = self.env["asterisk_plus.server"].with_user(uid).agent_get_config()
        self.assertEqual(config["api_version"], 1)
        self.assertEqual(config["server_id"], self.server.id)
        self.assertEqual(config["notify_method"], "asterisk_plus_notify")
        names = {row["name"] for row in config["events_map"]}
        self.assertTrue({"Newchannel", "Newstate", "Hangup", "OriginateResponse", "AgentChannelsSnapshot"} <= names)
        self.assertTrue(all(row["delay"] == 0 for row in config["events_map"]), "the default map has no delays")
        self.assertNotIn("update_recording_filename", [r["method"] for r in config["events_map"]],
                         "the MixMonitor row follows record_calls (off)")
        self.assertEqual(config["options"]["fagi_port"], "44574")
        self.assertNotIn(body["agent_token"], json.dumps(config), "the agent token is never sent back to the agent")

        # One-time.
        response, body2 = self.handshake()
        self.assertEqual(response.status_code, 403)
        self.assertEqual(body2, {"error": "already_initialized"})

        # Reset invalidates the token and reopens the window.
        self.server.reset_agent()
        self.assertFalse(self.server.sudo().agent_token)
        response, body3 = self.handshake()
        self.assertEqual(response.status_code, 200)
        self.assertNotEqual(body3["agent_token"], body["agent_token"])

    def test_window_expires(self):
        self.server.write({"permit_agent_initialization": True,
                           "permit_agent_initialization_until": fields.Datetime.now() - timedelta(minutes=1)})
        response, body = self.handshake()
        self.assertEqual(response.status_code, 403)
        self.assertEqual(body, {"error": "not_permitted"})
        self.assertFalse(self.server.agent_initialized)

    def test_unknown_server_and_db(self):
        response, body = self.handshake(server_id=999999)
        self.assertEqual(response.status_code, 404)
        response, body = self.handshake(db="no_such_db_asterisk")
        self.assertEqual(response.status_code, 404)

    def test_too_many_attempts(self):
        for _i in range(controllers.HANDSHAKE_MAX_ATTEMPTS):
            self.handshake()
        response, body = self.handshake()
        self.assertEqual(response.status_code, 429)


@tagged("post_install", "-at_install")
class TestDialplanEndpoints(HttpCase):

    def setUp(self):
        super().setUp()
        env = self.env(context=dict(self.env.context, tracking_disable=True))
        self.server = env["asterisk_plus.server"].create({"name": "PBX 1"})
        self.server.sudo().security_token = "tok-123"
        self.server.user.country_id = self.env.ref("base.de")
        Users = env["res.users"].with_context(no_reset_password=True)
        self.alice = Users.create({"name": "Alice", "login": "alice_ep", "email": "alice@example.com",
                                   "groups_id": [(6, 0, [self.env.ref("asterisk_plus.group_asterisk_user").id])]})
        env["asterisk_plus.user"].create({
            "server": self.server.id, "user": self.alice.id, "exten": "102", "did_number": "030 111222",
            "channels": [(0, 0, {"name": "PJSIP/102"}), (0, 0, {"name": "SIP/102", "sequence": 20})],
        })
        self.alice.partner_id.mobile = "+49 170 1234567"
        tag = env["res.partner.category"].create({"name": "VIP"})
        self.partner = env["res.partner"].create({
            "name": "Hans", "phone": "030 901820", "country_id": self.env.ref("base.de").id,
            "user_id": self.alice.id, "category_id": [(6, 0, tag.ids)],
        })
        self.authenticate(None, None)

    def get(self, path, token="tok-123", header=False, **params):
        headers = {}
        if token and header:
            headers["x-security-token"] = token
        elif token:
            params["token"] = token
        return self.url_open("/asterisk_plus/%s?%s" % (path, urlencode(params)), headers=headers)

    def test_token_required(self):
        for token in (None, "", "tok-12", "tok-1234", "TOK-123"):
            response = self.get("get_caller_name", token=token, number="+4930901820")
            self.assertEqual(response.status_code, 403, token)
            self.assertNotIn("Hans", response.text)
        response = self.get("get_caller_name", number="+4930901820")
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.text, "Hans")
        response = self.get("get_caller_name", header=True, number="004930901820")
        self.assertEqual(response.text, "Hans")
        self.assertTrue(response.headers["Content-Type"].startswith("text/plain"))

    def test_ip_allow_list_is_on_top_of_the_token(self):
        settings = self.env["asterisk_plus.settings"].get_settings()
        settings.permit_ip_addresses = "192.0.2.0/24"
        self.assertEqual(self.get("get_caller_name", number="+4930901820").status_code, 403)
        settings.permit_ip_addresses = "192.0.2.0/24, 127.0.0.1"
        self.assertEqual(self.get("get_caller_name", number="+4930901820").text, "Hans")
        self.assertEqual(self.get("get_caller_name", token="bad", number="+4930901820").status_code, 403)

    def test_endpoints(self):
        self.assertEqual(self.get("get_caller_name", number="+4930999999").text, "")
        self.assertEqual(self.get("get_caller_name", number="030901820").text, "Hans", "server country DE")
        self.assertEqual(self.get("get_partner_manager", number="+4930901820").text, "PJSIP/102&SIP/102")
        self.assertEqual(self.get("get_partner_manager", number="+4930901820", exten="1").text, "102")
        self.assertEqual(self.get("get_partner_manager", number="+4930999999").text, "")
        self.assertEqual(self.get("get_caller_tags", number="+4930901820").text, "VIP")
        data = self.get("get_user_data_by_did", did="030 111222").json()
        self.assertEqual(data, {"mobile": "+49 170 1234567", "dialstring": "PJSIP/102&SIP/102"})
        self.assertEqual(self.get("get_user_data_by_did", did="999").json(), {})
        self.assertEqual(self.get("get_outbound_callerid_by_channel", channel="PJSIP/102-0000000a").text, "+4930111222")
        self.assertEqual(self.get("get_outbound_callerid_by_channel", channel="PJSIP/999-0000000a").text, "")
