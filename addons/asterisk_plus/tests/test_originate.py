import datetime
import hashlib
import json
import os
import ssl
import tempfile
import threading
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from unittest.mock import patch

import requests

from odoo.exceptions import AccessError, UserError
from odoo.tests import tagged

from ..models.server import FingerprintAdapter
from .common import AsteriskCase, ami_events, enrich, rewrite

FINGERPRINT = "ab" * 32


class FakeResponse:
    def __init__(self, status_code=200, body=None):
        self.status_code = status_code
        self._body = body if body is not None else {"status": "accepted", "job_id": "x"}
        self.reason = "reason"

    def json(self):
        return self._body


class Recorder:
    """Stands in for requests.Session.post and keeps what was sent."""

    def __init__(self, response=None):
        self.calls = []
        self.response = response or FakeResponse()

    def __call__(self, session, url, data=None, **kwargs):
        self.calls.append({"session": session, "url": url, "body": json.loads(data), **kwargs})
        return self.response


@tagged("post_install", "-at_install")
class TestOriginate(AsteriskCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.server.sudo().write({"agent_token": "t0ken", "agent_cert_sha256": FINGERPRINT, "agent_initialized": True})
        cls.pbx_alice = cls.env["asterisk_plus.user"].create({
            "server": cls.server.id, "user": cls.alice.id, "exten": "102",
            "originate_vars": "FOO=bar",
            "channels": [(0, 0, {"name": "PJSIP/102"})],
        })
        cls.partner = cls.env["res.partner"].create({
            "name": "Hans", "phone": "030 901820", "country_id": cls.germany.id, "phone_extension": "123",
        })

    def originate(self, recorder, number="030 901820", model="res.partner", res_id=None):
        with patch.object(requests.Session, "post", autospec=True, side_effect=recorder):
            return self.env["asterisk_plus.server"].with_user(self.alice).originate_call(
                number, model, res_id or self.partner.id)

    def test_originate_job_payload(self):
        recorder = Recorder()
        [call_uid] = self.originate(recorder)
        self.assertEqual(len(recorder.calls), 1)
        sent = recorder.calls[0]
        self.assertEqual(sent["url"], "https://localhost:48000/app/asterisk_plus/agent")
        self.assertEqual(sent["headers"]["x-token"], "t0ken")
        self.assertEqual(sent["headers"]["Content-Type"], "application/json")
        self.assertEqual(sent["timeout"], 6)
        self.assertFalse(sent["allow_redirects"])
        # Fingerprint pinning (the default): the pin is checked during the handshake.
        adapter = sent["session"].get_adapter("https://localhost:48000/")
        self.assertIsInstance(adapter, FingerprintAdapter)
        self.assertEqual(adapter._fingerprint, FINGERPRINT)
        job = sent["body"]
        self.assertEqual(job["fun"], "asterisk.manager_action")
        self.assertEqual(job["res_model"], "asterisk_plus.server")
        self.assertEqual(job["res_method"], "originate_call_response")
        self.assertEqual(job["pass_back"], {"channel_id": call_uid, "notify_uid": self.alice.id})
        self.assertEqual(job["job_id"], call_uid)
        self.assertEqual(job["kwargs"], {})
        [action] = job["args"]
        self.assertEqual(action["Action"], "Originate")
        self.assertEqual(action["Channel"], "PJSIP/102")
        self.assertEqual(action["Context"], "from-internal")
        self.assertEqual(action["Exten"], "+4930901820", "E.164 with the partner's country")
        self.assertEqual(action["Priority"], 1)
        self.assertEqual(action["Timeout"], 60000)
        self.assertEqual(action["Async"], "true")
        self.assertEqual(action["EarlyMedia"], "true")
        self.assertEqual(action["CallerID"], '"To: Hans" <+4930901820>')
        self.assertEqual(action["ChannelId"], call_uid)
        self.assertNotEqual(action["OtherChannelId"], call_uid)
        uuid.UUID(action["OtherChannelId"])
        self.assertEqual(action["Variable"], [
            "__REALCALLERIDNUM=102",
            "__CALLERIDNUMINTERNAL=102",
            "FOO=bar",
            "PJSIP_HEADER(add,Call-Info)=answer-after=0",
            "__dtmf_digits=123",
            "__dtmf_delay=2",
        ])
        # The call and its channel exist before Asterisk reports anything.
        call = self.call_by_uniqueid(call_uid)
        self.assertEqual(call.direction, "out")
        self.assertEqual(call.calling_user, self.alice)
        self.assertEqual(call.partner, self.partner)
        self.assertEqual(call.called_number, "+4930901820")
        self.assertEqual(call.channels.uniqueid, call_uid)
        self.assertTrue(call.channels.originated)

    def test_sip_channel_and_context_override(self):
        channel = self.pbx_alice.channels
        channel.write({"name": "SIP/102", "originate_context": "office", "auto_answer_header": "Alert-Info: auto"})
        recorder = Recorder()
        self.originate(recorder)
        action = recorder.calls[0]["body"]["args"][0]
        self.assertEqual(action["Context"], "office")
        self.assertIn("SIPADDHEADER=Alert-Info: auto", action["Variable"])

    def test_click_to_call_05d_reuses_precreated_call(self):
        [call_uid] = self.originate(Recorder())
        events = enrich(rewrite(ami_events("05d-sip-click-to-call-originate-pjsip-102.txt"), {"1795627340.20": call_uid}))
        delivered = self.replay_map(events)
        self.assertNotIn(("OriginateResponse", "on_ami_originate_response_failure"), delivered,
                         "a successful OriginateResponse is not routed")
        calls = self.env["asterisk_plus.call"].search([("server", "=", self.server.id)])
        self.assertEqual(len(calls), 1, "Newchannel with Odoo's ChannelId attaches to the pre-created call")
        call = calls
        channel = call.channels
        self.assertEqual(len(channel), 1)
        self.assertEqual(channel.channel, "PJSIP/102-00000001")
        self.assertTrue(channel.seen)
        self.assertEqual(channel.user, self.alice)
        self.assertEqual(call.direction, "out")
        self.assertEqual(call.calling_user, self.alice)
        self.assertEqual(call.called_number, "+4930901820", "Odoo's number wins over the Newchannel's `s`")
        self.assertEqual(call.status, "ended")
        self.assertFalse(call.is_active)
        # The successful callback changes nothing.
        success = [{"Response": "Success", "Message": "Originate successfully queued"},
                   {"Event": "OriginateResponse", "Response": "Success", "Reason": "4", "Uniqueid": call_uid}]
        self.env["asterisk_plus.server"].with_user(self.agent).originate_call_response(success, channel_id=call_uid, notify_uid=self.alice.id)
        self.assertEqual(call.status, "ended")

    def test_failed_originate_callback_notifies_once(self):
        [call_uid] = self.originate(Recorder())
        failure = [{"Response": "Success", "Message": "Originate successfully queued"},
                   {"Event": "OriginateResponse", "Response": "Failure", "Reason": "0",
                    "Uniqueid": "<unknown>", "Channel": "PJSIP/102"}]
        Server = self.env["asterisk_plus.server"].with_user(self.agent)
        self.assertTrue(Server.originate_call_response(failure, channel_id=call_uid, notify_uid=self.alice.id))
        call = self.call_by_uniqueid(call_uid)
        self.assertEqual(call.status, "failed")
        self.assertFalse(call.is_active)
        Server.originate_call_response(failure, channel_id=call_uid, notify_uid=self.alice.id)
        notes = [n for n in self.bus_messages(self.alice, "asterisk_plus_notify") if n["warning"]]
        self.assertEqual(len(notes), 1, "results arrive at least once; the user is told once")
        self.assertIn("phone not registered or call declined", notes[0]["message"])
        with self.assertRaises(AccessError):
            self.env["asterisk_plus.server"].with_user(self.bob).originate_call_response(failure, channel_id=call_uid)

    def test_failed_originate_event_from_map(self):
        [call_uid] = self.originate(Recorder())
        events = ami_events("04d-action-originate-variants.txt", names={"OriginateResponse"})
        busy = next(e for e in events if e.get("ActionID") == "orig-busy")
        busy = enrich([dict(busy, Channel="PJSIP/102")])[0]
        self.assertEqual(self.replay_map([busy]), [("OriginateResponse", "on_ami_originate_response_failure")])
        call = self.call_by_uniqueid(call_uid)
        self.assertEqual(call.status, "busy")
        notes = [n for n in self.bus_messages(self.alice, "asterisk_plus_notify") if n["warning"]]
        self.assertEqual(len(notes), 1)
        self.assertIn("Busy", notes[0]["message"])

    def test_agent_error_reply_is_a_user_error(self):
        recorder = Recorder(FakeResponse(503, {"error": {"code": "busy", "message": "job queue full"}}))
        # Not assertRaises: Odoo's rolls back to a savepoint, as a request would, while the real
        # method commits the failed attempt before raising (skipped in tests).
        try:
            self.originate(recorder)
        except UserError as e:
            error = str(e)
        else:
            self.fail("an agent error must reach the user as a UserError")
        self.assertIn("job queue full", error)
        self.assertIn("503", error)
        # The attempt stays in the history as a failed call (contract §9.3).
        call = self.env["asterisk_plus.call"].search([("calling_user", "=", self.alice.id)])
        self.assertEqual(len(call), 1)
        self.assertEqual(call.status, "failed")
        self.assertFalse(call.is_active)
        self.assertEqual(call.channels.cause_txt, "agent unreachable")

    def test_refusals(self):
        with self.assertRaises(AccessError):
            self.env["asterisk_plus.server"].with_user(self.agent).originate_call("030 901820")
        self.pbx_alice.channels.originate_enabled = False
        with self.assertRaisesRegex(UserError, "no PBX channel"):
            self.originate(Recorder())
        self.pbx_alice.channels.originate_enabled = True
        for bad in ("+49 30; DROP", "100\r\nAction: Command", ""):
            with self.assertRaises(UserError):
                self.originate(Recorder(), number=bad)
        recorder = Recorder()
        self.originate(recorder, number="100")
        self.assertEqual(recorder.calls[0]["body"]["args"][0]["Exten"], "100", "an extension is not made E.164")
        recorder = Recorder()
        self.originate(recorder, number="*97", model=False)
        self.assertEqual(recorder.calls[0]["body"]["args"][0]["Exten"], "*97", "feature codes can be dialled")
        self.server.agent_url = "http://192.0.2.10:48000"
        with self.assertRaisesRegex(UserError, "only allowed on loopback"):
            self.originate(Recorder())
        self.server.agent_url = "http://127.0.0.1:48000"
        recorder = Recorder()
        self.originate(recorder)
        self.assertEqual(recorder.calls[0]["url"], "http://127.0.0.1:48000/app/asterisk_plus/agent")


def _self_signed(tmpdir):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.utcnow()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = os.path.join(tmpdir, "agent.crt"), os.path.join(tmpdir, "agent.key")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    fingerprint = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    return cert_path, key_path, fingerprint


@tagged("post_install", "-at_install")
class TestAgentTLS(AsteriskCase):
    """Real TLS on loopback: the pin is enforced before the token is sent."""

    def setUp(self):
        super().setUp()
        tmpdir = tempfile.mkdtemp()
        cert_path, key_path, self.fingerprint = _self_signed(tmpdir)
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append({"token": self.headers.get("x-token"), "body": json.loads(body)})
                reply = json.dumps({"status": "done", "job_id": "1", "result": True}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        httpd = HTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        self.addCleanup(httpd.server_close)
        self.addCleanup(httpd.shutdown)
        self.server.sudo().write({
            "agent_url": "https://127.0.0.1:%d" % httpd.server_address[1],
            "agent_token": "s3cret", "agent_initialized": True,
        })

    def test_pinned_fingerprint_accepts(self):
        self.server.agent_cert_sha256 = ":".join(self.fingerprint[i:i + 2] for i in range(0, 64, 2)).upper()
        action = self.server.ping_agent()
        self.assertEqual(action["params"]["type"], "success")
        self.assertEqual(len(self.received), 1)
        self.assertEqual(self.received[0]["token"], "s3cret")
        self.assertEqual(self.received[0]["body"]["fun"], "test.ping")
        self.assertTrue(self.received[0]["body"]["sync"])

    def test_wrong_fingerprint_sends_nothing(self):
        self.server.agent_cert_sha256 = "00" * 32
        with self.assertRaisesRegex(UserError, "TLS check"):
            self.server.ping_agent()
        self.assertEqual(self.received, [], "the token never left Odoo")

    def test_ca_mode_rejects_self_signed(self):
        self.server.agent_tls_mode = "ca"
        with self.assertRaises(UserError):
            self.server.ping_agent()
        self.assertEqual(self.received, [])

    def test_insecure_mode_is_explicit(self):
        self.server.agent_tls_mode = "insecure"
        with self.assertLogs("odoo.addons.asterisk_plus.models.server", level="WARNING"):
            self.server.ping_agent()
        self.assertEqual(len(self.received), 1)
