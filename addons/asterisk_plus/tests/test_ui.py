import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from odoo.tests import HttpCase, tagged


class FakeAgent:
    """A plain-HTTP job endpoint on loopback that records jobs (plain HTTP is
    allowed on loopback only, §1.4)."""

    def __init__(self):
        jobs = self.jobs = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                jobs.append({"path": self.path, "token": self.headers.get("x-token"), "job": body})
                reply = json.dumps({"status": "accepted", "job_id": body.get("job_id")}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@tagged("post_install", "-at_install")
class TestClickToDialUI(HttpCase):

    def test_click_to_dial_tour(self):
        agent = FakeAgent()
        self.addCleanup(agent.stop)
        env = self.env(context=dict(self.env.context, tracking_disable=True))
        server = env["asterisk_plus.server"].create({"name": "PBX"})
        server.sudo().write({"agent_url": agent.url, "agent_token": "tok", "agent_initialized": True})
        admin = self.env.ref("base.user_admin")
        env["asterisk_plus.user"].create({
            "server": server.id, "user": admin.id, "exten": "101",
            "channels": [(0, 0, {"name": "PJSIP/101"})],
        })
        partner = env["res.partner"].create({"name": "Customer GmbH", "phone": "030 901820",
                                             "country_id": self.env.ref("base.de").id})
        self.start_tour("/web#id=%d&model=res.partner&view_type=form" % partner.id,
                        "asterisk_plus_click_to_dial", login="admin")
        self.assertEqual(len(agent.jobs), 2, "the dial button, then the call started by the tour")
        sent = agent.jobs[0]
        self.assertEqual(sent["path"], "/app/asterisk_plus/agent")
        self.assertEqual(sent["token"], "tok")
        action = sent["job"]["args"][0]
        self.assertEqual(action["Channel"], "PJSIP/101")
        self.assertEqual(action["Exten"], "+4930901820")
        call = env["asterisk_plus.call"].search([("uniqueid", "=", action["ChannelId"])])
        self.assertEqual(call.partner, partner)
        self.assertEqual(call.calling_user, admin)

    def test_menus_tour(self):
        env = self.env(context=dict(self.env.context, tracking_disable=True))
        server = env["asterisk_plus.server"].create({"name": "PBX"})
        admin = self.env.ref("base.user_admin")
        env["asterisk_plus.user"].create({
            "server": server.id, "user": admin.id, "exten": "101", "channels": [(0, 0, {"name": "PJSIP/101"})],
        })
        partner = env["res.partner"].create({"name": "Customer GmbH", "phone": "+4930901820"})
        env["asterisk_plus.call"].create({
            "uniqueid": "1.1", "server": server.id, "direction": "in", "calling_number": "+4930901820",
            "partner": partner.id, "status": "answered", "is_active": False, "answered_user": admin.id,
        })
        self.start_tour("/web", "asterisk_plus_menus", login="admin")
